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
"""The downstream models' trainer: classic augmentation and a generic data-parallel Flax model + optax optimizer.

``DataParallelModel`` holds the jitted steps of the classifier (``experiments/classify.Classifier``) and the U-Net
(``downstream/segmenter.Segmenter``): parameters replicated, batches sharded over a 1-D ``('data',)`` mesh, as
the GAN's training (``gan.py``).
"""

from __future__ import annotations

import functools
from typing import Any, Callable, Optional

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import NamedSharding, PartitionSpec as P

from fsgan_jax import compiler


def augment_batch(key: jax.Array, x: jax.Array, hflip: bool, max_shift: float, max_rotate_deg: float,
                  brightness: float, contrast: float, jitter_channels: Optional[int] = None) -> jax.Array:
  """Classic per-sample augmentation: horizontal flip, shift + rotation (bilinear, background -1), intensity jitter.

  Every channel gets the same geometric transform; the intensity jitter only the first ``jitter_channels`` (None =
  all), so a mask carried as a last channel (segmentation study) moves with its image but keeps its values.
  """
  b, h, w, _ = x.shape
  kf, kr, ks, kb, kc = jax.random.split(key, 5)
  if hflip:
    flip = jax.random.bernoulli(kf, 0.5, (b,))
    x = jnp.where(flip[:, None, None, None], x[:, :, ::-1], x)
  theta = jnp.deg2rad(jax.random.uniform(kr, (b,), minval=-max_rotate_deg, maxval=max_rotate_deg))
  shift = jax.random.uniform(ks, (b, 2), minval=-max_shift, maxval=max_shift) * jnp.array([h, w])
  ii, jj = jnp.meshgrid(jnp.arange(h, dtype=jnp.float32), jnp.arange(w, dtype=jnp.float32), indexing='ij')
  ci, cj = (h - 1) / 2, (w - 1) / 2

  def warp(img, t, s):
    y, xx = ii - ci - s[0], jj - cj - s[1]
    src_y = jnp.cos(t) * y + jnp.sin(t) * xx + ci
    src_x = -jnp.sin(t) * y + jnp.cos(t) * xx + cj
    per_channel = lambda plane: jax.scipy.ndimage.map_coordinates(plane, [src_y, src_x], order=1, mode='constant',
                                                                   cval=-1.0)
    return jnp.moveaxis(jax.vmap(per_channel, in_axes=2)(img), 0, -1)

  x = jax.vmap(warp)(x, theta, shift)
  c = jax.random.uniform(kc, (b, 1, 1, 1), minval=1 - contrast, maxval=1 + contrast)
  d = jax.random.uniform(kb, (b, 1, 1, 1), minval=-brightness, maxval=brightness)
  n = x.shape[-1] if jitter_channels is None else jitter_channels
  jittered = jnp.clip((x[..., :n] + 1.0) * c - 1.0 + d, -1.0, 1.0)
  return jittered if n == x.shape[-1] else jnp.concatenate([jittered, x[..., n:]], axis=-1)


class DataParallelModel:
  """A Flax model + optax optimizer with jitted data-parallel steps: parameters replicated, batches sharded over the
  mesh's ``'data'`` axis (as the GAN's ``gan.py``). Shared by the classifier and the segmenter.

  ``step(params, opt_state, x, y, key, augment) -> (params, opt_state, loss)`` is compiled once per ``augment``
  flag; ``evaluate(params, arrays) -> per-example outputs`` (``arrays``: a tuple of batch-major arrays) once.
  """

  def __init__(self, mesh: jax.sharding.Mesh, model: Any, tx: optax.GradientTransformation,
               shape: tuple[int, ...], step: Callable[..., Any], evaluate: Callable[..., Any], eval_batch_size: int):
    self.mesh, self.model, self.tx, self.shape, self.eval_batch_size = mesh, model, tx, shape, eval_batch_size
    self.repl, self.data = NamedSharding(mesh, P()), NamedSharding(mesh, P('data'))
    self._steps = {
        flag: jax.jit(functools.partial(step, augment=flag), in_shardings=(self.repl,) * 2 + (self.data,) * 2 +
                      (self.repl,), out_shardings=(self.repl,) * 3, donate_argnums=(0, 1),
                      compiler_options=compiler.options())
        for flag in (False, True)}
    self._evaluate = jax.jit(evaluate, in_shardings=(self.repl, self.data), out_shardings=self.repl,
                             compiler_options=compiler.options())

  def init(self, seed: int) -> tuple[Any, Any]:
    """Fresh replicated (params, optimizer state) from ``seed``."""
    params = self.model.init(jax.random.PRNGKey(seed), jnp.zeros(self.shape))['params']
    params = jax.device_put(params, self.repl)
    return params, jax.device_put(self.tx.init(params), self.repl)

  def evaluate(self, params: Any, *arrays: np.ndarray) -> np.ndarray:
    """``evaluate`` over whole sharded batches of ``eval_batch_size`` (the last one zero-padded, padding dropped)."""
    b = self.eval_batch_size
    out = []
    for start in range(0, len(arrays[0]), b):
      chunks = tuple(a[start:start + b] for a in arrays)
      pad = b - len(chunks[0])
      if pad:
        chunks = tuple(np.concatenate([c, np.zeros((pad,) + c.shape[1:], c.dtype)]) for c in chunks)
      out.append(np.asarray(jax.device_get(self._evaluate(params, jax.device_put(chunks, self.data))))[:b - pad])
    return np.concatenate(out)
