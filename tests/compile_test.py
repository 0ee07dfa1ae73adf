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

import re

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import NamedSharding, PartitionSpec as P

from configs import tiny
from fsgan_jax import checkpointing, compiler, gan, input_pipeline, sampling, train
from tests import compile_events

_TRACE, _COMPILE = compile_events.TRACE, compile_events.COMPILE
_count_compiles = compile_events.count_compiles


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
  mesh = gan.make_mesh()
  repl = NamedSharding(mesh, P())
  setup = gan.build_setup(config)
  state = gan.create_state(config, setup, mesh)
  images = jax.device_put(input_pipeline.load_config_data(config.data, config.model.resolution)[:16], repl)
  consts = gan.make_consts(config, setup, mesh, 16)
  train_step = gan.make_train_step(config, setup, mesh)
  sampler = sampling.make_sampler(setup.generator, config.sample_bn)
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
  # On CPU both programs run their convolutions on XLA's Eigen kernels, not in YNNPACK fusions (compiler.options()):
  # with XLA's defaults 65 of this step's 258 convolutions were in YNNPACK fusions, with the options 5 of 236 (a few
  # tiny batch-1 convolutions still go to YNNPACK's dot path).
  for fn, args in ((train_step, (state, images, consts)), (sampler, (state.ema_params, state.g_stats, z, key))):
    convs, in_ynn = _convolutions(fn.lower(*args).compile().as_text())
    assert convs > 0 and 10 * in_ynn < convs, (fn, convs, in_ynn)


def _convolutions(hlo: str) -> tuple[int, int]:
  """(convolutions in an optimized HLO module, those inside computations called by a YNNPACK fusion)."""
  computations: dict[str, list[str]] = {}
  name = None
  for line in hlo.splitlines():
    m = re.match(r'^(?:ENTRY )?%?([\w.\-]+) ', line)
    if m and line.rstrip().endswith('{'):
      name = m.group(1)
      computations[name] = []
    elif name is not None:
      computations[name].append(line)
  ynn = set()
  for lines in computations.values():
    for line in lines:
      if '__ynn_fusion' in line:
        ynn.update(re.findall(r'calls=%?([\w.\-]+)', line))
  convs = sum(' convolution(' in line for lines in computations.values() for line in lines)
  in_ynn = sum(' convolution(' in line for c in ynn for line in computations.get(c, []))
  return convs, in_ynn


def test_checkpoint_save_does_not_compile_per_replica_slices(tmp_path):
  """Saving the replicated state compiles (almost) nothing: no ``jit(slice)`` per array, replica and device.

  Orbax's default replica-parallel saving compiled ~300 slices (40 s on 2 CPU cores) for the first save of this
  tiny state on 8 devices; ``checkpointing`` keeps replica-parallel saving for large arrays only.
  """
  config = tiny.get_config()
  state = gan.create_state(config, gan.build_setup(config), gan.make_mesh())
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


def test_compiler_options_move_convolutions_out_of_ynnpack():
  """The premise of ``compiler.options()``: XLA:CPU's default puts this weight-gradient convolution into a YNNPACK
  fusion, the package's options leave it to Eigen and keep the result (to float32 rounding)."""
  def weight_grad(x, w):
    conv = lambda w: jax.lax.conv_general_dilated(x, w, (1, 1), 'SAME', dimension_numbers=('NHWC', 'HWIO', 'NHWC'))
    return jax.grad(lambda w: jnp.sum(conv(w) ** 2))(w)
  x = jax.random.normal(jax.random.PRNGKey(0), (8, 32, 32, 64))
  w = jax.random.normal(jax.random.PRNGKey(1), (3, 3, 64, 64)) * 0.05
  default = jax.jit(weight_grad).lower(x, w).compile()
  ours = jax.jit(weight_grad, compiler_options=compiler.options()).lower(x, w).compile()
  assert compiler.options() == compiler.CPU_OPTIONS  # tests run on the CPU backend
  assert _convolutions(default.as_text())[1] > 0  # if XLA stops using YNNPACK for convolutions, revisit the option
  assert _convolutions(ours.as_text()) == (2, 0)
  expected = np.asarray(default(x, w))
  np.testing.assert_allclose(np.asarray(ours(x, w)), expected, rtol=0, atol=1e-5 * np.abs(expected).max())
