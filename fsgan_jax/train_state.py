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
"""Training state of a FastGAN run: everything a checkpoint must hold to resume bit-exactly."""

from __future__ import annotations

from typing import Any

import flax
import jax
import jax.numpy as jnp
import optax

from fsgan_jax.augment import apa
from fsgan_jax.models import fastgan


@flax.struct.dataclass
class TrainState:
  """G/D parameters, their mutable statistics (BN running stats, spectral-norm u/v), Adam states, EMA of G's
  parameters, the step, the run's base rng (per-step randomness is ``fold_in(rng, step)``), and ``aux``: small
  method state that changes during training (APA's adaptive probability ``apa_p`` and its running sums)."""

  step: jax.Array
  rng: jax.Array
  g_params: Any
  g_stats: Any
  d_params: Any
  d_stats: Any
  g_opt_state: Any
  d_opt_state: Any
  ema_params: Any
  aux: Any = flax.struct.field(default_factory=apa.initial_state)


def make_optimizer(config) -> optax.GradientTransformation:
  """Adam as the official FastGAN (lr 2e-4, betas (0.5, 0.999), eps 1e-8)."""
  return optax.adam(config.lr, b1=config.beta1, b2=config.beta2, eps=1e-8)


def create(key: jax.Array, generator: fastgan.Generator, discriminator: fastgan.Discriminator,
           g_tx: optax.GradientTransformation, d_tx: optax.GradientTransformation) -> TrainState:
  """Initialises a fresh state; the EMA starts as a copy of G's initial parameters (official behaviour)."""
  init_key, run_key = jax.random.split(key)
  g_vars, d_vars = fastgan.init_models(init_key, generator, discriminator)
  g_vars, d_vars = jax.tree_util.tree_map(jnp.asarray, (g_vars, d_vars))
  return TrainState(
      step=jnp.zeros((), jnp.int32), rng=run_key,
      g_params=g_vars['params'], g_stats=g_vars['batch_stats'],
      d_params=d_vars['params'], d_stats=d_vars['batch_stats'],
      g_opt_state=g_tx.init(g_vars['params']), d_opt_state=d_tx.init(d_vars['params']),
      ema_params=jax.tree_util.tree_map(jnp.copy, g_vars['params']))


def place(state: TrainState, sharding) -> TrainState:
  """Puts every leaf of ``state`` on devices with ``sharding`` (e.g. replicated over the mesh)."""
  return jax.device_put(state, sharding)
