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
"""DiffAugment: parity with the official PyTorch code (golden data) and properties on hand-made inputs."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from fsgan_jax.augment import diffaug

KEY = jax.random.PRNGKey(0)
ALL = 'color,translation,cutout'


# ------------------------------------------------------------------------------------------------ golden


@pytest.mark.parametrize('name', ['x64', 'x42'])  # x42: odd cutout size (21)
def test_matches_official(shared_data, name):
  """``DiffAugment(x, 'color,translation,cutout')`` with the official run's recorded draws (measured 1e-6)."""
  with np.load(shared_data / 'fastgan_golden' / 'diffaug_color_translation_cutout_nhwc.npz') as f:
    data = dict(f.items())
  prefix = f'{name}_draw_'
  draws = {k[len(prefix):]: v for k, v in data.items() if k.startswith(prefix)}
  assert set(draws) == {'brightness', 'saturation', 'contrast', 'translation_x', 'translation_y',
                        'cutout_offset_x', 'cutout_offset_y'}
  draws = {k: v.astype(np.int32) if np.issubdtype(v.dtype, np.integer) else v for k, v in draws.items()}
  out = diffaug.apply(jnp.asarray(data[f'{name}_in']), draws, ALL)
  np.testing.assert_allclose(out, data[f'{name}_out'], rtol=0, atol=1e-5)


# ------------------------------------------------------------------------------------------- translation


def _ramp(n: int, h: int, w: int, c: int) -> np.ndarray:
  """Distinct non-zero values: 1000 n + 100 c + 10 row + col (+1)."""
  nn, hh, ww, cc = np.meshgrid(np.arange(n), np.arange(h), np.arange(w), np.arange(c), indexing='ij')
  return (1000 * nn + 100 * cc + 10 * hh + ww + 1).astype(np.float32)


def test_translation_shifts_with_zero_fill():
  """``out[n, i, j] = x[n, i + tx[n], j + ty[n]]``, zero outside; shifts within [-round(H/8), round(H/8)]."""
  h = w = 16  # shifts up to 2
  x = _ramp(3, h, w, 2)
  tx = np.array([2, -1, 0], np.int32)  # rows (H)
  ty = np.array([0, 2, -2], np.int32)  # columns (W)
  out = np.asarray(diffaug.apply(jnp.asarray(x), {'translation_x': tx, 'translation_y': ty}, 'translation'))
  expected = np.zeros_like(x)
  for n in range(3):
    for i in range(h):
      for j in range(w):
        si, sj = i + tx[n], j + ty[n]
        if 0 <= si < h and 0 <= sj < w:
          expected[n, i, j] = x[n, si, sj]
  np.testing.assert_array_equal(out, expected)
  # Spot checks of the convention: sample 0 moves content up by two rows, the last two rows are zero.
  np.testing.assert_array_equal(out[0, 0], x[0, 2])
  np.testing.assert_array_equal(out[0, -2:], 0)
  np.testing.assert_array_equal(out[1, 0], 0)  # down by one: first row empty
  np.testing.assert_array_equal(out[1, :, -2:], 0)  # left by two: last two columns empty
  np.testing.assert_array_equal(out[2, :, :2], 0)  # right by two: first two columns empty
  assert (out[0] != 0).sum() == 2 * (h - 2) * w


def test_translation_draw_ranges():
  h, w = 42, 64
  draws = diffaug.sample_draws(KEY, (4000, h, w, 3), ALL)
  sx, sy = int(h * 0.125 + 0.5), int(w * 0.125 + 0.5)  # 5, 8
  for key, bound in (('translation_x', sx), ('translation_y', sy)):
    values = np.asarray(draws[key])
    assert values.min() == -bound and values.max() == bound, key  # [-round(H/8), round(H/8)], both ends hit
  cx, cy = int(h * 0.5 + 0.5), int(w * 0.5 + 0.5)  # 21 (odd), 32 (even)
  assert np.asarray(draws['cutout_offset_x']).max() == h + (1 - cx % 2) - 1
  assert np.asarray(draws['cutout_offset_y']).max() == w + (1 - cy % 2) - 1
  assert np.asarray(draws['cutout_offset_x']).min() == 0
  for key in ('brightness', 'saturation', 'contrast'):
    values = np.asarray(draws[key])
    assert values.min() >= 0 and values.max() < 1 and values.shape == (4000,)


# ------------------------------------------------------------------------------------------------ cutout


