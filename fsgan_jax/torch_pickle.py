# Copyright 2026 The fsgan_jax Authors.
#
# Licensed under the Apache License, Version 2.0 (the "License");
# you may not use this file except in compliance with the License.
# You may obtain a copy of the License at
#
#     http://www.apache.org/licenses/LICENSE-2.0
#
# Unless required by applicable law or agreed to in writing, software
# distributed under the License is distributed on an "AS IS" BASIS,
# WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
# See the License for the specific language governing permissions and
# limitations under the License.
"""Reads PyTorch ``.pth``/``.pt`` checkpoints without importing torch.

This module understands the two pickle-based formats written by ``torch.save``:

* the zip format (default since torch 1.6): a zip archive holding ``<prefix>/data.pkl`` plus one
  ``<prefix>/data/<key>`` record per storage;
* the legacy format (``_use_new_zipfile_serialization=False``): a stream of pickles (magic number, protocol
  version, system info, the object, the list of storage keys) followed by the raw storage bytes.

Every tensor is returned as a NumPy array with the tensor's dtype, shape and values (strides and storage offsets
are honoured; the result is always a C-contiguous copy). ``bfloat16`` and ``float8`` tensors use the ``ml_dtypes``
types. ``nn.Parameter`` objects load as plain arrays.

Unpickling is restricted: only the globals needed to rebuild tensors and plain containers are allowed, and anything
else raises :class:`UnsafeCheckpointError` before it can run. Whole pickled ``nn.Module`` objects, TorchScript
archives, quantized/sparse tensors and other exotic objects are therefore not supported; save a ``state_dict``.

Typical use::

  ckpt = torch_pickle.load('all_50000.pth')
  conv_w = ckpt['g']['init.init.0.weight_orig']  # np.ndarray
"""

from __future__ import annotations

import collections
import io
import os
import pickle
import pickletools
import struct
import sys
import tarfile
import zipfile
from typing import Any, Callable, NamedTuple

import ml_dtypes
import numpy as np

from fsgan_jax import errors

# Values written by torch.serialization for the legacy (non-zip) format.
_LEGACY_MAGIC_NUMBER = 0x1950A86A20F9469CFC6C
_LEGACY_PROTOCOL_VERSION = 1001

# Legacy `torch.<Name>Storage` classes and the element type they hold.
_STORAGE_DTYPES: dict[str, np.dtype] = {
    'DoubleStorage': np.dtype(np.float64),
    'FloatStorage': np.dtype(np.float32),
    'HalfStorage': np.dtype(np.float16),
    'BFloat16Storage': np.dtype(ml_dtypes.bfloat16),
    'LongStorage': np.dtype(np.int64),
    'IntStorage': np.dtype(np.int32),
    'ShortStorage': np.dtype(np.int16),
    'CharStorage': np.dtype(np.int8),
    'ByteStorage': np.dtype(np.uint8),
    'BoolStorage': np.dtype(np.bool_),
    'ComplexFloatStorage': np.dtype(np.complex64),
    'ComplexDoubleStorage': np.dtype(np.complex128),
}

# `torch.<name>` dtype objects (pickled under their canonical name).
_TORCH_DTYPES: dict[str, np.dtype] = {
    'float64': np.dtype(np.float64),
    'float32': np.dtype(np.float32),
    'float16': np.dtype(np.float16),
    'bfloat16': np.dtype(ml_dtypes.bfloat16),
    'int64': np.dtype(np.int64),
    'int32': np.dtype(np.int32),
    'int16': np.dtype(np.int16),
    'int8': np.dtype(np.int8),
    'uint64': np.dtype(np.uint64),
    'uint32': np.dtype(np.uint32),
    'uint16': np.dtype(np.uint16),
    'uint8': np.dtype(np.uint8),
    'bool': np.dtype(np.bool_),
    'complex64': np.dtype(np.complex64),
    'complex128': np.dtype(np.complex128),
}
for _name in ('float8_e5m2', 'float8_e4m3fn', 'float8_e5m2fnuz',
              'float8_e4m3fnuz', 'float8_e8m0fnu'):
  if hasattr(ml_dtypes, _name):
    _TORCH_DTYPES[_name] = np.dtype(getattr(ml_dtypes, _name))
del _name

# Python 2 module names that protocol <= 2 pickles use for builtins.
_PY2_MODULES = {'__builtin__': 'builtins', 'copy_reg': 'copyreg'}


class UnsafeCheckpointError(errors.FsganError):
  """The checkpoint's pickle references a global that is not allowed."""


