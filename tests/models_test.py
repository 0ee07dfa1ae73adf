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
"""Shapes, parameter counts and PyTorch-specific semantics of the FastGAN models (no shared data needed).

Shapes and counts come from ``jax.eval_shape`` (tracing only, nothing is compiled), so the full-size models
are cheap to check.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from fsgan_jax.models import fastgan
from fsgan_jax.models import layers

KEY = jax.random.PRNGKey(0)
RNGS = {'params': KEY, 'noise': KEY}


def _g_init_with_output(g: fastgan.Generator, batch: int = 2, train: bool = False):
  z = jnp.zeros((batch, g.nz))
  return jax.eval_shape(lambda: g.init_with_output(RNGS, z, train=train))


def _d_init_with_output(d: fastgan.Discriminator, batch: int = 2, part=0):
  big = jnp.zeros((batch, d.im_size, d.im_size, d.nc))
  small = jnp.zeros((batch, 128, 128, d.nc))
  return jax.eval_shape(lambda: d.init_with_output(RNGS, big, small, part, train=False))


# ------------------------------------------------------------------------------------------------ shapes


@pytest.mark.parametrize('im_size', fastgan.RESOLUTIONS)
def test_generator_output_shapes(im_size):
  g = fastgan.Generator(ngf=8, nz=32, nc=3, im_size=im_size)
  (big, img128), variables = _g_init_with_output(g, batch=3)
  assert big.shape == (3, im_size, im_size, 3) and big.dtype == jnp.float32
  assert img128.shape == (3, 128, 128, 3) and img128.dtype == jnp.float32
  assert set(variables) == {'params', 'batch_stats'}


@pytest.mark.parametrize('im_size', fastgan.RESOLUTIONS)
def test_discriminator_output_shapes(im_size):
  d = fastgan.Discriminator(ndf=8, nc=1, im_size=im_size)
  (logits, recs), _ = _d_init_with_output(d, batch=3)
  n_logits = 26 if im_size == 128 else 50  # big map 1x1 at 128 px, 5x5 above; small map 5x5
  assert logits.shape == (3, n_logits)
  assert [r.shape for r in recs] == [(3, 128, 128, 1)] * 3
  # Without ``part`` (fake images) only the logits come back.
  big = jnp.zeros((3, im_size, im_size, 1))
  small = jnp.zeros((3, 128, 128, 1))
  _, variables = _d_init_with_output(d, batch=3)
  out = jax.eval_shape(lambda v: d.apply(v, big, small, train=False), variables)
  assert out.shape == (3, n_logits)


def test_grayscale_generator():
  (big, img128), _ = _g_init_with_output(fastgan.Generator(ngf=8, nz=16, nc=1, im_size=256))
  assert big.shape == (2, 256, 256, 1) and img128.shape == (2, 128, 128, 1)


# ------------------------------------------------------------------------------------------ param counts

# Official FastGAN-pytorch (ngf = ndf = 64, nz = 256, nc = 3), trainable parameters. Source: the official code's
# models counted in PyTorch when the golden outputs were made (../shared/data/fastgan_golden/README.md, item 6, and
# its meta.json); kept here so this test runs without the shared data.
OFFICIAL_COUNTS = {256: (29_127_846, 11_526_160), 512: (29_174_392, 11_526_496), 1024: (29_176_512, 11_528_192)}


@pytest.mark.parametrize('im_size', sorted(OFFICIAL_COUNTS))
def test_parameter_counts_match_official(im_size):
  g = fastgan.Generator(ngf=64, nz=256, nc=3, im_size=im_size)
  d = fastgan.Discriminator(ndf=64, nc=3, im_size=im_size)
  _, g_vars = _g_init_with_output(g, batch=1)
  _, d_vars = _d_init_with_output(d, batch=1)
  assert (fastgan.count_params(g_vars['params']), fastgan.count_params(d_vars['params'])) == \
      OFFICIAL_COUNTS[im_size]


def test_init_models_matches_module_init():
  """``init_models`` (host-side numpy init) has Module.init's structure, float32 leaves and sane values."""
  g = fastgan.Generator(ngf=8, nz=16, nc=3, im_size=128)
  d = fastgan.Discriminator(ndf=8, nc=3, im_size=128)
  g_vars, d_vars = fastgan.init_models(KEY, g, d)
  _, g_ref = _g_init_with_output(g, batch=1)
  _, d_ref = _d_init_with_output(d, batch=1)
  for ours, ref in ((g_vars, g_ref), (d_vars, d_ref)):
    assert jax.tree_util.tree_structure(ours) == jax.tree_util.tree_structure(ref)
    for a, b in zip(jax.tree_util.tree_leaves(ours), jax.tree_util.tree_leaves(ref)):
      assert a.shape == b.shape and a.dtype == np.float32
  u = d_vars['batch_stats']['rf_small']['u']
  np.testing.assert_allclose(np.linalg.norm(u), 1.0, rtol=1e-6)
  kernel = np.asarray(g_vars['params']['feat_16']['1']['kernel'])
  assert 0.015 < kernel.std() < 0.025  # N(0, 0.02)
  np.testing.assert_array_equal(g_vars['params']['feat_8']['2']['weight'], 0.0)  # NoiseInjection starts at 0
  g2, _ = fastgan.init_models(KEY, g, d)
  jax.tree_util.tree_map(np.testing.assert_array_equal, g_vars, g2)


