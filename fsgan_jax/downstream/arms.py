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
"""The arms of a downstream study's grid (arm x k x seed) and the config checks both studies share.

Arms (``parse_arm``): ``real``; ``real_aug`` (classic augmentation on every batch); ``syn{r}x`` (real +
``synthetic_count(n, r)`` synthetic tumor examples); ``syn_only`` (n synthetic examples, no real tumor example).
``positive_pool`` is the one place that mixes real and synthetic examples for an arm.
"""

from __future__ import annotations

import dataclasses
import math
import re
from typing import Optional, Sequence

import ml_collections
import numpy as np

from fsgan_jax import errors
from fsgan_jax.models import fastgan


@dataclasses.dataclass(frozen=True)
class Arm:
  """What one arm trains on: real tumor slices or not, synthetic ratio (0 = none), classic augmentation or not."""
  name: str
  real_positives: bool = True
  ratio: float = 0.0
  augment: bool = False

  @property
  def synthetic(self) -> bool:
    return self.ratio > 0


_SYN_RE = re.compile(r'^syn(?P<r>[-+]?\d+(?:\.\d+)?)x$')


def parse_arm(name: str) -> Arm:
  """``real`` | ``real_aug`` | ``syn{r}x`` (real + r x synthetic, r > 0) | ``syn_only``; else ConfigError."""
  if name == 'real':
    return Arm(name)
  if name == 'real_aug':
    return Arm(name, augment=True)
  if name == 'syn_only':
    return Arm(name, real_positives=False, ratio=1.0)
  m = _SYN_RE.match(name)
  if m is None:
    raise errors.ConfigError(
        f'config.arms: unknown arm {name!r} (known: real, real_aug, syn<r>x e.g. syn0.5x, syn_only)')
  ratio = float(m['r'])
  if not ratio > 0:
    raise errors.ConfigError(f'config.arms: arm {name!r} has synthetic ratio {ratio} <= 0')
  return Arm(name, ratio=ratio)


def synthetic_count(n_pos: int, ratio: float) -> int:
  """Synthetic tumor slices for ``ratio`` x ``n_pos`` real ones: ``floor(ratio * n_pos + 0.5)`` (half rounds up)."""
  return int(math.floor(ratio * n_pos + 0.5))


def positive_pool(real_pos: np.ndarray, synthetic: Optional[np.ndarray], arm: Arm) -> np.ndarray:
  """The tumor-class images of ``arm``: real ones and/or the first ``synthetic_count`` synthetic ones."""
  parts = [real_pos] if arm.real_positives else []
  if arm.synthetic:
    n = synthetic_count(len(real_pos), arm.ratio)
    if synthetic is None or len(synthetic) < n:
      raise ValueError(f'arm {arm.name}: needs {n} synthetic images, got {0 if synthetic is None else len(synthetic)}')
    parts.append(synthetic[:n])
  return np.concatenate(parts).astype(np.float32)


# ------------------------------------------------------------------------------------------------------- validation


def validate_grid(config: ml_collections.ConfigDict) -> list[Arm]:
  """Checks ``arms``, ``ks`` and ``seeds``; returns the parsed arms."""
  arms = [parse_arm(a) for a in config.arms]
  if not arms or len({a.name for a in arms}) != len(arms):
    raise errors.ConfigError(f'config.arms={tuple(config.arms)}: need at least one arm and no duplicates')
  if any(a.name != 'real' for a in arms) and 'real' not in config.arms:
    raise errors.ConfigError('config.arms: the paired comparison needs the "real" arm')
  ks, seeds = tuple(config.ks), tuple(config.seeds)
  if not ks or any(not isinstance(k, int) or k < 1 for k in ks) or len(set(ks)) != len(ks):
    raise errors.ConfigError(f'config.ks={ks}: need distinct integers >= 1')
  if not seeds or any(not isinstance(s, int) or s < 0 for s in seeds) or len(set(seeds)) != len(seeds):
    raise errors.ConfigError(f'config.seeds={seeds}: need distinct integers >= 0')
  return arms


def validate_gan(config: ml_collections.ConfigDict, arms: Sequence[Arm], num_devices: int = 1) -> None:
  """Checks the ``gan`` section."""
  d = config.data
  if any(a.synthetic for a in arms) and config.gan.workdir is None:
    if d.resolution not in fastgan.RESOLUTIONS:
      raise errors.ConfigError(f'config.data.resolution={d.resolution}: the GAN needs one of {fastgan.RESOLUTIONS}')
    if config.gan.num_steps < 1 or config.gan.batch_size % num_devices:
      raise errors.ConfigError(f'config.gan.num_steps={config.gan.num_steps} / batch_size={config.gan.batch_size}: '
                               'need >= 1 steps and a batch that is a multiple of the number of devices '
                               f'({num_devices})')
  if config.gan.train_size < 0:
    raise errors.ConfigError(
        f'config.gan.train_size={config.gan.train_size} must be >= 0 (0 = every tumor slice once)')
  if config.gan.sample_batch < 1:
    raise errors.ConfigError(f'config.gan.sample_batch={config.gan.sample_batch} must be >= 1')


def validate_bootstrap(m: ml_collections.ConfigDict) -> None:
  """Checks ``metrics.n_boot`` and ``metrics.level``."""
  if m.n_boot < 10 or not 0 < m.level < 1:
    raise errors.ConfigError(
        f'config.metrics.n_boot={m.n_boot} / level={m.level}: need n_boot >= 10, 0 < level < 1')


def validate_batches(section: ml_collections.ConfigDict, name: str, num_devices: int) -> None:
  """``config.<name>.batch_size`` and ``eval_batch_size`` must be positive multiples of the device count (sharding)."""
  for field in ('batch_size', 'eval_batch_size'):
    value = getattr(section, field)
    if value < 1 or value % num_devices:
      raise errors.ConfigError(f'config.{name}.{field}={value} must be a positive multiple of the number of devices '
                               f'({num_devices})')
