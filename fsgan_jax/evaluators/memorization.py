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
"""Memorization check: nearest training image of each generated image.

For a feature space (Inception pool3 features, and flattened pixels), each
generated image's Euclidean nearest neighbour (NN) in the training set is
compared with how close training images are to each other:

  ``ratio = d(gen, NN_train(gen)) / median_t d(t, NN_{train \\ t}(t))``

(the denominator is the median real-to-real leave-one-out NN distance). A
ratio well below 1 means a generated image is much closer to some training
image than training images typically are to each other; ``ratio < 0.5`` is
reported as the fraction of likely copies (0 for an exact copy). The ``k``
closest pairs are returned for visual inspection
(:func:`closest_pairs_grid`).

Distances are computed on the accelerator in float32 with the expansion
``||a||^2 + ||b||^2 - 2 a.b`` (clamped at 0), over chunks of queries (sharded
over the local devices) and chunks of references (``lax.scan``), after
subtracting the reference mean from both sets (the distances do not change,
the cancellation error does). The expansion only selects the neighbour; its
reported distance is recomputed directly as ``||q - r||`` (exactly 0 for a
copy, no cancellation). Near-ties closer than the float32 error of the
expansion may pick either neighbour.
"""

from __future__ import annotations

import functools
import math
from typing import Any, Optional

import jax
import jax.numpy as jnp
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P
import numpy as np

__all__ = [
    'ARRAY_KEYS',
    'closest_pairs_grid',
    'json_summary',
    'memorization',
    'nearest_neighbours',
]

# Per-space keys of `memorization` whose values are numpy arrays (the others
# are JSON-serialisable Python floats / ints / lists).
ARRAY_KEYS = ('gen_nn_distance', 'gen_nn_index', 'train_nn_distance', 'ratio')

_HIGHEST = jax.lax.Precision.HIGHEST


# ----------------------------------------------------------------------------
# Chunked, sharded distance computations (shared with precision_recall).


def local_mesh() -> Mesh:
  """A 1-D ('data',) mesh over this process's devices."""
  return Mesh(np.asarray(jax.local_devices()), ('data',),
              axis_types=(jax.sharding.AxisType.Auto,))


def as_matrix(x: Any, name: str) -> np.ndarray:
  """[N, ...] -> [N, D] host array, dtype kept (images are flattened)."""
  x = np.asarray(x)
  if x.ndim < 2 or x.shape[0] == 0 or x.size == 0:
    raise ValueError(f'{name} must be a non-empty [N, D] (or [N, ...]) array, '
                     f'got shape {x.shape}')
  return x.reshape(x.shape[0], -1)


class ChunkedReferences:
  """References centred, padded, chunked and replicated on the local devices.

  Attributes:
    refs: [C, R, D] float32 references minus their mean (padding rows 0).
    sq: [C, R] float32 squared norms, +inf on padding rows (never nearest).
    num: Number of real references.
    mean: [D] float64 mean that was subtracted (apply it to queries too).
  """

  def __init__(self, references: np.ndarray, chunk: int, mesh: Mesh):
    self.num, dim = references.shape
    self.mean = references.mean(axis=0, dtype=np.float64)
    chunk = max(1, min(chunk, self.num))
    n_chunks = math.ceil(self.num / chunk)
    centred = np.zeros((n_chunks * chunk, dim), np.float32)
    sq = np.full(n_chunks * chunk, np.inf, np.float32)
    for start in range(0, self.num, chunk):  # No full float64 copy.
      part = references[start:start + chunk] - self.mean
      centred[start:start + len(part)] = part
      sq[start:start + len(part)] = np.sum(
          np.square(part.astype(np.float32).astype(np.float64)), axis=1)
    replicated = NamedSharding(mesh, P())
    self.refs = jax.device_put(centred.reshape(n_chunks, chunk, dim),
                               replicated)
    self.sq = jax.device_put(sq.reshape(n_chunks, chunk), replicated)


def query_batches(queries: np.ndarray, mean: np.ndarray, batch_size: int,
                  mesh: Mesh):
  """Yields (start, n_valid, sharded [B, D] float32 centred query batch).

  ``B`` is ``batch_size`` rounded up to a multiple of the device count; the
  last batch is zero-padded so that one compilation serves all batches.
  """
  n_dev = mesh.size
  batch = max(1, math.ceil(min(batch_size, queries.shape[0]) / n_dev)) * n_dev
  sharding = NamedSharding(mesh, P('data'))
  for start in range(0, queries.shape[0], batch):
    q = queries[start:start + batch] - mean
    n = q.shape[0]
    padded = np.zeros((batch, q.shape[1]), np.float32)
    padded[:n] = q
    yield start, n, jax.device_put(padded, sharding)