class CheckpointFormatError(errors.FsganError):
  """The file is not a (supported) PyTorch checkpoint or is malformed."""


class _StorageType(NamedTuple):
  """Stands in for a `torch.*Storage` class; immutable by construction."""
  name: str
  dtype: np.dtype  # uint8 for UntypedStorage.


class _TensorType(NamedTuple):
  """Stands in for `torch.Tensor` / `torch.nn.Parameter` classes."""
  name: str


class _Storage(NamedTuple):
  """A loaded storage: raw bytes plus the element type they hold."""
  raw: np.ndarray | None  # 1-D uint8; None while only collecting metadata.
  dtype: np.dtype
  byteorder: str  # 'little' or 'big': byte order of `raw`.


_UNTYPED_STORAGE = _StorageType('UntypedStorage', np.dtype(np.uint8))

# (module, name) -> replacement, for globals that are not rebuild functions.
_SIMPLE_GLOBALS: dict[tuple[str, str], Any] = {
    ('collections', 'OrderedDict'): collections.OrderedDict,
    ('builtins', 'set'): set,
    ('builtins', 'frozenset'): frozenset,
    ('builtins', 'slice'): slice,
    ('builtins', 'complex'): complex,
    ('torch', 'Size'): tuple,
    ('torch', 'UntypedStorage'): _UNTYPED_STORAGE,
    ('torch.storage', 'UntypedStorage'): _UNTYPED_STORAGE,
    ('torch', 'Tensor'): _TensorType('torch.Tensor'),
    ('torch._tensor', 'Tensor'): _TensorType('torch.Tensor'),
    ('torch.nn.parameter', 'Parameter'): _TensorType('torch.nn.Parameter'),
}
_SIMPLE_GLOBALS.update({('torch', name): _StorageType(name, dtype)
                        for name, dtype in _STORAGE_DTYPES.items()})
# torch.dtype objects outside tensors load as strings such as 'torch.float32'.
_SIMPLE_GLOBALS.update({('torch', name): f'torch.{name}'
                        for name in _TORCH_DTYPES})

# (module, name) -> name of the `RestrictedUnpickler` method replacing it.
_REBUILD_GLOBALS: dict[tuple[str, str], str] = {
    ('torch._utils', '_rebuild_tensor'): '_rebuild_tensor',
    ('torch._utils', '_rebuild_tensor_v2'): '_rebuild_tensor_v2',
    ('torch._utils', '_rebuild_tensor_v3'): '_rebuild_tensor_v3',
    ('torch._utils', '_rebuild_parameter'): '_rebuild_parameter',
    ('torch._utils', '_rebuild_parameter_with_state'): '_rebuild_parameter',
    ('torch._tensor', '_rebuild_from_type_v2'): '_rebuild_from_type_v2',
    ('_codecs', 'encode'): '_codecs_encode',
}


def _as_int(value: Any, what: str) -> int:
  """Returns `value` as a non-negative Python int or raises."""
  if isinstance(value, bool) or not isinstance(value, int) or value < 0:
    raise CheckpointFormatError(f'invalid tensor {what}: {value!r}')
  return value


def _as_int_tuple(value: Any, what: str) -> tuple[int, ...]:
  if not isinstance(value, (tuple, list)):
    raise CheckpointFormatError(f'invalid tensor {what}: {value!r}')
  return tuple(_as_int(v, what) for v in value)


def _make_array(storage: Any, dtype: np.dtype, storage_offset: Any,
                size: Any, stride: Any) -> np.ndarray | None:
  """Builds a C-contiguous array from a storage, like `Tensor.set_`.

  Args:
    storage: A `_Storage`.
    dtype: The tensor's element type.
    storage_offset: Offset of the first element, in elements of `dtype`.
    size: The tensor's shape.
    stride: The tensor's strides, in elements of `dtype`.

  Returns:
    A new array, or None if `storage` holds no data yet (metadata pass).
  """
  if not isinstance(storage, _Storage):
    raise CheckpointFormatError(f'expected a storage, got {type(storage)}')
  offset = _as_int(storage_offset, 'storage offset')
  shape = _as_int_tuple(size, 'size')
  strides = _as_int_tuple(stride, 'stride')
  if len(shape) != len(strides):
    raise CheckpointFormatError(f'size {shape} and stride {strides} differ '
                                'in length')
  if storage.raw is None:
    return None
  itemsize = dtype.itemsize
  numel = storage.raw.size // itemsize
  if 0 in shape:
    return np.zeros(shape, dtype)
  last = offset + sum((n - 1) * s for n, s in zip(shape, strides))
  if last >= numel:
    raise CheckpointFormatError(
        f'tensor of size {shape}, stride {strides}, offset {offset} does not '
        f'fit in a storage of {numel} elements')
  flat = storage.raw[:numel * itemsize].view(dtype)
  view = np.lib.stride_tricks.as_strided(
      flat[offset:], shape=shape, strides=[s * itemsize for s in strides],
      writeable=False)
  out = np.array(view, dtype=dtype, order='C', copy=True)
  if storage.byteorder != sys.byteorder and itemsize > 1:
    # Swap each scalar component (complex numbers are two floats).
    unit = itemsize // 2 if dtype.kind == 'c' else itemsize
    out.reshape(-1).view(f'u{unit}').byteswap(inplace=True)
  return out


