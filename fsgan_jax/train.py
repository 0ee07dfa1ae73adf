"""FastGAN training loop: ``train_and_evaluate(config, workdir)``.

Data parallel over all devices (and hosts) with ``jax.jit`` on a 1-D ``Mesh(('data',))``: the state is
replicated, the batch is sharded along 'data', and XLA inserts the gradient and BatchNorm all-reduces. Because
BN statistics are computed over the global batch, a step on N devices equals the step on 1 device.
(``jax.pmap`` would do the same; in JAX 0.10 it is itself a wrapper over jit + shard_map, and jit with
NamedSharding is the recommended form, which is why it is used here.)
"""

from __future__ import annotations

import functools
import json
import os
import time
from typing import Optional

from absl import logging
from clu import metric_writers
from clu import periodic_actions
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from fsgan_jax import checkpointing, input_pipeline, losses, steps, train_state
from fsgan_jax.augment import diffaug
from fsgan_jax.models import fastgan

DTYPES = {'float32': jnp.float32, 'bfloat16': jnp.bfloat16}


class ConfigError(ValueError):
  """A config value is invalid; raised before anything is compiled."""


def validate_config(config: ml_collections.ConfigDict, num_devices: int = 1) -> None:
  """Checks every field a run depends on and raises a one-line ConfigError naming the field."""
  m = config.model
  if m.resolution not in fastgan.RESOLUTIONS:
    raise ConfigError(f'config.model.resolution={m.resolution} is not supported; choose one of {fastgan.RESOLUTIONS}')
  for name in ('ngf', 'ndf'):
    width = getattr(m, name)
    mult = fastgan.G_MULT if name == 'ngf' else fastgan.D_MULT
    smallest = min(int(v * width) for k, v in mult.items() if k <= max(m.resolution, 512))
    if not isinstance(width, int) or smallest < 1:
      raise ConfigError(f'config.model.{name}={width} is too small for resolution {m.resolution} '
                        '(every layer width int(mult * width) must be >= 1)')
  if m.decoder_width < 1 or int(0.5 * m.decoder_width) < 1:
    raise ConfigError(f'config.model.decoder_width={m.decoder_width} must be >= 2')
  if m.nz < 1:
    raise ConfigError(f'config.model.nz={m.nz} must be positive')
  if m.dtype not in DTYPES:
    raise ConfigError(f'config.model.dtype={m.dtype!r}; choose one of {sorted(DTYPES)}')
  if config.data.channels not in (1, 3):
    raise ConfigError(f'config.data.channels={config.data.channels} must be 1 or 3')
  if config.batch_size < 1 or config.batch_size % num_devices:
    raise ConfigError(f'config.batch_size={config.batch_size} must be a positive multiple of the number of '
                      f'devices ({num_devices})')
  for name in ('num_steps', 'log_every', 'sample_every', 'checkpoint_every', 'keep_checkpoints',
               'num_sample_images'):
    if getattr(config, name) < 1:
      raise ConfigError(f'config.{name}={getattr(config, name)} must be >= 1')
  if not 0.0 <= config.ema_decay < 1.0:
    raise ConfigError(f'config.ema_decay={config.ema_decay} must be in [0, 1)')
  if config.lr <= 0:
    raise ConfigError(f'config.lr={config.lr} must be positive')
  try:
    diffaug.parse_policy(config.diffaug_policy)
  except ValueError as e:
    raise ConfigError(f'config.diffaug_policy: {e}') from None
  if config.recon_loss not in losses.RECON_LOSSES:
    raise ConfigError(f'config.recon_loss={config.recon_loss!r}; choose one of {sorted(losses.RECON_LOSSES)}')
  if config.sample_bn not in ('batch', 'running'):
    raise ConfigError(f"config.sample_bn={config.sample_bn!r}; choose 'batch' or 'running'")
  if 'eval' in config:
    from fsgan_jax import evaluate  # pylint: disable=g-import-not-at-top
    try:
      evaluate.validate_eval_config(config, num_devices)
    except evaluate.EvalError as e:
      raise ConfigError(str(e)) from None


def build_models(config: ml_collections.ConfigDict) -> tuple[fastgan.Generator, fastgan.Discriminator]:
  m = config.model
  dtype = DTYPES[m.dtype]
  g = fastgan.Generator(ngf=m.ngf, nz=m.nz, nc=config.data.channels, im_size=m.resolution, tanh=m.tanh,
                        dtype=dtype)
  d = fastgan.Discriminator(ndf=m.ndf, nc=config.data.channels, im_size=m.resolution,
                            decoder_width=m.decoder_width, dtype=dtype)
  return g, d


