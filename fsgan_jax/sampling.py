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
"""Drawing images from a generator: one routine and one BatchNorm policy for sampling, evaluation and the studies.

The policy (``draw``): images are generated in full batches of ``batch``; batch ``i`` takes its latents and noise
from ``split(fold_in(PRNGKey(seed), i))``; with ``sample_bn='batch'`` (the official eval.py) BatchNorm uses the
statistics of that batch, so every image is made in a batch of the same size and the last batch is never short (its
extra images are dropped). Label channels of paired generators are made exactly -1 / +1, then everything is
quantised to uint8 as the PNGs of ``--mode=sample``. Hence ``--mode=sample``, ``--mode=eval`` and the studies draw
the same images for the same checkpoint, seed and batch (``config.eval.batch_size`` unless a caller says otherwise).
"""

from __future__ import annotations

import functools
from typing import Any, Callable, Iterator, Optional

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from fsgan_jax import compiler, steps
from fsgan_jax.models import fastgan


def generate(generator: fastgan.Generator, sample_bn: str, params, stats, z: jax.Array, key: jax.Array) -> jax.Array:
  """Images of ``generator`` for latents ``z`` in [-1, 1] (clipped); traceable.

  ``sample_bn='batch'``: BatchNorm with the statistics of this batch, as the official eval.py (updates are
  discarded); ``'running'``: the running averages.
  """
  variables = {'params': params, 'batch_stats': stats}
  if sample_bn == 'batch':
    (big, _), _ = generator.apply(variables, z, train=True, mutable=['batch_stats'], rngs={'noise': key})
  else:
    big, _ = generator.apply(variables, z, train=False, rngs={'noise': key})
  return jnp.clip(big, -1.0, 1.0)


def quantize(x: jax.Array, image_channels: int) -> jax.Array:
  """[-1, 1] images -> uint8 values (as float32; traceable): label channels (from ``image_channels`` on) made
  exactly -1 / +1 first, then ``round((x + 1) * 127.5)`` as ``input_pipeline.to_uint8``."""
  x = steps.hard_labels(x.astype(jnp.float32), image_channels)
  return jnp.clip(jnp.round((x + 1.0) * 127.5), 0.0, 255.0)


def make_sampler(generator: fastgan.Generator, sample_bn: str = 'batch'):
  """Jitted ``(ema_params, g_stats, z, noise_key) -> images`` at G's resolution, in [-1, 1] (clipped)."""
  return jax.jit(functools.partial(generate, generator, sample_bn), compiler_options=compiler.options())


@functools.lru_cache(maxsize=8)
def uint8_sampler(generator: fastgan.Generator, sample_bn: str, image_channels: int,
                  mesh: Optional[Mesh] = None, batch: int = 0):
  """Jitted ``(params, stats, z, noise_key) -> uint8 images``: ``generate`` then ``quantize``.

  With ``mesh`` (and ``batch`` a multiple of its size) the batch is sharded over the mesh's 'data' axis (BatchNorm
  statistics still over the whole batch); the images come back sharded the same way. ``--mode=sample`` and
  ``--mode=eval`` both call this same program, so they draw bit-identical images.
  """
  def fn(params, stats, z, key):
    return quantize(generate(generator, sample_bn, params, stats, z, key), image_channels).astype(jnp.uint8)
  if mesh is None or batch % mesh.devices.size:
    return jax.jit(fn, compiler_options=compiler.options())
  repl, data = NamedSharding(mesh, P()), NamedSharding(mesh, P('data'))
  return jax.jit(fn, in_shardings=(repl, repl, data, repl), out_shardings=data, compiler_options=compiler.options())


def batch_latents(seed: int, index: int, batch: int, nz: int) -> tuple[jax.Array, jax.Array]:
  """(z, noise key) of generation batch ``index``: the policy in the module docstring."""
  zk, nk = jax.random.split(jax.random.fold_in(jax.random.PRNGKey(seed), index))
  return jax.random.normal(zk, (batch, nz)), nk


def batches(fn: Callable[[jax.Array, jax.Array], Any], num: int, seed: int, batch: int, nz: int
            ) -> Iterator[tuple[int, Any]]:
  """``(images in this batch to keep, fn(z, noise_key))`` for the full batches that make ``num`` images."""
  if num < 1 or batch < 1:
    raise ValueError(f'num={num} and batch={batch} must be >= 1')
  for i, start in enumerate(range(0, num, batch)):
    yield min(batch, num - start), fn(*batch_latents(seed, i, batch, nz))


def draw(generator: fastgan.Generator, sample_bn: str, image_channels: int, params: Any, stats: Any, num: int,
         seed: int, batch: int, mesh: Optional[Mesh] = None) -> np.ndarray:
  """``num`` uint8 images (N, R, R, C) of the generator with ``params``/``stats`` (the policy above).

  ``mesh``: the run's mesh (``workdir.Run.mesh``); generation is sharded over it (see :func:`uint8_sampler`).
  """
  fn = uint8_sampler(generator, sample_bn, image_channels, mesh, batch)
  out = [np.asarray(jax.device_get(images))[:n]
         for n, images in batches(lambda z, k: fn(params, stats, z, k), num, seed, batch, generator.nz)]
  return np.concatenate(out)