class RestrictedUnpickler(pickle.Unpickler):
  """Unpickler that only rebuilds tensors and plain containers."""

  def __init__(self, file: io.BytesIO, filename: str,
               persistent_load: Callable[[Any], Any]):
    super().__init__(file, encoding='utf-8')
    self._file = file
    self._filename = filename
    self._persistent_load_fn = persistent_load

  def load(self) -> Any:
    # Walk the opcodes first (this executes nothing): it rejects truncated
    # data and length fields larger than the data, which would otherwise
    # make the unpickler allocate that many bytes before noticing.
    start = self._file.tell()
    for _ in pickletools.genops(self._file):
      pass
    self._file.seek(start)
    return super().load()

  def find_class(self, module: str, name: str) -> Any:
    module = _PY2_MODULES.get(module, module)
    key = (module, name)
    if key in _SIMPLE_GLOBALS:
      return _SIMPLE_GLOBALS[key]
    if key in _REBUILD_GLOBALS:
      # Bound methods: nothing the pickle does to them outlives this load.
      return getattr(self, _REBUILD_GLOBALS[key])
    raise UnsafeCheckpointError(
        f'{self._filename}: refusing to load global {module}.{name}; only '
        'tensors and plain containers are allowed in checkpoints (it may be '
        'malicious, or contain objects other than state dicts).')

  def persistent_load(self, pid: Any) -> Any:
    return self._persistent_load_fn(pid)

  # Replacements for the allowed torch functions. ---------------------------

  def _rebuild_tensor(self, storage, storage_offset, size, stride):
    if not isinstance(storage, _Storage):
      raise CheckpointFormatError(f'expected a storage, got {type(storage)}')
    return _make_array(storage, storage.dtype, storage_offset, size, stride)

  def _rebuild_tensor_v2(self, storage, storage_offset, size, stride,
                         requires_grad=False, backward_hooks=None,
                         metadata=None):
    del requires_grad, backward_hooks, metadata  # Unused.
    return self._rebuild_tensor(storage, storage_offset, size, stride)

  def _rebuild_tensor_v3(self, storage, storage_offset, size, stride,
                         requires_grad, backward_hooks, dtype, metadata=None):
    del requires_grad, backward_hooks, metadata  # Unused.
    name = None
    if isinstance(dtype, str) and dtype.startswith('torch.'):
      name = dtype[len('torch.'):]
    if name not in _TORCH_DTYPES:
      raise CheckpointFormatError(f'unsupported tensor dtype {dtype!r}')
    return _make_array(storage, _TORCH_DTYPES[name], storage_offset, size,
                       stride)

  def _rebuild_parameter(self, data, requires_grad, backward_hooks,
                         state=None):
    del requires_grad, backward_hooks, state  # Unused.
    if data is not None and not isinstance(data, np.ndarray):
      raise CheckpointFormatError(f'expected a tensor, got {type(data)}')
    return data

  def _rebuild_from_type_v2(self, func, new_type, args, state):
    del state  # Python attributes of tensor subclasses are dropped.
    tensor_funcs = (self._rebuild_tensor, self._rebuild_tensor_v2,
                    self._rebuild_tensor_v3, self._rebuild_parameter)
    if (not callable(func) or func not in tensor_funcs or
        not isinstance(new_type, _TensorType) or not isinstance(args, tuple)):
      raise CheckpointFormatError('unsupported tensor subclass in checkpoint')
    return func(*args)

  def _codecs_encode(self, obj, encoding='utf-8'):
    # Protocol 2 pickles store `bytes` as `_codecs.encode(str, 'latin1')`.
    if not isinstance(obj, str) or encoding not in ('latin1', 'latin-1'):
      raise CheckpointFormatError('unexpected _codecs.encode call')
    return obj.encode('latin1')


