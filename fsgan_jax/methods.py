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
"""The few-shot methods as config switches: their checks, the train-step settings and the constants they need.

A method is fields in ``default_config`` (off by default), their checks in :func:`validate`, the step settings in
:func:`setup_kwargs` (``steps.GanSetup`` fields; optimiser changes in :func:`generator_optimizer`) and constants in
:func:`consts`, here; and its loss terms in ``steps.gan_iteration``. Adding one touches those three files:
``default_config.py``, this module and ``steps.py``.

Methods: APA (``augment.apa``), a learnable Gaussian-mixture latent (``latent='gmm'``), and transfer from a source
GAN (``transfer.method``: ``finetune``, ``cdc``, ``ewc``, ``minegan``).
"""

from __future__ import annotations

import functools
from typing import Any, Optional

import jax
import ml_collections
import optax

from fsgan_jax import compiler, errors, latents, train_state
from fsgan_jax.transfer import cdc, ewc

TRANSFER_METHODS = ('finetune', 'cdc', 'ewc', 'minegan')


def method(config: ml_collections.ConfigDict) -> Optional[str]:
  """The transfer method of ``config`` (None = training from scratch)."""
  return config.get('transfer', {}).get('method')


def validate(config: ml_collections.ConfigDict) -> None:
  """The few-shot method fields (augment.apa*, latent, gmm.*, transfer.*)."""
  latent = config.get('latent', 'gaussian')
  if latent not in latents.LATENTS:
    raise errors.ConfigError(f'config.latent={latent!r}; choose one of {list(latents.LATENTS)}')
  if 'augment' in config and config.augment.apa:
    a = config.augment
    if not 0.0 < a.apa_target < 1.0:
      raise errors.ConfigError(f'config.augment.apa_target={a.apa_target} must be in (0, 1)')
    if a.apa_interval < 1 or not a.apa_kimg > 0:
      raise errors.ConfigError(f'config.augment.apa_interval={a.apa_interval} must be >= 1 and '
                               f'config.augment.apa_kimg={a.apa_kimg} > 0')
  if latent == 'gmm':
    if config.gmm.components < 1:
      raise errors.ConfigError(f'config.gmm.components={config.gmm.components} must be >= 1')
    if config.gmm.sigma_reg < 0:
      raise errors.ConfigError(f'config.gmm.sigma_reg={config.gmm.sigma_reg} must be >= 0')
  name = method(config)
  if name is None:
    if latent == 'miner':
      raise errors.ConfigError("config.latent='miner' is MineGAN's miner: it needs config.transfer.method='minegan' "
                               'and a source workdir')
    return
  t = config.transfer
  if name not in TRANSFER_METHODS:
    raise errors.ConfigError(f'config.transfer.method={name!r}; choose one of {list(TRANSFER_METHODS)} or None')
  if not t.source_workdir:
    raise errors.ConfigError(f'config.transfer.method={name!r} needs config.transfer.source_workdir (a workdir '
                             'trained with configs/pretrain_source.py)')
  if (name == 'minegan') != (latent == 'miner'):
    raise errors.ConfigError(f"config.transfer.method={name!r} with config.latent={latent!r}: MineGAN uses "
                             "latent='miner' and the miner is only used by MineGAN")
  if name == 'cdc' and latent != 'gaussian':
    raise errors.ConfigError(f"config.latent={latent!r} with config.transfer.method='cdc': CDC compares the target "
                             "and the source generator on the same Gaussian latents; use latent='gaussian'")
  for field in ('cdc_weight', 'ewc_weight', 'cdc_anchor_std', 'minegan_stage1_steps', 'cdc_num_anchors'):
    if t[field] < 0:
      raise errors.ConfigError(f'config.transfer.{field}={t[field]} must be >= 0')
  if t.cdc_batch < 2:
    raise errors.ConfigError(f'config.transfer.cdc_batch={t.cdc_batch} must be >= 2 (pairwise similarities)')
  if t.cdc_anchor_every < 0 or t.ewc_fisher_batches < 1:
    raise errors.ConfigError(f'config.transfer.cdc_anchor_every={t.cdc_anchor_every} must be >= 0 and '
                             f'config.transfer.ewc_fisher_batches={t.ewc_fisher_batches} >= 1')


