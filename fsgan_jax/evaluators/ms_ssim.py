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
"""Multi-scale SSIM (Wang et al. 2003) and the MS-SSIM diversity score.

:func:`ms_ssim` reproduces ``tf.image.ssim_multiscale`` (TF 2.21):

* integer images are converted like ``tf.image.convert_image_dtype``
  (``x * (1 / dtype.max)`` in float32, ``max_val`` cast to the image dtype and
  scaled the same way); float images are used as they are (float32);
* per scale, the 11x11 Gaussian window of TF (``softmax`` of the squared
  distances, sigma 1.5), ``VALID`` depthwise convolution, the luminance
  ``(2 mu_x mu_y + c1) / (mu_x^2 + mu_y^2 + c1)`` and the contrast-structure
  ``(2 cov_xy + c2) / (var_x + var_y + c2)`` with the biased (compensation 1)
  covariances, both averaged over the valid window positions per channel;
* between scales, odd sizes are padded by one row / column at the bottom /
  right (``SYMMETRIC``, i.e. the edge repeated) and a 2x2 average pool with
  stride 2 halves the image;
* ``relu`` of the cs values of scales ``0..S-2`` and of the SSIM of the
  coarsest scale, raised to the power factors, multiplied, then averaged over
  the channels.

**Scale rule.** TF uses ``len(power_factors)`` scales and fails when the
coarsest scale is smaller than the window (5 scales of an 11 window need
>= 161 px, as each scale is ``ceil(size / 2)``: 128 px fails).
``num_scales='auto'`` (the default) uses the largest number of scales
``S <= len(power_factors)`` whose coarsest scale (sizes ``ceil(size / 2^s)``)
is still >= ``filter_size`` in both dimensions, with the first ``S`` power
factors renormalised to sum to 1 (a weighted geometric mean
stays a weighted geometric mean, so identical images still give 1 and the
weights keep their relative size). With the default window and factors:
>= 161 px -> 5 scales, exactly TF; 81..160 px -> 4 scales with weights
(0.0448, 0.2856, 0.3001, 0.2363) / 0.8668; 41..80 px -> 3 scales. When all
factors are used they are taken as given (the paper's factors sum to 1.0001;
TF does not renormalise either). Numbers at different scale counts are not
comparable: :func:`scale_convention` returns the convention and
:func:`diversity` reports it with every value.
"""

from __future__ import annotations

import functools
import math
from typing import Any, Optional, Sequence, Union

import jax
import jax.numpy as jnp
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P
import numpy as np

__all__ = [
    'POWER_FACTORS',
    'diversity',
    'gaussian_window',
    'ms_ssim',
    'sample_pairs',
    'scale_convention',
]

POWER_FACTORS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)

NumScales = Union[str, int]


def gaussian_window(filter_size: int = 11,
                    filter_sigma: float = 1.5) -> np.ndarray:
  """TF's ``_fspecial_gauss``: a [size, size] float32 window summing to 1."""
  coords = np.arange(filter_size, dtype=np.float32)
  coords -= np.float32(filter_size - 1) / np.float32(2.0)
  g = np.square(coords) * (np.float32(-0.5) /
                           np.square(np.float32(filter_sigma)))
  g = (g[None, :] + g[:, None]).reshape(-1)
  g = np.exp(g - g.max())
  return (g / g.sum()).reshape(filter_size, filter_size).astype(np.float32)


