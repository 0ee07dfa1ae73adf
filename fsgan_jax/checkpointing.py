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
it when complete, so a crash during a save never leaves a half-written checkpoint that looks like the latest.
"""

from __future__ import annotations

from typing import Any, Optional

import jax
import orbax.checkpoint as ocp

from fsgan_jax import fileio

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


def restore(manager: ocp.CheckpointManager, target: Any, step: Optional[int] = None) -> tuple[Any, Optional[int]]:
  """Restores ``step`` (default: the latest) into the structure of ``target``; returns (state, step or None)."""
  if step is None:
    step = manager.latest_step()
    if step is None:
      return target, None
  elif step not in manager.all_steps():
    raise FileNotFoundError(f'no checkpoint for step {step} in {manager.directory}; '
                            f'available: {sorted(manager.all_steps())}')
  restored = manager.restore(step, args=ocp.args.StandardRestore(abstract_like(target)))
  return restored, step


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