def sq_distances(q: jax.Array, r: jax.Array, r_sq: jax.Array) -> jax.Array:
  """[B, R] squared distances ``|q|^2 + |r|^2 - 2 q.r``, clamped at 0."""
  q_sq = jnp.sum(jnp.square(q), axis=1)
  dots = jnp.dot(q, r.T, precision=_HIGHEST)
  return jnp.maximum(q_sq[:, None] + r_sq[None, :] - 2.0 * dots, 0.0)


def _self_mask(q_offset: jax.Array, chunk_index: jax.Array, b: int,
               r: int) -> jax.Array:
  """[B, R] True where query ``q_offset + i`` is reference ``chunk * R + j``."""
  qi = q_offset + jnp.arange(b)
  ri = chunk_index * r + jnp.arange(r)
  return qi[:, None] == ri[None, :]


@functools.partial(jax.jit, static_argnames=('exclude_self',))
def _nn_batch(q: jax.Array, q_offset: jax.Array, refs: jax.Array,
              refs_sq: jax.Array, *, exclude_self: bool
              ) -> tuple[jax.Array, jax.Array]:
  """NN distance and index of each query of a batch over all references."""
  b = q.shape[0]
  n_chunks, r, _ = refs.shape

  def body(carry, xs):
    best_d2, best_i = carry
    c, chunk, chunk_sq = xs
    d2 = sq_distances(q, chunk, chunk_sq)
    if exclude_self:
      d2 = jnp.where(_self_mask(q_offset, c, b, r), jnp.inf, d2)
    j = jnp.argmin(d2, axis=1)
    d2_min = jnp.take_along_axis(d2, j[:, None], axis=1)[:, 0]
    better = d2_min < best_d2
    return (jnp.where(better, d2_min, best_d2),
            jnp.where(better, c * r + j.astype(jnp.int32), best_i)), None

  init = (jnp.full((b,), jnp.inf, jnp.float32), jnp.zeros((b,), jnp.int32))
  (_, best_i), _ = jax.lax.scan(
      body, init, (jnp.arange(n_chunks), refs, refs_sq))
  nearest = refs.reshape(n_chunks * r, -1)[best_i]
  dist = jnp.sqrt(jnp.sum(jnp.square(q - nearest), axis=1))
  return dist, best_i


def nearest_neighbours(queries: Any, references: Any,
                       exclude_self: bool = False,
                       batch_size: int = 256,
                       reference_chunk: int = 1024
                       ) -> tuple[np.ndarray, np.ndarray]:
  """Euclidean nearest reference of each query (jitted, chunked, sharded).

  Args:
    queries: [Nq, D] features or [Nq, ...] images (flattened).
    references: [Nr, D] features or [Nr, ...] images (flattened).
    exclude_self: Leave-one-out: query ``i`` never matches reference ``i``
      (for ``queries`` being the ``references``, e.g. real-to-real).
    batch_size: Queries per (sharded) batch.
    reference_chunk: References per ``lax.scan`` step (bounds the [B, R]
      distance block and the matmul size).

  Returns:
    (distances [Nq] float32, indices [Nq] int64): the distance (recomputed
    directly, see the module docstring) and the index of the nearest
    reference.

  Raises:
    ValueError: Bad shapes, feature sizes differ, or ``exclude_self`` with
      different sets / fewer than 2 references.
  """
  q = as_matrix(queries, 'queries')
  r = as_matrix(references, 'references')
  if q.shape[1] != r.shape[1]:
    raise ValueError(f'queries {np.shape(queries)} and references '
                     f'{np.shape(references)} have different feature sizes')
  if exclude_self and (q.shape[0] != r.shape[0] or r.shape[0] < 2):
    raise ValueError('exclude_self needs queries == references with at least '
                     f'2 rows, got {np.shape(queries)} and '
                     f'{np.shape(references)}')
  mesh = local_mesh()
  refs = ChunkedReferences(r, reference_chunk, mesh)
  dists = np.empty(q.shape[0], np.float32)
  idx = np.empty(q.shape[0], np.int64)
  for start, n, batch in query_batches(q, refs.mean, batch_size, mesh):
    d, i = _nn_batch(batch, jnp.int32(start), refs.refs, refs.sq,
                     exclude_self=exclude_self)
    dists[start:start + n] = np.asarray(d)[:n]
    idx[start:start + n] = np.asarray(i)[:n]
  return dists, idx


