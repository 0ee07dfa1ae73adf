"""Pure, jit-able FastGAN iteration, faithful to the official train.py.

One iteration (official order): G runs once; real, fake-big and fake-128 are DiffAugmented independently; D sees
the real batch (with reconstructions) and the detached fake batch as two calls, so BatchNorm uses separate
batch statistics and spectral norm does one power iteration per call; D steps; the G loss goes through the
already-updated D (a third D call); G steps; the EMA of G's parameters is updated.

G's forward runs once: ``jax.vjp`` keeps its linearisation, the G step pulls the cotangent of the augmented
fakes back through it instead of re-running G.
"""

from __future__ import annotations

import dataclasses
from typing import Any, NamedTuple, Optional

import jax
import jax.numpy as jnp
import optax

from fsgan_jax import losses
from fsgan_jax.augment import diffaug
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


def num_logits(im_size: int) -> int:
  return (1 if im_size == 128 else 25) + 25


def sample_draws(setup: GanSetup, key: Array, batch: int) -> Draws:
  """Draws an iteration's randomness from ``key``."""
  g, d = setup.generator, setup.discriminator
  k = jax.random.split(key, 8)
  big = (batch, g.im_size, g.im_size, g.nc)
  small = (batch, 128, 128, g.nc)
  nl = num_logits(d.im_size)
  return Draws(
      z=jax.random.normal(k[0], (batch, g.nz)),
      noise_key=k[1],
      aug_real=diffaug.sample_draws(k[2], big, setup.policy),
      aug_fake_big=diffaug.sample_draws(k[3], big, setup.policy),
      aug_fake_small=diffaug.sample_draws(k[4], small, setup.policy),
      part=jax.random.randint(k[5], (), 0, 4),
      margin_real=jax.random.uniform(k[6], (batch, nl)),
      margin_fake=jax.random.uniform(k[7], (batch, nl)))


def _augment(x: Array, draws: dict, policy: str) -> Array:
  return diffaug.apply(x, draws, policy) if diffaug.parse_policy(policy) else x


def gan_iteration(setup: GanSetup, state: TrainState, real: Array, draws: Draws, lpips_params: Any,
                  fixed_noise: Optional[Any] = None):
  """One FastGAN iteration on a real batch (NHWC at ``im_size``, in [-1, 1]).

  Args:
    setup: models, optimizers and options.
    state: the current state.
    real: real images at G's resolution.
    draws: the iteration's randomness.
    lpips_params: LPIPS-VGG parameters (ignored for ``recon='mse'``).
    fixed_noise: optional ``fixed_noise`` variables for G's NoiseInjection layers (golden tests).

  Returns:
    ``(new_state, metrics, (g_grads, d_grads))``; the step counter is not advanced here.
  """
  G, D, policy = setup.generator, setup.discriminator, setup.policy
  recon_fn = losses.RECON_LOSSES[setup.recon]
  extra = {} if fixed_noise is None else {'fixed_noise': fixed_noise}

  def g_forward(g_params):
    (big, small), new_vars = G.apply({'params': g_params, 'batch_stats': state.g_stats, **extra}, draws.z,
                                     train=True, mutable=['batch_stats'], rngs={'noise': draws.noise_key})
    fake = (_augment(big, draws.aug_fake_big, policy), _augment(small, draws.aug_fake_small, policy))
    return fake, new_vars['batch_stats']

  fake_aug, g_vjp, g_stats = jax.vjp(g_forward, state.g_params, has_aux=True)
  real_aug = _augment(real, draws.aug_real, policy)
  real_big, real_small = fastgan.resize_real_for_d(real_aug, D.im_size)
  part_target = layers.nearest_resize(fastgan.crop_quadrant(real_aug, draws.part), 128)
  fake_detached = jax.lax.stop_gradient(fake_aug)

  def d_loss_fn(d_params):
    logits_r, (rec_big, rec_small, rec_part), v = _apply_d(D, d_params, state.d_stats, real_big, real_small,
                                                           draws.part)
    hinge_r = losses.d_hinge_real(logits_r, draws.margin_real)
    rec = [jnp.sum(recon_fn(lpips_params, r, t))
           for r, t in ((rec_big, real_small), (rec_small, real_small), (rec_part, part_target))]
    logits_f, v = _apply_d(D, d_params, v, *fake_detached)
    err_fake = losses.d_hinge_fake(logits_f, draws.margin_fake)
    err_real = hinge_r + rec[0] + rec[1] + rec[2]
    aux = dict(d_hinge_real=hinge_r, d_rec_big=rec[0], d_rec_small=rec[1], d_rec_part=rec[2],
               d_err_real_total=err_real, d_err_fake=err_fake, pred_real_mean=jnp.mean(logits_r),
               pred_fake_mean=jnp.mean(logits_f))
    return err_real + err_fake, (v, aux)

  (_, (d_stats, metrics)), d_grads = jax.value_and_grad(d_loss_fn, has_aux=True)(state.d_params)
  d_updates, d_opt_state = setup.d_tx.update(d_grads, state.d_opt_state, state.d_params)
  d_params = optax.apply_updates(state.d_params, d_updates)

  def g_loss_fn(fake):
    logits, v = _apply_d(D, d_params, d_stats, *fake)
    return losses.g_loss(logits), v

  (err_g, d_stats), fake_cot = jax.value_and_grad(g_loss_fn, has_aux=True)(fake_aug)
  (g_grads,) = g_vjp(fake_cot)
  g_updates, g_opt_state = setup.g_tx.update(g_grads, state.g_opt_state, state.g_params)
  g_params = optax.apply_updates(state.g_params, g_updates)
  ema = jax.tree_util.tree_map(lambda e, p: setup.ema_decay * e + (1.0 - setup.ema_decay) * p,
                               state.ema_params, g_params)
  metrics['g_err'] = err_g
  new_state = state.replace(g_params=g_params, g_stats=g_stats, d_params=d_params, d_stats=d_stats,
                            g_opt_state=g_opt_state, d_opt_state=d_opt_state, ema_params=ema)
  return new_state, metrics, (g_grads, d_grads)


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


def train_step(setup: GanSetup, state: TrainState, images: Array, lpips_params: Any, batch: int,
               flip: bool = True, batch_sharding: Any = None, return_grads: bool = False):
  """Samples a real batch and the draws from ``fold_in(state.rng, step)``, runs one iteration, advances the
  step. ``images`` is the whole (small) training set, resident on device. With ``return_grads`` the metrics
  also hold the iteration's G and D gradients (for tests)."""
  data_key = jax.random.fold_in(state.rng, _DATA_STREAM)  # the same for every step: epoch permutations
  draw_key = jax.random.fold_in(state.rng, state.step)
  real = sample_real_batch(images, data_key, state.step, batch, flip)
  if batch_sharding is not None:
    real = jax.lax.with_sharding_constraint(real, batch_sharding)
  draws = sample_draws(setup, draw_key, batch)
  if batch_sharding is not None:
    draws = draws._replace(z=jax.lax.with_sharding_constraint(draws.z, batch_sharding))
  new_state, metrics, (g_grads, d_grads) = gan_iteration(setup, state, real, draws, lpips_params)
  if return_grads:
    metrics = dict(metrics, g_grads=g_grads, d_grads=d_grads)
  return new_state.replace(step=state.step + 1), metrics