def _check_storage_pid(pid: Any, length: int, filename: str) -> tuple[Any, ...]:
  if (not isinstance(pid, tuple) or len(pid) != length or
      pid[0] not in ('storage', b'storage')):
    if isinstance(pid, tuple) and pid and pid[0] in ('module', b'module'):
      raise CheckpointFormatError(
          f'{filename}: pickled nn.Module objects are not supported; save '
          'and convert a state_dict instead.')
    raise CheckpointFormatError(f'{filename}: unexpected persistent id '
                                f'{pid!r}')
  storage_type, key, numel = pid[1], pid[2], pid[4]
  if not isinstance(storage_type, _StorageType):
    raise CheckpointFormatError(f'{filename}: invalid storage type '
                                f'{storage_type!r}')
  if not isinstance(key, (str, int)):
    raise CheckpointFormatError(f'{filename}: invalid storage key {key!r}')
  _as_int(numel, 'storage size')
  return pid


def zip_storage_loader(zf: zipfile.ZipFile, filename: str, storage_dir: str,
                       byteorder: str) -> Callable[[Any], _Storage]:
  """A ``persistent_load`` that maps storage records to the archive's ``<storage_dir>/<key>`` entries.

  Shared by ``torch.save`` zips and TorchScript archives; each record is read once and size-checked.
  """
  storages: dict[str, _Storage] = {}

  def persistent_load(pid: Any) -> _Storage:
    _, storage_type, key, _, numel = _check_storage_pid(pid, 5, filename)
    key = str(key)
    if key not in storages:
      nbytes = numel * storage_type.dtype.itemsize
      record = f'{storage_dir}/{key}'
      try:
        info = zf.getinfo(record)
      except KeyError:
        raise CheckpointFormatError(
            f'{filename}: missing storage record {record!r}') from None
      if info.file_size < nbytes:
        raise CheckpointFormatError(
            f'{filename}: storage record {record!r} has {info.file_size} '
            f'bytes, expected {nbytes}')
      raw = np.frombuffer(zf.read(record), dtype=np.uint8)[:nbytes]
      storages[key] = _Storage(raw, storage_type.dtype, byteorder)
    return storages[key]

  return persistent_load


def _load_zip(zf: zipfile.ZipFile, filename: str) -> Any:
  """Loads a checkpoint in the zip format (torch >= 1.6)."""
  names = zf.namelist()
  pkl_names = [n for n in names
               if n.endswith('/data.pkl') and n.count('/') == 1]
  if len(pkl_names) != 1:
    raise CheckpointFormatError(
        f'{filename}: zip archive is not a torch.save checkpoint (expected '
        f'exactly one <prefix>/data.pkl, found {len(pkl_names)}).')
  prefix = pkl_names[0][:-len('data.pkl')]
  if f'{prefix}constants.pkl' in names or any(
      n.startswith(f'{prefix}code/') for n in names):
    raise CheckpointFormatError(
        f'{filename}: TorchScript archives (torch.jit.save) are not '
        'supported; save a state_dict with torch.save instead.')
  byteorder = 'little'
  if f'{prefix}byteorder' in names:
    byteorder = zf.read(f'{prefix}byteorder').decode('ascii', 'replace')
    if byteorder not in ('little', 'big'):
      raise CheckpointFormatError(f'{filename}: unknown byte order '
                                  f'{byteorder!r}')

  persistent_load = zip_storage_loader(zf, filename, f'{prefix}data', byteorder)

  # Unpickle from memory (see RestrictedUnpickler.load).
  data_pkl = io.BytesIO(zf.read(pkl_names[0]))
  return RestrictedUnpickler(data_pkl, filename, persistent_load).load()


