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
r"""One process of a multi-process CPU training run, for tests/multiprocess_test.py (not a test itself).

  XLA_FLAGS=--xla_force_host_platform_device_count=4 python tests/multiprocess_driver.py \
      --coordinator=localhost:PORT --num_processes=2 --process_id=I --workdir=W --out=I.npz [-- MAIN FLAGS]

Runs ``fsgan_jax.main`` with ``--distributed --config=configs/tiny.py`` exactly as the command line does, with
the localhost coordinator, process count and id given to ``jax.distributed.initialize`` (as main.py's
``--coordinator_address/--num_processes/--process_id`` where it has them; without arguments JAX only auto-detects
Cloud TPU, SLURM, Open MPI and Kubernetes). It records what this process did: the parameters of the
last saved train state (shard 0 of every leaf, after checking that all local replicas are equal), how many sample
PNGs it wrote, and its pid (TensorBoard event file names contain the writer's pid).
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '3')

import jax  # pylint: disable=g-import-not-at-top
import numpy as np


def _local_copy(x: jax.Array) -> np.ndarray:
  """Shard 0 of a replicated array, after checking that every local replica holds the same bits."""
  shards = [np.asarray(s.data) for s in x.addressable_shards]
  for s in shards[1:]:
    if not np.array_equal(s, shards[0], equal_nan=True):
      raise AssertionError('local replicas of a replicated array differ')
  return shards[0]


def main() -> None:
  parser = argparse.ArgumentParser()
  parser.add_argument('--coordinator', required=True)
  parser.add_argument('--num_processes', type=int, required=True)
  parser.add_argument('--process_id', type=int, required=True)
  parser.add_argument('--workdir', required=True)
  parser.add_argument('--out', required=True)
  args, main_flags = parser.parse_known_args()

  from fsgan_jax import checkpointing, input_pipeline  # pylint: disable=g-import-not-at-top
  from fsgan_jax import main as main_lib  # pylint: disable=g-import-not-at-top
  flags = main_lib.FLAGS
  if 'coordinator_address' in flags:  # main.py passes them to jax.distributed.initialize itself
    main_flags += [f'--coordinator_address={args.coordinator}', f'--num_processes={args.num_processes}',
                   f'--process_id={args.process_id}']
  else:  # what `--distributed` calls in fsgan_jax.main
    jax.distributed.initialize = functools.partial(
        jax.distributed.initialize, coordinator_address=args.coordinator, num_processes=args.num_processes,
        process_id=args.process_id)
  record = {'pid': os.getpid(), 'pngs': 0, 'saved_steps': []}
  last_state = {}

  save_png = input_pipeline.save_png

  def counting_save_png(*a, **k):
    record['pngs'] += 1
    return save_png(*a, **k)

  save = checkpointing.save

  def recording_save(manager, step, state, force=False):
    last_state['leaves'] = [_local_copy(x) for x in jax.tree_util.tree_leaves(state)]
    record['saved_steps'].append(int(step))
    return save(manager, step, state, force=force)

  input_pipeline.save_png = counting_save_png
  checkpointing.save = recording_save

  flags([sys.argv[0], '--distributed', f'--config={os.path.join(REPO, "configs", "tiny.py")}',
         f'--workdir={args.workdir}'] + [f for f in main_flags if f != '--'])
  main_lib.main([sys.argv[0]])
  record.update(process_index=jax.process_index(), process_count=jax.process_count(),
                device_count=jax.device_count(), local_device_count=jax.local_device_count())
  np.savez(args.out, *last_state['leaves'])
  with open(args.out + '.json', 'w') as f:
    json.dump(record, f)


if __name__ == '__main__':
  main()