@pytest.mark.parametrize('size,off_x,off_y', [
    (16, 0, 10),   # clipped at the top
    (16, 8, 8),    # centred
    (16, 15, 16),  # clipped at the bottom-right (offset H is allowed for even sizes)
    (42, 3, 40),   # odd size: square of 21
])
def test_cutout_zeroes_a_clipped_square(size, off_x, off_y):
  x = _ramp(1, size, size, 2)
  draws = {'cutout_offset_x': np.array([off_x], np.int32), 'cutout_offset_y': np.array([off_y], np.int32)}
  out = np.asarray(diffaug.apply(jnp.asarray(x), draws, 'cutout'))
  cut = int(size * 0.5 + 0.5)  # round(H / 2)
  r0, c0 = off_x - cut // 2, off_y - cut // 2
  rows = slice(max(r0, 0), min(r0 + cut, size))
  cols = slice(max(c0, 0), min(c0 + cut, size))
  expected = x.copy()
  expected[:, rows, cols] = 0
  np.testing.assert_array_equal(out, expected)
  assert (out == 0).sum() == 2 * (rows.stop - rows.start) * (cols.stop - cols.start)


# ------------------------------------------------------------------------------------ randomness, policy


def test_per_sample_randomness():
  x = jnp.broadcast_to(jnp.asarray(_ramp(1, 32, 32, 3)) / 3000.0, (4, 32, 32, 3))
  draws = diffaug.sample_draws(KEY, x.shape, ALL)
  for key, values in draws.items():
    assert len(set(np.asarray(values).tolist())) > 1, f'{key}: the same draw for every sample'
  out = np.asarray(diffaug.diff_augment(x, KEY, ALL))
  for i in range(4):
    for j in range(i + 1, 4):
      assert not np.allclose(out[i], out[j]), (i, j)
  # Another key gives other draws; the same key the same output.
  assert not np.allclose(out, diffaug.diff_augment(x, jax.random.PRNGKey(1), ALL))
  np.testing.assert_array_equal(out, diffaug.diff_augment(x, KEY, ALL))


@pytest.mark.parametrize('policy', ['', ' ', ','])
def test_empty_policy_is_identity(policy):
  x = jnp.asarray(_ramp(2, 8, 8, 3))
  assert diffaug.diff_augment(x, KEY, policy) is x


def test_unknown_op_raises():
  x = jnp.zeros((1, 8, 8, 3))
  with pytest.raises(ValueError, match='rotate'):
    diffaug.diff_augment(x, KEY, 'color,rotate')
  with pytest.raises(ValueError, match='colour'):
    diffaug.sample_draws(KEY, x.shape, 'colour')
  assert diffaug.parse_policy(' color , cutout ') == ('color', 'cutout')


# --------------------------------------------------------------------------------------------- gradients


def test_gradients_flow():
  x = jax.random.uniform(KEY, (2, 16, 16, 3), minval=-1, maxval=1)
  draws = diffaug.sample_draws(jax.random.PRNGKey(3), x.shape, ALL)
  grad = jax.grad(lambda v: jnp.sum(diffaug.apply(v, draws, ALL) ** 2))(x)
  assert np.all(np.isfinite(grad)) and np.abs(grad).sum() > 0
  grad = jax.grad(lambda v: jnp.sum(diffaug.apply(v, draws, ALL)))(x)
  assert np.all(np.isfinite(grad)) and np.abs(grad).sum() > 0


def test_color_translation_gradient_of_one_pixel():
  """d out[n, i, j, k] / d x for color + translation, derived by hand.

  brightness: x + (b - 0.5); saturation: (x - m_c) * 2s + m_c (m_c: mean over channels at a pixel);
  contrast: (x - m) * (c + 0.5) + m (m: mean over H, W, C of the sample; the saturation step keeps it).
  With the output read at (i, j) of a translated image, the source pixel is p = (i + tx, j + ty) and
    d out / d x[n, p, k'] = (c + 0.5) * (2s * (delta_kk' - 1/C) + 1/C) + (0.5 - c) / (H W C),
    d out / d x[n, q, k'] = (0.5 - c) / (H W C) for every other pixel q, and 0 for the other samples.
  """
  n_, h, w, c_ = 2, 16, 12, 3  # shifts up to 2 rows, 2 columns
  x = jax.random.uniform(KEY, (n_, h, w, c_))
  b, s, c = 0.3, 0.8, 0.2
  draws = {'brightness': np.array([0.9, b], np.float32), 'saturation': np.array([0.1, s], np.float32),
           'contrast': np.array([0.7, c], np.float32),
           'translation_x': np.array([0, 2], np.int32), 'translation_y': np.array([0, -1], np.int32)}
  n, i, j, k = 1, 1, 3, 2
  grad = np.asarray(jax.grad(lambda v: diffaug.apply(v, draws, 'color,translation')[n, i, j, k])(x))
  expected = np.zeros((n_, h, w, c_), np.float64)
  expected[n] = (0.5 - c) / (h * w * c_)
  delta = (np.arange(c_) == k).astype(np.float64)
  expected[n, i + 2, j - 1] += (c + 0.5) * (2 * s * (delta - 1 / c_) + 1 / c_)
  np.testing.assert_allclose(grad, expected, rtol=1e-5, atol=1e-7)

  # An output pixel in the zero-filled border does not depend on the input at all.
  grad = np.asarray(jax.grad(lambda v: diffaug.apply(v, draws, 'color,translation')[n, h - 1, 0, 0])(x))
  np.testing.assert_array_equal(grad, 0)
