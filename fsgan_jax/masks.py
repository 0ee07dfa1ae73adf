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
"""Conventions of paired image + label generation (``config.model.mask_channels > 0``).

A training example is one array ``(R, R, channels + mask_channels)`` in [-1, 1]: first the contrasts (e.g.
FLAIR; FLAIR + T1ce; the four BraTS contrasts; TCGA-LGG pre/FLAIR/post), then the label channels as -1
(background) / +1 (tumor), so G and D of every method see images and labels as ordinary channels (Akbar et al.,
"Brain tumor segmentation using synthetic MR images", 2023, trained GANs on 4 contrasts + mask the same way).

* ``mask_channels = 1``: the binary tumor mask (TCGA-LGG's FLAIR abnormality; BraTS: any tumor label).
* ``mask_channels = 3``: the BraTS sub-regions as separate channels, label 1 (necrotic / non-enhancing core),
  2 (edema), 3 (enhancing tumor) of the builder's label map (its label 4 is stored as 3).

Generated label channels are binarised at :data:`MASK_THRESHOLD` = 0 (the midpoint of -1 and +1, i.e.
probability 0.5 if the channel is read as ``(x + 1) / 2``). Augmentations move label channels with the image
(flip, translation, cutout, with background -1 where the image gets zero fill) and leave them out of colour
operations (``augment.diffaug``).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

MASK_THRESHOLD = 0.0
BRATS_REGION_LABELS = (1, 2, 3)
BRATS_REGION_NAMES = ('ncr', 'ed', 'et')


def label_names(mask_channels: int) -> tuple[str, ...]:
  """File-name suffixes of the label channels: ``('mask',)`` or the BraTS sub-region names."""
  return ('mask',) if mask_channels == 1 else BRATS_REGION_NAMES[:mask_channels]


def to_signed(labels: np.ndarray) -> np.ndarray:
  """Boolean / {0, 1} labels -> float32 -1 / +1."""
  return np.where(np.asarray(labels) > 0, 1.0, -1.0).astype(np.float32)


def label_channels(label_map: np.ndarray, mask_channels: int) -> np.ndarray:
  """A label map (N, H, W) (0 = background) -> (N, H, W, mask_channels) in -1 / +1.

  ``mask_channels = 1``: any non-zero label is tumor; ``3``: one channel per BraTS label 1, 2, 3.
  """
  label_map = np.asarray(label_map)
  if mask_channels == 1:
    return to_signed(label_map > 0)[..., None]
  if mask_channels == 3:
    return np.stack([to_signed(label_map == v) for v in BRATS_REGION_LABELS], axis=-1)
  raise ValueError(f'mask_channels={mask_channels}: must be 1 (binary) or 3 (BraTS sub-regions)')


def binarize(x: np.ndarray, channels: int) -> np.ndarray:
  """The label channels of generated (N, H, W, channels + m) arrays in [-1, 1] as booleans (N, H, W, m)."""
  return np.asarray(x)[..., channels:] > MASK_THRESHOLD


def split(x: np.ndarray, channels: int) -> tuple[np.ndarray, np.ndarray]:
  """(images (N, H, W, channels) as given, binarised labels (N, H, W, m)) of a paired array."""
  x = np.asarray(x)
  return x[..., :channels], binarize(x, channels)


def hard_labels(x: np.ndarray, channels: int) -> np.ndarray:
  """A paired array with its label channels replaced by exactly -1 / +1 (what sampling writes)."""
  x = np.array(x, np.float32, copy=True)
  x[..., channels:] = to_signed(binarize(x, channels))
  return x


def side_by_side(images_uint8: np.ndarray) -> np.ndarray:
  """(N, H, W, C) uint8 with C not in (1, 3), or with label channels -> (N, H, W * C, 1): channels left to right.

  How multi-channel samples are shown in grids and TensorBoard (each contrast and each label as a gray tile).
  """
  n, h, w, c = images_uint8.shape
  return np.transpose(images_uint8, (0, 1, 3, 2)).reshape(n, h, c * w, 1)


def display(images_uint8: np.ndarray, channels: int) -> np.ndarray:
  """Images as they are shown: unchanged for plain gray / RGB images, else :func:`side_by_side`."""
  if images_uint8.shape[-1] == channels and channels in (1, 3):
    return images_uint8
  return side_by_side(images_uint8)


def mask_statistics(labels: np.ndarray) -> dict[str, float]:
  """Area and location statistics of binary masks (N, H, W) (first label channel if 4-D).

  Returns the fraction of empty masks, mean / std / median tumor area as a fraction of the image, and the mean
  and std of the tumor centroid (row, column as fractions of the size, non-empty masks only).
  """
  m = np.asarray(labels, bool)
  if m.ndim == 4:
    m = m.any(axis=-1)
  n, h, w = m.shape
  area = m.reshape(n, -1).mean(axis=1)
  nonempty = area > 0
  out = {'n': float(n), 'empty_fraction': float(1.0 - nonempty.mean()), 'area_mean': float(area.mean()),
         'area_std': float(area.std()), 'area_median': float(np.median(area))}
  if nonempty.any():
    rows = (m[nonempty].sum(axis=2) * np.arange(h)).sum(axis=1) / m[nonempty].sum(axis=(1, 2)) / (h - 1)
    cols = (m[nonempty].sum(axis=1) * np.arange(w)).sum(axis=1) / m[nonempty].sum(axis=(1, 2)) / (w - 1)
    out.update(centroid_row_mean=float(rows.mean()), centroid_row_std=float(rows.std()),
               centroid_col_mean=float(cols.mean()), centroid_col_std=float(cols.std()))
  return out


def dice(pred: np.ndarray, target: np.ndarray, empty: float = 1.0) -> np.ndarray:
  """Per-sample Dice 2|P n T| / (|P| + |T|) of boolean (N, ...) arrays; ``empty`` when both are empty."""
  p = np.asarray(pred, bool).reshape(len(pred), -1)
  t = np.asarray(target, bool).reshape(len(target), -1)
  inter = (p & t).sum(axis=1)
  total = p.sum(axis=1) + t.sum(axis=1)
  return np.where(total > 0, 2.0 * inter / np.maximum(total, 1), empty).astype(np.float64)


def check_channels(channels: int, mask_channels: int, where: str = 'config.model') -> None:
  """Raises ValueError (one line) for unsupported channel counts."""
  if channels < 1:
    raise ValueError(f'{where}.channels={channels} must be >= 1')
  if mask_channels not in (0, 1, 3):
    raise ValueError(f'{where}.mask_channels={mask_channels} must be 0 (images only), 1 (binary tumor mask) or 3 '
                     '(BraTS sub-regions)')


def channel_names(contrasts: Sequence[str] | None, channels: int, mask_channels: int) -> list[str]:
  """A name per channel: the contrast names (or ``c0, c1, ...``) followed by :func:`label_names`."""
  names = list(contrasts) if contrasts and len(contrasts) == channels else (
      ['image'] if channels == 1 else [f'c{i}' for i in range(channels)])
  return names + (list(label_names(mask_channels)) if mask_channels else [])
