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
"""Orbax checkpointing of the train state: save every N steps and at the end, keep the last K, restore latest.

Checkpoints live in ``WORKDIR/checkpoints/<step>/``. Orbax writes each step to a temporary directory and renames
it when complete, so a crash during a save never leaves a half-written checkpoint that looks like the latest; the
temporary directories such a crash (or a full disk) leaves behind are removed at the next start
(``remove_partial_saves``). A checkpoint damaged afterwards (a truncated or deleted file) is refused on restore
with one line naming the step and the file; an older one can be chosen and the later ones are then set aside
(``set_aside``), never deleted.
"""

from __future__ import annotations

import os
import re
import shutil
import time
from typing import Any, Optional, Sequence

from absl import logging
import jax
import orbax.checkpoint as ocp

from fsgan_jax import errors, fileio

CHECKPOINT_DIRS = ('checkpoints', 'checkpoints_best')
SET_ASIDE_DIR = 'checkpoints_set_aside'
TMP_SUFFIX = ocp.path.atomicity.TMP_DIR_SUFFIX  # '<step>.orbax-checkpoint-tmp': a save in progress
# What tensorstore reports for a file that is missing, shorter than recorded, or not decodable.
_DAMAGE_CODES = {'NOT_FOUND': 'missing', 'OUT_OF_RANGE': 'truncated', 'DATA_LOSS': 'corrupt'}

# Orbax's replica-parallel saving (its default except on GPU) splits every replicated array into one slice per
# replica, and each slice is a separately compiled ``jit(slice)`` per device and shape: ~0.1 s each, i.e. ~300
# compilations and 40 s for the first save of a tiny FastGAN on 8 CPU devices (3 s without), and again for every new
# model shape. The split only pays off when the slices are large (hosts then write disjoint parts of big arrays in
# parallel), so arrays whose per-replica slice would be under this many bytes are written whole by replica 0.
MIN_SLICE_BYTES_FOR_REPLICA_PARALLEL = 1 << 20


def _register_array_handler() -> None:
  """Makes Orbax use replica-parallel saving only for slices of at least ``MIN_SLICE_BYTES_FOR_REPLICA_PARALLEL``.

  Checkpoint format and restore are unchanged (the threshold only decides which process writes which bytes).
  """
  handler = ocp.type_handlers.ArrayHandler(min_slice_bytes_for_replica_parallel=MIN_SLICE_BYTES_FOR_REPLICA_PARALLEL)
  ocp.type_handlers.register_type_handler(jax.Array, handler, override=True)


_register_array_handler()


def make_manager(workdir: str, keep: int = 3, save_every: int = 1000) -> ocp.CheckpointManager:
  """A CheckpointManager for ``WORKDIR/checkpoints`` (created on process 0 if missing)."""
  options = ocp.CheckpointManagerOptions(max_to_keep=keep, save_interval_steps=save_every, create=True)
  # Orbax writes gs:// URLs itself (etils.epath + TensorStore): only local paths are made absolute.
  return ocp.CheckpointManager(fileio.join(fileio.abspath(workdir), 'checkpoints'), options=options)


def abstract_like(state: Any) -> Any:
  """Shape/dtype/sharding structs of ``state`` to restore into (keeps optax namedtuples and shardings)."""
  return jax.tree_util.tree_map(ocp.utils.to_shape_dtype_struct, state)


def damage(e: BaseException) -> Optional[tuple[str, str]]:
  """(file, what is wrong) if ``e`` is how Orbax/tensorstore report a missing, truncated or corrupt file, else None."""
  text = str(e).split('[tensorstore_spec')[0]
  if isinstance(e, FileNotFoundError):
    m = re.search(r'\(named (\S+)\) does not exist at (\S+?)\.?$', text.strip())
    return (os.path.join(m.group(2), m.group(1)) if m else (e.filename or text.strip()[:200]), 'missing')
  code = text.split(':', 1)[0].strip()
  if not isinstance(e, ValueError) or code not in _DAMAGE_CODES:
    return None
  files = re.findall(r'local file "([^"]+)"', text)
  data_files = [f for f in files if not f.endswith('/')]  # the data file rather than the database folder
  if data_files:
    return data_files[-1], _DAMAGE_CODES[code]
  if files and not os.path.exists(os.path.join(files[-1], 'manifest.ocdbt')):
    return os.path.join(files[-1], 'manifest.ocdbt'), 'missing'
  return (files[-1] if files else text[:200]), _DAMAGE_CODES[code]


