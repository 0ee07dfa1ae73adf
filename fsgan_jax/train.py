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
"""The training loop: ``train_and_evaluate(config, workdir)``.

Validates the config, locks the workdir (``lock``: one training process per workdir), builds the GAN (``gan``),
restores or starts the state (``workdir``, ``checkpointing``), then steps, logs, writes sample grids, saves
checkpoints, evaluates periodically (``evaluate``), stops cleanly on preemption and never saves a non-finite state.
A full disk (or quota, or read-only file system) stops it with one line naming the last complete checkpoint.
"""

from __future__ import annotations

import contextlib
import dataclasses
import re
import signal
import threading
import time
from typing import Iterator

from absl import logging
from clu import metric_writers
from clu import periodic_actions
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from jax.sharding import NamedSharding, PartitionSpec as P

from fsgan_jax import checkpointing, config_lib, errors, evaluate, fileio, gan, input_pipeline, lock, masks, metrics
from fsgan_jax import methods, report, sampling, train_state, workdir as workdir_lib
from fsgan_jax.transfer import source as source_lib

_NOT_SAVED = 'training stopped and the bad state was not saved (the last checkpoint is kept)'


def _check_finite(step: int, values: dict[str, float]) -> None:
  bad = [k for k, v in values.items() if not np.isfinite(v)]
  if bad:
    raise FloatingPointError(f'non-finite {", ".join(bad)} at step {step}; {_NOT_SAVED}')


_STATE_TREES = ('g_params', 'g_stats', 'd_params', 'd_stats', 'g_opt_state', 'd_opt_state', 'ema_params')


@jax.jit
def _trees_finite(state: train_state.TrainState) -> dict[str, jax.Array]:
  """One all-finite reduction per tree of the state (a few scalars to fetch)."""
  def finite(tree):
    leaves = [jnp.all(jnp.isfinite(x)) for x in jax.tree_util.tree_leaves(tree)
              if jnp.issubdtype(x.dtype, jnp.inexact)]
    return jnp.all(jnp.stack(leaves)) if leaves else jnp.asarray(True)
  return {name: finite(getattr(state, name)) for name in _STATE_TREES}


def check_state_finite(step: int, state: train_state.TrainState) -> None:
  """Raises FloatingPointError naming the first non-finite leaf (e.g. ``g_params/...``) of ``state``."""
  ok = jax.device_get(_trees_finite(state))
  for name in _STATE_TREES:
    if ok[name]:
      continue
    for path, leaf in jax.tree_util.tree_flatten_with_path(jax.device_get(getattr(state, name)))[0]:
      if np.issubdtype(np.asarray(leaf).dtype, np.inexact) and not np.all(np.isfinite(leaf)):
        where = f'{name}/{jax.tree_util.keystr(path, simple=True, separator="/")}'
        raise FloatingPointError(f'non-finite {where} at step {step}; {_NOT_SAVED}')
    raise FloatingPointError(f'non-finite {name} at step {step}; {_NOT_SAVED}')


class _Preemption:
  """SIGTERM on one process, or Orbax's / JAX's preemption sync point on several: stop after the current step.

  The handler is installed only while training (main thread, single process) and the previous one restored after.
  On multi-host runs JAX's preemption service owns SIGTERM and all hosts agree on the step
  (``CheckpointManager.reached_preemption``); a Python handler there would replace that service's handler.
  """

  def __init__(self, manager):
    self.manager = manager
    self.signalled = False

  def _handler(self, signum, frame):  # pylint: disable=unused-argument
    self.signalled = True
    logging.warning('received signal %d: stopping after the current step and saving a checkpoint', signum)

  @contextlib.contextmanager
  def installed(self) -> Iterator['_Preemption']:
    previous = None
    if jax.process_count() == 1 and threading.current_thread() is threading.main_thread():
      previous = signal.signal(signal.SIGTERM, self._handler)
    try:
      yield self
    finally:
      if previous is not None:
        signal.signal(signal.SIGTERM, previous)

  def reached(self, step: int) -> bool:
    if jax.process_count() == 1:
      return self.signalled
    return self.manager.reached_preemption(step)


