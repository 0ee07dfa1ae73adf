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
"""The run config: its validation (one place, before anything is compiled), defaults and derived values.

``validate(config, num_devices)`` checks every field a run depends on and raises one-line ``ConfigError``s naming
the field; ``with_defaults(config)`` fills fields that a config written by an older version lacks from
``default_config`` (so library code can read every field as an attribute); the channel helpers say what G
generates (contrasts, then label channels).
"""

from __future__ import annotations

import os

import jax.numpy as jnp
import ml_collections
import numpy as np

from fsgan_jax import default_config, errors, image_file, losses, masks, methods, metrics
from fsgan_jax.augment import diffaug
from fsgan_jax.evaluators import fid as fid_lib
from fsgan_jax.evaluators import inception
from fsgan_jax.models import fastgan

ConfigError = errors.ConfigError

DTYPES = {'float32': jnp.float32, 'bfloat16': jnp.bfloat16}


def with_defaults(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """A copy of ``config`` with every field of ``default_config`` it lacks (configs written by older versions)."""
  merged = default_config.get_config()
  _merge(merged, config.to_dict())
  return merged


def _merge(into: ml_collections.ConfigDict, values: dict) -> None:
  for k, v in values.items():
    if isinstance(v, dict) and k in into and isinstance(into[k], ml_collections.ConfigDict):
      _merge(into[k], v)
    else:
      with into.ignore_type():
        into[k] = tuple(v) if isinstance(v, list) else v


def image_channels(config: ml_collections.ConfigDict) -> int:
  """Contrast channels G generates: ``model.channels``, or ``data.channels`` when unset (and in older configs)."""
  return config.model.get('channels') or config.data.channels


def mask_channels(config: ml_collections.ConfigDict) -> int:
  """Label channels after the contrasts (``model.mask_channels``; 0 in older configs)."""
  return int(config.model.get('mask_channels') or 0)


def num_channels(config: ml_collections.ConfigDict) -> int:
  """All channels of G's output and D's input: contrasts then labels."""
  return image_channels(config) + mask_channels(config)


def channel_names(config: ml_collections.ConfigDict) -> list[str]:
  """A file-name suffix per channel (``data.contrast_names``, then ``mask`` or the BraTS sub-region names)."""
  names = [n.strip() for n in (config.data.get('contrast_names') or '').split(',') if n.strip()]
  return masks.channel_names(names, image_channels(config), mask_channels(config))


def validate(config: ml_collections.ConfigDict, num_devices: int = 1) -> None:
  """Checks every field a run depends on (eval included) and raises a one-line ConfigError naming the field.

  Runs before anything is loaded or compiled, by training, sampling, evaluation and the studies.
  """
  m = config.model
  if m.resolution not in fastgan.RESOLUTIONS:
    raise ConfigError(f'config.model.resolution={m.resolution} is not supported; choose one of {fastgan.RESOLUTIONS}')
  for name in ('ngf', 'ndf'):
    width = getattr(m, name)
    mult = fastgan.G_MULT if name == 'ngf' else fastgan.D_MULT
    smallest = min(int(v * width) for k, v in mult.items() if k <= max(m.resolution, 512))
    if not isinstance(width, int) or smallest < 1:
      raise ConfigError(f'config.model.{name}={width} is too small for resolution {m.resolution} '
                        '(every layer width int(mult * width) must be >= 1)')
  if m.decoder_width < 1 or int(0.5 * m.decoder_width) < 1:
    raise ConfigError(f'config.model.decoder_width={m.decoder_width} must be >= 2')
  if m.nz < 1:
    raise ConfigError(f'config.model.nz={m.nz} must be positive')
  if m.dtype not in DTYPES:
    raise ConfigError(f'config.model.dtype={m.dtype!r}; choose one of {sorted(DTYPES)}')
  tfds_source = bool(config.data.get('tfds_name'))
  if not isinstance(config.data.channels, int) or config.data.channels < 1 or (
      not tfds_source and config.data.channels not in (1, 3)):
    raise ConfigError(f'config.data.channels={config.data.channels} must be 1 or 3 for an image folder '
                      '(a TFDS source: its number of contrasts)')
  if m.get('channels') is not None and m.channels != config.data.channels:
    raise ConfigError(f'config.model.channels={m.channels} differs from config.data.channels='
                      f'{config.data.channels} (the contrasts the data provides); set both to the same value')
  try:
    masks.check_channels(image_channels(config), mask_channels(config))
  except ValueError as e:
    raise ConfigError(str(e)) from None
  if mask_channels(config) == 3 and config.data.get('tfds_name') != 'brats':
    raise ConfigError('config.model.mask_channels=3 (BraTS sub-regions) needs config.data.tfds_name=\'brats\'')
  if mask_channels(config) and not tfds_source:
    mask_dir = config.data.get('mask_dir')
    if mask_dir is None and config.data.dir is not None:
      raise ConfigError(f'config.model.mask_channels={mask_channels(config)} with config.data.dir='
                        f'{config.data.dir!r}: set config.data.mask_dir to the folder of its masks')
    if mask_dir is not None and not os.path.isdir(os.path.expanduser(mask_dir)):
      raise ConfigError(f'config.data.mask_dir={mask_dir!r} is not a directory')
  names = [n for n in (config.data.get('contrast_names') or '').split(',') if n.strip()]
  if names and len(names) != image_channels(config):
    raise ConfigError(f'config.data.contrast_names={config.data.contrast_names!r} names {len(names)} contrast(s) '
                      f'but there are {image_channels(config)}')
  if config.batch_size < 1 or config.batch_size % num_devices:
    raise ConfigError(f'config.batch_size={config.batch_size} must be a positive multiple of the number of '
                      f'devices ({num_devices})')
  for name in ('num_steps', 'log_every', 'sample_every', 'checkpoint_every', 'keep_checkpoints',
               'num_sample_images'):
    if getattr(config, name) < 1:
      raise ConfigError(f'config.{name}={getattr(config, name)} must be >= 1')
  if not 0.0 <= config.ema_decay < 1.0:
    raise ConfigError(f'config.ema_decay={config.ema_decay} must be in [0, 1)')
  if not config.lr > 0 or not np.isfinite(config.lr):
    raise ConfigError(f'config.lr={config.lr} must be a positive finite number')
  for name in ('beta1', 'beta2'):
    if not 0.0 <= getattr(config, name) < 1.0:
      raise ConfigError(f'config.{name}={getattr(config, name)} must be in [0, 1)')
  intensity = config.data.get('intensity', 'auto')
  if intensity not in image_file.INTENSITIES:
    raise ConfigError(f'config.data.intensity={intensity!r}; choose one of {list(image_file.INTENSITIES)}')
  restore_step = config.get('restore_step')
  if restore_step is not None and (not isinstance(restore_step, int) or restore_step < 1):
    raise ConfigError(f'config.restore_step={restore_step!r} must be a checkpoint step >= 1 (None = the latest)')
  if config.data.limit < 0:
    raise ConfigError(f'config.data.limit={config.data.limit} must be >= 0 (0 = all images)')
  if config.data.get('tfds_name'):
    if not config.data.get('tfds_split'):
      raise ConfigError(f'config.data.tfds_split must be set when config.data.tfds_name={config.data.tfds_name!r} '
                        '(e.g. fewshot_k10_seed0, train)')
  elif config.data.dir is not None and not os.path.isdir(os.path.expanduser(config.data.dir)):
    raise ConfigError(f'config.data.dir={config.data.dir!r} is not a directory')
  heldout = config.eval.get('heldout_dir') if 'eval' in config else None
  if heldout is not None and not os.path.isdir(os.path.expanduser(heldout)):
    raise ConfigError(f'config.eval.heldout_dir={heldout!r} is not a directory')
  try:
    diffaug.parse_policy(config.diffaug_policy)
  except ValueError as e:
    raise ConfigError(f'config.diffaug_policy: {e}') from None
  if config.recon_loss not in losses.RECON_LOSSES:
    raise ConfigError(f'config.recon_loss={config.recon_loss!r}; choose one of {sorted(losses.RECON_LOSSES)}')
  if config.sample_bn not in ('batch', 'running'):
    raise ConfigError(f"config.sample_bn={config.sample_bn!r}; choose 'batch' or 'running'")
  methods.validate(config)
  if 'eval' in config:
    validate_eval(config, num_devices, error=ConfigError)


def validate_eval(config: ml_collections.ConfigDict, num_devices: int = 1,
                  error: type[errors.FsganError] = errors.EvalError) -> None:
  """Checks ``config.eval``; raises ``error`` (EvalError for --mode=eval, ConfigError for training) naming the field."""
  e = config.eval
  for name in ('metrics', 'train_metrics'):
    unknown = [m for m in e[name] if m not in metrics.METRICS]
    if unknown:
      raise error(f'config.eval.{name} has unknown metric(s) {unknown}; available: {list(metrics.METRICS)}')
  if e.fid_method not in fid_lib.FRECHET_METHODS:
    raise error(f'config.eval.fid_method={e.fid_method!r}; choose one of {list(fid_lib.FRECHET_METHODS)}')
  if e.resize not in inception.RESIZE_MODES:
    raise error(f'config.eval.resize={e.resize!r}; choose one of {list(inception.RESIZE_MODES)}')
  if e.batch_size < 1 or e.batch_size % num_devices:
    raise error(f'config.eval.batch_size={e.batch_size} must be a positive multiple of the number of devices '
                f'({num_devices})')
  for name in ('num_samples', 'train_num_samples'):
    if e[name] < 2:
      raise error(f'config.eval.{name}={e[name]} must be >= 2')
  if e.every < 0:
    raise error(f'config.eval.every={e.every} must be >= 0 (0 = no evaluation during training)')
  paired = bool(config.model.get('mask_channels'))
  for name in ('metrics', 'train_metrics'):
    need_labels = [m for m in e[name] if metrics.METRICS[m].needs_labels]
    if not paired and need_labels:
      raise error(f'config.eval.{name} asks for {need_labels}, which need a generator with label channels '
                  '(config.model.mask_channels > 0)')
  if 'label_consistency' in (*e.metrics, *e.train_metrics):
    size, res = e.get('segmenter_size', 128), config.model.resolution
    if not isinstance(size, int) or size < 8 or res % min(size, res):
      raise error(f'config.eval.segmenter_size={size} must be an integer >= 8 that divides config.model.resolution='
                  f'{res} (or is larger: then the resolution is used)')
  if e.every and e.best_metric and e.best_metric.split('_')[0] not in {'fid', 'kid'}:
    raise error(f"config.eval.best_metric={e.best_metric!r}; use e.g. 'fid_train' or 'kid_train' (lower is "
                "better), or '' for none")