# --------------------------------------------------------------------------------------------------- tanh


def _count_tanh(g: fastgan.Generator) -> int:
  z = jnp.zeros((1, g.nz))
  _, variables = _g_init_with_output(g, batch=1)
  jaxpr = jax.make_jaxpr(lambda v: g.apply(v, z, train=False, rngs={'noise': KEY}))(variables)
  return sum(eqn.primitive.name == 'tanh' for eqn in jaxpr.jaxpr.eqns)


@pytest.mark.parametrize('im_size,tanh,expected', [
    (256, None, 0), (512, None, 0), (1024, None, 2),  # the official quirk: tanh only at 1024
    (256, True, 2), (1024, False, 0), (128, None, 0)])
def test_tanh_quirk(im_size, tanh, expected):
  g = fastgan.Generator(ngf=8, nz=16, nc=3, im_size=im_size, tanh=tanh)
  assert _count_tanh(g) == expected


def test_tanh_true_is_tanh_of_raw_output():
  z = jax.random.normal(KEY, (2, 16))
  raw = fastgan.Generator(ngf=8, nz=16, im_size=128, tanh=False)
  squashed = fastgan.Generator(ngf=8, nz=16, im_size=128, tanh=True)
  variables, _ = fastgan.init_models(KEY, raw, fastgan.Discriminator(ndf=8, im_size=128))

  def both(v):  # train mode: batch statistics keep the raw outputs moderate (tanh not saturated)
    return tuple(m.apply(v, z, train=True, rngs={'noise': KEY}, mutable=['batch_stats'])[0]
                 for m in (raw, squashed))

  out_raw, out_tanh = jax.jit(both)(variables)
  for a, b in zip(out_raw, out_tanh):
    assert 0.01 < np.abs(np.asarray(a)).mean() < 3
    np.testing.assert_allclose(b, np.tanh(np.asarray(a)), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize('im_size', [64, 300, 2048])
def test_invalid_im_size_raises(im_size):
  with pytest.raises(ValueError, match='im_size'):
    _g_init_with_output(fastgan.Generator(ngf=8, nz=16, im_size=im_size))
  d = fastgan.Discriminator(ndf=8, im_size=im_size)
  big = jnp.zeros((1, im_size, im_size, 3))
  small = jnp.zeros((1, 128, 128, 3))
  with pytest.raises(ValueError, match='im_size'):
    jax.eval_shape(lambda: d.init(RNGS, big, small, 0, train=False))


# ------------------------------------------------------------------------------------------ crop_quadrant


def test_crop_quadrant():
  x = jnp.arange(2 * 4 * 6 * 3, dtype=jnp.float32).reshape(2, 4, 6, 3)
  expected = {0: x[:, :2, :3], 1: x[:, :2, 3:], 2: x[:, 2:, :3], 3: x[:, 2:, 3:]}  # TL, TR, BL, BR
  crop = jax.jit(fastgan.crop_quadrant)  # part may be traced
  for part, want in expected.items():
    np.testing.assert_array_equal(fastgan.crop_quadrant(x, part), want)
    np.testing.assert_array_equal(crop(x, jnp.int32(part)), want)


# ---------------------------------------------------------------------------------------- spectral norm


def _matrix_with_spectrum(rng: np.random.Generator, rows: int, cols: int, spectrum) -> np.ndarray:
  u, _ = np.linalg.qr(rng.standard_normal((rows, rows)))
  v, _ = np.linalg.qr(rng.standard_normal((cols, cols)))
  s = np.zeros((rows, cols))
  s[np.arange(len(spectrum)), np.arange(len(spectrum))] = spectrum
  return (u @ s @ v.T).astype(np.float32)


def _sigma(stats, w_mat: np.ndarray) -> float:
  u, v = np.asarray(stats['u'], np.float64), np.asarray(stats['v'], np.float64)
  return float(u @ w_mat.astype(np.float64) @ v)


def test_spectral_norm_conv_power_iteration():
  """Train-mode calls run one power iteration each: sigma -> largest singular value; output = conv(W / sigma).

  PyTorch's weight_mat of an OIHW conv weight is (out, in * kh * kw); our HWIO kernel is transposed to match.
  """
  out_ch, in_ch, k = 6, 4, 3
  rng = np.random.default_rng(0)
  w_mat = _matrix_with_spectrum(rng, out_ch, in_ch * k * k, [3.0, 2.0, 1.0, 0.5, 0.3, 0.1])
  kernel = w_mat.reshape(out_ch, in_ch, k, k).transpose(2, 3, 1, 0)  # OIHW -> HWIO
  conv = layers.SNConv(out_ch, k, padding=1)
  x = jnp.asarray(rng.standard_normal((2, 5, 5, in_ch)), jnp.float32)
  variables = conv.init({'params': KEY}, x, train=False)
  variables = {'params': {'kernel': jnp.asarray(kernel)}, 'batch_stats': variables['batch_stats']}
  step = jax.jit(lambda v: conv.apply(v, x, train=True, mutable=['batch_stats']))

  stats = variables['batch_stats']
  for _ in range(25):
    y, new = step({'params': variables['params'], 'batch_stats': stats})
    stats = new['batch_stats']
  sigma = _sigma(stats, w_mat)
  np.testing.assert_allclose(sigma, np.linalg.svd(w_mat, compute_uv=False)[0], rtol=1e-5)
  np.testing.assert_allclose(np.linalg.norm(stats['u']), 1.0, rtol=1e-6)
  np.testing.assert_allclose(np.linalg.norm(stats['v']), 1.0, rtol=1e-6)
  # The output of the last call uses sigma from the vectors it just updated (as torch's hook).
  ref = jax.lax.conv_general_dilated(x, jnp.asarray(kernel) / sigma, (1, 1), ((1, 1), (1, 1)),
                                     dimension_numbers=('NHWC', 'HWIO', 'NHWC'))
  np.testing.assert_allclose(y, ref, rtol=1e-5, atol=1e-6)

  # Eval mode: no power iteration, u/v unchanged, sigma = u . W v with the stored vectors.
  stale = variables['batch_stats']  # the random initial u/v: sigma is far from 3
  y_eval, after = conv.apply({'params': variables['params'], 'batch_stats': stale}, x, train=False,
                             mutable=['batch_stats'])
  jax.tree_util.tree_map(np.testing.assert_array_equal, after['batch_stats'], stale)
  ref = jax.lax.conv_general_dilated(x, jnp.asarray(kernel) / _sigma(stale, w_mat), (1, 1), ((1, 1), (1, 1)),
                                     dimension_numbers=('NHWC', 'HWIO', 'NHWC'))
  np.testing.assert_allclose(y_eval, ref, rtol=1e-4, atol=1e-6)


def test_spectral_norm_transposed_conv_uses_dim1():
  """``SNProject4x4`` (ConvTranspose2d, torch dim=1): weight_mat is (out, in * 4 * 4)."""
  nz, out_ch = 5, 3
  rng = np.random.default_rng(1)
  w_mat = _matrix_with_spectrum(rng, out_ch, nz * 16, [2.0, 1.0, 0.25])
  kernel = w_mat.reshape(out_ch, nz, 4, 4).transpose(1, 2, 3, 0)  # (in, kh, kw, out)
  proj = layers.SNProject4x4(out_ch)
  z = jnp.asarray(rng.standard_normal((2, nz)), jnp.float32)
  stats = proj.init({'params': KEY}, z, train=False)['batch_stats']
  step = jax.jit(lambda s: proj.apply({'params': {'kernel': jnp.asarray(kernel)}, 'batch_stats': s}, z,
                                      train=True, mutable=['batch_stats']))
  for _ in range(20):
    out, new = step(stats)
    stats = new['batch_stats']
  assert out.shape == (2, 4, 4, out_ch)
  sigma = _sigma(stats, w_mat)
  np.testing.assert_allclose(sigma, 2.0, rtol=1e-5)
  np.testing.assert_allclose(out, np.einsum('nc,chwo->nhwo', np.asarray(z), kernel) / sigma, rtol=1e-5, atol=1e-6)


# ------------------------------------------------------------------------------------------- batch norm


def test_batch_norm_matches_pytorch_semantics():
  """Normalise with the biased batch variance; running var += 0.1 * (unbiased var - running var)."""
  rng = np.random.default_rng(2)
  x = rng.standard_normal((4, 3, 3, 2)).astype(np.float32) * 2 + 1
  bn = layers.BatchNorm()
  variables = bn.init({'params': KEY}, x, train=False)
  y, new = bn.apply(variables, x, train=True, mutable=['batch_stats'])
  scale = np.asarray(variables['params']['scale'])
  mean, var = x.mean((0, 1, 2)), x.var((0, 1, 2))
  np.testing.assert_allclose(y, (x - mean) / np.sqrt(var + 1e-5) * scale, rtol=1e-4, atol=1e-5)
  n = x.size // 2
  np.testing.assert_allclose(new['batch_stats']['mean'], 0.1 * mean, rtol=1e-5, atol=1e-7)
  np.testing.assert_allclose(new['batch_stats']['var'], 0.9 + 0.1 * var * n / (n - 1), rtol=1e-5)
  stats = new['batch_stats']
  y_eval = bn.apply({'params': variables['params'], 'batch_stats': stats}, x, train=False)
  np.testing.assert_allclose(
      y_eval, (x - stats['mean']) / np.sqrt(np.asarray(stats['var']) + 1e-5) * scale, rtol=1e-4, atol=1e-5)