@dataclasses.dataclass
class _Progress:
  step: int = 0  # the step being trained (0 = not yet in the loop)


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> dict[str, float]:
  """Trains (or resumes) a FastGAN in ``workdir``; returns the metrics of the last logged step.

  Raises (one line each): ConfigError (before anything is read or compiled), WorkdirError (another process trains
  ``workdir``, or its checkpoint is damaged), DataError, StorageError (the disk filled up: the message names the
  last complete checkpoint; free space and rerun to resume), FloatingPointError (non-finite state, not saved).
  """
  config_lib.validate(config, jax.device_count())
  workdir = fileio.abspath(workdir)  # a gs:// URL stays as it is
  changes = workdir_lib.check_config_compatible(config, workdir)
  at = _Progress()
  with contextlib.ExitStack() as stack:
    if jax.process_index() == 0:  # one lock per run, taken by the process that writes the workdir's files
      stack.enter_context(lock.WorkdirLock(workdir))
      checkpointing.remove_partial_saves(workdir)
    try:
      return _train(config, workdir, changes, at)
    except (OSError, ValueError) as e:
      full = errors.storage_full(e)
      if full is None:
        raise
      raise errors.StorageError(_storage_message(workdir, full, at.step)) from None


def _storage_message(workdir: str, full: tuple, step: int) -> str:
  steps = checkpointing.complete_steps(workdir)
  last = f'the last complete checkpoint is step {steps[-1]}' if steps else 'no checkpoint was completed'
  what = f'write {full[0] or workdir}' + (f' at step {step}' if step else '')
  save = re.match(r'(.*)[/\\](\d+)' + re.escape(checkpointing.TMP_SUFFIX), full[0] or '')
  if save:  # a file deep inside Orbax's temporary folder: name the checkpoint instead
    what = f'save checkpoint {save.group(2)} in {save.group(1)}'
  return f'could not {what} ({full[1]}); {last}; free space and run the same command to resume'


