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
"""Elastic weight consolidation for few-shot GAN adaptation (Li et al., NeurIPS 2020, "Few-shot Image Generation
with Elastic Weight Consolidation").

The Fisher information of the source generator's parameters is estimated once, before adaptation, from the
squared gradients of the source GAN's objective on generated images (the paper uses D's output on G's samples as
the log-likelihood): ``F = mean_b (d L_b / d theta)^2`` with ``L_b = -mean(D(G(z_b)))`` over ``fisher_batches``
batches. The adaptation loss adds ``lambda * sum_i F_i (theta_i - theta_S,i)^2`` (paper: lambda = 5e8).
*Assumption*: gradients are per batch (BatchNorm couples the samples), which scales F by about 1/batch compared
with per-sample squared gradients; the penalty is logged (``g_ewc``) so its scale against the adversarial loss can be
checked, and lambda is a config field (``config.transfer.ewc_weight``).
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

Array = jax.Array


def fisher_information(generator, discriminator, g_vars: dict, d_vars: dict, key: Array, batches: int,
                       batch: int) -> Any:
  """Diagonal Fisher of G's parameters (same tree as ``g_vars['params']``), all entries >= 0."""

  def loss(g_params, k):
    kz, kn = jax.random.split(k)
    z = jax.random.normal(kz, (batch, generator.nz))
    (big, small), _ = generator.apply({**g_vars, 'params': g_params}, z, train=True, mutable=['batch_stats'],
                                      rngs={'noise': kn})
    logits, _ = discriminator.apply(d_vars, big, small, None, train=True, mutable=['batch_stats'])
    return -jnp.mean(logits)

  grad_fn = jax.grad(loss)

  def body(acc, k):
    g = grad_fn(g_vars['params'], k)
    return jax.tree_util.tree_map(lambda a, x: a + jnp.square(x.astype(jnp.float32)), acc, g), None

  zeros = jax.tree_util.tree_map(lambda x: jnp.zeros(x.shape, jnp.float32), g_vars['params'])
  total, _ = jax.lax.scan(body, zeros, jax.random.split(key, batches))
  return jax.tree_util.tree_map(lambda x: x / batches, total)


def penalty(g_params: Any, source_params: Any, fisher: Any) -> Array:
  """``sum F (theta - theta_S)^2`` over the parameters that exist in the source (a miner or mixture is skipped)."""
  total = jnp.zeros((), jnp.float32)
  for key, src in source_params.items():
    sub = jax.tree_util.tree_map(lambda p, s, f: jnp.sum(f * jnp.square(p.astype(jnp.float32) - s)),
                                 g_params[key], src, fisher[key])
    total = total + sum(jax.tree_util.tree_leaves(sub))
  return total