def build_setup(config: ml_collections.ConfigDict) -> steps.GanSetup:
  g, d = build_models(config)
  tx = train_state.make_optimizer(config)
  return steps.GanSetup(generator=g, discriminator=d, g_tx=tx, d_tx=tx, policy=config.diffaug_policy,
                        recon=config.recon_loss, ema_decay=config.ema_decay)


def make_mesh(devices: Optional[list] = None) -> Mesh:
  """A 1-D ('data',) mesh over ``devices`` (default: all devices of all processes)."""
  devices = jax.devices() if devices is None else devices
  return Mesh(np.asarray(devices), ('data',), axis_types=(jax.sharding.AxisType.Auto,))


def create_state(config: ml_collections.ConfigDict, setup: steps.GanSetup, mesh: Mesh) -> train_state.TrainState:
  """A fresh, replicated train state from ``config.seed``."""
  state = train_state.create(jax.random.PRNGKey(config.seed), setup.generator, setup.discriminator,
                             setup.g_tx, setup.d_tx)
  return train_state.place(state, NamedSharding(mesh, P()))


def make_train_step(config: ml_collections.ConfigDict, setup: steps.GanSetup, mesh: Mesh,
                    return_grads: bool = False):
  """The jitted, state-donating step ``(state, images, lpips_params) -> (state, metrics)``."""
  repl = NamedSharding(mesh, P())
  fn = functools.partial(steps.train_step, setup, batch=config.batch_size, flip=config.data.flip,
                         batch_sharding=NamedSharding(mesh, P('data')), return_grads=return_grads)
  return jax.jit(fn, in_shardings=(repl, repl, repl), out_shardings=(repl, repl), donate_argnums=(0,))


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


def make_sampler(setup: steps.GanSetup, sample_bn: str = 'batch'):
  """Jitted ``(ema_params, g_stats, z, noise_key) -> images`` at G's resolution, in [-1, 1] (clipped)."""
  return jax.jit(functools.partial(generate, setup.generator, sample_bn))


_SHAPE_FIELDS = ('model.resolution', 'model.ngf', 'model.ndf', 'model.nz', 'model.decoder_width', 'data.channels')


def check_config_compatible(config: ml_collections.ConfigDict, workdir: str) -> None:
  """Refuses to resume a workdir whose stored config has different model shapes (clear error, nothing touched)."""
  path = os.path.join(workdir, 'config.json')
  if not os.path.exists(path):
    return
  stored = read_config(workdir)
  diffs = []
  for field in _SHAPE_FIELDS:
    section, name = field.split('.')
    old = stored[section].get(name) if section in stored else None
    new = config[section][name]
    if old is not None and old != new:
      diffs.append(f'{field}: workdir has {old}, config has {new}')
  if diffs:
    raise ConfigError(f'{workdir} holds a run with a different model ({"; ".join(diffs)}); use a new --workdir '
                      'or the original config')


def write_config(config: ml_collections.ConfigDict, workdir: str) -> None:
  """Stores the config on first start (process 0) so sampling and resumption can read it back."""
  path = os.path.join(workdir, 'config.json')
  if jax.process_index() == 0 and not os.path.exists(path):
    os.makedirs(workdir, exist_ok=True)
    tmp = path + '.tmp'
    with open(tmp, 'w') as f:
      f.write(config.to_json(indent=2))
    os.replace(tmp, path)


def read_config(workdir: str) -> ml_collections.ConfigDict:
  path = os.path.join(workdir, 'config.json')
  if not os.path.exists(path):
    raise FileNotFoundError(f'{path} not found: is {workdir!r} a fsgan_jax training workdir?')
  with open(path) as f:
    return ml_collections.ConfigDict(json.load(f))


