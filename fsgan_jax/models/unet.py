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
"""A small U-Net (tumor segmentation) for the downstream study in ``experiments/segment.py``.

The encoder-decoder with skip connections of Ronneberger, Fischer and Brox, "U-Net: Convolutional Networks for
Biomedical Image Segmentation", MICCAI 2015: per level two 3x3 conv blocks, 2x2 max-pool down; on the way up a
nearest-neighbour 2x upsampling, a 3x3 conv, concatenation with the encoder features of the same size, two conv
blocks; a 1x1 conv head gives per-pixel logits. Differences from the paper, for few-shot training on CPU-sized
budgets: 'SAME' padding (output size = input size, no cropping), upsample + conv instead of a transposed conv (no
checkerboard artefacts), and GroupNorm after every conv: it has no batch statistics, so a step is the same on any
number of devices (batches are sharded as in ``train.py``) and evaluation needs no running averages.
"""

from __future__ import annotations

from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from fsgan_jax.models.classifier import group_count


class ConvBlock(nn.Module):
  """Two (3x3 conv -> GroupNorm -> activation) layers.

  Attributes:
    features: output channels of both convs.
    groups: GroupNorm groups (reduced to a divisor of ``features`` where needed).
    activation: ``'relu'`` or ``'silu'``.
    dtype: compute dtype (parameters stay float32).
  """
  features: int
  groups: int = 8
  activation: str = 'relu'
  dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
    act = {'relu': nn.relu, 'silu': nn.silu}[self.activation]
    for i in range(2):
      x = nn.Conv(self.features, (3, 3), padding='SAME', use_bias=False, dtype=self.dtype, name=f'conv{i}')(x)
      x = act(nn.GroupNorm(group_count(self.features, self.groups), dtype=self.dtype, name=f'norm{i}')(x))
    return x


class UNet(nn.Module):
  """U-Net with ``len(widths)`` levels; the input size must be divisible by ``2 ** (len(widths) - 1)``.

  Attributes:
    widths: channels per level, top (full resolution) to bottleneck, e.g. (16, 32, 64).
    groups: GroupNorm groups.
    out_channels: logit channels (1 = binary tumor mask).
    activation: ``'relu'`` (the paper's) or ``'silu'``.
    dtype: compute dtype (parameters stay float32; logits are returned as float32).
  """
  widths: Sequence[int] = (16, 32, 64)
  groups: int = 8
  out_channels: int = 1
  activation: str = 'relu'
  dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
    """Images (N, H, W, C) in [-1, 1] -> float32 logits (N, H, W, out_channels)."""
    factor = 2 ** (len(self.widths) - 1)
    if x.shape[1] % factor or x.shape[2] % factor:
      raise ValueError(f'UNet: input size {x.shape[1:3]} must be divisible by {factor} (= 2 ** (levels - 1))')
    block = lambda f, name: ConvBlock(f, self.groups, self.activation, self.dtype, name=name)
    skips = []
    for i, width in enumerate(self.widths[:-1]):
      x = block(width, f'down{i}')(x)
      skips.append(x)
      x = nn.max_pool(x, (2, 2), (2, 2))
    x = block(self.widths[-1], 'bottleneck')(x)
    for i in reversed(range(len(self.widths) - 1)):
      n, h, w, c = x.shape
      x = jax.image.resize(x, (n, 2 * h, 2 * w, c), 'nearest')
      x = nn.Conv(self.widths[i], (3, 3), padding='SAME', dtype=self.dtype, name=f'up{i}_conv')(x)
      x = block(self.widths[i], f'up{i}')(jnp.concatenate([skips[i], x], axis=-1))
    return nn.Conv(self.out_channels, (1, 1), dtype=self.dtype, name='head')(x).astype(jnp.float32)
