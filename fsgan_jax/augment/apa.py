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
"""Adaptive pseudo augmentation (APA; Jiang et al., NeurIPS 2021, "Deceive D: Adaptive Pseudo Augmentation for
GAN Training with Limited Data"; code github.com/EndlessSora/DeceiveD).

With probability ``p`` each real image in D's batch is replaced by a detached generated image (a "pseudo-real"),
which stops D from becoming over-confident on a tiny training set. ``p`` adapts like ADA's: the overfitting
heuristic ``lambda_r = E[sign(D(x_real))]`` is accumulated over D's real batches (after the replacement, as
DeceiveD), and every ``interval`` iterations ``p <- clip(p + sign(lambda_r - target) * batch * interval /
(kimg * 1000), 0, 1)`` (target 0.6, interval 4, kimg 500 as the paper: ``p`` can go from 0 to 1 in 500k images).
The pseudo-reals are G's images of their own latents (a gradient-free pass of the current G, before this
iteration's update; BatchNorm in train mode, its statistics not kept), not the fakes D sees in the same iteration:
DeceiveD (``training/loss.py``) takes them from its generator phase (``self.pseudo_data = gen_img.detach()`` in
``Gmain``, that phase's own latents), while its ``Dmain`` phase draws new latents for D's fakes, so a pseudo-real is
never the fake it is compared with. The pseudo-reals pass through DiffAugment and D's reconstruction loss exactly
like the real images they replace, so APA composes with DiffAugment.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

Array = jax.Array


def initial_state() -> dict[str, Array]:
  """``p`` and the running sums of the current adjustment interval (kept in ``TrainState.aux``)."""
  return {'apa_p': jnp.zeros((), jnp.float32), 'apa_sign_sum': jnp.zeros((), jnp.float32),
          'apa_count': jnp.zeros((), jnp.float32)}


def mix(real: Array, fake: Array, u: Array, p: Array) -> Array:
  """Replaces ``real[i]`` by ``stop_gradient(fake[i])`` where ``u[i] < p`` (``u`` ~ U(0, 1) per sample)."""
  pseudo = (u < p).reshape((-1,) + (1,) * (real.ndim - 1))
  return jnp.where(pseudo, jax.lax.stop_gradient(fake).astype(real.dtype), real)


def update(aux: dict[str, Array], logits_real: Array, step: Array, batch: int, target: float = 0.6,
           interval: int = 4, kimg: float = 500.0) -> tuple[dict[str, Array], Array]:
  """Accumulates ``sign(D(real))`` of this iteration; every ``interval`` iterations moves ``p``.

  Args:
    aux: the APA state (``initial_state()`` keys; other keys pass through).
    logits_real: D's logits on its (mixed) real batch, any shape.
    step: the iteration index (0-based) that produced ``logits_real``.
    batch: global batch size (images per iteration).
    target, interval, kimg: the heuristic's target, the adjustment interval in iterations, and the thousands of
      images in which ``p`` may go from 0 to 1.

  Returns:
    ``(new_aux, lambda_r of this batch)``.
  """
  lam_batch = jnp.mean(jnp.sign(logits_real.astype(jnp.float32)))
  s = aux['apa_sign_sum'] + jnp.sum(jnp.sign(logits_real.astype(jnp.float32)))
  c = aux['apa_count'] + logits_real.size
  adjust_now = (step + 1) % interval == 0
  lam = s / jnp.maximum(c, 1.0)
  delta = jnp.sign(lam - target) * (batch * interval) / (kimg * 1000.0)
  p = jnp.where(adjust_now, jnp.clip(aux['apa_p'] + delta, 0.0, 1.0), aux['apa_p'])
  zero = jnp.zeros((), jnp.float32)
  new = dict(aux, apa_p=p, apa_sign_sum=jnp.where(adjust_now, zero, s), apa_count=jnp.where(adjust_now, zero, c))
  return new, lam_batch
