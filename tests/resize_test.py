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
"""Tests of the FID resize conventions (``tf1``, ``pytorch_fid``, ``clean``).

tests/testdata/resize_golden.npz was made with the original code (torch
``F.interpolate`` as pytorch-fid, PIL bicubic as clean-fid, and the
TorchScript FID Inception) by tests/testdata/make_resize_golden.py. The
resize parity tests need no weights; the feature test needs the weights and
../shared/data (skips without them, like inception_test.py).
"""

import os
import pathlib
import subprocess

import jax
import numpy as np
import pytest
from PIL import Image

from fsgan_jax.evaluators import inception

GOLDEN = pathlib.Path(__file__).parent / 'testdata' / 'resize_golden.npz'
MATRIX_MODES = ('pytorch_fid', 'clean')
# Model-input units per 0..255 unit: x in [-1, 1] is (v / 255) * 2 - 1 for
# pytorch_fid and (v - 128) / 128 for clean.
SCALE_255 = {'pytorch_fid': 127.5, 'clean': 128.0}


@pytest.fixture(name='golden', scope='module')
def fixture_golden():
  with np.load(GOLDEN) as z:
    return {k: z[k] for k in z.files}


def _names(golden):
  return sorted(k[len('input_'):] for k in golden if k.startswith('input_'))


@pytest.mark.parametrize('mode', MATRIX_MODES)
def test_resize_matches_originals(golden, mode):
  crop = golden['crop'].astype(np.int64)
  worst = 0.0
  for name in _names(golden):
    u8 = golden[f'input_{name}']
    want = golden[f'{mode}_{name}']  # [3, 72, 72] model input, cropped.
    shapes = [u8[None]] + ([u8[None, ..., None]] if u8.ndim == 2 else [])
    for x in shapes:  # Gray as [N, H, W] and as [N, H, W, 1].
      got = np.asarray(inception.preprocess(x, mode))
      assert got.shape == (1, 299, 299, 3) and got.dtype == np.float32
      got = got[0].transpose(2, 0, 1)[:, crop][:, :, crop]
      diff = np.abs(got.astype(np.float64) - want) * SCALE_255[mode]
      worst = max(worst, float(diff.max()))
      assert diff.max() <= 1e-4, (name, mode, diff.max())
  print(f'{mode}: max |delta| on the 0..255 scale {worst:.3g}')


def test_resize_matrix_rows_and_cache():
  for mode in MATRIX_MODES:
    for n in (37, 128, 256, 299, 333, 512):
      m = inception.resize_matrix(n, mode)
      assert m.shape == (299, n) and m.dtype == np.float32
      np.testing.assert_allclose(m.sum(1), 1.0, atol=1e-6)
      assert inception.resize_matrix(n, mode) is m  # Cached.
      assert not m.flags.writeable
  # 299 -> 299 is the identity for both (PIL and torch).
  for mode in MATRIX_MODES:
    np.testing.assert_array_equal(inception.resize_matrix(299, mode),
                                  np.eye(299, dtype=np.float32))
  # Torch bilinear never antialiases: at most 2 taps per row; PIL bicubic
  # widens its support when downsampling.
  assert (inception.resize_matrix(512, 'pytorch_fid') != 0).sum(1).max() <= 2
  assert (inception.resize_matrix(512, 'clean') != 0).sum(1).max() > 4


def test_clean_matches_pil_any_size():
  # Direct comparison with the local PIL (same code clean-fid runs).
  rng = np.random.default_rng(7)
  for h, w in ((64, 90), (300, 301), (299, 150)):
    u8 = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    want = np.stack([
        np.asarray(Image.fromarray(u8[..., c].astype(np.float32),
                                   mode='F').resize(
                                       (299, 299), resample=Image.BICUBIC))
        for c in range(3)], -1).clip(0, 255)
    got = np.asarray(inception.preprocess(u8[None], 'clean'))[0]
    np.testing.assert_allclose(got * 128.0 + 128.0, want, atol=1e-4, rtol=0)


def test_preprocess_dispatch_jit_and_errors():
  x = np.random.default_rng(8).integers(0, 256, (2, 40, 30), dtype=np.uint8)
  np.testing.assert_array_equal(np.asarray(inception.preprocess(x)),
                                np.asarray(inception.preprocess_tf1(x)))
  outs = {}
  for mode in inception.RESIZE_MODES:
    jitted = jax.jit(inception.preprocess, static_argnames='resize')
    outs[mode] = np.asarray(jitted(x, resize=mode))
    np.testing.assert_allclose(outs[mode],
                               np.asarray(inception.preprocess(x, mode)),
                               atol=1e-6, rtol=0)
    assert outs[mode].shape == (2, 299, 299, 3)
  assert not np.allclose(outs['tf1'], outs['pytorch_fid'], atol=1e-3)
  assert not np.allclose(outs['clean'], outs['pytorch_fid'], atol=1e-3)
  with pytest.raises(ValueError, match=r"'bicubic'.*tf1, pytorch_fid, clean"):
    inception.preprocess(x, 'bicubic')
  with pytest.raises(ValueError, match="'nope'"):
    inception.features_from_images({}, x, resize='nope')
  with pytest.raises(ValueError, match='expected'):
    inception.preprocess(np.zeros((2, 8, 8, 2)), 'clean')


# ---- With the real weights. ------------------------------------------------


@pytest.fixture(name='params', scope='module')
def fixture_params(shared_data):
  del shared_data  # No 81 MB download in clones without the shared data.
  try:
    path = inception.fetch(source=os.environ.get('FSGAN_JAX_FID_SOURCE'))
  except (subprocess.CalledProcessError, OSError) as e:
    pytest.skip(f'FID Inception weights unavailable (offline?): {e}')
  return inception.load_params(path)


@pytest.mark.parametrize('mode', MATRIX_MODES)
def test_features_match_torchscript(params, golden, shared_data, mode):
  path = shared_data / 'fid_inception' / 'golden_features.npz'
  if not path.is_file():
    pytest.skip(f'{path} is not present')
  with np.load(path) as z:
    idx = list(golden['golden_feature_indices'])
    images = z['images_uint8'][idx]
    np.testing.assert_array_equal(z['names'][idx],
                                  golden['golden_feature_names'])
  feats = inception.features_from_images(params, images, batch_size=4,
                                         resize=mode)
  want = golden[f'features_{mode}'].astype(np.float64)
  diff = np.abs(feats.astype(np.float64) - want)
  print(f'{mode}: pool3 |delta| mean {diff.mean():.3g}, max {diff.max():.3g}')
  assert diff.mean() <= 1e-4
  assert diff.max() <= 1e-3