def restore(manager: ocp.CheckpointManager, target: Any, step: Optional[int] = None,
            older_hint: str = '--config.restore_step=N') -> tuple[Any, Optional[int]]:
  """Restores ``step`` (default: the latest) into the structure of ``target``; returns (state, step or None).

  Raises:
    FileNotFoundError: no checkpoint for ``step``.
    errors.WorkdirError: the checkpoint is damaged (a missing, truncated or corrupt file): one line naming the step
      and the file, and how to resume from an older one (``older_hint``). Nothing is deleted.
  """
  if step is None:
    step = manager.latest_step()
    if step is None:
      return target, None
  elif step not in manager.all_steps():
    raise FileNotFoundError(f'no checkpoint for step {step} in {manager.directory}; '
                            f'available: {sorted(manager.all_steps())}')
  def damaged(file: str, what: str) -> errors.WorkdirError:
    older = [s for s in sorted(manager.all_steps()) if s < step]
    hint = (f'choose an older complete checkpoint with {older_hint} (available: {older})' if older else
            'there is no older checkpoint: restore it from a backup or use a new --workdir')
    return errors.WorkdirError(f'checkpoint {step} in {manager.directory} is damaged ({file}: {what}); {hint}; '
                               'nothing was deleted')

  metadata = fileio.join(str(manager.directory), str(step), 'default', '_METADATA')  # the tree Orbax restores
  if not fileio.exists(metadata):
    raise damaged(metadata, 'missing')
  try:
    restored = manager.restore(step, args=ocp.args.StandardRestore(abstract_like(target)))
  except (ValueError, OSError) as e:
    found = damage(e)
    if found is None:
      raise
    raise damaged(*found) from None
  return restored, step


def complete_steps(workdir: str, folder: str = 'checkpoints') -> list[int]:
  """The steps of the complete checkpoints in ``WORKDIR/folder`` (read from the folder, not from a manager)."""
  path = fileio.join(workdir, folder)
  if not fileio.isdir(path):
    return []
  return sorted(int(name) for name in fileio.listdir(path) if name.isdigit())


def remove_partial_saves(workdir: str) -> list[str]:
  """Removes the temporary folders of saves that never completed (crash, kill, full disk); returns them.

  Only for the process that holds the workdir lock (no save of another process can be in progress). Local
  workdirs only: on object stores Orbax marks completion with a file instead of a rename.
  """
  removed = []
  if fileio.is_url(workdir):
    return removed
  for folder in CHECKPOINT_DIRS:
    path = os.path.join(workdir, folder)
    if not os.path.isdir(path):
      continue
    for name in sorted(os.listdir(path)):
      if TMP_SUFFIX in name:
        shutil.rmtree(os.path.join(path, name), ignore_errors=True)
        removed.append(os.path.join(path, name))
  if removed:
    logging.warning('removed %d incomplete checkpoint save(s) left by an earlier run: %s', len(removed),
                    ', '.join(removed))
  return removed


def set_aside(workdir: str, steps: Sequence[int]) -> str:
  """Moves the checkpoints ``steps`` out of ``WORKDIR/checkpoints`` (to resume from an older one); returns where.

  They go to ``WORKDIR/checkpoints_set_aside/<time>/<step>`` and are never deleted.
  """
  dest = fileio.join(workdir, SET_ASIDE_DIR, time.strftime('%Y%m%d-%H%M%S', time.gmtime()))
  fileio.makedirs(dest)
  for step in steps:
    fileio.rename(fileio.join(workdir, 'checkpoints', str(step)), fileio.join(dest, str(step)))
  logging.warning('moved checkpoint(s) %s of %s to %s (resuming from an older one; nothing deleted)',
                  list(steps), workdir, dest)
  return dest


def save(manager: ocp.CheckpointManager, step: int, state: Any, force: bool = False) -> bool:
  """Saves ``state`` at ``step`` if the interval says so (or ``force``); returns whether it saved."""
  return manager.save(step, args=ocp.args.StandardSave(state), force=force)


def make_best_manager(workdir: str, metric: str) -> ocp.CheckpointManager:
  """A CheckpointManager for ``WORKDIR/checkpoints_best`` that keeps only the checkpoint with the lowest ``metric``.

  The metric values are stored by Orbax next to each checkpoint, so the best survives restarts.
  """
  options = ocp.CheckpointManagerOptions(max_to_keep=1, best_fn=lambda m: float(m[metric]), best_mode='min',
                                         keep_checkpoints_without_metrics=False, create=True)
  return ocp.CheckpointManager(fileio.join(fileio.abspath(workdir), 'checkpoints_best'), options=options)


def save_best(manager: ocp.CheckpointManager, step: int, state: Any, metrics: dict[str, float]) -> bool:
  """Saves ``state`` with its ``metrics``; Orbax then keeps only the best one."""
  return manager.save(step, args=ocp.args.StandardSave(state), metrics=metrics, force=True)
