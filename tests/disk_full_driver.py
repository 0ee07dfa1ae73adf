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
r"""Disk-full trials on a small tmpfs, for tests/reliability_test.py (not a test itself).

  unshare --user --map-root-user --mount python tests/disk_full_driver.py --trials=10 --out=R.json

Runs in its own user + mount namespace (no root needed where the kernel allows unprivileged user namespaces) and
mounts a small tmpfs there. Each trial fills the tmpfs with a filler file of random size so that the disk runs
out at a random point of the tiny run (a checkpoint save, a sample PNG, the event file), trains until the
StorageError, checks that the last complete checkpoint restores, frees the space and runs the same training
again; the resumed run must end bit-identical to an uninterrupted run on a normal disk. Writes one JSON record per
trial.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '3')

import jax  # pylint: disable=g-import-not-at-top
import numpy as np

from configs import tiny  # pylint: disable=g-import-not-at-top
from fsgan_jax import checkpointing, errors, gan, train

TMPFS_MB = 24
NUM_STEPS = 6


def _config():
  config = tiny.get_config()
  config.num_steps = NUM_STEPS
  config.checkpoint_every = 1
  config.sample_every = 2
  config.log_every = 2
  return config


def _state(workdir, config, step=None):
  setup = gan.build_setup(config)
  manager = checkpointing.make_manager(workdir, config.keep_checkpoints, config.checkpoint_every)
  state, step = checkpointing.restore(manager, gan.create_state(config, setup, gan.make_mesh()), step)
  return step, [np.asarray(x) for x in jax.tree_util.tree_leaves(jax.device_get(state))]


def _fill(mnt, free_mb):
  """Fills the tmpfs so that ``free_mb`` MiB stay free."""
  usage = subprocess.run(['df', '-B1', '--output=used', mnt], capture_output=True, text=True, check=True)
  used = int(usage.stdout.split()[-1])
  with open(os.path.join(mnt, 'filler'), 'wb') as f:
    f.write(b'\0' * max(0, TMPFS_MB * 2**20 - used - int(free_mb * 2**20)))


def _cli_trial(mnt, free_mb):
  """One trial through the command line: its stderr must end in one ``error:`` line, with no traceback."""
  _fill(mnt, free_mb)
  workdir = os.path.join(mnt, 'cli')
  args = [f'--config.{k}={v}' for k, v in (('num_steps', NUM_STEPS), ('checkpoint_every', 1), ('sample_every', 2))]
  proc = subprocess.run([sys.executable, '-m', 'fsgan_jax.main', '--config=configs/tiny.py', f'--workdir={workdir}',
                         *args], cwd=REPO, capture_output=True, text=True, timeout=600, check=False)
  os.remove(os.path.join(mnt, 'filler'))
  lines = proc.stderr.strip().splitlines()
  return {'trial': 'cli', 'free_mb': free_mb, 'returncode': proc.returncode, 'last_line': lines[-1] if lines else '',
          'traceback': 'Traceback' in proc.stderr, 'complete_steps': checkpointing.complete_steps(workdir)}


def _partial(workdir):
  d = os.path.join(workdir, 'checkpoints')
  return sorted(n for n in os.listdir(d) if not n.isdigit()) if os.path.isdir(d) else []


def main() -> int:
  parser = argparse.ArgumentParser()
  parser.add_argument('--trials', type=int, default=3)
  parser.add_argument('--seed', type=int, default=0)
  parser.add_argument('--cli', action='store_true', help='also one trial through python -m fsgan_jax.main')
  parser.add_argument('--out', required=True)
  args = parser.parse_args()
  scratch = tempfile.mkdtemp(prefix='fsgan_diskfull_')
  mnt = os.path.join(scratch, 'mnt')
  os.makedirs(mnt)
  subprocess.run(['mount', '-t', 'tmpfs', '-o', f'size={TMPFS_MB}m', 'tmpfs', mnt], check=True)
  ref_dir = os.path.join(scratch, 'ref')
  train.train_and_evaluate(_config(), ref_dir)
  _, ref = _state(ref_dir, _config())
  rng = np.random.default_rng(args.seed)
  records = []
  for trial in range(args.trials):
    free_mb = float(rng.uniform(0.2, 9.0))
    filler = os.path.join(mnt, 'filler')
    _fill(mnt, free_mb)
    workdir = os.path.join(mnt, f'trial{trial}')
    record = {'trial': trial, 'free_mb': round(free_mb, 2)}
    try:
      train.train_and_evaluate(_config(), workdir)
      record['error'] = None
    except errors.StorageError as e:
      record['error'] = str(e)
    except Exception as e:  # pylint: disable=broad-except  # anything else is what the test must catch
      record['error'] = f'UNEXPECTED {type(e).__name__}: {e}'
    steps = checkpointing.complete_steps(workdir)
    record['complete_steps'] = steps
    os.remove(filler)
    if steps:
      restored_step, _ = _state(workdir, _config())
      record['restored_step'] = restored_step
    record['partial_after_failure'] = _partial(workdir)
    train.train_and_evaluate(_config(), workdir)  # the same command after freeing space
    record['partial_after_resume'] = _partial(workdir)
    step, leaves = _state(workdir, _config())
    record['final_step'] = step
    record['identical'] = bool(len(leaves) == len(ref) and all(np.array_equal(a, b) for a, b in zip(ref, leaves)))
    records.append(record)
    print(json.dumps(record), flush=True)
    shutil.rmtree(workdir)  # the next trial gets the whole tmpfs
  if args.cli:
    records.append(_cli_trial(mnt, 4.0))
    print(json.dumps(records[-1]), flush=True)
  with open(args.out, 'w', encoding='utf-8') as f:
    json.dump(records, f, indent=1)
  subprocess.run(['umount', mnt], check=False)
  return 0


if __name__ == '__main__':
  sys.exit(main())