def _train(config: ml_collections.ConfigDict, workdir: str, changes: dict, at: _Progress) -> dict[str, float]:
  """``train_and_evaluate`` once the workdir is locked."""
  mesh = gan.make_mesh()
  repl = NamedSharding(mesh, P())
  setup = gan.build_setup(config)

  images_np = input_pipeline.load_config_data(config.data, config.model.resolution,
                                              mask_channels=config_lib.mask_channels(config))
  logging.info('training images: %s from %s', images_np.shape, input_pipeline.describe_source(config.data))
  images = jax.device_put(images_np, repl)

  state = gan.create_state(config, setup, mesh)
  manager = checkpointing.make_manager(workdir, config.keep_checkpoints, config.checkpoint_every)
  restore_step = config.get('restore_step')
  state, restored_step = checkpointing.restore(manager, state, restore_step)
  later = [s for s in manager.all_steps() if restore_step is not None and s > restore_step]
  if later:  # resuming from an older checkpoint: the later ones leave the folder (moved, never deleted)
    manager.close()
    checkpointing.set_aside(workdir, later)
    manager = checkpointing.make_manager(workdir, config.keep_checkpoints, config.checkpoint_every)
  source = None
  if methods.method(config):
    try:
      _, source, source_step = source_lib.load_source(config, mesh)
    except errors.SourceError as e:
      raise errors.ConfigError(str(e)) from None
    logging.info('transfer (%s) from %s at step %d', config.transfer.method, config.transfer.source_workdir,
                 source_step)
    if restored_step is None:
      state = source_lib.init_from_source(state, source, setup.g_tx, setup.d_tx)
  if restored_step is not None:
    logging.info('resumed from checkpoint at step %d', restored_step)
  consts = gan.make_consts(config, setup, mesh, images_np.shape[0], source)
  del source
  if changes:
    logging.warning('config changes in %s: %s', workdir,
                    ', '.join(f'{k}: {o!r} -> {n!r}' for k, (o, n) in changes.items()))
  workdir_lib.write_config(config, workdir, replace=bool(changes))
  initial_step = int(state.step)
  if initial_step >= config.num_steps:
    logging.warning('nothing to do: the checkpoint in %s is at step %d >= num_steps=%d', workdir, initial_step,
                    config.num_steps)

  writer = metric_writers.create_default_writer(workdir, just_logging=jax.process_index() > 0)
  if initial_step == 0:
    writer.write_hparams({k: v for k, v in config.to_dict().items() if not isinstance(v, dict)})
  train_step = gan.make_train_step(config, setup, mesh)
  sampler = sampling.make_sampler(setup.generator, config.sample_bn)
  sample_key = jax.random.PRNGKey(config.seed + 1)
  sample_z = jax.random.normal(sample_key, (config.num_sample_images, config.model.nz))
  progress = periodic_actions.ReportProgress(num_train_steps=config.num_steps, writer=writer)
  samples_dir = fileio.join(workdir, 'samples')
  evaluator, best_manager = None, None
  if 'eval' in config and config.eval.every and initial_step < config.num_steps:
    evaluator = evaluate.Evaluator(config, setup, mesh)
    if config.eval.best_metric:
      best_manager = checkpointing.make_best_manager(workdir, config.eval.best_metric)

  last: dict[str, float] = {}
  t0, t0_step = time.perf_counter(), initial_step
  preemption = _Preemption(manager)
  try:
    with preemption.installed():
      for step in range(initial_step + 1, config.num_steps + 1):
        at.step = step
        state, step_metrics = train_step(state, images, consts)
        progress(step)
        preempted = preemption.reached(step)
        is_last = step == config.num_steps or preempted
        if step % config.log_every == 0 or is_last:
          last = {k: float(v) for k, v in jax.device_get(step_metrics).items()}
          _check_finite(step, last)
          check_state_finite(step, state)
          dt = time.perf_counter() - t0
          last['steps_per_sec'] = (step - t0_step) / dt
          last['img_per_sec'] = last['steps_per_sec'] * config.batch_size
          writer.write_scalars(step, last)
          t0, t0_step = time.perf_counter(), step
        if step % config.sample_every == 0 or is_last:
          channels = config_lib.image_channels(config)
          imgs = input_pipeline.to_uint8(masks.hard_labels(
              jax.device_get(sampler(state.ema_params, state.g_stats, sample_z, sample_key)), channels))
          imgs = masks.display(imgs, channels)  # contrasts and labels side by side when paired
          grid = input_pipeline.make_grid(imgs, ncols=int(np.ceil(np.sqrt(len(imgs)))))
          writer.write_images(step, {'ema_samples': grid[None]})
          if jax.process_index() == 0:
            fileio.makedirs(samples_dir)
            input_pipeline.save_png(fileio.join(samples_dir, f'step_{step:07d}.png'), grid)
        if step % config.checkpoint_every == 0 or is_last:
          # Never save a bad state (both checks are cheap and cached when this is also a log step).
          _check_finite(step, {k: float(v) for k, v in jax.device_get(step_metrics).items()})
          check_state_finite(step, state)
          checkpointing.save(manager, step, state, force=is_last)
        if evaluator is not None and (step % config.eval.every == 0 or step == config.num_steps):
          _periodic_eval(config, workdir, step, state, evaluator, best_manager, writer)
        if preempted:
          logging.warning('preempted: saved a checkpoint at step %d in %s; run the same command to resume', step,
                          workdir)
          last['preempted_at_step'] = float(step)
          break
  finally:  # also on errors: finish pending saves (the last good checkpoint) and flush the writers
    manager.wait_until_finished()
    if best_manager is not None:
      best_manager.wait_until_finished()
    writer.flush()
  return last


def _periodic_eval(config: ml_collections.ConfigDict, workdir: str, step: int, state: train_state.TrainState,
                   evaluator, best_manager, writer) -> None:
  """FID/KID of the EMA generator during training; keeps the best checkpoint by ``config.eval.best_metric``."""
  t0 = time.perf_counter()
  results, _ = evaluator.evaluate(state.ema_params, state.g_stats, config.eval.train_num_samples,
                                  config.eval.train_metrics, seed=config.seed, fid_method='eigh')
  scalars = metrics.flat_scalars(results)
  writer.write_scalars(step, {f'eval/{k}': v for k, v in scalars.items()})
  report.append_history(workdir, step, scalars, kind='train')
  logging.info('eval at step %d (%.1f s): %s', step, time.perf_counter() - t0,
               ', '.join(f'{k}={v:.4g}' for k, v in sorted(scalars.items())))
  metric = config.eval.best_metric
  if best_manager is not None:
    if metric not in scalars:
      logging.warning('config.eval.best_metric=%r was not computed (have %s); best checkpoint not updated', metric,
                      sorted(scalars))
    elif np.isfinite(scalars[metric]):
      checkpointing.save_best(best_manager, step, state, {metric: scalars[metric]})
