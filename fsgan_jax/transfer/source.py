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
"""The source GAN of a transfer run: load it from its training workdir and start the target from it.

A source is any fsgan_jax FastGAN workdir (``configs/pretrain_source.py`` trains one on healthy brains). The
target must have the same architecture (resolution, widths, nz, channels, decoder width, tanh); method-specific
extras of the target (MineGAN's miner, a mixture latent, CDC's patch head) are not in the source and keep their
own initialisation. As the CDC / EWC / MineGAN code: the target G starts from the source G, its EMA from the source
EMA, D from the source D; the optimisers start fresh and the step at 0.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from fsgan_jax import config_lib, errors, fileio, workdir as workdir_lib
from fsgan_jax.train_state import TrainState

SourceError = errors.SourceError


def _get(config: ml_collections.ConfigDict, field: str) -> Any:
  node = config
  for part in field.split('.'):
    node = node.get(part) if hasattr(node, 'get') else None
  return node


def load_source(config: ml_collections.ConfigDict, mesh) -> tuple[ml_collections.ConfigDict, TrainState, int]:
  """``(source_config, source_state, step)`` from ``config.transfer.source_workdir`` (replicated over ``mesh``).

  Raises:
    SourceError: naming the workdir and the field when it is missing, untrained, or differs from the target.
  """
  workdir = config.transfer.source_workdir
  if not workdir:
    raise SourceError(f'config.transfer.method={config.transfer.method!r} needs config.transfer.source_workdir '
                      '(a workdir trained with configs/pretrain_source.py)')
  workdir = fileio.abspath(workdir)  # a gs:// URL stays as it is
  if not fileio.isdir(workdir):
    raise SourceError(f'config.transfer.source_workdir={workdir!r} is not a directory')
  try:
    src_config = workdir_lib.read_config(workdir)
  except (FileNotFoundError, errors.ConfigError) as e:
    raise SourceError(f'config.transfer.source_workdir: {e}') from None
  for field in workdir_lib.MODEL_FIELDS:
    a, b = _get(src_config, field), _get(config, field)
    if a != b:
      raise SourceError(f'config.{field}={b!r} differs from the source workdir {workdir} ({field}={a!r}); '
                        'transfer needs the same architecture')
  src_m, m = config_lib.mask_channels(src_config), config_lib.mask_channels(config)
  if src_m not in (0, m):
    raise SourceError(f'config.model.mask_channels={m} differs from the source workdir {workdir} '
                      f'(mask_channels={src_m}); a source has the same label channels or none')
  if src_m != m and config.transfer.method in ('cdc', 'ewc'):
    raise SourceError(f'config.transfer.method={config.transfer.method!r} with config.model.mask_channels={m} needs a '
                      f'source with the same label channels; {workdir} is image-only (its G has no mask output to '
                      "compare or anchor): use method='finetune' or a paired source")
  if src_config.get('latent', 'gaussian') != 'gaussian':
    raise SourceError(f'the source workdir {workdir} uses latent={src_config.latent!r}; a source GAN must use the '
                      'plain Gaussian latent')
  src_config = config_lib.with_defaults(src_config)
  try:
    run = workdir_lib.load_run(workdir, config.transfer.get('source_step'), mesh=mesh, config=src_config,
                              older_hint='config.transfer.source_step=N')
  except FileNotFoundError as e:
    if config.transfer.get('source_step') is None:  # only "no checkpoint at all" remains
      raise SourceError(f'config.transfer.source_workdir={workdir!r} has no checkpoint: train the source '
                        'first') from None
    raise SourceError(f'config.transfer.source_step: {e}') from None
  return src_config, run.state, run.step


def _merge(target: Any, source: Any, where: str) -> Any:
  """``target`` with every leaf that also exists in ``source`` replaced by the source's.

  Shapes must agree, except where the target has extra label channels (a paired target, ``model.mask_channels``,
  from an image-only source): a leaf larger along exactly one axis gets the source in its leading slice (G's
  output convs and D's decoders: the contrast outputs; D's input convs: the contrast inputs) and keeps its own
  initialisation for the label channels. Spectral-norm power-iteration vectors follow the same rule (they are only
  the iteration's starting point).
  """
  if isinstance(target, dict):
    return {k: (_merge(v, source[k], f'{where}/{k}') if k in source else v) for k, v in target.items()}
  ts, ss = tuple(np.shape(target)), tuple(np.shape(source))
  if ts != ss:
    grown = [i for i, (a, b) in enumerate(zip(ts, ss)) if a != b]
    if len(ts) != len(ss) or len(grown) != 1 or ts[grown[0]] < ss[grown[0]]:
      raise SourceError(f'{where}: source shape {ss} != target shape {ts}')
    index = tuple(slice(0, n) for n in ss)
    return jnp.asarray(target).at[index].set(source)
  return jnp.copy(source)  # own buffers: the train step donates the state, the source stays a constant input


def init_from_source(target: TrainState, source: TrainState, g_tx, d_tx) -> TrainState:
  """The target's initial state: G, G's EMA, D and their statistics from the source, fresh optimisers, step 0."""
  g_params = _merge(target.g_params, source.g_params, 'g_params')
  d_params = _merge(target.d_params, source.d_params, 'd_params')
  return target.replace(
      g_params=g_params, g_stats=_merge(target.g_stats, source.g_stats, 'g_stats'),
      d_params=d_params, d_stats=_merge(target.d_stats, source.d_stats, 'd_stats'),
      ema_params=_merge(target.ema_params, source.ema_params, 'ema_params'),
      g_opt_state=_init_like(g_tx, g_params, target.g_opt_state),
      d_opt_state=_init_like(d_tx, d_params, target.d_opt_state))


def _init_like(tx, params: Any, like: Any) -> Any:
  """``tx.init(params)`` placed as ``like`` (the target's fresh optimiser state) is.

  Without the explicit placement the scalar ``count`` comes out of ``jit`` without the mesh, the train step's
  output has it on the mesh, and the step would be traced and compiled a second time after its first call.
  """
  return jax.jit(tx.init, out_shardings=jax.tree_util.tree_map(lambda x: x.sharding, like))(params)
