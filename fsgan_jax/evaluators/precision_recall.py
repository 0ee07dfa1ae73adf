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
"""Improved precision and recall (Kynkaanniemi et al., NeurIPS 2019).

Same algorithm as StyleGAN2-ADA ``metrics/precision_recall.py``: the manifold
of a feature set is the union of balls around its points whose radius is the
distance to the ``k``-th nearest neighbour in the same set, self excluded
(ADA takes the ``k + 1``-th value including self; equal unless rounding puts
a duplicate below the self-distance). A point is inside the manifold when its
distance to some manifold point is ``<=`` that point's radius.

* precision = fraction of generated features inside the real manifold;
* recall = fraction of real features inside the generated manifold.

Distances are squared Euclidean in float32 (``|a|^2 + |b|^2 - 2 a.b`` after
centring on the manifold mean, clamped at 0), chunked over queries (sharded
over the local devices) and over manifold points (``lax.scan``), as in
:mod:`fsgan_jax.evaluators.memorization`. ADA rounds features and radii to
float16; this module keeps float32, which can only change points lying on a
ball's boundary.
"""

from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from fsgan_jax.evaluators import memorization as mem

__all__ = ['manifold_radii', 'precision_recall']


@functools.partial(jax.jit, static_argnames=('k',))
def _kth_batch(q: jax.Array, q_offset: jax.Array, refs: jax.Array,
               refs_sq: jax.Array, *, k: int) -> jax.Array:
  """Squared distance of each query to its k-th nearest reference (not self)."""
  b = q.shape[0]
  _, r, _ = refs.shape

  def body(best, xs):
    c, chunk, chunk_sq = xs
    d2 = mem.sq_distances(q, chunk, chunk_sq)
    ri = c * r + jnp.arange(r)
    d2 = jnp.where((q_offset + jnp.arange(b))[:, None] == ri[None, :],
                   jnp.inf, d2)
    neg, _ = jax.lax.top_k(-jnp.concatenate([best, d2], axis=1), k)
    return -neg, None

  init = jnp.full((b, k), jnp.inf, jnp.float32)
  best, _ = jax.lax.scan(body, init, (jnp.arange(refs.shape[0]), refs,
                                      refs_sq))
  return best[:, k - 1]


@jax.jit
def _covered_batch(q: jax.Array, refs: jax.Array, refs_sq: jax.Array,
                   radii_sq: jax.Array) -> jax.Array:
  """Whether each query lies in some reference's ball (radius^2 given)."""

  def body(covered, xs):
    chunk, chunk_sq, chunk_r2 = xs
    d2 = mem.sq_distances(q, chunk, chunk_sq)
    return covered | jnp.any(d2 <= chunk_r2[None, :], axis=1), None

  init = jnp.zeros((q.shape[0],), bool)
  covered, _ = jax.lax.scan(body, init, (refs, refs_sq, radii_sq))
  return covered


def _kth_sq(manifold: np.ndarray, refs: mem.ChunkedReferences, k: int,
            batch_size: int, mesh: Any) -> np.ndarray:
  """[N] squared k-NN radii of the manifold points."""
  out = np.empty(manifold.shape[0], np.float32)
  for start, n, batch in mem.query_batches(manifold, refs.mean, batch_size,
                                           mesh):
    out[start:start + n] = np.asarray(
        _kth_batch(batch, jnp.int32(start), refs.refs, refs.sq, k=k))[:n]
  return out


def manifold_radii(features: Any, k: int = 3, batch_size: int = 256,
                   reference_chunk: int = 1024) -> np.ndarray:
  """Distance of each feature to its ``k``-th nearest other feature.

  Args:
    features: [N, D] features, N > k.
    k: Neighbourhood size.
    batch_size: Queries per sharded batch.
    reference_chunk: Manifold points per scan step.

  Returns:
    [N] float32 radii.

  Raises:
    ValueError: Bad shape or N <= k.
  """
  x = mem.as_matrix(features, 'features')
  if not 1 <= k < x.shape[0]:
    raise ValueError(f'k must be in [1, N - 1], got k={k} for features of '
                     f'shape {np.shape(features)}')
  mesh = mem.local_mesh()
  refs = mem.ChunkedReferences(x, reference_chunk, mesh)
  return np.sqrt(_kth_sq(x, refs, k, batch_size, mesh))


def _coverage(manifold: np.ndarray, probes: np.ndarray, k: int,
              batch_size: int, reference_chunk: int) -> float:
  """Fraction of ``probes`` inside the k-NN manifold of ``manifold``."""
  mesh = mem.local_mesh()
  refs = mem.ChunkedReferences(manifold, reference_chunk, mesh)
  radii_sq = np.full(refs.sq.size, -1.0, np.float32)  # Padding: no ball.
  radii_sq[:manifold.shape[0]] = _kth_sq(manifold, refs, k, batch_size, mesh)
  radii_sq = jax.device_put(radii_sq.reshape(refs.sq.shape), refs.sq.sharding)
  covered = np.empty(probes.shape[0], bool)
  for start, n, batch in mem.query_batches(probes, refs.mean, batch_size,
                                           mesh):
    covered[start:start + n] = np.asarray(
        _covered_batch(batch, refs.refs, refs.sq, radii_sq))[:n]
  return float(np.mean(covered))


def precision_recall(real_features: Any, gen_features: Any, k: int = 3,
                     batch_size: int = 256,
                     reference_chunk: int = 1024) -> dict[str, float]:
  """Improved precision and recall of generated vs real features.

  Args:
    real_features: [Nr, D] features of real images (Nr > k).
    gen_features: [Ng, D] features of generated images (Ng > k).
    k: Neighbourhood size of the manifold radii (3 as in the paper / ADA).
    batch_size: Queries per sharded batch.
    reference_chunk: Manifold points per scan step.

  Returns:
    ``dict(precision=float, recall=float, k=int)``.

  Raises:
    ValueError: Bad shapes, different feature sizes, or a set with <= k rows.
  """
  real = mem.as_matrix(real_features, 'real_features')
  gen = mem.as_matrix(gen_features, 'gen_features')
  if real.shape[1] != gen.shape[1]:
    raise ValueError(f'real_features {np.shape(real_features)} and '
                     f'gen_features {np.shape(gen_features)} have different '
                     'feature sizes')
  if not 1 <= k < min(real.shape[0], gen.shape[0]):
    raise ValueError(f'k must be in [1, N - 1] for both sets, got k={k} with '
                     f'{np.shape(real_features)} and {np.shape(gen_features)}')
  precision = _coverage(real, gen, k, batch_size, reference_chunk)
  recall = _coverage(gen, real, k, batch_size, reference_chunk)
  return dict(precision=precision, recall=recall, k=int(k))
