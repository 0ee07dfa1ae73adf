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
"""Reads the tensors of TorchScript archives (``torch.jit.save``) without torch.

A TorchScript archive is a zip file holding ``<prefix>/data.pkl`` (the pickled
module tree), ``<prefix>/constants.pkl``, ``<prefix>/code/`` (TorchScript
source, never looked at here) and one ``<prefix>/data/<key>`` record per
tensor storage. The pickle references the module classes by their
TorchScript names (``__torch__.<module> <Class>``), tensor rebuild functions
and storage types.

:func:`load_state_dict` unpickles ``data.pkl`` with a restricted unpickler
(built on :mod:`fsgan_jax.torch_pickle`): every ``__torch__.*`` class becomes
an inert :class:`ModuleRecord` (a plain record of the module's attributes; no
code of the archive is executed), tensors become NumPy arrays, and any other
global raises :class:`~fsgan_jax.torch_pickle.UnsafeCheckpointError`. The
module tree is then flattened into a state-dict-like ``{name: array}`` dict
(tensor attributes of a module first, then its submodules, as
``torch.nn.Module.state_dict`` does). The TorchScript code that says which
tensor attributes are parameters or buffers is not read: every tensor
attribute is returned (for ordinary modules these are the same set).

Typical use::

  sd = torchscript.load_state_dict('default_1.pt')
  sd['net.layers.conv.weight'].shape  # (32, 3, 3, 3)
"""

from __future__ import annotations

import io
import os
import pickle
import re
import struct
import zipfile
from typing import Any, Iterator

import numpy as np

from fsgan_jax import torch_pickle
# The restricted unpickler and storage helpers are shared with torch_pickle.
# pylint: disable=protected-access

__all__ = [
    'ModuleRecord',
    'load_module_tree',
    'load_state_dict',
]

CheckpointFormatError = torch_pickle.CheckpointFormatError
UnsafeCheckpointError = torch_pickle.UnsafeCheckpointError

# `__torch__.a.b.___torch_mangle_3` + `Name`: TorchScript class names only.
_IDENT = r'[A-Za-z_][A-Za-z0-9_]*'
_TORCHSCRIPT_MODULE_RE = re.compile(rf'__torch__(\.{_IDENT})*\Z')
_TORCHSCRIPT_NAME_RE = re.compile(rf'{_IDENT}\Z')

# `torch.jit._pickle.build_*list` helpers (TorchScript's typed lists).
_LIST_BUILDERS = ('build_intlist', 'build_doublelist', 'build_boollist',
                  'build_tensorlist', 'build_list')


class ModuleRecord:
  """Inert stand-in for a pickled TorchScript module object.

  Attributes:
    type_name: The TorchScript class name, e.g.
      ``'__torch__.inceptionv3.Conv2dLayer'``.
    attributes: The module's pickled attributes, in pickle order
      (tensors as NumPy arrays, submodules as ``ModuleRecord``).
  """

  type_name = '?'  # Overridden per TorchScript class, see `_record_class`.

  def __new__(cls, *args: Any, **kwargs: Any) -> ModuleRecord:
    # `NEWOBJ` calls `cls.__new__(cls)` and never `__init__`.
    del args, kwargs  # TorchScript modules are pickled with no arguments.
    record = super().__new__(cls)
    record.attributes = {}
    return record

  attributes: dict[str, Any]

  def __setstate__(self, state: Any) -> None:
    if not isinstance(state, dict) or not all(
        isinstance(k, str) for k in state):
      raise CheckpointFormatError(
          f'{self.type_name}: expected a dict of attributes, got '
          f'{type(state).__name__}')
    self.attributes = dict(state)

  def __getitem__(self, name: str) -> Any:
    return self.attributes[name]

  def __contains__(self, name: object) -> bool:
    return name in self.attributes

  def __repr__(self) -> str:
    return f'ModuleRecord({self.type_name}, {list(self.attributes)})'


_RECORD_CLASSES: dict[str, type[ModuleRecord]] = {}


def _record_class(type_name: str) -> type[ModuleRecord]:
  """A `ModuleRecord` subclass per TorchScript class name (keeps the name)."""
  if type_name not in _RECORD_CLASSES:
    _RECORD_CLASSES[type_name] = type('ModuleRecord', (ModuleRecord,),
                                      {'type_name': type_name,
                                       '__slots__': ()})
  return _RECORD_CLASSES[type_name]


def _build_list(*args: Any) -> list[Any]:
  """`torch.jit._pickle.build_*list(data)`: returns `data` as a list."""
  if len(args) != 1 or not isinstance(args[0], (list, tuple)):
    raise CheckpointFormatError('invalid TorchScript list')
  return list(args[0])