# ----------------------------------------------------------------------------
# Memorization report.


def _space_report(gen: Any, train: Any, k: int, batch_size: int,
                  reference_chunk: int) -> dict[str, Any]:
  """Memorization statistics of one space (see :func:`memorization`)."""
  gen_d, gen_i = nearest_neighbours(gen, train, batch_size=batch_size,
                                    reference_chunk=reference_chunk)
  train_d, _ = nearest_neighbours(train, train, exclude_self=True,
                                  batch_size=batch_size,
                                  reference_chunk=reference_chunk)
  median = float(np.median(train_d.astype(np.float64)))
  with np.errstate(divide='ignore', invalid='ignore'):
    ratio = gen_d.astype(np.float64) / median
  order = np.argsort(gen_d, kind='stable')[:k]
  q = np.quantile(ratio, [0.0, 0.05, 0.25, 0.5])
  return dict(
      train_nn_median=median,
      ratio_min=float(q[0]), ratio_q05=float(q[1]), ratio_q25=float(q[2]),
      ratio_median=float(q[3]),
      frac_ratio_below_0_5=float(np.mean(ratio < 0.5)),
      closest_gen_idx=[int(i) for i in order],
      closest_train_idx=[int(gen_i[i]) for i in order],
      closest_distance=[float(gen_d[i]) for i in order],
      closest_ratio=[float(ratio[i]) for i in order],
      gen_nn_distance=gen_d, gen_nn_index=gen_i, train_nn_distance=train_d,
      ratio=ratio)


def memorization(gen_features: Any, train_features: Any,
                 gen_pixels: Optional[Any] = None,
                 train_pixels: Optional[Any] = None,
                 k: int = 16,
                 batch_size: int = 256,
                 reference_chunk: int = 1024) -> dict[str, dict[str, Any]]:
  """Nearest-training-neighbour memorization statistics.

  Args:
    gen_features: [Ng, D] features (e.g. Inception pool3) of generated images.
    train_features: [Nt, D] features of the training images (Nt >= 2).
    gen_pixels: Optional [Ng, ...] generated images (pixel L2 space).
    train_pixels: Optional [Nt, ...] training images, same size and value
      range as ``gen_pixels`` (both or neither).
    k: Number of closest pairs to report.
    batch_size: Queries per sharded batch.
    reference_chunk: References per scan step.

  Returns:
    ``{'inception': report, 'pixel': report}`` (``'pixel'`` only with pixels).
    Each report has JSON-serialisable entries:

    * ``train_nn_median``: median real-to-real leave-one-out NN distance;
    * ``ratio_min``, ``ratio_q05``, ``ratio_q25``, ``ratio_median``: quantiles
      of ``ratio`` = generated NN distance / ``train_nn_median``;
    * ``frac_ratio_below_0_5``: fraction of generated images with ratio < 0.5,
      i.e. much closer to a training image than training images are to each
      other (likely copies);
    * ``closest_gen_idx``, ``closest_train_idx``, ``closest_distance``,
      ``closest_ratio``: the ``k`` closest (generated, training) pairs,
      closest first;

    and numpy arrays under :data:`ARRAY_KEYS`: ``gen_nn_distance`` [Ng],
    ``gen_nn_index`` [Ng], ``train_nn_distance`` [Nt], ``ratio`` [Ng] (drop
    them with :func:`json_summary`). If ``train_nn_median`` is 0 (duplicated
    training images) the ratios are inf (or nan for distance 0).

  Raises:
    ValueError: Bad shapes, or only one of the pixel arrays is given.
  """
  if (gen_pixels is None) != (train_pixels is None):
    raise ValueError('give both gen_pixels and train_pixels, or neither')
  spaces = {'inception': (gen_features, train_features)}
  if gen_pixels is not None:
    spaces['pixel'] = (gen_pixels, train_pixels)
  result = {}
  for name, (gen, train) in spaces.items():
    if np.shape(gen)[1:] != np.shape(train)[1:] or np.shape(train)[0] < 2:
      raise ValueError(f'{name}: generated {np.shape(gen)} and training '
                       f'{np.shape(train)} must have the same item shape and '
                       'at least 2 training items')
    result[name] = _space_report(gen, train, k, batch_size, reference_chunk)
  return result


