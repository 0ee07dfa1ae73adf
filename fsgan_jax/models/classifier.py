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
"""A small ResNet slice classifier (tumor vs no tumor) for the downstream study in ``experiments/classify.py``.

Pre-activation residual blocks (He et al., ECCV 2016) with GroupNorm instead of BatchNorm: the classifier is trained
on few, highly correlated slices with batches sharded over devices, and GroupNorm has no batch statistics, so a
step is the same on any number of devices and evaluation needs no running averages. Global average pooling and
one logit (positive = tumor).
"""

from __future__ import annotations

from typing import Sequence

import flax.linen as nn
import jax.numpy as jnp


def group_count(channels: int, groups: int) -> int:
  """The largest divisor of ``channels`` that is <= ``groups`` (GroupNorm needs channels % groups == 0)."""
  g = max(1, min(groups, channels))
  while channels % g:
    g -= 1
  return g


class ResidualBlock(nn.Module):
  """Pre-activation block: GN-ReLU-conv3x3(stride)-GN-ReLU-conv3x3, plus a 1x1 projection when the shape changes."""
  features: int
  stride: int = 1
  groups: int = 8
  dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
    conv = lambda f, k, s, name: nn.Conv(f, (k, k), (s, s), padding='SAME', use_bias=False, dtype=self.dtype,
                                         name=name)
    y = nn.relu(nn.GroupNorm(group_count(x.shape[-1], self.groups), dtype=self.dtype, name='norm1')(x))
    shortcut = x
    if self.stride != 1 or x.shape[-1] != self.features:
      shortcut = conv(self.features, 1, self.stride, 'proj')(y)
    y = conv(self.features, 3, self.stride, 'conv1')(y)
    y = nn.relu(nn.GroupNorm(group_count(self.features, self.groups), dtype=self.dtype, name='norm2')(y))
    y = conv(self.features, 3, 1, 'conv2')(y)
    return shortcut + y


class ResNetClassifier(nn.Module):
  """Stem conv (stride ``stem_stride``), ``len(widths)`` stages (each after the first halves the size), GN-ReLU,
  global mean pool, 1 logit.

  Attributes:
    widths: channels per stage, e.g. (16, 32, 64).
    blocks_per_stage: residual blocks in each stage.
    groups: GroupNorm groups (reduced to a divisor of the channel count where needed).
    stem_stride: stride of the stem conv (2 halves the work of every later layer; for CPU-sized runs).
    dtype: compute dtype (parameters stay float32).
  """
  widths: Sequence[int] = (16, 32, 64)
  blocks_per_stage: int = 1
  groups: int = 8
  stem_stride: int = 1
  dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
    """Images (B, H, W, C) in [-1, 1] -> float32 logits (B,)."""
    x = nn.Conv(self.widths[0], (3, 3), (self.stem_stride,) * 2, padding='SAME', use_bias=False, dtype=self.dtype,
                name='stem')(x)
    for i, width in enumerate(self.widths):
      for j in range(self.blocks_per_stage):
        stride = 2 if i > 0 and j == 0 else 1
        x = ResidualBlock(width, stride, self.groups, self.dtype, name=f'stage{i}_block{j}')(x)
    x = nn.relu(nn.GroupNorm(group_count(x.shape[-1], self.groups), dtype=self.dtype, name='norm_out')(x))
    x = jnp.mean(x, axis=(1, 2))
    return nn.Dense(1, dtype=self.dtype, name='logit')(x)[:, 0].astype(jnp.float32)
