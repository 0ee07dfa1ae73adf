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
"""The resumable cell store of the downstream studies: one JSON file per finished cell (arm, k, seed).

A cell is written atomically as soon as it is computed (``write_json``) and carries the ``fingerprint`` of the
config sections it depends on (``data``, the model's section, ``augment``, ``gan``); ``read_cell`` returns None for
a missing cell and refuses one computed under another fingerprint, so a grid resumes where it stopped and never
mixes configs. ``record_invocation`` keeps every invocation's wall time in ``invocations.json``.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from typing import Any, Optional

import ml_collections

from fsgan_jax import errors


def cell_name(arm: str, k: int, seed: int) -> str:
  return f'k{k}_seed{seed}_{arm}'


def cell_path(workdir: str, arm: str, k: int, seed: int) -> str:
  """``WORKDIR/cells/<cell_name>.json``."""
  return os.path.join(workdir, 'cells', cell_name(arm, k, seed) + '.json')


def fingerprint(config: ml_collections.ConfigDict, model_section: str) -> str:
  """Hash of the fields that change what a cell computes (not the grid's extent, metrics or output paths): ``data``
  (less where it lives), ``model_section`` (``classifier`` or ``unet``), ``augment`` and ``gan``."""
  keep = {'data': {k: v for k, v in config.data.to_dict().items() if k not in ('manual_dir', 'tfds_data_dir')},
          model_section: config[model_section].to_dict(), 'augment': config.augment.to_dict(),
          'gan': config.gan.to_dict()}
  return hashlib.sha256(json.dumps(keep, sort_keys=True, default=list).encode()).hexdigest()[:16]


def write_json(path: str, obj: Any) -> None:
  """Atomic write (a killed run never leaves a half-written cell that looks finished)."""
  tmp = f'{path}.tmp{os.getpid()}'
  with open(tmp, 'w') as f:
    json.dump(obj, f)
  os.replace(tmp, path)


def read_cell(path: str, fp: str, model_section: str) -> Optional[dict[str, Any]]:
  """A finished cell's JSON, None if absent; ConfigError if it was computed under another fingerprint."""
  if not os.path.exists(path):
    return None
  with open(path) as f:
    cell = json.load(f)
  if cell.get('fingerprint') != fp:
    raise errors.ConfigError(f'{path} was computed with a different config (data/{model_section}/augment/gan '
                             'fields); use a new --workdir or the original config')
  return cell


def record_invocation(workdir: str, run_info: dict[str, Any]) -> list[dict[str, Any]]:
  """Appends this invocation's wall time and cell count to ``workdir/invocations.json``; returns all of them, so a
  resumed grid still reports what the first run took."""
  log_path = os.path.join(workdir, 'invocations.json')
  invocations = []
  if os.path.exists(log_path):
    with open(log_path) as f:
      invocations = json.load(f)
  invocations.append({'finished_utc': time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime()),
                      'wall_seconds': run_info['wall_seconds_this_invocation'],
                      'cells_computed': run_info['cells_computed_now'], 'devices': run_info['devices']})
  write_json(log_path, invocations)
  return invocations

