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
"""Tests for fsgan_jax.torch_pickle (no torch needed).

The fixtures in testdata/torch_pickle/ were written by real PyTorch; see
testdata/torch_pickle/make_fixtures.py.
"""

from __future__ import annotations

import collections
import io
import os
import pathlib
import pickle
import struct
import sys
import tarfile
import zipfile
from typing import Any

import ml_dtypes
import numpy as np
import pytest

from fsgan_jax import torch_pickle

_DATA = pathlib.Path(__file__).resolve().parent / 'testdata' / 'torch_pickle'

_NP_DTYPES = {
    'float32': np.dtype(np.float32),
    'float64': np.dtype(np.float64),
    'float16': np.dtype(np.float16),
    'bfloat16': np.dtype(ml_dtypes.bfloat16),
    'int64': np.dtype(np.int64),
    'int32': np.dtype(np.int32),
    'uint8': np.dtype(np.uint8),
    'uint16': np.dtype(np.uint16),
    'bool': np.dtype(np.bool_),
}


def _flatten(obj: Any, prefix: str, out: dict[str, np.ndarray]) -> None:
  if isinstance(obj, np.ndarray):
    out[prefix] = obj
  elif isinstance(obj, dict):
    for k, v in obj.items():
      _flatten(v, f'{prefix}/{k}' if prefix else str(k), out)
  elif isinstance(obj, (list, tuple)):
    for i, v in enumerate(obj):
      _flatten(v, f'{prefix}/{i}', out)


def _expected(prefixes: tuple[str, ...]) -> dict[str, tuple[str, np.ndarray]]:
  """Returns {key: (torch dtype name, expected value)} from expected.npz."""
  with np.load(_DATA / 'expected.npz') as npz:
    dtypes = dict(npz['__dtypes__'].tolist())
    return {k: (dtypes[k], npz[k]) for k in dtypes
            if k.split('/', 1)[0] in prefixes}


def _check_matches(loaded: Any, prefixes: tuple[str, ...],
                   rename: str | None = None) -> None:
  flat = {}
  _flatten(loaded, rename or '', flat)
  expected = _expected(prefixes)
  assert sorted(flat) == sorted(expected)
  for key, (dtype_name, want) in expected.items():
    got = flat[key]
    assert got.dtype == _NP_DTYPES[dtype_name], key
    assert got.shape == want.shape, key
    assert got.flags.c_contiguous, key
    if dtype_name == 'bfloat16':  # Stored as uint16 bit patterns.
      got = got.view(np.uint16)
    np.testing.assert_array_equal(got, want, err_msg=key)


# Hand-written protocol-2 pickle pieces, for checkpoints built without torch.
def _p_str(s: str) -> bytes:
  b = s.encode()
  return b'X' + struct.pack('<I', len(b)) + b


def _p_int(i: int) -> bytes:
  return b'J' + struct.pack('<i', i)


def _p_tuple(*items: bytes) -> bytes:
  return b'(' + b''.join(items) + b't'


def _p_global(module: str, name: str) -> bytes:
  return b'c' + f'{module}\n{name}\n'.encode()


def _tensor_pickle(numel: int, size: tuple[int, ...], stride: tuple[int, ...],
                   offset: int = 0) -> bytes:
  """Pickle of {'t': float32 tensor over storage '0' of `numel` elements}."""
  storage = _p_tuple(_p_str('storage'), _p_global('torch', 'FloatStorage'),
                     _p_str('0'), _p_str('cpu'), _p_int(numel)) + b'Q'
  args = _p_tuple(storage, _p_int(offset),
                  _p_tuple(*map(_p_int, size)), _p_tuple(*map(_p_int, stride)),
                  b'\x89', _p_global('collections', 'OrderedDict') + b')R')
  return (b'\x80\x02}' + _p_str('t') +
          _p_global('torch._utils', '_rebuild_tensor_v2') + args + b'Rs.')


def _write_zip(path: pathlib.Path, records: dict[str, bytes]) -> pathlib.Path:
  with zipfile.ZipFile(path, 'w') as zf:
    for name, data in records.items():
      zf.writestr(name, data)
  return path


def _legacy_stream(main_pickle: bytes) -> bytes:
  """A legacy torch.save stream with header pickles and no storages."""
  return (pickle.dumps(0x1950A86A20F9469CFC6C, protocol=2) +
          pickle.dumps(1001, protocol=2) +
          pickle.dumps({'protocol_version': 1001, 'little_endian': True},
                       protocol=2) +
          main_pickle + pickle.dumps([], protocol=2))


