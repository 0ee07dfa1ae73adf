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
"""Latent distributions in front of the generator: a learnable Gaussian mixture and MineGAN's miner.

Both are Flax modules that the FastGAN ``Generator`` applies to its input ``z ~ N(0, I)`` when
``Generator.latent`` is ``'gmm'`` or ``'miner'``. Their parameters live in G's parameter tree (under ``latent`` or
``miner``), so they are trained with G, averaged by G's EMA, checkpointed with G, and every sampler in the project
(training grids, ``--mode=sample``, ``--mode=eval``, the downstream studies) draws from the learned distribution
without knowing about it: callers keep feeding standard-normal ``z``.

* ``GaussianMixtureLatent`` (Dynamic Gaussian-mixture latent, DFSGAN: Yang et al. 2023). *Assumption*: the paper's
  code is not public; the mixture follows DeLiGAN (Gurumurthy et al., CVPR 2017): K components with learnable
  means and log standard deviations (diagonal), a component chosen uniformly per sample, ``z' = mu_k + sigma_k *
  eps``; the reparameterisation lets G's gradients reach mu and sigma. Means start U(-1, 1), sigmas 0.2 (DeLiGAN's
  initialisation), and DeLiGAN's regulariser ``mean((1 - sigma)^2)`` (weight ``config.gmm.sigma_reg``) keeps the
  sigmas from collapsing to zero (which would turn the generator into K fixed images).
* ``Miner`` (MineGAN: Wang et al., CVPR 2020): an MLP that maps the input noise to the source generator's latent
  space. *Assumption*: residual form ``z' = z + W2 relu(W1 z + b1) + b2`` with W2, b2 initialised to zero, so the
  transferred generator starts exactly at the source distribution (the original initialises the miner randomly).
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

Array = jax.Array

LATENTS = ('gaussian', 'gmm', 'miner')
GMM_INIT_SIGMA = 0.2


class GaussianMixtureLatent(nn.Module):
  """``eps (N, nz) -> mu_k + sigma_k * eps`` with ``k ~ Uniform{0..K-1}`` drawn from the ``noise`` rng stream."""

  components: int
  nz: int

  @nn.compact
  def __call__(self, eps: Array) -> Array:
    means = self.param('means', lambda k, s: jax.random.uniform(k, s, minval=-1.0, maxval=1.0),
                       (self.components, self.nz))
    log_sigma = self.param('log_sigma', lambda k, s: jnp.full(s, jnp.log(GMM_INIT_SIGMA)), (self.components, self.nz))
    k = jax.random.randint(self.make_rng('noise'), (eps.shape[0],), 0, self.components)
    return means[k] + jnp.exp(log_sigma[k]) * eps


class Miner(nn.Module):
  """MineGAN's miner: a residual 2-layer MLP ``z -> z + W2 relu(W1 z + b1) + b2`` (starts as the identity)."""

  nz: int
  hidden: int = 0  # 0 = nz

  @nn.compact
  def __call__(self, z: Array) -> Array:
    h = nn.relu(nn.Dense(self.hidden or self.nz, name='hidden')(z))
    return z + nn.Dense(self.nz, kernel_init=nn.initializers.zeros, name='out')(h)


def gmm_sigma_penalty(g_params) -> Array:
  """DeLiGAN's ``mean((1 - sigma)^2)`` over all components and dimensions (0 when G has no mixture)."""
  if 'latent' not in g_params:
    return jnp.zeros((), jnp.float32)
  return jnp.mean(jnp.square(1.0 - jnp.exp(g_params['latent']['log_sigma'])))


def mixture_moments(g_params) -> tuple[Array, Array]:
  """Mean and per-dimension variance of the mixture (uniform weights): what samples of z' should match."""
  means = g_params['latent']['means']
  var = jnp.exp(2.0 * g_params['latent']['log_sigma'])
  mean = jnp.mean(means, axis=0)
  return mean, jnp.mean(var + jnp.square(means), axis=0) - jnp.square(mean)
