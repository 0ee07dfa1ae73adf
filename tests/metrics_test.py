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
"""Tests of MS-SSIM / diversity, memorization and precision-recall metrics."""

import json

import numpy as np
import pytest

from fsgan_jax.evaluators import memorization as mem
from fsgan_jax.evaluators import ms_ssim as msssim
from fsgan_jax.evaluators import precision_recall as pr

# Measured max |jax - tf| over the parity cases below: 8.1e-6 (float32 noise,
# largest for near-zero MS-SSIM where x ** 0.0448 amplifies rounding).
_TF_ATOL = 1e-5


def _structured(rng: np.random.Generator, n: int, h: int, w: int,
                c: int) -> np.ndarray:
  """Smooth sinusoidal patterns plus a little noise, uint8 [N, H, W, C]."""
  yy, xx = np.mgrid[0:h, 0:w] / np.array([h, w], np.float64)[:, None, None]
  out = []
  for _ in range(n):
    f = rng.uniform(1, 8, 3)
    ph = rng.uniform(0, 6, 2)
    img = (0.5 + 0.25 * np.sin(2 * np.pi * (f[0] * xx + f[1] * yy) + ph[0]) +
           0.25 * np.cos(2 * np.pi * f[2] * xx * yy + ph[1]))
    out.append(np.repeat(img[..., None], c, -1) +
               rng.normal(0, 0.05, (h, w, c)))
  return np.clip(np.round(np.stack(out) * 255), 0, 255).astype(np.uint8)


def _perturb(rng: np.random.Generator, x: np.ndarray, amp: int) -> np.ndarray:
  noise = rng.integers(-amp, amp + 1, x.shape)
  return np.clip(x.astype(np.int64) + noise, 0, 255).astype(np.uint8)


def _pair_cases(shape: tuple[int, ...]) -> list[tuple[np.ndarray, np.ndarray]]:
  rng = np.random.default_rng(sum(shape))
  noise = rng.integers(0, 256, shape, dtype=np.uint8)
  struct = _structured(rng, *shape)
  return [
      (noise, _perturb(rng, noise, 40)),                     # correlated noise
      (noise, rng.integers(0, 256, shape, dtype=np.uint8)),  # independent
      (struct, _perturb(rng, struct, 30)),                   # structured
      (struct, _structured(rng, *shape)),                    # unrelated
  ]


# ----------------------------------------------------------------------------
# MS-SSIM.


@pytest.mark.parametrize('shape', [(2, 256, 256, 1), (2, 256, 256, 3),
                                   (2, 181, 203, 1)])
def test_ms_ssim_matches_tf(shape):
  tf = pytest.importorskip('tensorflow')
  for x, y in _pair_cases(shape):
    want = tf.image.ssim_multiscale(x, y, 255).numpy()
    got = np.asarray(msssim.ms_ssim(x, y))
    np.testing.assert_allclose(got, want, rtol=0, atol=_TF_ATOL)
    got_f = np.asarray(msssim.ms_ssim(x.astype(np.float32),
                                      y.astype(np.float32)))
    want_f = tf.image.ssim_multiscale(x.astype(np.float32),
                                      y.astype(np.float32), 255.0).numpy()
    np.testing.assert_allclose(got_f, want_f, rtol=0, atol=_TF_ATOL)


def test_ms_ssim_128px_rule_matches_tf_with_renormalised_factors():
  tf = pytest.importorskip('tensorflow')
  conv = msssim.scale_convention(128, 128)
  assert conv['num_scales'] == 4 and not conv['tf_exact']
  assert '4 scales' in conv['convention']
  assert 'renormalised' in conv['convention']
  np.testing.assert_allclose(sum(conv['power_factors']), 1.0, atol=1e-12)
  np.testing.assert_allclose(
      conv['power_factors'], np.array(msssim.POWER_FACTORS[:4]) / 0.8668)
  x, y = _pair_cases((2, 128, 128, 1))[2]
  want = tf.image.ssim_multiscale(x, y, 255,
                                  power_factors=conv['power_factors']).numpy()
  np.testing.assert_allclose(np.asarray(msssim.ms_ssim(x, y)), want, rtol=0,
                             atol=_TF_ATOL)
  full = msssim.scale_convention(256, 256)
  assert full['num_scales'] == 5 and full['tf_exact']
  assert full['power_factors'] == list(msssim.POWER_FACTORS)
  assert msssim.scale_convention(161, 161)['num_scales'] == 5
  assert msssim.scale_convention(160, 256)['num_scales'] == 4
  assert msssim.scale_convention(80, 81)['num_scales'] == 3
  with pytest.raises(ValueError, match='too small'):
    msssim.ms_ssim(x, y, num_scales=5)


def test_ms_ssim_identical_images_give_one():
  rng = np.random.default_rng(1)
  for shape in [(2, 256, 256), (2, 128, 128, 3)]:
    x = rng.integers(0, 256, shape, dtype=np.uint8)
    np.testing.assert_allclose(np.asarray(msssim.ms_ssim(x, x)), 1.0,
                               atol=1e-6)