class _Reduce:
  """Pickles as `func(*args)`."""

  def __init__(self, func, args):
    self._func = func
    self._args = args

  def __reduce__(self):
    return (self._func, self._args)


@pytest.fixture(name='no_system')
def fixture_no_system(monkeypatch, tmp_path):
  """Records os.system calls instead of running them; cwd is tmp_path."""
  calls = []
  monkeypatch.chdir(tmp_path)
  # Pickles name os.system by its defining module (posix or nt).
  for module in (os, sys.modules.get('posix'), sys.modules.get('nt')):
    if module is not None:
      monkeypatch.setattr(module, 'system', lambda *a: calls.append(a))
  return calls


def test_zip_checkpoint_matches_torch_values():
  ckpt = torch_pickle.load(_DATA / 'fastgan_like.pth')
  assert set(ckpt) == {'g', 'd', 'g_ema', 'opt_g'}
  _check_matches(ckpt, ('g', 'd', 'g_ema', 'opt_g'))


def test_zip_checkpoint_structure():
  ckpt = torch_pickle.load(str(_DATA / 'fastgan_like.pth'))
  g = ckpt['g']
  assert isinstance(g, collections.OrderedDict)
  assert list(g)[:3] == ['init.conv.weight', 'init.conv.bias', 'fc.weight_t']
  assert g['init.conv.weight'].shape == (4, 3, 3, 3)
  assert g['init.conv.weight'].dtype == np.float32
  assert g['bn.num_batches_tracked'].shape == ()
  assert g['bn.num_batches_tracked'].dtype == np.int64
  assert int(g['bn.num_batches_tracked']) == 7
  assert isinstance(ckpt['g_ema'], list)
  assert all(isinstance(t, np.ndarray) for t in ckpt['g_ema'])


def test_views_are_honoured_and_independent():
  g = torch_pickle.load(_DATA / 'fastgan_like.pth')['g']
  base = g['base']
  np.testing.assert_array_equal(base, np.arange(20.0).reshape(4, 5))
  np.testing.assert_array_equal(g['slice'], base[1:3, 2:])
  assert g['fc.weight_t'].shape == (3, 5)
  g['slice'][...] = -1  # Results are writable copies, not aliases.
  np.testing.assert_array_equal(base, np.arange(20.0).reshape(4, 5))


def test_optimizer_state_loads():
  opt = torch_pickle.load(_DATA / 'fastgan_like.pth')['opt_g']
  (group,) = opt['param_groups']
  assert group['lr'] == pytest.approx(2e-4)
  assert group['betas'] == (0.5, 0.999)
  assert group['eps'] == pytest.approx(1e-8)
  assert group['amsgrad'] is False
  assert group['params'] == [0, 1, 2, 3]
  assert sorted(opt['state']) == [0, 1, 2, 3]
  for state in opt['state'].values():
    assert float(state['step']) == 1.0
    assert state['exp_avg'].shape == state['exp_avg_sq'].shape
  assert opt['state'][0]['exp_avg'].shape == (2, 3)


def test_legacy_format_matches_torch_values():
  ckpt = torch_pickle.load(_DATA / 'fastgan_like_legacy.pth')
  assert set(ckpt) == {'g', 'g_ema'}
  assert isinstance(ckpt['g'], collections.OrderedDict)
  _check_matches(ckpt, ('g', 'g_ema'))


def test_big_endian_checkpoint():
  ckpt = torch_pickle.load(_DATA / 'big_endian.pth')
  _check_matches(ckpt, ('big_endian_expected',), rename='big_endian_expected')
  assert ckpt['x'].dtype.isnative


def test_malicious_checkpoint_is_refused_without_executing(no_system):
  path = _DATA / 'malicious.pth'
  with pytest.raises(torch_pickle.UnsafeCheckpointError) as e:
    torch_pickle.load(path)
  assert str(path) in str(e.value)
  assert 'system' in str(e.value)
  assert isinstance(e.value, ValueError)
  assert not no_system
  assert not pathlib.Path('pwned.txt').exists()


