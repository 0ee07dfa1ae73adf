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
"""The FID Inception-v3 network (TF ``pool_3``, 2048-d) in Flax; see ``inception`` for its quirks and use."""

from __future__ import annotations

from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

INPUT_SIZE = 299
FEATURE_DIM = 2048
_BN_EPS = 1e-3


# ----------------------------------------------------------------------------
# Network.


class ConvBN(nn.Module):
  """Conv (no bias) -> batch norm (no scale, eps 1e-3) -> ReLU.

  Parameters (all in the ``params`` collection, all fixed): ``kernel``
  [kh, kw, in, out] and ``beta``, ``mean``, ``var`` [out].
  """
  features: int
  kernel_size: tuple[int, int] = (1, 1)
  stride: int = 1
  padding: tuple[int, int] = (0, 0)

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    kh, kw = self.kernel_size
    kernel = self.param('kernel', nn.initializers.lecun_normal(),
                        (kh, kw, x.shape[-1], self.features))
    beta = self.param('beta', nn.initializers.zeros, (self.features,))
    mean = self.param('mean', nn.initializers.zeros, (self.features,))
    var = self.param('var', nn.initializers.ones, (self.features,))
    ph, pw = self.padding
    y = jax.lax.conv_general_dilated(
        x, kernel.astype(x.dtype), (self.stride, self.stride),
        ((ph, ph), (pw, pw)), dimension_numbers=('NHWC', 'HWIO', 'NHWC'),
        precision=jax.lax.Precision.HIGHEST)
    y = (y - mean) * jax.lax.rsqrt(var + _BN_EPS) + beta
    return nn.relu(y)


def _avg_pool_exclude_pad(x: jax.Array) -> jax.Array:
  """3x3, stride 1, padding 1 average pool with count_include_pad=False."""
  pad = ((0, 0), (1, 1), (1, 1), (0, 0))
  window, strides = (1, 3, 3, 1), (1, 1, 1, 1)
  total = jax.lax.reduce_window(x, 0.0, jax.lax.add, window, strides, pad)
  ones = jnp.ones((1,) + x.shape[1:3] + (1,), x.dtype)
  count = jax.lax.reduce_window(ones, 0.0, jax.lax.add, window, strides, pad)
  return total / count


def _max_pool(x: jax.Array, stride: int, padding: int) -> jax.Array:
  return nn.max_pool(x, (3, 3), (stride, stride),
                     ((padding, padding), (padding, padding)))