class _TorchScriptUnpickler(torch_pickle.RestrictedUnpickler):
  """Adds TorchScript module classes and list builders to the allow-list."""

  def find_class(self, module: str, name: str) -> Any:
    if (_TORCHSCRIPT_MODULE_RE.match(module) and
        _TORCHSCRIPT_NAME_RE.match(name)):
      return _record_class(f'{module}.{name}')
    if module == 'torch.jit._pickle' and name in _LIST_BUILDERS:
      return _build_list
    return super().find_class(module, name)


def _find_prefix(zf: zipfile.ZipFile, filename: str) -> str:
  names = zf.namelist()
  pkl = [n for n in names if n.endswith('/data.pkl') and n.count('/') == 1]
  if len(pkl) != 1:
    raise CheckpointFormatError(
        f'{filename}: not a TorchScript archive (expected exactly one '
        f'<prefix>/data.pkl, found {len(pkl)}).')
  prefix = pkl[0][:-len('data.pkl')]
  if f'{prefix}constants.pkl' not in names:
    raise CheckpointFormatError(
        f'{filename}: zip archive has no {prefix}constants.pkl; it is a '
        'torch.save checkpoint, not TorchScript (use fsgan_jax.torch_pickle).')
  return prefix


def _unpickle(zf: zipfile.ZipFile, prefix: str, record: str,
              storage_dir: str, filename: str) -> Any:
  """Unpickles `<prefix><record>` with storages in `<prefix><storage_dir>/`."""
  byteorder = 'little'
  if f'{prefix}byteorder' in zf.namelist():
    byteorder = zf.read(f'{prefix}byteorder').decode('ascii', 'replace')
    if byteorder not in ('little', 'big'):
      raise CheckpointFormatError(f'{filename}: unknown byte order '
                                  f'{byteorder!r}')
  persistent_load = torch_pickle.zip_storage_loader(zf, filename, f'{prefix}{storage_dir}', byteorder)

  data = io.BytesIO(zf.read(f'{prefix}{record}'))
  return _TorchScriptUnpickler(data, f'{filename}:{record}',
                               persistent_load).load()


def load_module_tree(path: str | os.PathLike[str]) -> ModuleRecord:
  """Loads the module tree of a TorchScript archive as `ModuleRecord`s.

  Args:
    path: A file written by `torch.jit.save` (or `torch.jit.script(...).save`).

  Returns:
    The root module as a `ModuleRecord`; nothing of the archive is executed.

  Raises:
    UnsafeCheckpointError: The pickle references a global that is not a
      TorchScript class name, tensor rebuild function, storage type or plain
      container.
    CheckpointFormatError: The file is not a TorchScript archive or is corrupt.
    OSError: The file cannot be read.
  """
  filename = os.fspath(path)
  try:
    with zipfile.ZipFile(filename) as zf:
      prefix = _find_prefix(zf, filename)
      root = _unpickle(zf, prefix, 'data.pkl', 'data', filename)
  except (UnsafeCheckpointError, CheckpointFormatError):
    raise
  except (pickle.UnpicklingError, zipfile.BadZipFile, EOFError, TypeError,
          ValueError, KeyError, IndexError, AttributeError, struct.error,
          UnicodeDecodeError, RecursionError, MemoryError) as e:
    raise CheckpointFormatError(
        f'{filename}: corrupt or unsupported TorchScript archive: {e!r}'
    ) from e
  if not isinstance(root, ModuleRecord):
    raise CheckpointFormatError(
        f'{filename}: data.pkl does not hold a TorchScript module '
        f'(got {type(root).__name__})')
  return root


def _flatten(record: ModuleRecord, prefix: str,
             seen: set[int]) -> Iterator[tuple[str, np.ndarray]]:
  if id(record) in seen:  # Shared submodules appear once, like state_dict.
    return
  seen.add(id(record))
  for name, value in record.attributes.items():
    if isinstance(value, np.ndarray):
      yield prefix + name, value
  for name, value in record.attributes.items():
    if isinstance(value, ModuleRecord):
      yield from _flatten(value, f'{prefix}{name}.', seen)


def load_state_dict(path: str | os.PathLike[str]) -> dict[str, np.ndarray]:
  """Returns the tensors of a TorchScript module as a flat state-dict-like dict.

  Args:
    path: A file written by `torch.jit.save`.

  Returns:
    `{dotted_name: array}` for every tensor attribute (parameters and
    buffers) of the module tree, keyed as `ScriptModule.state_dict()` would
    key them; arrays keep the tensors' dtypes and shapes (C-contiguous).

  Raises:
    UnsafeCheckpointError: See `load_module_tree`.
    CheckpointFormatError: See `load_module_tree`.
    OSError: The file cannot be read.
  """
  root = load_module_tree(path)
  try:
    return dict(_flatten(root, '', set()))
  except RecursionError as e:
    raise CheckpointFormatError(
        f'{os.fspath(path)}: module tree is nested too deeply') from e