# Pickled at import time, before `no_system` patches os.system.
_EVIL_PICKLES = {
    name: pickle.dumps({'w': _Reduce(func, args)}, protocol=2)
    for name, func, args in [
        ('os.system', os.system, ('echo pwned > pwned.txt',)),
        ('eval', eval,
         ('__import__("os").system("echo pwned > pwned.txt")',)),
        ('getattr', getattr, (collections.OrderedDict, '__init__')),
        ('write_text', pathlib.Path.write_text,
         (pathlib.Path('pwned.txt'), 'pwned')),
    ]
}


@pytest.mark.parametrize('name', sorted(_EVIL_PICKLES))
@pytest.mark.parametrize('fmt', ['zip', 'legacy'])
def test_handmade_malicious_pickles_are_refused(no_system, tmp_path, name,
                                                fmt):
  evil = _EVIL_PICKLES[name]
  path = tmp_path / 'evil.pth'
  if fmt == 'zip':
    _write_zip(path, {'archive/data.pkl': evil})
  else:
    path.write_bytes(_legacy_stream(evil))
  with pytest.raises(torch_pickle.UnsafeCheckpointError,
                     match=f'{path}.*refusing'):
    torch_pickle.load(path)
  assert not no_system
  assert not (tmp_path / 'pwned.txt').exists()


def test_handmade_tensor_pickle(tmp_path):
  values = np.arange(6, dtype='<f4')
  path = _write_zip(tmp_path / 'ok.pth', {
      'prefix/data.pkl': _tensor_pickle(6, (2, 2), (1, 2), offset=1),
      'prefix/data/0': values.tobytes(),
  })
  got = torch_pickle.load(path)['t']
  np.testing.assert_array_equal(got, np.array([[1.0, 3.0], [2.0, 4.0]]))


def test_out_of_bounds_view_is_rejected(tmp_path):
  path = _write_zip(tmp_path / 'oob.pth', {
      'archive/data.pkl': _tensor_pickle(4, (10,), (1,)),
      'archive/data/0': np.zeros(4, '<f4').tobytes(),
  })
  with pytest.raises(torch_pickle.CheckpointFormatError, match='does not fit'):
    torch_pickle.load(path)


def test_missing_storage_record_is_rejected(tmp_path):
  path = _write_zip(tmp_path / 'missing.pth',
                    {'archive/data.pkl': _tensor_pickle(4, (4,), (1,))})
  with pytest.raises(torch_pickle.CheckpointFormatError,
                     match='missing storage record'):
    torch_pickle.load(path)


def test_text_file_is_rejected_with_file_name(tmp_path):
  path = tmp_path / 'notes.txt'
  path.write_text('this is not a checkpoint\n')
  with pytest.raises(torch_pickle.CheckpointFormatError) as e:
    torch_pickle.load(path)
  assert str(path) in str(e.value)
  assert 'not a PyTorch checkpoint' in str(e.value)


def test_plain_pickle_is_rejected(tmp_path):
  path = tmp_path / 'plain.pkl'
  path.write_bytes(pickle.dumps({'a': 1}, protocol=2))
  with pytest.raises(torch_pickle.CheckpointFormatError, match=str(path)):
    torch_pickle.load(path)


def test_other_zip_is_rejected(tmp_path):
  path = _write_zip(tmp_path / 'other.zip', {'readme.txt': b'hello'})
  with pytest.raises(torch_pickle.CheckpointFormatError, match=str(path)):
    torch_pickle.load(path)


def test_torchscript_archive_is_rejected(tmp_path):
  path = _write_zip(tmp_path / 'scripted.pt', {
      'archive/data.pkl': pickle.dumps({}, protocol=2),
      'archive/constants.pkl': pickle.dumps((), protocol=2),
      'archive/code/__torch__/m.py': b'',
  })
  with pytest.raises(torch_pickle.CheckpointFormatError, match='TorchScript'):
    torch_pickle.load(path)


def test_tar_format_asks_to_resave(tmp_path):
  path = tmp_path / 'old.pth'
  with tarfile.open(path, 'w') as tf:
    info = tarfile.TarInfo('pickle')
    info.size = 4
    tf.addfile(info, io.BytesIO(b'abcd'))
  with pytest.raises(torch_pickle.CheckpointFormatError,
                     match='re-save the checkpoint with torch>=1.6'):
    torch_pickle.load(path)


def test_missing_file_raises_os_error(tmp_path):
  with pytest.raises(FileNotFoundError):
    torch_pickle.load(tmp_path / 'nope.pth')
