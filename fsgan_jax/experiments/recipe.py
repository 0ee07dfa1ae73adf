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
r"""Quality per CPU budget: train each arm of ``configs/recipe.py`` for the same CPU time, evaluate them alike.

  python -m fsgan_jax.experiments.recipe --workdir=/tmp/recipe --arms=base,w32,ema999 --budget_min=15 \
      [--seeds=0] [--num=1000] [--out=results/recipe]

1. Step times (``--measure``, or when ``WORKDIR/step_times.json`` lacks an arm): each arm's jitted training step is
   compiled and timed in this process (median of ``--time_steps`` after one warm-up step, synthetic images, the
   devices a training run uses). Run it on a quiet machine: the step count of every arm is derived from it.
2. Each arm and seed trains for ``round(budget / step time)`` steps (rounded down to a multiple of 100) with
   ``python -m fsgan_jax.main --config=configs/recipe.py:ARM`` in ``WORKDIR/ARM_sSEED`` (resumable: a stopped study
   continues where it was), then ``--mode=eval --num=N`` (EMA generator, FID/KID against the training set and the
   bundled held-out patients, tf1 resize, memorization ratio).
3. ``OUT.json`` and ``OUT.md`` collect every finished arm (re-written after each one).

Training and evaluation run as subprocesses (one compiled program set per arm, memory returned after each arm).
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
from typing import Any

from absl import app
from absl import flags
import jax
import numpy as np
from jax.sharding import NamedSharding, PartitionSpec as P

from fsgan_jax import config_lib, fileio, gan

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CONFIG = os.path.join(REPO, 'configs', 'recipe.py')

FLAGS = flags.FLAGS


# Arm parts that change no computation: such an arm's step time is that of the arm without them (one measurement, so
# equal programs get equal step counts instead of differing by the timing noise).
COMPUTE_NEUTRAL = ('ema999', 'lr1e4')


def timing_arm(arm: str) -> str:
  """The arm whose measured step time ``arm`` uses (``arm`` less its compute-neutral parts)."""
  return '+'.join(p for p in arm.split('+') if p not in COMPUTE_NEUTRAL) or 'base'


def arm_config(arm: str):
  """The config of ``arm`` (``configs/recipe.py:arm``)."""
  spec = {}
  with open(CONFIG) as f:
    exec(compile(f.read(), CONFIG, 'exec'), spec)  # pylint: disable=exec-used
  return spec['get_config'](arm)


def measure_step_ms(arm: str, steps: int) -> dict[str, float]:
  """Compile s and median step ms of ``arm``'s training step on this machine (synthetic images)."""
  config = arm_config(arm)
  mesh = gan.make_mesh()
  config_lib.validate(config, mesh.devices.size)
  setup = gan.build_setup(config)
  r, c = config.model.resolution, config_lib.num_channels(config)
  images = jax.device_put(np.random.default_rng(0).uniform(-1, 1, (100, r, r, c)).astype(np.float32),
                          NamedSharding(mesh, P()))
  consts = gan.make_consts(config, setup, mesh, images.shape[0])
  state = gan.create_state(config, setup, mesh)
  t = time.perf_counter()
  step = gan.make_train_step(config, setup, mesh).lower(state, images, consts).compile()
  compile_s = time.perf_counter() - t
  state, m = step(state, images, consts)
  jax.block_until_ready(m)
  times = []
  for _ in range(steps):
    t = time.perf_counter()
    state, m = step(state, images, consts)
    jax.block_until_ready(m)
    times.append(time.perf_counter() - t)
  return {'compile_s': round(compile_s, 1), 'step_ms': round(1000 * statistics.median(times), 1),
          'step_ms_all': [round(1000 * x, 1) for x in times], 'load_before': os.getloadavg()[0]}


def _run(cmd: list[str], log: str) -> None:
  with open(log, 'a') as f:
    f.write(f'$ {" ".join(cmd)}\n')
    f.flush()
    subprocess.run(cmd, check=True, stdout=f, stderr=subprocess.STDOUT, cwd=REPO)


def _eval_json(workdir: str, step: int) -> str:
  return os.path.join(workdir, 'eval', f'eval_{step}.json')


