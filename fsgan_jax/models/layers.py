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
"""Building blocks shared by the FastGAN generator and discriminator.

The layers reproduce the PyTorch semantics that the official FastGAN code relies on, which the stock Flax layers
do not: spectral norm that stores both power-iteration vectors ``u`` and ``v`` (PyTorch evaluates
``sigma = u . (W v)`` with the *current* weights in eval mode, while ``flax.linen.SpectralNorm`` stores ``sigma``),
and batch norm whose running variance uses the unbiased batch variance with momentum 0.1.

Everything is NHWC. Mutable state (BN running statistics, spectral-norm vectors) lives in the ``batch_stats``
collection. Compute dtype is configurable; statistics and normalisation always run in float32.
"""

from __future__ import annotations

from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

Array = jax.Array
Dtype = Any

SN_EPS = 1e-12
BN_EPS = 1e-5
BN_MOMENTUM = 0.1


def conv_init(key: Array, shape: Sequence[int], dtype: Dtype = jnp.float32) -> Array:
  """N(0, 0.02) as FastGAN's ``weights_init`` for every conv."""
  return 0.02 * jax.random.normal(key, shape, dtype)


def _normalize(x: Array) -> Array:
  return x / jnp.maximum(jnp.linalg.norm(x), SN_EPS)


def _unit_vector(key: Array, n: int) -> Array:
  return _normalize(jax.random.normal(key, (n,), jnp.float32))


def spectral_normalize(module: nn.Module, kernel: Array, w_mat: Array, update: bool) -> Array:
  """Divides ``kernel`` by its largest singular value estimated with one power iteration.

  Args:
    module: the owning module (holds ``u``/``v`` in ``batch_stats``).
    kernel: the un-normalised weight.
    w_mat: ``kernel`` reshaped to (out_features, -1) in PyTorch's order.
    update: run one power iteration and store the new ``u``, ``v`` (PyTorch train mode). Otherwise the stored
      vectors are used as they are (PyTorch eval mode).

  Returns:
    ``kernel / sigma`` with gradients through ``w_mat`` only, as ``torch.nn.utils.spectral_norm``.
  """
  out_dim, in_dim = w_mat.shape
  u_var = module.variable('batch_stats', 'u', lambda: _unit_vector(module.make_rng('params'), out_dim))
  v_var = module.variable('batch_stats', 'v', lambda: _unit_vector(module.make_rng('params'), in_dim))
  u, v = u_var.value, v_var.value
  w32 = w_mat.astype(jnp.float32)
  if update:
    w_const = jax.lax.stop_gradient(w32)
    v = _normalize(w_const.T @ u)
    u = _normalize(w_const @ v)
    if not module.is_initializing():
      u_var.value, v_var.value = u, v
  sigma = jnp.dot(u, w32 @ v)
  return (kernel.astype(jnp.float32) / sigma).astype(kernel.dtype)


class SNConv(nn.Module):
  """Spectrally normalised ``nn.Conv2d(bias=False)`` (NHWC, kernel HWIO)."""

  features: int
  kernel_size: int
  stride: int = 1
  padding: int = 0
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x: Array, train: bool) -> Array:
    k = self.kernel_size
    kernel = self.param('kernel', conv_init, (k, k, x.shape[-1], self.features))
    # PyTorch's weight_mat: (out, in * kh * kw) from an OIHW weight.
    w_mat = jnp.transpose(kernel, (3, 2, 0, 1)).reshape(self.features, -1)
    kernel = spectral_normalize(self, kernel, w_mat, update=train)
    p = self.padding
    return jax.lax.conv_general_dilated(
        x.astype(self.dtype), kernel.astype(self.dtype),
        window_strides=(self.stride, self.stride), padding=((p, p), (p, p)),
        dimension_numbers=('NHWC', 'HWIO', 'NHWC'))


class SNProject4x4(nn.Module):
  """Spectrally normalised ``nn.ConvTranspose2d(nz, C, 4, 1, 0, bias=False)`` applied to a 1x1 input.

  On a 1x1 input a stride-1 transposed conv is a matrix product: ``out[n, h, w, o] = sum_c z[n, c] K[c, h, w, o]``
  with ``K = torch_weight.transpose(0, 2, 3, 1)``. Spectral norm uses ``dim=1`` as PyTorch does for transposed
  convs, i.e. ``weight_mat`` is (out, in * kh * kw).
  """

  features: int
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, z: Array, train: bool) -> Array:
    kernel = self.param('kernel', conv_init, (z.shape[-1], 4, 4, self.features))
    w_mat = jnp.transpose(kernel, (3, 0, 1, 2)).reshape(self.features, -1)
    kernel = spectral_normalize(self, kernel, w_mat, update=train)
    return jnp.einsum('nc,chwo->nhwo', z.astype(self.dtype), kernel.astype(self.dtype))


