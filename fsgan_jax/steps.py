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
"""Pure, jit-able FastGAN iteration, faithful to the official train.py.

One iteration (official order): G runs once; real, fake-big and fake-128 are DiffAugmented independently; D sees
the real batch (with reconstructions) and the detached fake batch as two calls, so BatchNorm uses separate
batch statistics and spectral norm does one power iteration per call; D steps; the G loss goes through the
already-updated D (a third D call); G steps; the EMA of G's parameters is updated.

G's forward runs once: ``jax.vjp`` keeps its linearisation, the G step pulls the cotangent of the augmented
fakes back through it instead of re-running G.

Few-shot methods are switches of :class:`GanSetup` (all off = the official iteration, bit for bit):
APA (``apa``: pseudo-real mixing before D, ``p`` in ``state.aux``), the Gaussian-mixture latent's sigma
regulariser (``gmm_sigma_reg``), CDC (``cdc_weight``: distance consistency against a frozen source G, anchor
iterations with image-level logits and patch-level logits otherwise), EWC (``ewc_weight``: Fisher-weighted
penalty to the source parameters) and MineGAN's first stage (``freeze_g_steps``: only the miner learns). Extra
G losses that depend on G's parameters directly are differentiated separately and their gradients added to the
adversarial ones. Constant inputs (LPIPS weights, source generator, Fisher, anchors) come in ``consts``.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, NamedTuple, Optional

import jax
import jax.numpy as jnp
import optax

from fsgan_jax import latents, losses
from fsgan_jax.augment import apa, diffaug
from fsgan_jax.transfer import cdc, ewc
from fsgan_jax.models import fastgan, layers
from fsgan_jax.train_state import TrainState

Array = jax.Array
_DATA_STREAM = 0x7FFFFFFF


@dataclasses.dataclass(frozen=True)
class GanSetup:
  """Static parts of the iteration (hashable, closed over by jit)."""

  generator: fastgan.Generator
  discriminator: fastgan.Discriminator
  g_tx: optax.GradientTransformation
  d_tx: optax.GradientTransformation
  policy: str = 'color,translation'
  recon: str = 'lpips'
  ema_decay: float = 0.999
  image_channels: int = 0  # > 0: channels from here on are labels (paired image + mask generation, see masks.py)
  # Few-shot methods (see the module docstring); the defaults are plain FastGAN.
  apa: bool = False
  apa_target: float = 0.6
  apa_interval: int = 4
  apa_kimg: float = 500.0
  gmm_sigma_reg: float = 0.0
  cdc_weight: float = 0.0
  cdc_batch: int = 4
  cdc_anchor_every: int = 0  # 0 = no anchor/patch alternation
  cdc_anchor_std: float = 0.1
  source_generator: Optional[fastgan.Generator] = None  # CDC's frozen source G (plain Gaussian latent)
  ewc_weight: float = 0.0
  freeze_g_steps: int = 0  # MineGAN stage 1: before this step only G's 'miner' parameters are updated


class Draws(NamedTuple):
  """All randomness of one iteration (drawn by :func:`sample_draws`, or recorded ones in tests)."""

  z: Array
  noise_key: Array
  aug_real: dict
  aug_fake_big: dict
  aug_fake_small: dict
  part: Array
  margin_real: Array
  margin_fake: Array
  apa_u: Optional[Array] = None  # APA: U(0, 1) per real image
  apa_z: Optional[Array] = None  # APA: latents of the pseudo-reals (not D's fakes' latents, as DeceiveD)
  apa_noise_key: Optional[Array] = None
  cdc_key: Optional[Array] = None  # CDC: shared latents and noise of the distance-consistency batch
  margin_patch_real: Optional[Array] = None  # CDC: hinge margins of the patch logits
  margin_patch_fake: Optional[Array] = None


def num_logits(im_size: int) -> int:
  """Image-level logits of D per sample (big branch map + small branch 5x5)."""
  return (1 if im_size == 128 else 25) + 25


def num_patch_logits(im_size: int) -> int:
  """Patch logits of ``Discriminator(patch_head=True)``: D's ``feat_32`` map is im_size / 16 on a side."""
  return (im_size // 16) ** 2 if im_size <= 256 else 256


def sample_draws(setup: GanSetup, key: Array, batch: int) -> Draws:
  """Draws an iteration's randomness from ``key``."""
  g, d = setup.generator, setup.discriminator
  k = jax.random.split(key, 11)
  big = (batch, g.im_size, g.im_size, g.nc)
  small = (batch, 128, 128, g.nc)
  nl = num_logits(d.im_size)
  extra = {}
  if setup.apa:
    ku, kz, kn = jax.random.split(k[8], 3)
    extra.update(apa_u=jax.random.uniform(ku, (batch,)), apa_z=jax.random.normal(kz, (batch, g.nz)),
                 apa_noise_key=kn)
  if setup.cdc_weight:
    extra['cdc_key'] = k[9]
  if d.patch_head:
    kr, kf = jax.random.split(k[10])
    npl = num_patch_logits(d.im_size)
    extra.update(margin_patch_real=jax.random.uniform(kr, (batch, npl)),
                 margin_patch_fake=jax.random.uniform(kf, (batch, npl)))
  return Draws(**extra,
      z=jax.random.normal(k[0], (batch, g.nz)),
      noise_key=k[1],
      aug_real=diffaug.sample_draws(k[2], big, setup.policy),
      aug_fake_big=diffaug.sample_draws(k[3], big, setup.policy),
      aug_fake_small=diffaug.sample_draws(k[4], small, setup.policy),
      part=jax.random.randint(k[5], (), 0, 4),
      margin_real=jax.random.uniform(k[6], (batch, nl)),
      margin_fake=jax.random.uniform(k[7], (batch, nl)))


def hard_labels(x: Array, image_channels: int) -> Array:
  """Label channels (from ``image_channels`` on) made exactly -1 / +1 with a straight-through gradient.

  D must judge generated labels by where they are, not by how soft they are: real masks are exactly -1 / +1, and a
  D that can tell soft values from hard ones wins at once (measured: with soft generated masks D's hinge losses went
  to 0 within 100 steps and G lost the anatomy). The forward pass thresholds at ``masks.MASK_THRESHOLD`` (0), the
  backward pass is the identity (Bengio et al. 2013's straight-through estimator). No-op without label channels.
  """
  if not image_channels or image_channels >= x.shape[-1]:
    return x
  labels = x[..., image_channels:]
  hard = jnp.where(labels > 0.0, 1.0, -1.0).astype(labels.dtype)
  return jnp.concatenate([x[..., :image_channels], labels + jax.lax.stop_gradient(hard - labels)], axis=-1)


def _augment(x: Array, draws: dict, policy: str, image_channels: int = 0) -> Array:
  return diffaug.apply(x, draws, policy, image_channels) if diffaug.parse_policy(policy) else x


def gan_iteration(setup: GanSetup, state: TrainState, real: Array, draws: Draws, lpips_params: Any,
                  fixed_noise: Optional[Any] = None, consts: Optional[dict] = None):
  """One FastGAN iteration on a real batch (NHWC at ``im_size``, in [-1, 1]).

  Args:
    setup: models, optimizers and options.
    state: the current state.
    real: real images at G's resolution.
    draws: the iteration's randomness.
    lpips_params: LPIPS-VGG parameters (ignored for ``recon='mse'``).
    fixed_noise: optional ``fixed_noise`` variables for G's NoiseInjection layers (golden tests).
    consts: method constants: ``source_g`` (CDC: the frozen source G's variables), ``source_params`` and
      ``fisher`` (EWC).

  Returns:
    ``(new_state, metrics, (g_grads, d_grads))``; the step counter is not advanced here.
  """
  G, D, policy = setup.generator, setup.discriminator, setup.policy
  consts = consts or {}
  recon_fn = functools.partial(losses.reconstruction, setup.recon, image_channels=setup.image_channels)
  ic = setup.image_channels
  extra = {} if fixed_noise is None else {'fixed_noise': fixed_noise}
  nl = num_logits(D.im_size)
  # CDC: image-level adversarial losses only on anchor iterations, patch-level on the others.
  anchor_step = (state.step % setup.cdc_anchor_every == 0) if setup.cdc_anchor_every else None

  def adv_logits(logits):
    return logits[:, :nl] if D.patch_head else logits

  def d_adv(logits, margin, margin_patch, hinge):
    image = hinge(adv_logits(logits), margin)
    if anchor_step is None:
      return image
    return jnp.where(anchor_step, image, hinge(logits[:, nl:], margin_patch))

  def g_forward(g_params):
    (big, small), new_vars = G.apply({'params': g_params, 'batch_stats': state.g_stats, **extra}, draws.z,
                                     train=True, mutable=['batch_stats'], rngs={'noise': draws.noise_key})
    big, small = hard_labels(big, ic), hard_labels(small, ic)  # paired generation: D sees hard labels
    fake = (_augment(big, draws.aug_fake_big, policy, ic), _augment(small, draws.aug_fake_small, policy, ic))
    return fake, (new_vars['batch_stats'], big)

  fake_aug, g_vjp, (g_stats, _) = jax.vjp(g_forward, state.g_params, has_aux=True)
  aux_state = state.aux
  if setup.apa:  # pseudo-reals (G's images of other latents, detached) replace reals with probability p
    (pseudo, _), _ = G.apply({'params': state.g_params, 'batch_stats': state.g_stats, **extra}, draws.apa_z,
                             train=True, mutable=['batch_stats'], rngs={'noise': draws.apa_noise_key})
    real = apa.mix(real, hard_labels(pseudo, ic), draws.apa_u, aux_state['apa_p'])
  real_aug = _augment(real, draws.aug_real, policy, ic)
  real_big, real_small = fastgan.resize_real_for_d(real_aug, D.im_size)
  real_big, real_small = hard_labels(real_big, ic), hard_labels(real_small, ic)  # resizing may soften labels
  part_target = layers.nearest_resize(fastgan.crop_quadrant(real_aug, draws.part), 128)
  fake_detached = jax.lax.stop_gradient(fake_aug)

  def d_loss_fn(d_params):
    logits_r, (rec_big, rec_small, rec_part), v = _apply_d(D, d_params, state.d_stats, real_big, real_small,
                                                           draws.part)
    hinge_r = d_adv(logits_r, draws.margin_real, draws.margin_patch_real, losses.d_hinge_real)
    rec = [jnp.sum(recon_fn(lpips_params, r, t))
           for r, t in ((rec_big, real_small), (rec_small, real_small), (rec_part, part_target))]
    logits_f, v = _apply_d(D, d_params, v, *fake_detached)
    err_fake = d_adv(logits_f, draws.margin_fake, draws.margin_patch_fake, losses.d_hinge_fake)
    err_real = hinge_r + rec[0] + rec[1] + rec[2]
    aux = dict(d_hinge_real=hinge_r, d_rec_big=rec[0], d_rec_small=rec[1], d_rec_part=rec[2],
               d_err_real_total=err_real, d_err_fake=err_fake, pred_real_mean=jnp.mean(adv_logits(logits_r)),
               pred_fake_mean=jnp.mean(adv_logits(logits_f)))
    return err_real + err_fake, (v, aux, logits_r)

  (_, (d_stats, metrics, logits_real)), d_grads = jax.value_and_grad(d_loss_fn, has_aux=True)(state.d_params)
  d_updates, d_opt_state = setup.d_tx.update(d_grads, state.d_opt_state, state.d_params)
  d_params = optax.apply_updates(state.d_params, d_updates)
  if setup.apa:
    aux_state, metrics['apa_lambda_r'] = apa.update(aux_state, adv_logits(logits_real), state.step, real.shape[0],
                                                    setup.apa_target, setup.apa_interval, setup.apa_kimg)
    metrics['apa_p'] = aux_state['apa_p']

  def g_loss_fn(fake):
    logits, v = _apply_d(D, d_params, d_stats, *fake)
    image = losses.g_loss(adv_logits(logits))
    if anchor_step is not None:
      image = jnp.where(anchor_step, image, losses.g_loss(logits[:, nl:]))
    return image, v

  (err_g, d_stats), fake_cot = jax.value_and_grad(g_loss_fn, has_aux=True)(fake_aug)
  (g_grads,) = g_vjp(fake_cot)
  reg, reg_metrics = _g_regularisers(setup, state.g_params, state.g_stats, draws, consts)
  if reg is not None:
    g_grads = jax.tree_util.tree_map(jnp.add, g_grads, reg)
    metrics.update(reg_metrics)
  if setup.freeze_g_steps:  # MineGAN stage 1: G frozen, only the miner learns
    frozen = state.step < setup.freeze_g_steps
    g_grads = {k: (v if k == 'miner' else jax.tree_util.tree_map(lambda x: jnp.where(frozen, 0.0, x), v))
               for k, v in g_grads.items()}
  g_updates, g_opt_state = setup.g_tx.update(g_grads, state.g_opt_state, state.g_params)
  if setup.freeze_g_steps:  # G's own Adam state (a separate partition) does not advance: stage 2 starts fresh
    keep = lambda old, new: jax.tree_util.tree_map(lambda o, n: jnp.where(frozen, o, n), old, new)
    inner = dict(g_opt_state.inner_states)
    inner['generator'] = keep(state.g_opt_state.inner_states['generator'], inner['generator'])
    g_opt_state = g_opt_state._replace(inner_states=inner)
    g_updates = {k: (v if k == 'miner' else jax.tree_util.tree_map(lambda x: jnp.where(frozen, 0.0, x), v))
                 for k, v in g_updates.items()}
  g_params = optax.apply_updates(state.g_params, g_updates)
  ema = jax.tree_util.tree_map(lambda e, p: setup.ema_decay * e + (1.0 - setup.ema_decay) * p,
                               state.ema_params, g_params)
  if 'miner' in g_params:  # MineGAN samples G's EMA with the raw miner, as the original (g_ema(miner(z)))
    ema = {**ema, 'miner': g_params['miner']}
  metrics['g_err'] = err_g
  new_state = state.replace(g_params=g_params, g_stats=g_stats, d_params=d_params, d_stats=d_stats,
                            g_opt_state=g_opt_state, d_opt_state=d_opt_state, ema_params=ema, aux=aux_state)
  return new_state, metrics, (g_grads, d_grads)


def _g_regularisers(setup: GanSetup, g_params: Any, g_stats: Any, draws: Draws, consts: dict):
  """Gradients (w.r.t. G's parameters) and values of the losses that act on G directly, or ``(None, {})``."""
  if not (setup.gmm_sigma_reg or setup.cdc_weight or setup.ewc_weight):
    return None, {}

  def reg_loss(params):
    total, m = jnp.zeros((), jnp.float32), {}
    if setup.gmm_sigma_reg:
      m['g_gmm_sigma_reg'] = setup.gmm_sigma_reg * latents.gmm_sigma_penalty(params)
      total = total + m['g_gmm_sigma_reg']
    if setup.cdc_weight:
      kz, kn = jax.random.split(draws.cdc_key)
      z = jax.random.normal(kz, (setup.cdc_batch, setup.generator.nz))
      src = cdc.generator_features(setup.source_generator, consts['source_g'], z, kn)
      tgt = cdc.generator_features(setup.generator, {'params': params, 'batch_stats': g_stats}, z, kn)
      m['g_cdc'] = setup.cdc_weight * cdc.distance_consistency_loss(src, tgt)
      total = total + m['g_cdc']
    if setup.ewc_weight:
      m['g_ewc'] = setup.ewc_weight * ewc.penalty(params, consts['source_params'], consts['fisher'])
      total = total + m['g_ewc']
    return total, m

  (_, m), grads = jax.value_and_grad(reg_loss, has_aux=True)(g_params)
  return grads, m


def _apply_d(D: fastgan.Discriminator, params, stats, big, small, part=None):
  out, v = D.apply({'params': params, 'batch_stats': stats}, big, small, part, train=True,
                   mutable=['batch_stats'])
  if part is None:
    return out, v['batch_stats']
  logits, recs = out
  return logits, recs, v['batch_stats']


def sample_real_batch(images: Array, key: Array, step: Array, batch: int, flip: bool = True) -> Array:
  """Real batch of ``step``: epoch-wise random permutations (like an infinite shuffled sampler) + random
  horizontal flips, all derived from ``key`` and the global sample position, so resuming at any step gives
  the same batches."""
  n = images.shape[0]
  pos = step.astype(jnp.int32) * batch + jnp.arange(batch, dtype=jnp.int32)
  epoch, offset = pos // n, pos % n
  perm_key, flip_key = jax.random.split(key)
  idx = jax.vmap(lambda e, o: jax.random.permutation(jax.random.fold_in(perm_key, e), n)[o])(epoch, offset)
  x = images[idx]
  if flip:
    do_flip = jax.random.bernoulli(jax.random.fold_in(flip_key, step), 0.5, (batch,))
    x = jnp.where(do_flip[:, None, None, None], x[:, :, ::-1], x)
  return x


def train_step(setup: GanSetup, state: TrainState, images: Array, consts: dict, batch: int,
               flip: bool = True, batch_sharding: Any = None, return_grads: bool = False):
  """Samples a real batch and the draws from ``fold_in(state.rng, step)``, runs one iteration, advances the
  step. ``images`` is the whole (small) training set, resident on device; ``consts`` holds ``lpips`` (LPIPS
  parameters, or nothing for MSE) and the methods' constants (``anchors`` for CDC, see :func:`gan_iteration`).
  With ``return_grads`` the metrics also hold the iteration's G and D gradients (for tests)."""
  data_key = jax.random.fold_in(state.rng, _DATA_STREAM)  # the same for every step: epoch permutations
  draw_key = jax.random.fold_in(state.rng, state.step)
  real = sample_real_batch(images, data_key, state.step, batch, flip)
  if batch_sharding is not None:
    real = jax.lax.with_sharding_constraint(real, batch_sharding)
  draws = sample_draws(setup, draw_key, batch)
  if setup.cdc_anchor_every:  # CDC anchor iterations: the fake batch comes from the anchor region
    near = cdc.anchor_latents(jax.random.fold_in(draw_key, 1), consts['anchors'], batch, setup.cdc_anchor_std)
    draws = draws._replace(z=jnp.where(state.step % setup.cdc_anchor_every == 0, near, draws.z))
  if batch_sharding is not None:
    draws = draws._replace(z=jax.lax.with_sharding_constraint(draws.z, batch_sharding))
  new_state, metrics, (g_grads, d_grads) = gan_iteration(setup, state, real, draws, consts.get('lpips'),
                                                         consts=consts)
  if return_grads:
    metrics = dict(metrics, g_grads=g_grads, d_grads=d_grads)
  return new_state.replace(step=state.step + 1), metrics
