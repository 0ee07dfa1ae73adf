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
"""Multi-process training on CPU: 2 processes x 4 fake devices, as a 2-host TPU slice would run.

Each process runs ``python -m fsgan_jax.main --distributed`` (through tests/multiprocess_driver.py, which gives
``jax.distributed.initialize`` the localhost coordinator); cross-process collectives use JAX's default CPU
implementation, Gloo over TCP. Checked: both processes end with bit-identical parameters, only process 0 writes
TensorBoard events and sample PNGs, and the checkpoint the pair saved restores in this single process (8 devices)
to the same parameters.
"""

from __future__ import annotations

import glob
import json
import os
import socket
import subprocess
import sys
import time

import jax
import numpy as np
import pytest

from configs import tiny
from fsgan_jax import checkpointing, gan

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NUM_STEPS = 3


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(('localhost', 0))
    return s.getsockname()[1]


def _gloo_available() -> bool:
  try:
    from jax._src.lib import _jax  # pylint: disable=g-import-not-at-top
  except ImportError:
    return False
  return hasattr(_jax, 'make_gloo_tcp_collectives')


def _run_pair(tmp_path, workdir: str) -> list[str]:
  """Starts the 2 processes; returns their logs (a failing process's partner is killed after a grace period)."""
  port = _free_port()
  # No persistent compilation cache: its keys differ between the two processes here (jaxlib 0.10.2, CPU), so one
  # process can hit the cache while the other compiles for minutes, and Gloo gives up on a collective whose
  # participants arrive more than 30 s apart. (For the same reason JAX_SHARE_BINARY_BETWEEN_HOSTS deadlocks:
  # process 1 waits for a key that process 0 never publishes.) Both compile the same programs instead.
  env = {k: v for k, v in os.environ.items() if not k.startswith('JAX_')}
  env.update(XLA_FLAGS='--xla_force_host_platform_device_count=4', JAX_PLATFORMS='cpu', TF_CPP_MIN_LOG_LEVEL='3',
             JAX_ENABLE_COMPILATION_CACHE='false')
  procs, logs = [], [tmp_path / f'log{i}.txt' for i in range(2)]
  for i in range(2):
    cmd = [sys.executable, os.path.join(REPO, 'tests', 'multiprocess_driver.py'), f'--coordinator=localhost:{port}',
           '--num_processes=2', f'--process_id={i}', f'--workdir={workdir}', f'--out={tmp_path}/p{i}.npz', '--',
           f'--config.num_steps={NUM_STEPS}']
    with open(logs[i], 'w') as log:
      procs.append(subprocess.Popen(cmd, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT))
  deadline, failed_at = time.monotonic() + 900, None
  try:
    while any(p.poll() is None for p in procs) and time.monotonic() < deadline:
      if failed_at is None and any(p.returncode for p in procs):
        failed_at = time.monotonic()
      if failed_at is not None and time.monotonic() > failed_at + 30:
        break
      time.sleep(1)
  finally:
    for p in procs:
      if p.poll() is None:
        p.kill()
        p.wait()
  texts = [log.read_text() for log in logs]
  for i, p in enumerate(procs):
    if p.returncode:
      return texts + [f'process {i} exited with {p.returncode}:\n{texts[i][-3000:]}']
  return texts


def test_two_processes_train_like_one(tmp_path):
  """The slowest test of the suite (~2-3 min on 2 CPU cores: each process compiles the train step itself)."""
  if not _gloo_available():
    pytest.skip('this jaxlib has no Gloo CPU collectives (jax_cpu_collectives_implementation=gloo)')
  for attempt in range(2):  # once more if one process fell > 30 s behind the other (a busy machine)
    workdir = str(tmp_path / f'run{attempt}')
    logs = _run_pair(tmp_path, workdir)
    if len(logs) == 2 or 'Gloo context initialization failed' not in ''.join(logs):
      break
  assert len(logs) == 2, logs[-1]

  records = [json.loads((tmp_path / f'p{i}.npz.json').read_text()) for i in range(2)]
  for i, r in enumerate(records):
    assert (r['process_index'], r['process_count'], r['device_count'], r['local_device_count']) == (i, 2, 8, 4)
    assert r['saved_steps'] == [2, 3]
  leaves = []
  for i in range(2):
    with np.load(tmp_path / f'p{i}.npz') as z:
      leaves.append([z[f'arr_{k}'] for k in range(len(z.files))])
  assert len(leaves[0]) == len(leaves[1]) > 0
  for a, b in zip(*leaves):
    np.testing.assert_array_equal(a, b)  # bit-identical replicas across the two processes

  # Only process 0 writes: TensorBoard event files (named ...tfevents.<time>.<host>.<pid>...) and sample PNGs.
  events = glob.glob(os.path.join(workdir, 'events.out.tfevents.*'))
  assert events and all(f'.{records[0]["pid"]}.' in os.path.basename(e) for e in events), events
  assert records[0]['pngs'] == 2 and records[1]['pngs'] == 0
  assert sorted(os.listdir(os.path.join(workdir, 'samples'))) == ['step_0000002.png', 'step_0000003.png']

  # The pair's checkpoint restores in one process on 8 devices, to the same parameters.
  config = tiny.get_config()
  assert jax.device_count() == 8
  setup = gan.build_setup(config)
  manager = checkpointing.make_manager(workdir, config.keep_checkpoints, config.checkpoint_every)
  state, step = checkpointing.restore(manager, gan.create_state(config, setup, gan.make_mesh()))
  assert step == NUM_STEPS and int(state.step) == NUM_STEPS
  restored = [np.asarray(x) for x in jax.tree_util.tree_leaves(jax.device_get(state))]
  assert len(restored) == len(leaves[0])
  for a, b in zip(restored, leaves[0]):
    np.testing.assert_array_equal(a, b)