class BatchNorm(nn.Module):
  """``nn.BatchNorm2d`` with PyTorch semantics (biased variance to normalise, unbiased for the running average).

  Under ``jit`` over a data-sharded batch the mean is taken over the global batch, so statistics do not depend
  on the number of devices.
  """

  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x: Array, train: bool) -> Array:
    c = x.shape[-1]
    scale = self.param('scale', lambda k, s: 1.0 + 0.02 * jax.random.normal(k, s), (c,))
    bias = self.param('bias', nn.initializers.zeros, (c,))
    ra_mean = self.variable('batch_stats', 'mean', lambda: jnp.zeros((c,), jnp.float32))
    ra_var = self.variable('batch_stats', 'var', lambda: jnp.ones((c,), jnp.float32))
    x32 = x.astype(jnp.float32)
    if train:
      mean = jnp.mean(x32, axis=(0, 1, 2))
      var = jnp.mean(jnp.square(x32 - mean), axis=(0, 1, 2))
      if not self.is_initializing():
        n = x.size // c
        ra_mean.value = (1 - BN_MOMENTUM) * ra_mean.value + BN_MOMENTUM * mean
        ra_var.value = (1 - BN_MOMENTUM) * ra_var.value + BN_MOMENTUM * var * (n / max(n - 1, 1))
    else:
      mean, var = ra_mean.value, ra_var.value
    y = (x32 - mean) * (jax.lax.rsqrt(var + BN_EPS) * scale) + bias
    return y.astype(self.dtype)


class NoiseInjection(nn.Module):
  """``feat + weight * noise`` with per-pixel N(0, 1) noise shared over channels; ``weight`` starts at 0.

  The noise comes from the ``noise`` rng stream. For bit-exact comparisons a fixed noise can be supplied as the
  variable ``fixed_noise/noise`` of shape (N, H, W) of this module.
  """

  @nn.compact
  def __call__(self, x: Array) -> Array:
    weight = self.param('weight', nn.initializers.zeros, (1,))
    if self.has_variable('fixed_noise', 'noise'):
      noise = self.get_variable('fixed_noise', 'noise')[..., None]
    else:
      noise = jax.random.normal(self.make_rng('noise'), x.shape[:-1] + (1,), jnp.float32)
    return x + (weight * noise).astype(x.dtype)


def glu(x: Array) -> Array:
  """Gated linear unit over channels: first half times sigmoid of the second half."""
  c = x.shape[-1] // 2
  return x[..., :c] * jax.nn.sigmoid(x[..., c:])


def upsample2(x: Array) -> Array:
  """Nearest-neighbour upsampling by 2 (``nn.Upsample(scale_factor=2)``)."""
  return jnp.repeat(jnp.repeat(x, 2, axis=1), 2, axis=2)


def adaptive_avg_pool(x: Array, size: int) -> Array:
  """``nn.AdaptiveAvgPool2d(size)`` for spatial sizes that divide or are divided by ``size``."""
  h = x.shape[1]
  if h == size:
    return x
  if h > size:
    if h % size:
      raise ValueError(f'adaptive_avg_pool: {h} is not a multiple of {size}')
    f = h // size
    n, _, w, c = x.shape
    return x.reshape(n, size, f, w // f, f, c).mean(axis=(2, 4))
  if size % h:
    raise ValueError(f'adaptive_avg_pool: {size} is not a multiple of {h}')
  f = size // h
  return jnp.repeat(jnp.repeat(x, f, axis=1), f, axis=2)


def avg_pool2(x: Array) -> Array:
  """``nn.AvgPool2d(2, 2)``."""
  n, h, w, c = x.shape
  return x.reshape(n, h // 2, 2, w // 2, 2, c).mean(axis=(2, 4))


def leaky_relu(x: Array) -> Array:
  return jax.nn.leaky_relu(x, 0.2)


def swish(x: Array) -> Array:
  return x * jax.nn.sigmoid(x)


def nearest_resize(x: Array, size: int) -> Array:
  """``F.interpolate(x, size=size)`` (legacy 'nearest': source index = floor(i * in / out)).

  256 -> 128 is ``x[:, ::2, ::2]``; an integer upscale repeats pixels.
  """
  h, w = x.shape[1], x.shape[2]
  if (h, w) == (size, size):
    return x
  rows = (jnp.arange(size) * (h / size)).astype(jnp.int32)
  cols = (jnp.arange(size) * (w / size)).astype(jnp.int32)
  if h % size == 0 and w % size == 0:
    return x[:, ::h // size, ::w // size]
  return x[:, rows][:, :, cols]
