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
"""Label consistency of generated image + mask pairs: does the generated mask mark the generated tumor?

A small U-Net (``models/unet.py``, trained exactly as in the segmentation study, ``downstream/segmenter.Segmenter``)
is fitted to the REAL training pairs; it then segments every generated image, and the Dice between its prediction
and the mask the generator drew for that image is the pair's label consistency (1 = the segmenter finds exactly the
generated mask). Reported: mean, median, quartiles and a 10-bin histogram over generated pairs, and, as the ceiling
to read them against, the same segmenter's Dice on held-out real pairs (or on its own training pairs when there is
no held-out set with masks; then optimistic, and flagged). Model selection uses the held-out pairs when present.

Label channels: the binary mask, or for BraTS sub-regions their union (whole tumor). Both empty = Dice 1.
"""

from __future__ import annotations

from typing import Any, Optional

import jax
import ml_collections
import numpy as np

from fsgan_jax import masks
from fsgan_jax.downstream import segmenter as segmenter_lib
from fsgan_jax.downstream import splits, stats


def segmenter_config(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """The segmenter's settings (``unet`` / ``augment`` sections as ``configs/segment.py``) from ``config.eval``."""
  e = config.eval
  c = ml_collections.ConfigDict()
  c.unet = ml_collections.ConfigDict(dict(
      image_size=min(int(config.model.resolution), int(e.get('segmenter_size', 128))), widths=(16, 32, 64),
      groups=8, activation='relu', batch_size=16, num_steps=int(e.get('segmenter_steps', 300)),
      eval_every=max(1, int(e.get('segmenter_steps', 300)) // 6), lr=1e-3, weight_decay=1e-4, dice_weight=1.0,
      eval_batch_size=int(e.batch_size)))
  c.augment = ml_collections.ConfigDict(dict(hflip=True, max_shift=0.08, max_rotate_deg=10.0, brightness=0.1,
                                             contrast=0.1))
  return c


def _pairs(images_uint8: np.ndarray, channels: int, size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """uint8 (N, R, R, channels + m) -> (images in [-1, 1] at ``size``, masks {0, 1} (N, size, size, 1), masks at R)."""
  x = images_uint8.astype(np.float32) / 127.5 - 1.0
  full = masks.binarize(x, channels).any(axis=-1)
  return splits.resize_images(x[..., :channels], size), splits.downsample_masks(full, size), full


def evaluate(config: ml_collections.ConfigDict, real_uint8: np.ndarray, gen_uint8: np.ndarray, channels: int,
             mesh: jax.sharding.Mesh, seed: int = 0, heldout: Optional[np.ndarray] = None) -> dict[str, Any]:
  """Label consistency of ``gen_uint8`` (generated pairs, uint8 with labels 0 / 255) given real training pairs.

  Args:
    config: the run's config (``model.resolution``, ``eval.segmenter_steps`` / ``segmenter_size`` /
      ``batch_size``).
    real_uint8: the real training pairs (N, R, R, channels + m), uint8.
    gen_uint8: generated pairs, same layout.
    channels: contrast channels (the rest are labels).
    mesh: the 1-D ('data',) mesh; batches are sharded over it.
    seed: the segmenter's initialisation / batch order.
    heldout: held-out real pairs for model selection and the reference Dice (None: the training pairs).
  """
  seg_config = segmenter_config(config)
  size = seg_config.unet.image_size
  if config.model.resolution % size:
    raise ValueError(f'config.eval.segmenter_size={size} must divide config.model.resolution')
  train_x, train_m, _ = _pairs(real_uint8, channels, size)
  ref = heldout if heldout is not None else real_uint8
  val_x, _, val_full = _pairs(ref, channels, size)
  val_groups = np.arange(len(val_x)).astype(str)  # per-slice selection: no subject ids needed
  segmenter = segmenter_lib.Segmenter(seg_config, mesh, channels, int(config.model.resolution))
  params, log = segmenter.fit(train_x, train_m, val_x, val_full, val_groups, seed, augment=True)
  ref_dice = stats.dice_from_counts(*segmenter.score(params, val_x, val_full))
  gen_x, _, gen_full = _pairs(gen_uint8, channels, size)
  dice = stats.dice_from_counts(*segmenter.score(params, gen_x, gen_full))
  hist, edges = np.histogram(dice, bins=10, range=(0.0, 1.0))
  return {
      'dice_mean': float(dice.mean()), 'dice_median': float(np.median(dice)),
      'dice_q25': float(np.quantile(dice, 0.25)), 'dice_q75': float(np.quantile(dice, 0.75)),
      'dice_histogram': {'counts': hist.tolist(), 'edges': edges.tolist()},
      'n_generated': int(len(dice)),
      'segmenter_dice_heldout' if heldout is not None else 'segmenter_dice_train': float(ref_dice.mean()),
      'segmenter': {'trained_on_real_pairs': int(len(train_x)), 'image_size': size,
                    'steps': seg_config.unet.num_steps, 'best_step': log['best_step'],
                    'selection': 'held-out real pairs' if heldout is not None else
                                 'training pairs (no held-out masks: the reference Dice is optimistic)'},
      'note': 'Dice between the U-Net prediction on each generated image and its generated mask (union of label '
              'channels; both empty = 1); compare with the segmenter Dice on real pairs',
  }