def _scale_sizes(height: int, width: int,
                 num_scales: int) -> list[tuple[int, int]]:
  """Image sizes of scales 0..num_scales-1 (odd sizes padded, then halved)."""
  sizes = [(height, width)]
  for _ in range(num_scales - 1):
    h, w = sizes[-1]
    sizes.append(((h + 1) // 2, (w + 1) // 2))
  return sizes


def scale_convention(height: int, width: int,
                     filter_size: int = 11,
                     power_factors: Sequence[float] = POWER_FACTORS,
                     num_scales: NumScales = 'auto') -> dict[str, Any]:
  """The scales and power factors MS-SSIM uses for ``height x width`` images.

  Args:
    height: Image height.
    width: Image width.
    filter_size: Gaussian window size.
    power_factors: Power factors of all scales (finest first).
    num_scales: ``'auto'`` (the largest count whose coarsest scale is >=
      ``filter_size``) or an int ``1 <= S <= len(power_factors)``.

  Returns:
    ``dict(num_scales=int, power_factors=list[float], renormalised=bool,
    tf_exact=bool, convention=str)``; ``tf_exact`` says the value equals
    ``tf.image.ssim_multiscale`` with the given ``power_factors``.

  Raises:
    ValueError: ``num_scales`` is invalid or the images are too small.
  """
  power_factors = tuple(float(p) for p in power_factors)
  n_max = len(power_factors)
  if n_max < 1:
    raise ValueError('power_factors must not be empty')
  if num_scales == 'auto':
    s = n_max
    while s > 1 and min(_scale_sizes(height, width, s)[-1]) < filter_size:
      s -= 1
  elif isinstance(num_scales, (int, np.integer)) and 1 <= num_scales <= n_max:
    s = int(num_scales)
  else:
    raise ValueError(f"num_scales must be 'auto' or an int in [1, {n_max}], "
                     f'got {num_scales!r}')
  coarsest = _scale_sizes(height, width, s)[-1]
  if min(coarsest) < filter_size:
    raise ValueError(f'images of size {height}x{width} are too small for {s} '
                     f'MS-SSIM scale(s) with filter_size {filter_size} '
                     f'(coarsest scale {coarsest[0]}x{coarsest[1]})')
  if s == n_max:
    factors = list(power_factors)
  else:
    total = sum(power_factors[:s])
    factors = [p / total for p in power_factors[:s]]
  tf_exact = s == n_max
  convention = (f'ms_ssim[{s} scales, window {filter_size}, ' +
                ('tf.image.ssim_multiscale]' if tf_exact else
                 f'first {s} of {n_max} power factors renormalised to 1]'))
  return dict(num_scales=s, power_factors=factors, renormalised=not tf_exact,
              tf_exact=tf_exact, convention=convention)


def _as_nhwc(img1: Any, img2: Any) -> tuple[Any, Any]:
  """Checks the shapes and adds a channel axis to [N, H, W] batches."""
  shape1, shape2 = tuple(np.shape(img1)), tuple(np.shape(img2))
  if shape1 != shape2 or len(shape1) not in (3, 4) or 0 in shape1:
    raise ValueError('img1 and img2 must be non-empty [N, H, W, C] or '
                     f'[N, H, W] arrays of the same shape, got {shape1} and '
                     f'{shape2}')
  if len(shape1) == 3:
    img1, img2 = img1[..., None], img2[..., None]
  return img1, img2


def _to_float(x: jax.Array, max_val: float) -> tuple[jax.Array, Any]:
  """``tf.image.convert_image_dtype(x, float32)`` and the matching max_val."""
  if jnp.issubdtype(x.dtype, jnp.integer):
    scale = np.float32(1.0 / np.iinfo(x.dtype).max)
    max_val = np.asarray(max_val).astype(x.dtype).astype(np.float32) * scale
    return x.astype(jnp.float32) * scale, max_val
  return x.astype(jnp.float32), np.float32(max_val)


def _downsample(x: jax.Array) -> jax.Array:
  """TF's symmetric bottom/right padding of odd sizes, then 2x2 average pool."""
  _, h, w, _ = x.shape
  if h % 2 or w % 2:
    x = jnp.pad(x, ((0, 0), (0, h % 2), (0, w % 2), (0, 0)), mode='symmetric')
  summed = jax.lax.reduce_window(x, 0.0, jax.lax.add, (1, 2, 2, 1),
                                 (1, 2, 2, 1), 'VALID')
  return summed / 4.0


def _ssim_terms(x: jax.Array, y: jax.Array, window: np.ndarray, c1: Any,
                c2: Any) -> tuple[jax.Array, jax.Array]:
  """Per-channel mean SSIM and mean cs ([N, C] each) of one scale."""
  c = x.shape[-1]
  stacked = jnp.concatenate([x, y, x * y, jnp.square(x) + jnp.square(y)], -1)
  kernel = jnp.tile(jnp.asarray(window, x.dtype)[:, :, None, None],
                    (1, 1, 1, 4 * c))
  f = jax.lax.conv_general_dilated(
      stacked, kernel, (1, 1), 'VALID',
      dimension_numbers=('NHWC', 'HWIO', 'NHWC'), feature_group_count=4 * c,
      precision=jax.lax.Precision.HIGHEST)
  mean0, mean1, xy, xx_yy = jnp.split(f, 4, axis=-1)
  num0 = mean0 * mean1 * 2.0
  den0 = jnp.square(mean0) + jnp.square(mean1)
  luminance = (num0 + c1) / (den0 + c1)
  cs = (xy * 2.0 - num0 + c2) / (xx_yy - den0 + c2)
  return jnp.mean(luminance * cs, axis=(1, 2)), jnp.mean(cs, axis=(1, 2))


@functools.partial(jax.jit, static_argnames=('max_val', 'filter_size',
                                             'filter_sigma', 'k1', 'k2',
                                             'power_factors'))
def _ms_ssim_nhwc(img1: jax.Array, img2: jax.Array, *, max_val: float,
                  filter_size: int, filter_sigma: float, k1: float, k2: float,
                  power_factors: tuple[float, ...]) -> jax.Array:
  """MS-SSIM of [N, H, W, C] batches with the given (resolved) factors."""
  x, max_v = _to_float(img1, max_val)
  y, _ = _to_float(img2, max_val)
  c1 = jnp.square(jnp.float32(k1) * max_v)
  c2 = jnp.square(jnp.float32(k2) * max_v)
  window = gaussian_window(filter_size, filter_sigma)
  values = []
  for s in range(len(power_factors)):
    if s:
      x, y = _downsample(x), _downsample(y)
    ssim, cs = _ssim_terms(x, y, window, c1, c2)
    values.append(cs)
  values[-1] = ssim
  stacked = jax.nn.relu(jnp.stack(values, axis=-1))  # [N, C, S]
  weights = jnp.asarray(power_factors, jnp.float32)
  return jnp.mean(jnp.prod(jnp.power(stacked, weights), axis=-1), axis=-1)


def ms_ssim(img1: Any, img2: Any,
            max_val: float = 255.0,
            filter_size: int = 11,
            filter_sigma: float = 1.5,
            k1: float = 0.01,
            k2: float = 0.03,
            power_factors: Sequence[float] = POWER_FACTORS,
            num_scales: NumScales = 'auto') -> jax.Array:
  """MS-SSIM of each image pair, ``tf.image.ssim_multiscale`` semantics.

  Jitted (the parameters are static); the inputs may be sharded along the
  batch axis. See the module docstring for the conversion of integer images
  and the scale rule (``num_scales='auto'`` equals TF whenever TF can run,
  e.g. at 256 px; at 128 px it uses 4 renormalised scales).

  Args:
    img1: [N, H, W, C] or [N, H, W] (gray) images, uint8 in [0, 255] or float
      in [0, max_val]. A 3-D input is always read as [N, H, W].
    img2: Images of the same shape and dtype kind.
    max_val: Dynamic range of the images (for uint8 it is cast to uint8 and
      scaled by 1/255 like TF does).
    filter_size: Gaussian window size.
    filter_sigma: Gaussian window sigma.
    k1: Luminance stabiliser constant.
    k2: Contrast-structure stabiliser constant.
    power_factors: Weights of the scales, finest first.
    num_scales: ``'auto'`` or an explicit scale count (see
      :func:`scale_convention`).

  Returns:
    [N] float32 MS-SSIM values in [0, 1] (1 for identical images).

  Raises:
    ValueError: Shapes differ or are not [N, H, W(, C)], or the images are too
      small for the requested scales.
  """
  img1, img2 = _as_nhwc(img1, img2)
  _, h, w, _ = np.shape(img1)
  conv = scale_convention(h, w, filter_size, power_factors, num_scales)
  return _ms_ssim_nhwc(jnp.asarray(img1), jnp.asarray(img2),
                       max_val=float(max_val), filter_size=int(filter_size),
                       filter_sigma=float(filter_sigma), k1=float(k1),
                       k2=float(k2),
                       power_factors=tuple(conv['power_factors']))


def sample_pairs(num_images: int, num_pairs: int, seed: int = 0,
                 groups: Optional[Sequence[Any]] = None) -> np.ndarray:
  """Random distinct unordered pairs ``(i, j)``, ``i < j``, as [P, 2] int64.

  Pairs are drawn uniformly without replacement among all valid pairs; with
  ``groups`` (one id per image, e.g. the subject) only pairs from different
  groups are valid. When ``num_pairs`` is at least the number of valid pairs,
  all of them are returned (so ``P`` may be smaller than ``num_pairs``).

  Args:
    num_images: Number of images.
    num_pairs: Number of pairs wanted.
    seed: numpy ``default_rng`` seed.
    groups: Optional group id of each image.

  Returns:
    [P, 2] int64 array of image indices, in sampling order.

  Raises:
    ValueError: ``groups`` has the wrong length, or there is no valid pair.
  """
  if groups is not None:
    codes = np.unique(np.asarray(groups), return_inverse=True)[1].reshape(-1)
    if codes.shape[0] != num_images:
      raise ValueError(f'groups must have one id per image: {codes.shape[0]} '
                       f'ids for {num_images} images')
    counts = np.bincount(codes)
    total = (num_images * num_images - int(np.sum(counts * counts))) // 2
  else:
    codes = None
    total = num_images * (num_images - 1) // 2
  if total < 1:
    raise ValueError(f'no valid pair among {num_images} images'
                     + (' of different groups' if groups is not None else ''))
  rng = np.random.default_rng(seed)
  if num_pairs >= total or total <= 4 * num_pairs:
    i, j = np.triu_indices(num_images, k=1)
    if codes is not None:
      keep = codes[i] != codes[j]
      i, j = i[keep], j[keep]
    pairs = np.stack([i, j], axis=1).astype(np.int64)
    pairs = pairs[rng.permutation(len(pairs))]
    return pairs[:num_pairs]
  keys = np.empty(0, np.int64)  # i * n + j, first occurrences in order.
  while len(keys) < num_pairs:
    draw = rng.integers(0, num_images, size=(2 * num_pairs, 2))
    i, j = draw.min(axis=1), draw.max(axis=1)
    valid = i != j
    if codes is not None:
      valid &= codes[i] != codes[j]
    keys = np.concatenate([keys, (i * num_images + j)[valid]])
    _, first = np.unique(keys, return_index=True)
    keys = keys[np.sort(first)]
  keys = keys[:num_pairs]
  return np.stack([keys // num_images, keys % num_images], axis=1)


def _data_sharding() -> NamedSharding:
  """Batch sharding over a 1-D ('data',) mesh of this process's devices."""
  mesh = Mesh(np.asarray(jax.local_devices()), ('data',),
              axis_types=(jax.sharding.AxisType.Auto,))
  return NamedSharding(mesh, P('data'))


def diversity(images: Any,
              num_pairs: int = 1000,
              seed: int = 0,
              groups: Optional[Sequence[Any]] = None,
              batch_size: int = 64,
              max_val: float = 255.0,
              num_scales: NumScales = 'auto',
              **ms_ssim_kwargs: Any) -> dict[str, Any]:
  """Mean MS-SSIM over random distinct pairs of images (lower = more diverse).

  The pairs come from :func:`sample_pairs` (with ``groups``, e.g. subject ids
  of real slices, only pairs of different groups). They are evaluated in
  batches of ``batch_size`` pairs (rounded up to a multiple of the local
  device count, the last batch padded), each batch sharded over the local
  devices along the batch axis, so every batch reuses one compilation.

  Args:
    images: [N, H, W, C] or [N, H, W] images (host array, e.g. uint8).
    num_pairs: Number of pairs (all valid pairs if there are fewer).
    seed: Seed of the pair sampling.
    groups: Optional group id of each image.
    batch_size: Pairs per device batch.
    max_val: Dynamic range (see :func:`ms_ssim`).
    num_scales: Scale rule (see :func:`scale_convention`).
    **ms_ssim_kwargs: ``filter_size``, ``filter_sigma``, ``k1``, ``k2``,
      ``power_factors`` of :func:`ms_ssim`.

  Returns:
    JSON-serialisable ``dict(mean, std, n_pairs, num_scales, power_factors,
    convention)``; ``std`` is the population std over the pairs.

  Raises:
    ValueError: Bad image shape, bad groups, or no valid pair.
  """
  images = np.asarray(images)
  if images.ndim not in (3, 4) or images.shape[0] < 2:
    raise ValueError('images must be [N, H, W, C] or [N, H, W] with N >= 2, '
                     f'got {images.shape}')
  unknown = set(ms_ssim_kwargs) - {'filter_size', 'filter_sigma', 'k1', 'k2',
                                   'power_factors'}
  if unknown:
    raise TypeError(f'unknown MS-SSIM arguments: {sorted(unknown)}')
  h, w = images.shape[1:3]
  conv = scale_convention(h, w, ms_ssim_kwargs.get('filter_size', 11),
                          ms_ssim_kwargs.get('power_factors', POWER_FACTORS),
                          num_scales)
  pairs = sample_pairs(images.shape[0], num_pairs, seed, groups)
  sharding = _data_sharding()
  n_dev = sharding.mesh.size
  batch = max(1, math.ceil(batch_size / n_dev)) * n_dev
  values = []
  for start in range(0, len(pairs), batch):
    chunk = pairs[start:start + batch]
    padded = np.concatenate(
        [chunk, np.repeat(chunk[:1], batch - len(chunk), axis=0)])
    a = jax.device_put(images[padded[:, 0]], sharding)
    b = jax.device_put(images[padded[:, 1]], sharding)
    out = ms_ssim(a, b, max_val=max_val, num_scales=conv['num_scales'],
                  **ms_ssim_kwargs)
    values.append(np.asarray(out)[:len(chunk)])
  values = np.concatenate(values).astype(np.float64)
  return dict(mean=float(values.mean()), std=float(values.std()),
              n_pairs=int(len(values)), num_scales=conv['num_scales'],
              power_factors=conv['power_factors'],
              convention=conv['convention'])