def test_ms_ssim_bad_shapes():
  a = np.zeros((2, 64, 64, 1), np.uint8)
  with pytest.raises(ValueError,
                     match=r'\(2, 64, 64, 1\) and \(2, 64, 32, 1\)'):
    msssim.ms_ssim(a, np.zeros((2, 64, 32, 1), np.uint8))
  with pytest.raises(ValueError, match=r'\(64, 64\) and \(64, 64\)'):
    msssim.ms_ssim(a[0, ..., 0], a[0, ..., 0])
  with pytest.raises(ValueError, match='too small'):
    msssim.ms_ssim(np.zeros((1, 8, 8), np.uint8), np.zeros((1, 8, 8), np.uint8))
  with pytest.raises(ValueError, match=r'\(5, 64\)'):
    msssim.diversity(np.zeros((5, 64), np.uint8))


def test_sample_pairs_distinct_and_groups():
  groups = np.array([0, 0, 1, 1, 1, 2])
  pairs = msssim.sample_pairs(6, 100, seed=0, groups=groups)
  assert len(pairs) == 2 * 3 + 2 * 1 + 3 * 1  # All cross-group pairs.
  assert np.all(groups[pairs[:, 0]] != groups[pairs[:, 1]])
  big = msssim.sample_pairs(200, 50, seed=3, groups=np.arange(200) // 10)
  assert big.shape == (50, 2) and np.all(big[:, 0] < big[:, 1])
  assert len({tuple(p) for p in big}) == 50
  assert np.all(big[:, 0] // 10 != big[:, 1] // 10)
  np.testing.assert_array_equal(
      big, msssim.sample_pairs(200, 50, seed=3, groups=np.arange(200) // 10))
  with pytest.raises(ValueError, match='no valid pair'):
    msssim.sample_pairs(3, 10, groups=[1, 1, 1])
  with pytest.raises(ValueError, match='one id per image'):
    msssim.sample_pairs(3, 10, groups=[1, 2])


def test_diversity_groups_and_sharded_batches():
  rng = np.random.default_rng(2)
  base = _structured(rng, 2, 96, 96, 1)[..., 0]
  images = np.stack([base[0]] * 3 + [base[1]] * 3)   # Two "subjects".
  cross = float(np.asarray(msssim.ms_ssim(base[:1], base[1:]))[0])
  res = msssim.diversity(images, num_pairs=50, groups=[0, 0, 0, 1, 1, 1],
                         batch_size=4)
  assert res['n_pairs'] == 9 and res['num_scales'] == 4
  assert res['convention'].startswith('ms_ssim[4 scales')
  np.testing.assert_allclose(res['mean'], cross, atol=1e-6)
  assert res['std'] < 1e-6
  json.dumps(res)
  res_all = msssim.diversity(images, num_pairs=50, batch_size=4)
  assert res_all['n_pairs'] == 15
  np.testing.assert_allclose(res_all['mean'], (9 * cross + 6) / 15, atol=1e-6)
  # Padded last batch (13 pairs, batches of 8): same as one direct call.
  imgs = _structured(rng, 8, 64, 64, 1)
  res = msssim.diversity(imgs, num_pairs=13, seed=5, batch_size=3)
  pairs = msssim.sample_pairs(8, 13, seed=5)
  want = np.asarray(msssim.ms_ssim(imgs[pairs[:, 0]], imgs[pairs[:, 1]]))
  np.testing.assert_allclose(res['mean'], want.mean(), atol=1e-6)


# ----------------------------------------------------------------------------
# Nearest neighbours and memorization.


def _brute_nn(q, r, exclude_self=False):
  d = np.sqrt(((q[:, None, :].astype(np.float64) - r[None]) ** 2).sum(-1))
  if exclude_self:
    np.fill_diagonal(d, np.inf)
  return d.min(1), d.argmin(1)


def test_nearest_neighbours_matches_brute_force():
  rng = np.random.default_rng(3)
  q = rng.normal(size=(37, 16)) + 5.0
  r = rng.normal(size=(53, 16)) + 5.0
  d, i = mem.nearest_neighbours(q, r, batch_size=5, reference_chunk=16)
  want_d, want_i = _brute_nn(q, r)
  np.testing.assert_array_equal(i, want_i)
  np.testing.assert_allclose(d, want_d, rtol=1e-5)
  d, i = mem.nearest_neighbours(r, r, exclude_self=True, batch_size=8,
                                reference_chunk=7)
  want_d, want_i = _brute_nn(r, r, exclude_self=True)
  np.testing.assert_array_equal(i, want_i)
  np.testing.assert_allclose(d, want_d, rtol=1e-5)
  d, i = mem.nearest_neighbours(r, r, batch_size=8)  # Self is allowed.
  np.testing.assert_array_equal(i, np.arange(53))
  np.testing.assert_array_equal(d, 0.0)
  with pytest.raises(ValueError, match='exclude_self'):
    mem.nearest_neighbours(q, r, exclude_self=True)
  with pytest.raises(ValueError, match=r'\(37, 16\).*\(53, 8\)'):
    mem.nearest_neighbours(q, r[:, :8])


def test_memorization_finds_copy():
  rng = np.random.default_rng(4)
  train_px = rng.integers(0, 256, (20, 8, 8), dtype=np.uint8)
  gen_px = rng.integers(0, 256, (12, 8, 8), dtype=np.uint8)
  gen_px[3] = train_px[7]
  train_f = rng.normal(size=(20, 32)).astype(np.float32) * 10 + 100
  gen_f = rng.normal(size=(12, 32)).astype(np.float32) * 10 + 100
  gen_f[3] = train_f[7]
  res = mem.memorization(gen_f, train_f, gen_px, train_px, k=4)
  assert set(res) == {'inception', 'pixel'}
  for space, (g, t) in {'inception': (gen_f, train_f),
                        'pixel': (gen_px, train_px)}.items():
    rep = res[space]
    assert rep['gen_nn_distance'][3] == 0.0 and rep['ratio'][3] == 0.0
    assert rep['closest_gen_idx'][0] == 3 and rep['closest_train_idx'][0] == 7
    assert rep['ratio_min'] == 0.0 and len(rep['closest_gen_idx']) == 4
    g2, t2 = g.reshape(len(g), -1), t.reshape(len(t), -1)
    want_g, want_i = _brute_nn(g2, t2)
    np.testing.assert_array_equal(rep['gen_nn_index'], want_i)
    want_t, _ = _brute_nn(t2, t2, exclude_self=True)
    np.testing.assert_allclose(rep['train_nn_median'], np.median(want_t),
                               rtol=1e-5)
    ratio = want_g / np.median(want_t)
    np.testing.assert_allclose(rep['ratio'], ratio, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(rep['ratio_q25'], np.quantile(ratio, 0.25),
                               rtol=1e-5)
    assert rep['frac_ratio_below_0_5'] == np.mean(ratio < 0.5)
  summary = mem.json_summary(res)
  json.dumps(summary)
  assert not set(mem.ARRAY_KEYS) & set(summary['pixel'])
  with pytest.raises(ValueError, match='both'):
    mem.memorization(gen_f, train_f, gen_pixels=gen_px)


def test_closest_pairs_grid_shape():
  rng = np.random.default_rng(5)
  gen = rng.integers(0, 256, (6, 10, 12), dtype=np.uint8)
  train = rng.integers(0, 256, (9, 10, 12), dtype=np.uint8)
  grid = mem.closest_pairs_grid(gen, train, [0, 1, 2, 3, 4], [8, 7, 6, 5, 4],
                                pairs_per_row=2, pad=2)
  assert grid.dtype == np.uint8
  assert grid.shape == (3 * (10 + 2) + 2, 2 * (2 * 12 + 2) + 2)
  np.testing.assert_array_equal(grid[2:12, 2:14], gen[0])
  np.testing.assert_array_equal(grid[2:12, 14:26], train[8])
  np.testing.assert_array_equal(grid[14:24, 28:40], gen[3])
  rgb = mem.closest_pairs_grid(
      gen[..., None].repeat(3, -1) / 127.5 - 1, train[..., None].repeat(3, -1)
      / 127.5 - 1, [1], [2], value_range=(-1, 1))
  assert rgb.shape == (10 + 4, 2 * 12 + 4, 3)
  np.testing.assert_array_equal(rgb[2:12, 2:14, 0], gen[1])
  with pytest.raises(ValueError, match='equally long'):
    mem.closest_pairs_grid(gen, train, [0, 1], [0])


# ----------------------------------------------------------------------------
# Precision and recall.


def _brute_pr(real, gen, k):
  def dist(a, b):
    return np.sqrt(((a[:, None, :] - b[None]) ** 2).sum(-1))

  def coverage(manifold, probes):
    d = dist(manifold, manifold)
    np.fill_diagonal(d, np.inf)
    radii = np.sort(d, axis=1)[:, k - 1]
    return float(np.mean((dist(probes, manifold) <= radii[None]).any(1)))

  return coverage(real, gen), coverage(gen, real)


def test_precision_recall():
  rng = np.random.default_rng(6)
  real = rng.normal(size=(40, 8))
  res = pr.precision_recall(real, real, batch_size=8, reference_chunk=16)
  assert res == dict(precision=1.0, recall=1.0, k=3)
  res = pr.precision_recall(real, real + 1000.0)
  assert res['precision'] == 0.0 and res['recall'] == 0.0
  gen = rng.normal(size=(30, 8)) + 0.8
  res = pr.precision_recall(real, gen, k=3, batch_size=8, reference_chunk=16)
  want_p, want_r = _brute_pr(real, gen, 3)
  assert 0.0 < want_p < 1.0 and 0.0 < want_r < 1.0
  assert (res['precision'], res['recall']) == (want_p, want_r)
  radii = pr.manifold_radii(real, k=5, reference_chunk=9)
  d = np.sqrt(((real[:, None] - real[None]) ** 2).sum(-1))
  np.fill_diagonal(d, np.inf)
  np.testing.assert_allclose(radii, np.sort(d, 1)[:, 4], rtol=1e-5)
  with pytest.raises(ValueError, match='k must be'):
    pr.precision_recall(real[:3], gen)