def json_summary(result: dict[str, dict[str, Any]]) -> dict[str, Any]:
  """`memorization`'s result without the numpy arrays of :data:`ARRAY_KEYS`."""
  return {space: {k: v for k, v in report.items() if k not in ARRAY_KEYS}
          for space, report in result.items()}


# ----------------------------------------------------------------------------
# Visualisation.


def _to_uint8_nhwc(images: Any, value_range: tuple[float, float]) -> np.ndarray:
  """[N, H, W(, C)] in ``value_range`` -> [N, H, W, C] uint8."""
  x = np.asarray(images)
  if x.ndim == 3:
    x = x[..., None]
  if x.ndim != 4 or x.shape[-1] not in (1, 3):
    raise ValueError(f'images must be [N, H, W] or [N, H, W, 1|3], got '
                     f'{np.shape(images)}')
  if x.dtype != np.uint8 or tuple(value_range) != (0, 255):
    lo, hi = value_range
    x = (x.astype(np.float64) - lo) * (255.0 / (hi - lo))
    x = np.clip(np.round(x), 0, 255).astype(np.uint8)
  return x


def closest_pairs_grid(gen_images: Any, train_images: Any,
                       gen_idx: Any, train_idx: Any,
                       pairs_per_row: int = 4,
                       pad: int = 2,
                       pad_value: int = 255,
                       value_range: tuple[float, float] = (0, 255)
                       ) -> np.ndarray:
  """A PNG-ready grid of (generated, nearest training) pairs.

  Pair ``p`` is the tile ``[gen_images[gen_idx[p]] | train_images[
  train_idx[p]]]`` (generated left, training right, no gap inside a pair);
  tiles are laid out row-major, ``pairs_per_row`` per row, separated and
  framed by ``pad`` pixels of ``pad_value``.

  Args:
    gen_images: [Ng, H, W] or [Ng, H, W, C] generated images (C = 1 or 3).
    train_images: [Nt, H, W(, C)] training images of the same H, W, C.
    gen_idx: [K] indices into ``gen_images`` (e.g. ``closest_gen_idx``).
    train_idx: [K] indices into ``train_images`` (``closest_train_idx``).
    pairs_per_row: Pairs per grid row.
    pad: Border width in pixels.
    pad_value: Border gray level.
    value_range: (low, high) of the inputs, mapped linearly to 0..255 (e.g.
      (-1, 1) for generator outputs).

  Returns:
    uint8 [rows * (H + pad) + pad, cols * (2 W + pad) + pad] for gray images,
    with a trailing 3 for RGB (``cols = min(K, pairs_per_row)``).

  Raises:
    ValueError: Bad shapes, mismatched index lists or no pairs.
  """
  gen = _to_uint8_nhwc(gen_images, value_range)
  train = _to_uint8_nhwc(train_images, value_range)
  if gen.shape[1:] != train.shape[1:]:
    raise ValueError(f'gen_images {np.shape(gen_images)} and train_images '
                     f'{np.shape(train_images)} differ in image shape')
  gen_idx = np.asarray(gen_idx, np.int64).reshape(-1)
  train_idx = np.asarray(train_idx, np.int64).reshape(-1)
  if gen_idx.shape != train_idx.shape or gen_idx.size == 0:
    raise ValueError(f'gen_idx {gen_idx.shape} and train_idx '
                     f'{train_idx.shape} must be non-empty and equally long')
  _, h, w, c = gen.shape
  k = gen_idx.size
  cols = min(k, pairs_per_row)
  rows = math.ceil(k / cols)
  grid = np.full((rows * (h + pad) + pad, cols * (2 * w + pad) + pad, c),
                 pad_value, np.uint8)
  for p in range(k):
    y = pad + (p // cols) * (h + pad)
    x = pad + (p % cols) * (2 * w + pad)
    grid[y:y + h, x:x + w] = gen[gen_idx[p]]
    grid[y:y + h, x + w:x + 2 * w] = train[train_idx[p]]
  return grid[..., 0] if c == 1 else grid