def _load_legacy(f: io.BytesIO, filename: str) -> Any:
  """Loads a checkpoint in the legacy non-zip format (torch < 1.6)."""

  def refuse_pid(pid: Any) -> Any:
    raise CheckpointFormatError(f'{filename}: unexpected persistent id '
                                f'{pid!r}')

  def header_load() -> Any:
    return RestrictedUnpickler(f, filename, refuse_pid).load()

  if header_load() != _LEGACY_MAGIC_NUMBER:
    raise CheckpointFormatError(
        f'{filename}: not a PyTorch checkpoint (a pickle without the torch '
        'magic number).')
  protocol = header_load()
  if protocol != _LEGACY_PROTOCOL_VERSION:
    raise CheckpointFormatError(
        f'{filename}: unsupported legacy protocol version {protocol!r}; '
        're-save the checkpoint with torch>=1.6.')
  header_load()  # System info; storage data is always little-endian.
  start = f.tell()

  # Storage data follows the pickle, so pass 1 only collects storage types.
  roots: dict[str, tuple[np.dtype, int]] = {}

  def collect(pid: Any) -> _Storage:
    _, storage_type, key, _, numel, _ = _check_storage_pid(pid, 6, filename)
    roots[str(key)] = (storage_type.dtype, numel)
    return _Storage(None, storage_type.dtype, 'little')

  RestrictedUnpickler(f, filename, collect).load()
  keys = header_load()
  if not isinstance(keys, list):
    raise CheckpointFormatError(f'{filename}: invalid storage key list')
  raw_storages: dict[str, np.ndarray] = {}
  for key in keys:
    key = str(key)
    if key not in roots:
      raise CheckpointFormatError(f'{filename}: unknown storage key {key!r}')
    dtype, numel = roots[key]
    header = f.read(8)
    if len(header) != 8 or struct.unpack('<q', header)[0] != numel:
      raise CheckpointFormatError(f'{filename}: corrupt storage {key!r}')
    nbytes = numel * dtype.itemsize
    data = f.read(nbytes)
    if len(data) != nbytes:
      raise CheckpointFormatError(f'{filename}: truncated storage {key!r}')
    raw_storages[key] = np.frombuffer(data, dtype=np.uint8)

  def persistent_load(pid: Any) -> _Storage:
    _, storage_type, key, _, _, view = _check_storage_pid(pid, 6, filename)
    key = str(key)
    if key not in raw_storages:
      raise CheckpointFormatError(f'{filename}: storage {key!r} has no data')
    raw = raw_storages[key]
    if view is not None:  # (view_key, offset, view_size), in elements.
      if not isinstance(view, tuple) or len(view) != 3:
        raise CheckpointFormatError(f'{filename}: invalid storage view')
      itemsize = storage_type.dtype.itemsize
      offset = _as_int(view[1], 'storage view offset') * itemsize
      view_size = _as_int(view[2], 'storage view size') * itemsize
      if offset + view_size > raw.size:
        raise CheckpointFormatError(f'{filename}: invalid storage view')
      raw = raw[offset:offset + view_size]
    return _Storage(raw, storage_type.dtype, 'little')

  f.seek(start)
  return RestrictedUnpickler(f, filename, persistent_load).load()


def load(path: str | os.PathLike[str]) -> Any:
  """Loads a checkpoint written by `torch.save`, without torch.

  Args:
    path: Path of a `.pth`/`.pt` file in the zip format (torch >= 1.6) or
      the legacy pickle format.

  Returns:
    The saved object, with every tensor (and `nn.Parameter`) replaced by a
    C-contiguous NumPy array of the same dtype, shape and values. Containers
    keep their types (`OrderedDict` state dicts stay `OrderedDict`s);
    `torch.Size` loads as `tuple` and `torch.dtype` objects as strings such
    as `'torch.float32'`.

  Raises:
    UnsafeCheckpointError: The pickle references a global other than the
      few needed to rebuild tensors and containers (nothing is executed).
    CheckpointFormatError: The file is not a supported PyTorch checkpoint,
      or is corrupt.
    OSError: The file cannot be read.
  """
  filename = os.fspath(path)
  try:
    with open(filename, 'rb') as f:
      if zipfile.is_zipfile(f):
        f.seek(0)
        with zipfile.ZipFile(f) as zf:
          return _load_zip(zf, filename)
      f.seek(0)
      head = f.read(2)
      f.seek(0)
      if head[:1] == b'\x80':  # Pickle PROTO opcode: legacy torch.save.
        # Read into memory: a file's read(n) may allocate n bytes up front,
        # which a corrupt length field could make huge.
        return _load_legacy(io.BytesIO(f.read()), filename)
  except (UnsafeCheckpointError, CheckpointFormatError):
    raise
  except (pickle.UnpicklingError, zipfile.BadZipFile, EOFError, TypeError,
          ValueError, KeyError, IndexError, AttributeError, struct.error,
          UnicodeDecodeError, RecursionError, MemoryError) as e:
    raise CheckpointFormatError(
        f'{filename}: corrupt or unsupported PyTorch checkpoint: {e!r}') from e
  if tarfile.is_tarfile(filename):
    raise CheckpointFormatError(
        f'{filename}: the tar-based checkpoint format of very old PyTorch '
        'versions is not supported; re-save the checkpoint with torch>=1.6.')
  raise CheckpointFormatError(
      f'{filename}: not a PyTorch checkpoint (neither a torch.save zip '
      'archive nor a legacy torch.save pickle).')
