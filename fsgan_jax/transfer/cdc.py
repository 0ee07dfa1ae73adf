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
"""Cross-domain correspondence (CDC; Ojha et al., CVPR 2021, "Few-shot Image Generation via Cross-domain
Correspondence"; code github.com/utkarshojha/few-shot-gan-adaptation).

Two parts, adapted to FastGAN (this project's adaptation is marked *assumption*):

* Cross-domain distance consistency: a batch of ``cdc_batch`` (4) shared latents goes through the frozen source G
  and the adapted G; at an intermediate layer the pairwise cosine similarities of each sample to the others are
  turned into a distribution with a softmax, and the loss is ``KL(source || target)`` (``nn.KLDivLoss`` with its
  default element-wise mean, as the official ``train.py``), weight 1000. *Assumption*: the official code picks a
  random StyleGAN2 layer per sample; here the loss is averaged over FastGAN's block outputs ``CDC_LAYERS``.
* Anchor-region relaxed realism: ``cdc_num_anchors`` fixed latents (default: as many as training images, like the
  official ``n_train``); every ``anchor_every`` (4) iterations the fake batch is drawn near the anchors
  (``anchor + N(0, 0.1^2)``) and D / G use the image-level logits; on the other iterations only the patch-level
  logits count. *Assumption*: FastGAN's D has no patch head, so ``Discriminator(patch_head=True)`` adds a 1x1
  spectral-norm conv on its ``se_4_32`` features (trained from scratch; the rest of D starts from the source).
"""

from __future__ import annotations

from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np

Array = jax.Array

CDC_LAYERS = ('feat_8', 'feat_16', 'feat_32', 'se_64', 'se_128')


def generator_features(generator, variables: dict, z: Array, key: Array,
                       layers: Sequence[str] = CDC_LAYERS) -> list[Array]:
  """Outputs of G's blocks ``layers`` for latents ``z`` (train-mode BN, statistics updates discarded)."""
  names = frozenset(layers)
  _, state = generator.apply(variables, z, train=True, mutable=['batch_stats', 'intermediates'],
                             rngs={'noise': key}, capture_intermediates=lambda mdl, _: mdl.name in names)
  inter = state['intermediates']
  return [inter[name]['__call__'][0] for name in layers]


def _relative_log_probs(feat: Array) -> Array:
  """Log-softmax over j != i of cos(feat_i, feat_j); shape (B, B - 1)."""
  b = feat.shape[0]
  x = feat.reshape(b, -1).astype(jnp.float32)
  x = x / jnp.maximum(jnp.linalg.norm(x, axis=1, keepdims=True), 1e-8)
  sim = x @ x.T
  rows, cols = np.nonzero(~np.eye(b, dtype=bool))  # static indices of the off-diagonal, row by row
  sim = sim[rows, cols].reshape(b, b - 1)
  return jax.nn.log_softmax(sim, axis=1)


def distance_consistency_loss(source_feats: Sequence[Array], target_feats: Sequence[Array]) -> Array:
  """Mean over layers of ``KL(softmax(sim_source) || softmax(sim_target))`` (element-wise mean, as torch)."""
  losses = []
  for fs, ft in zip(source_feats, target_feats):
    log_ps = jax.lax.stop_gradient(_relative_log_probs(fs))
    log_pt = _relative_log_probs(ft)
    losses.append(jnp.mean(jnp.exp(log_ps) * (log_ps - log_pt)))
  return jnp.mean(jnp.stack(losses))


def make_anchors(key: Array, num: int, nz: int) -> Array:
  """The fixed anchor latents (``num``, ``nz``) ~ N(0, I)."""
  return jax.random.normal(key, (num, nz))


def anchor_latents(key: Array, anchors: Array, batch: int, std: float = 0.1) -> Array:
  """``batch`` latents near random anchors: ``anchors[k] + std * eps``."""
  k_idx, k_eps = jax.random.split(key)
  idx = jax.random.randint(k_idx, (batch,), 0, anchors.shape[0])
  return anchors[idx] + std * jax.random.normal(k_eps, (batch, anchors.shape[1]))