def run_arm(root: str, arm: str, seed: int, num_steps: int, num: int) -> dict[str, Any]:
  """Trains (or resumes) and evaluates one arm; returns its row."""
  workdir = os.path.join(root, f'{arm}_s{seed}')
  log = os.path.join(root, f'{arm}_s{seed}.log')
  base = [sys.executable, '-m', 'fsgan_jax.main', f'--workdir={workdir}']
  t = time.time()
  if not os.path.exists(_eval_json(workdir, num_steps)):
    _run(base + [f'--config={CONFIG}:{arm}', f'--config.num_steps={num_steps}', f'--config.seed={seed}'], log)
    train_wall = time.time() - t
    _run(base + ['--mode=eval', f'--num={num}', '--seed=0'], log)
  else:
    train_wall = None
  with open(_eval_json(workdir, num_steps)) as f:
    res = json.load(f)
  sets = res.get('sets', {})
  mem = res.get('memorization', {})
  row = {'arm': arm, 'seed': seed, 'num_steps': num_steps, 'workdir': workdir, 'num_samples': num}
  for s in ('train', 'heldout'):
    if s in sets:
      row[f'fid_{s}'] = sets[s].get('fid')
      row[f'kid_{s}'] = sets[s].get('kid')
  for space, m in mem.items():
    if isinstance(m, dict) and 'ratio_median' in m:
      row[f'memorization_{space}_ratio_median'] = m['ratio_median']
  if train_wall is not None:
    row['wall_s_this_run'] = round(time.time() - t, 1)
  return row


def write_tables(out: str, rows: list[dict[str, Any]], step_times: dict[str, Any], budget_min: float) -> None:
  """``out.json`` (everything) and ``out.md`` (the table, best held-out KID first)."""
  fileio.makedirs(os.path.dirname(out) or '.')
  with open(out + '.json', 'w') as f:
    json.dump({'budget_min': budget_min, 'step_times': step_times, 'rows': rows}, f, indent=1, sort_keys=True)
  lines = [f'# Recipe screen: {budget_min:g} CPU-minutes per arm (128 px, bundled 100-shot set)', '',
           '| arm | seed | step ms | steps | KID held-out | FID held-out | KID train | FID train | memorization '
           'ratio (inception) |', '|---|---|---|---|---|---|---|---|---|']
  for r in sorted(rows, key=lambda r: (r.get('kid_heldout') or 9e9)):
    def g(k, fmt):
      return fmt % r[k] if r.get(k) is not None else '—'
    step_ms = step_times[timing_arm(r['arm'])]['step_ms']
    lines.append(f"| {r['arm']} | {r['seed']} | {step_ms:.0f} | {r['num_steps']} | "
                 f"{g('kid_heldout', '%.4f')} | {g('fid_heldout', '%.1f')} | {g('kid_train', '%.4f')} | "
                 f"{g('fid_train', '%.1f')} | {g('memorization_inception_ratio_median', '%.2f')} |")
  with open(out + '.md', 'w') as f:
    f.write('\n'.join(lines) + '\n')


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments: {argv[1:]}')
  if not FLAGS.workdir:
    raise app.UsageError('--workdir is required')
  for arm in FLAGS.arms:
    arm_config(arm)  # unknown arms fail here, before anything runs
  os.makedirs(FLAGS.workdir, exist_ok=True)
  times_path = os.path.join(FLAGS.workdir, 'step_times.json')
  step_times = json.load(open(times_path)) if os.path.exists(times_path) else {}
  for arm in dict.fromkeys(map(timing_arm, FLAGS.arms)):
    if FLAGS.measure or arm not in step_times:
      step_times[arm] = measure_step_ms(arm, FLAGS.time_steps)
      print(f'{arm}: {step_times[arm]}', flush=True)
      with open(times_path, 'w') as f:
        json.dump(step_times, f, indent=1, sort_keys=True)
  if FLAGS.measure_only:
    return
  rows = []
  for seed in map(int, FLAGS.seeds):
    for arm in FLAGS.arms:
      num_steps = max(100, int(FLAGS.budget_min * 60e3 / step_times[timing_arm(arm)]['step_ms']) // 100 * 100)
      rows.append(run_arm(FLAGS.workdir, arm, seed, num_steps, FLAGS.num))
      print(json.dumps(rows[-1]), flush=True)
      if FLAGS.out:
        write_tables(FLAGS.out, rows, step_times, FLAGS.budget_min)


def define_flags() -> None:
  """The command-line flags (defined only when run as a program: importing this module defines none)."""
  flags.DEFINE_string('workdir', None, 'Root folder of the arms\' workdirs and step_times.json.')
  flags.DEFINE_list('arms', ['base'], 'Arms of configs/recipe.py (e.g. base,w32,w32+ema999).')
  flags.DEFINE_list('seeds', ['0'], 'Training seeds per arm.')
  flags.DEFINE_float('budget_min', 15.0, 'CPU minutes of training per arm (on the quiet machine of the step times).')
  flags.DEFINE_integer('num', 1000, 'Generated images per evaluation.')
  flags.DEFINE_integer('time_steps', 8, 'Timed steps per arm for the step time.')
  flags.DEFINE_bool('measure', False, 'Re-measure the step times of --arms even if step_times.json has them.')
  flags.DEFINE_bool('measure_only', False, 'Only measure the step times.')
  flags.DEFINE_string('out', None, 'Write OUT.json and OUT.md (e.g. results/recipe).')


if __name__ == '__main__':
  define_flags()
  app.run(main)