def _check_finite(step: int, metrics: dict[str, float]) -> None:
  bad = [k for k, v in metrics.items() if not np.isfinite(v)]
  if bad:
    raise FloatingPointError(f'non-finite {", ".join(bad)} at step {step}; training stopped and the bad state '
                             'was not saved (the last checkpoint is kept)')


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> dict[str, float]:
  """Trains (or resumes) a FastGAN in ``workdir``; returns the metrics of the last logged step."""
  validate_config(config, jax.device_count())
  workdir = os.path.abspath(workdir)
  check_config_compatible(config, workdir)
  mesh = make_mesh()
  repl = NamedSharding(mesh, P())
  setup = build_setup(config)

  images_np = input_pipeline.load_config_data(config.data, config.model.resolution)
  logging.info('training images: %s from %s', images_np.shape, input_pipeline.describe_source(config.data))
  images = jax.device_put(images_np, repl)
  lpips_params = jax.device_put(losses.load_lpips_params() if config.recon_loss == 'lpips' else {}, repl)

  state = create_state(config, setup, mesh)
  manager = checkpointing.make_manager(workdir, config.keep_checkpoints, config.checkpoint_every)
  state, restored_step = checkpointing.restore(manager, state)
  if restored_step is not None:
    logging.info('resumed from checkpoint at step %d', restored_step)
  write_config(config, workdir)
  initial_step = int(state.step)
  if initial_step >= config.num_steps:
    logging.warning('nothing to do: the checkpoint in %s is at step %d >= num_steps=%d', workdir, initial_step,
                    config.num_steps)

  writer = metric_writers.create_default_writer(workdir, just_logging=jax.process_index() > 0)
  if initial_step == 0:
    writer.write_hparams({k: v for k, v in config.to_dict().items() if not isinstance(v, dict)})
  train_step = make_train_step(config, setup, mesh)
  sampler = make_sampler(setup, config.sample_bn)
  sample_key = jax.random.PRNGKey(config.seed + 1)
  sample_z = jax.random.normal(sample_key, (config.num_sample_images, config.model.nz))
  report = periodic_actions.ReportProgress(num_train_steps=config.num_steps, writer=writer)
  samples_dir = os.path.join(workdir, 'samples')
  evaluator, best_manager = None, None
  if 'eval' in config and config.eval.every and initial_step < config.num_steps:
    from fsgan_jax import evaluate  # pylint: disable=g-import-not-at-top
    evaluator = evaluate.Evaluator(config, setup, mesh)
    if config.eval.best_metric:
      best_manager = checkpointing.make_best_manager(workdir, config.eval.best_metric)

  last: dict[str, float] = {}
  t0, t0_step = time.perf_counter(), initial_step
  for step in range(initial_step + 1, config.num_steps + 1):
    state, metrics = train_step(state, images, lpips_params)
    report(step)
    is_last = step == config.num_steps
    if step % config.log_every == 0 or is_last:
      last = {k: float(v) for k, v in jax.device_get(metrics).items()}
      _check_finite(step, last)
      dt = time.perf_counter() - t0
      last['steps_per_sec'] = (step - t0_step) / dt
      last['img_per_sec'] = last['steps_per_sec'] * config.batch_size
      writer.write_scalars(step, last)
      t0, t0_step = time.perf_counter(), step
    if step % config.sample_every == 0 or is_last:
      imgs = input_pipeline.to_uint8(jax.device_get(sampler(state.ema_params, state.g_stats, sample_z, sample_key)))
      grid = input_pipeline.make_grid(imgs, ncols=int(np.ceil(np.sqrt(len(imgs)))))
      writer.write_images(step, {'ema_samples': grid[None]})
      if jax.process_index() == 0:
        os.makedirs(samples_dir, exist_ok=True)
        input_pipeline.save_png(os.path.join(samples_dir, f'step_{step:07d}.png'), grid)
    if step % config.checkpoint_every == 0 or is_last:
      _check_finite(step, {k: float(v) for k, v in jax.device_get(metrics).items()})  # never save a bad state
      checkpointing.save(manager, step, state, force=is_last)
    if evaluator is not None and (step % config.eval.every == 0 or is_last):
      _periodic_eval(config, workdir, step, state, evaluator, best_manager, writer)
  manager.wait_until_finished()
  if best_manager is not None:
    best_manager.wait_until_finished()
  writer.flush()
  return last


def _periodic_eval(config: ml_collections.ConfigDict, workdir: str, step: int, state: train_state.TrainState,
                   evaluator, best_manager, writer) -> None:
  """FID/KID of the EMA generator during training; keeps the best checkpoint by ``config.eval.best_metric``."""
  from fsgan_jax import evaluate  # pylint: disable=g-import-not-at-top
  t0 = time.perf_counter()
  results, _ = evaluator.evaluate(state.ema_params, state.g_stats, config.eval.train_num_samples,
                                  config.eval.train_metrics, seed=config.seed, fid_method='eigh')
  scalars = evaluate.flat_scalars(results)
  writer.write_scalars(step, {f'eval/{k}': v for k, v in scalars.items()})
  evaluate.append_history(workdir, step, scalars, kind='train')
  logging.info('eval at step %d (%.1f s): %s', step, time.perf_counter() - t0,
               ', '.join(f'{k}={v:.4g}' for k, v in sorted(scalars.items())))
  metric = config.eval.best_metric
  if best_manager is not None:
    if metric not in scalars:
      logging.warning('config.eval.best_metric=%r was not computed (have %s); best checkpoint not updated', metric,
                      sorted(scalars))
    elif np.isfinite(scalars[metric]):
      checkpointing.save_best(best_manager, step, state, {metric: scalars[metric]})
