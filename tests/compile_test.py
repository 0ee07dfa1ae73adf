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
"""The training step is traced and compiled exactly once per run (no retracing by logging, sampling or saving).

A retrace would mean a silent multi-second (CPU) to minutes-long (large TPU programs) stall every time it happens;
typical causes are a weak-typed or differently-sharded state coming out of the step, or a Python value that changes
between calls. Counted with ``jax.monitoring`` duration events (one ``jaxpr_trace`` per trace, one
``backend_compile`` per XLA compile request, persistent-cache hits included) and the jit's own cache size.
"""

from __future__ import annotations

import collections
import contextlib
from typing import Iterator

import jax
import numpy as np
from jax import monitoring
from jax.sharding import NamedSharding, PartitionSpec as P

from configs import tiny
from fsgan_jax import checkpointing, input_pipeline, train

_TRACE = '/jax/core/compile/jaxpr_trace_duration'
_COMPILE = '/jax/core/compile/backend_compile_duration'


@contextlib.contextmanager
def _count_compiles() -> Iterator[collections.Counter]:
  """Counts ``(event, fun_name)`` of JAX trace / XLA compile events inside the block."""
  counts: collections.Counter = collections.Counter()

  def listener(event: str, duration: float, **kwargs) -> None:
    del duration
    if event in (_TRACE, _COMPILE):
      counts[(event, kwargs.get('fun_name', ''))] += 1

  monitoring.register_event_duration_secs_listener(listener)
  try:
    yield counts
  finally:
    monitoring.unregister_event_duration_listener(listener)


def test_train_step_compiles_once_in_train_and_evaluate(tmp_path):
  """The full loop: 6 steps with logging every 2, sampling every 3 and checkpoints every 2 steps."""
  config = tiny.get_config()
  config.num_steps, config.log_every, config.sample_every, config.checkpoint_every = 6, 2, 3, 2
  with _count_compiles() as counts:
    train.train_and_evaluate(config, str(tmp_path / 'run'))
  assert counts[(_TRACE, 'train_step')] == 1, dict(counts)
  assert counts[(_COMPILE, 'jit(train_step)')] == 1, dict(counts)
  assert counts[(_TRACE, 'generate')] == 1, dict(counts)  # the sampler: once, although called twice


def test_jitted_train_step_cache_size():
  """The jitted step itself: one cache entry over 5 steps, with metrics reads and samples in between."""
  config = tiny.get_config()
  mesh = train.make_mesh()
  repl = NamedSharding(mesh, P())
  setup = train.build_setup(config)
  state = train.create_state(config, setup, mesh)
  images = jax.device_put(input_pipeline.load_config_data(config.data, config.model.resolution)[:16], repl)
  consts = train.make_consts(config, setup, mesh, 16)
  train_step = train.make_train_step(config, setup, mesh)
  sampler = train.make_sampler(setup, config.sample_bn)
  key = jax.random.PRNGKey(1)
  z = jax.random.normal(key, (config.num_sample_images, config.model.nz))
  with _count_compiles() as counts:
    for step in range(1, 6):
      state, metrics = train_step(state, images, consts)
      assert train_step._cache_size() == 1, f'train step retraced at step {step}: {dict(counts)}'  # pylint: disable=protected-access
      if step % 2 == 0:
        assert all(np.isfinite(float(v)) for v in jax.device_get(metrics).values())
        sampler(state.ema_params, state.g_stats, z, key).block_until_ready()
  assert int(state.step) == 5
  assert counts[(_TRACE, 'train_step')] == 1 and counts[(_COMPILE, 'jit(train_step)')] == 1, dict(counts)


def test_checkpoint_save_does_not_compile_per_replica_slices(tmp_path):
  """Saving the replicated state compiles (almost) nothing: no ``jit(slice)`` per array, replica and device.

  Orbax's default replica-parallel saving compiled ~300 slices (40 s on 2 CPU cores) for the first save of this
  tiny state on 8 devices; ``checkpointing`` keeps replica-parallel saving for large arrays only.
  """
  config = tiny.get_config()
  state = train.create_state(config, train.build_setup(config), train.make_mesh())
  manager = checkpointing.make_manager(str(tmp_path), 1, 1)
  with _count_compiles() as counts:
    assert checkpointing.save(manager, 1, state, force=True)
    manager.wait_until_finished()
  compiles = {name: n for (event, name), n in counts.items() if event == _COMPILE}
  assert 'jit(slice)' not in compiles, compiles
  assert sum(compiles.values()) <= 8, compiles
  restored, step = checkpointing.restore(manager, state)
  assert step == 1
  for a, b in zip(jax.tree_util.tree_leaves(restored), jax.tree_util.tree_leaves(state)):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