def setup_kwargs(config: ml_collections.ConfigDict, generator: Any) -> dict[str, Any]:
  """The ``steps.GanSetup`` fields that switch the methods of ``config`` on (empty for plain FastGAN)."""
  kw: dict[str, Any] = {}
  if 'augment' in config and config.augment.apa:
    kw.update(apa=True, apa_target=config.augment.apa_target, apa_interval=config.augment.apa_interval,
              apa_kimg=float(config.augment.apa_kimg))
  if generator.latent == 'gmm':
    kw['gmm_sigma_reg'] = float(config.gmm.sigma_reg)
  name, t = method(config), config.get('transfer')
  if name == 'cdc':
    kw.update(cdc_weight=float(t.cdc_weight), cdc_batch=t.cdc_batch, cdc_anchor_every=t.cdc_anchor_every,
              cdc_anchor_std=float(t.cdc_anchor_std), source_generator=generator.clone(latent='gaussian'))
  elif name == 'ewc':
    kw['ewc_weight'] = float(t.ewc_weight)
  elif name == 'minegan' and t.minegan_stage1_steps:
    kw['freeze_g_steps'] = t.minegan_stage1_steps
  return kw


def generator_optimizer(config: ml_collections.ConfigDict, tx: optax.GradientTransformation
                        ) -> optax.GradientTransformation:
  """G's optimiser: ``tx``, or for MineGAN with a stage 1 separate Adam states for the miner and the rest of G (so
  stage 2 starts G's Adam fresh)."""
  if method(config) == 'minegan' and config.transfer.minegan_stage1_steps:
    return optax.multi_transform({'miner': tx, 'generator': tx},
                                 lambda params: {k: ('miner' if k == 'miner' else 'generator') for k in params})
  return tx


def consts(config: ml_collections.ConfigDict, generator: Any, discriminator: Any, num_images: int,
           source: Optional[train_state.TrainState]) -> dict[str, Any]:
  """The methods' constant inputs of the train step (unplaced).

  ``anchors`` (CDC: ``cdc_num_anchors`` latents, default one per training image), ``source_g`` (CDC: the frozen
  source G's parameters and statistics: the raw G that the target also starts from, as the official code loads
  the same ``ckpt['g']`` into both, so the distance-consistency loss is 0 at the first step), ``source_params`` and ``fisher`` (EWC: the source G's parameters and
  their Fisher information, estimated once here; deterministic in ``config.seed``).
  """
  out: dict[str, Any] = {}
  name, t = method(config), config.get('transfer')
  key = jax.random.fold_in(jax.random.PRNGKey(config.seed), 0x7C0)
  if name in ('cdc', 'ewc') and source is None:
    raise ValueError(f'transfer method {name!r} needs the source state')
  if name == 'cdc':
    out['source_g'] = {'params': source.g_params, 'batch_stats': source.g_stats}
    out['anchors'] = cdc.make_anchors(key, t.cdc_num_anchors or num_images, config.model.nz)
  elif name == 'ewc':
    g_vars = {'params': source.g_params, 'batch_stats': source.g_stats}
    d_vars = {'params': source.d_params, 'batch_stats': source.d_stats}
    fisher_fn = jax.jit(functools.partial(ewc.fisher_information, generator.clone(latent='gaussian'),
                                          discriminator.clone(patch_head=False),
                                          batches=t.ewc_fisher_batches, batch=config.batch_size),
                        compiler_options=compiler.options())
    out['source_params'] = source.g_params
    out['fisher'] = fisher_fn(g_vars, d_vars, key)
  return out