def _k(kh: int, kw: int) -> dict[str, Any]:
  """Kernel size and the padding that keeps the map size (stride 1)."""
  return dict(kernel_size=(kh, kw), padding=(kh // 2, kw // 2))


class _Tower(nn.Module):
  """A chain of ConvBN layers named conv, conv_1, ... (optional pool first).

  Attributes:
    specs: One `(features, kwargs)` per conv (kwargs for `ConvBN`).
    pool: None, or 'avg' for the 3x3 count_include_pad=False average pool.
  """
  specs: Sequence[tuple[int, dict[str, Any]]]
  pool: str | None = None

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    if self.pool == 'avg':
      x = _avg_pool_exclude_pad(x)
    for i, (feats, kwargs) in enumerate(self.specs):
      x = ConvBN(feats, name='conv' if i == 0 else f'conv_{i}', **kwargs)(x)
    return x


class InceptionA(nn.Module):
  pool_features: int

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    return jnp.concatenate([
        ConvBN(64, name='conv')(x),
        _Tower(((48, {}), (64, _k(5, 5))), name='tower')(x),
        _Tower(((64, {}), (96, _k(3, 3)), (96, _k(3, 3))), name='tower_1')(x),
        _Tower(((self.pool_features, {}),), pool='avg', name='tower_2')(x),
    ], axis=-1)


class InceptionB(nn.Module):

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    s2 = dict(kernel_size=(3, 3), stride=2)
    return jnp.concatenate([
        ConvBN(384, name='conv', **s2)(x),
        _Tower(((64, {}), (96, _k(3, 3)), (96, s2)), name='tower')(x),
        _max_pool(x, 2, 0),
    ], axis=-1)


class InceptionC(nn.Module):
  channels_7x7: int

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    c = self.channels_7x7
    return jnp.concatenate([
        ConvBN(192, name='conv')(x),
        _Tower(((c, {}), (c, _k(1, 7)), (192, _k(7, 1))), name='tower')(x),
        _Tower(((c, {}), (c, _k(7, 1)), (c, _k(1, 7)), (c, _k(7, 1)),
                (192, _k(1, 7))), name='tower_1')(x),
        _Tower(((192, {}),), pool='avg', name='tower_2')(x),
    ], axis=-1)


class InceptionD(nn.Module):

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    s2 = dict(kernel_size=(3, 3), stride=2)
    return jnp.concatenate([
        _Tower(((192, {}), (320, s2)), name='tower')(x),
        _Tower(((192, {}), (192, _k(1, 7)), (192, _k(7, 1)), (192, s2)),
               name='tower_1')(x),
        _max_pool(x, 2, 0),
    ], axis=-1)


class InceptionE(nn.Module):
  """Block E; `max_pool` selects the pool of the pool tower (last block)."""
  max_pool: bool = False

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    a = ConvBN(384, name='tower_conv')(x)
    b = ConvBN(448, name='tower_1_conv')(x)
    b = ConvBN(384, name='tower_1_conv_1', **_k(3, 3))(b)
    p = _max_pool(x, 1, 1) if self.max_pool else _avg_pool_exclude_pad(x)
    return jnp.concatenate([
        ConvBN(320, name='conv')(x),
        ConvBN(384, name='tower_mixed_conv', **_k(1, 3))(a),
        ConvBN(384, name='tower_mixed_conv_1', **_k(3, 1))(a),
        ConvBN(384, name='tower_1_mixed_conv', **_k(1, 3))(b),
        ConvBN(384, name='tower_1_mixed_conv_1', **_k(3, 1))(b),
        ConvBN(192, name='tower_2_conv')(p),
    ], axis=-1)


class FIDInceptionV3(nn.Module):
  """FID Inception-v3 up to ``pool_3``.

  Input: float [N, 299, 299, 3] in [-1, 1) (see `preprocess_tf1`), NHWC.
  Output: float32 [N, 2048] pool3 features (post-ReLU averages, >= 0).
  Parameter names follow the TorchScript module (``mixed_3/tower/conv_1``).
  """

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    if x.ndim != 4 or x.shape[1:] != (INPUT_SIZE, INPUT_SIZE, 3):
      raise ValueError(f'expected [N, {INPUT_SIZE}, {INPUT_SIZE}, 3] inputs, '
                       f'got {x.shape}; use preprocess_tf1')
    x = ConvBN(32, (3, 3), stride=2, name='conv')(x)
    x = ConvBN(32, (3, 3), name='conv_1')(x)
    x = ConvBN(64, (3, 3), padding=(1, 1), name='conv_2')(x)
    x = _max_pool(x, 2, 0)
    x = ConvBN(80, name='conv_3')(x)
    x = ConvBN(192, (3, 3), name='conv_4')(x)
    x = _max_pool(x, 2, 0)
    x = InceptionA(32, name='mixed')(x)
    x = InceptionA(64, name='mixed_1')(x)
    x = InceptionA(64, name='mixed_2')(x)
    x = InceptionB(name='mixed_3')(x)
    x = InceptionC(128, name='mixed_4')(x)
    x = InceptionC(160, name='mixed_5')(x)
    x = InceptionC(160, name='mixed_6')(x)
    x = InceptionC(192, name='mixed_7')(x)
    x = InceptionD(name='mixed_8')(x)
    x = InceptionE(name='mixed_9')(x)
    x = InceptionE(max_pool=True, name='mixed_10')(x)
    return jnp.mean(x, axis=(1, 2))  # avg_pool2d(8, 8) of the 8x8 map.
