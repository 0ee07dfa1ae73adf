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
"""A training workdir: its ``config.json`` (written once, compared on resume) and ``load_run`` to restore a run.

``load_run(workdir, step)`` is how sampling, evaluation, transfer and the studies read a trained generator: the
stored config (with defaults for fields older versions did not write), the GAN built from it, the mesh, and the
restored state of the latest (or given) checkpoint.
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from typing import Any, Optional

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from absl import logging

from fsgan_jax import checkpointing, config_lib, errors, fileio, gan, lock, pretrained, steps, train_state

# Fields that make a generator's parameters (transfer needs them equal between source and target).
MODEL_FIELDS = ('model.resolution', 'model.ngf', 'model.ndf', 'model.nz', 'model.decoder_width', 'model.tanh',
                'data.channels')

# Fields that change what a checkpoint holds or how it was produced: a workdir never continues with other values.
# (Everything not in _SAFE_FIELDS is treated like these.)
SHAPE_FIELDS = (*MODEL_FIELDS, 'model.dtype', 'recon_loss', 'diffaug_policy', 'batch_size', 'seed', 'lr', 'beta1',
                'beta2', 'ema_decay')
# Fields that only change bookkeeping, evaluation or where the same data lives: may change with
# ``config.allow_config_change=True``. ``num_steps`` may always change (extending a run); ``allow_config_change``,
# ``restore_step`` (where this start resumes) and ``data.strict`` (input checks) are never compared.
_SAFE_FIELDS = ('num_steps', 'log_every', 'sample_every', 'checkpoint_every', 'keep_checkpoints', 'num_sample_images',
                'sample_bn', 'data.dir', 'data.tfds_data_dir', 'eval.*')
_IGNORED_FIELDS = ('allow_config_change', 'restore_step', 'data.strict')


def _flatten(d: dict, prefix: str = '') -> dict[str, Any]:
  out = {}
  for k, v in d.items():
    if isinstance(v, dict):
      out.update(_flatten(v, f'{prefix}{k}.'))
    else:
      out[f'{prefix}{k}'] = v
  return out


def _is_safe(field: str) -> bool:
  return field not in SHAPE_FIELDS and any(field == f or (f.endswith('.*') and field.startswith(f[:-1]))
                                            for f in _SAFE_FIELDS)


def config_changes(config: ml_collections.ConfigDict, workdir: str) -> dict[str, tuple[Any, Any]]:
  """``{field: (stored value, new value)}`` for every field that differs from ``WORKDIR/config.json``.

  Fields missing from the stored config (written by an older version) are not compared.
  """
  if not fileio.exists(fileio.join(workdir, 'config.json')):
    return {}
  old = _flatten(read_config(workdir).to_dict())
  new = _flatten(json.loads(config.to_json()))  # JSON round trip: tuples compare equal to stored lists
  return {k: (old[k], v) for k, v in sorted(new.items())
          if k in old and k not in _IGNORED_FIELDS and old[k] != v}


def check_config_compatible(config: ml_collections.ConfigDict, workdir: str) -> dict[str, tuple[Any, Any]]:
  """Refuses to resume a workdir whose stored config differs (nothing touched); returns the allowed changes.

  ``num_steps`` may always change. With ``config.allow_config_change`` the fields in ``_SAFE_FIELDS`` may change
  too; any other difference (model shapes, losses, augmentation, optimizer, seed, batch) always refuses. The error
  lists every differing field.
  """
  changes = config_changes(config, workdir)
  allow = bool(config.get('allow_config_change', False))
  refused = {k: v for k, v in changes.items() if k != 'num_steps' and not (allow and _is_safe(k))}
  if refused:
    listed = '; '.join(f'{k}: workdir has {o!r}, config has {n!r}' for k, (o, n) in refused.items())
    unsafe = [k for k in refused if not _is_safe(k)]
    hint = ('use a new --workdir or the original values' if unsafe else
            'set --config.allow_config_change=True to change them, or use the original values')
    raise errors.ConfigError(f'{workdir} holds a run with a different config ({listed}); {hint}')
  return changes


def write_config(config: ml_collections.ConfigDict, workdir: str, replace: bool = False) -> None:
  """Stores the config (process 0) so sampling and resumption can read it back.

  Written on first start; with ``replace`` (an allowed config change) the old one is kept as
  ``config.<timestamp>.json`` and the new one replaces it, so ``config.json`` describes the latest checkpoints.
  """
  path = fileio.join(workdir, 'config.json')
  if jax.process_index() != 0 or (fileio.exists(path) and not replace):
    return
  fileio.makedirs(workdir)
  if fileio.exists(path):
    stamp = time.strftime('%Y%m%d-%H%M%S', time.gmtime())
    backup = fileio.join(workdir, f'config.{stamp}.json')
    n = 1
    while fileio.exists(backup):
      backup, n = fileio.join(workdir, f'config.{stamp}-{n}.json'), n + 1
    fileio.write_text_atomic(backup, fileio.read_text(path))
  fileio.write_text_atomic(path, config.to_json(indent=2))


def read_config(workdir: str) -> ml_collections.ConfigDict:
  """``WORKDIR/config.json`` as written (fields a newer version added are absent: see ``config_lib.with_defaults``)."""
  path = fileio.join(workdir, 'config.json')
  if not fileio.exists(path):
    raise FileNotFoundError(f'{path} not found: is {workdir!r} a fsgan_jax training workdir?')
  try:
    return ml_collections.ConfigDict(json.loads(fileio.read_text(path)))
  except (json.JSONDecodeError, TypeError, AttributeError) as e:
    raise errors.ConfigError(f'{path} is not a valid config file ({e}); restore it from config.<timestamp>.json '
                             'or use a new --workdir') from None


@dataclasses.dataclass
class Run:
  """A restored training run."""
  workdir: str
  config: ml_collections.ConfigDict
  setup: steps.GanSetup
  mesh: Mesh
  state: train_state.TrainState  # of an exported generator: only ema_params and g_stats are the stored ones
  step: int
  exported: bool = False  # an exported generator folder (``fsgan_jax.pretrained``): read-only


def load_run(workdir: str, step: Optional[int] = None, mesh: Optional[Mesh] = None,
             config: Optional[ml_collections.ConfigDict] = None, older_hint: str = '--step=N') -> Run:
  """Restores the checkpoint ``step`` (default: the latest) of ``workdir``, replicated over ``mesh`` (default: all).

  ``workdir`` may also be an exported generator (``fsgan_jax.pretrained``): its checksums are verified and its EMA
  generator restored (``step`` must be None or its step).
  ``config``: the run's config if already read (e.g. checked by the caller); default ``read_config(workdir)``.
  Reading a workdir that another process is training is fine (only complete checkpoints are read): it is logged.
  Raises FileNotFoundError (no config.json, no checkpoint, no such step), ConfigError (unreadable config.json) or
  WorkdirError (a damaged checkpoint; ``older_hint`` says how to choose an older one).
  """
  workdir = fileio.abspath(workdir)  # a gs:// URL stays as it is
  if pretrained.is_pretrained(workdir):
    return _load_exported(workdir, step, mesh, config)
  config = config_lib.with_defaults(read_config(workdir)) if config is None else config
  setup = gan.build_setup(config)
  mesh = gan.make_mesh() if mesh is None else mesh
  manager = checkpointing.make_manager(workdir, config.keep_checkpoints, config.checkpoint_every)
  if manager.latest_step() is None:
    raise FileNotFoundError(f'no checkpoint in {os.path.join(workdir, "checkpoints")}: train first')
  state, step = checkpointing.restore(manager, gan.create_state(config, setup, mesh), step, older_hint)
  training = lock.holder(workdir)
  if training:
    logging.warning('%s is being trained by %s: read its complete checkpoint of step %d', workdir, training, step)
  return Run(workdir=workdir, config=config, setup=setup, mesh=mesh, state=state, step=int(step))


def _load_exported(path: str, step: Optional[int], mesh: Optional[Mesh],
                   config: Optional[ml_collections.ConfigDict]) -> Run:
  config_json, ema_params, g_stats, stored_step = pretrained.load(path)
  if step is not None and step != stored_step:
    raise FileNotFoundError(f'{path} is an exported generator of step {stored_step}; --step={step} is not in it')
  if config is None:
    config = config_lib.with_defaults(ml_collections.ConfigDict(json.loads(config_json)))
  setup = gan.build_setup(config)
  mesh = gan.make_mesh() if mesh is None else mesh
  state = gan.create_state(config, setup, mesh)
  repl = NamedSharding(mesh, P())
  try:
    ema_params = jax.tree_util.tree_map(lambda t, v: jax.device_put(np.asarray(v, t.dtype).reshape(t.shape), repl),
                                        state.ema_params, ema_params)
    g_stats = jax.tree_util.tree_map(lambda t, v: jax.device_put(np.asarray(v, t.dtype).reshape(t.shape), repl),
                                     state.g_stats, g_stats)
  except (ValueError, TypeError) as e:
    raise errors.ConfigError(f'{path}: {pretrained.GENERATOR} does not fit the generator of its config.json '
                             f'({str(e).splitlines()[0][:200]})') from None
  state = state.replace(ema_params=ema_params, g_stats=g_stats, step=jnp.asarray(stored_step, jnp.int32))
  return Run(workdir=path, config=config, setup=setup, mesh=mesh, state=state, step=stored_step, exported=True)
