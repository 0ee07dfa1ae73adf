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
"""The U-Net segmenter of the segmentation study (``experiments/segment.py``) and the label-consistency evaluator.

A small U-Net (``models/unet.py``) trained with jitted data-parallel steps (``trainer.DataParallelModel``) on image +
mask pairs, with BCE + soft Dice loss and optional paired augmentation (``augment_pairs``); model selection on the
validation per-patient Dice (``stats.cell_dice``); ``score`` gives the Dice counts at the dataset resolution (the
logits upsampled bilinearly and thresholded at 0, i.e. sigmoid > 0.5).
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from fsgan_jax import masks as masks_lib
from fsgan_jax.downstream import stats, trainer
from fsgan_jax.models import unet as unet_lib


def augment_pairs(key: jax.Array, images: jax.Array, masks: jax.Array,
                  a: ml_collections.ConfigDict) -> tuple[jax.Array, jax.Array]:
  """``trainer.augment_batch`` on image + mask pairs: the mask (N, H, W, 1) in {0, 1} rides along as a -1/+1
  channel, so it gets exactly the image's flip, shift and rotation (bilinear, background -1) and no intensity
  jitter, and is re-binarised at ``masks.MASK_THRESHOLD`` (0, i.e. more than half tumor after interpolation)."""
  channels = images.shape[-1]
  xy = trainer.augment_batch(key, jnp.concatenate([images, 2.0 * masks - 1.0], axis=-1), a.hflip, a.max_shift,
                             a.max_rotate_deg, a.brightness, a.contrast, jitter_channels=channels)
  return xy[..., :channels], (xy[..., channels:] > masks_lib.MASK_THRESHOLD).astype(jnp.float32)


class Segmenter(trainer.DataParallelModel):
  """The U-Net, optimizer and jitted data-parallel train / score functions (compiled once per study)."""

  def __init__(self, config: ml_collections.ConfigDict, mesh: jax.sharding.Mesh, channels: int, resolution: int):
    u = config.unet
    self.config = config
    model = unet_lib.UNet(tuple(u.widths), u.groups, 1, u.activation)
    tx = optax.adamw(u.lr, weight_decay=u.weight_decay)

    def loss_fn(params, x, y):  # BCE + soft Dice (per image): the Dice term keeps small tumors from being ignored
      logits = model.apply({'params': params}, x)
      bce = optax.sigmoid_binary_cross_entropy(logits, y).mean()
      p = jax.nn.sigmoid(logits)
      soft_dice = (2 * (p * y).sum(axis=(1, 2, 3)) + 1.0) / (p.sum(axis=(1, 2, 3)) + y.sum(axis=(1, 2, 3)) + 1.0)
      return bce + u.dice_weight * (1.0 - soft_dice).mean()

    def step(params, opt_state, x, y, key, augment):
      if augment:
        x, y = augment_pairs(key, x, y, config.augment)
      loss, grads = jax.value_and_grad(loss_fn)(params, x, y)
      updates, opt_state = tx.update(grads, opt_state, params)
      return optax.apply_updates(params, updates), opt_state, loss

    def score(params, arrays):  # -> (B, 3): |P n G|, |P|, |G| at the dataset resolution
      x, truth = arrays
      logits = model.apply({'params': params}, x)
      logits = jax.image.resize(logits, (x.shape[0], resolution, resolution, 1), 'bilinear')[..., 0]
      pred, g = logits > 0.0, truth > 0
      return jnp.stack([(pred & g).sum(axis=(1, 2)), pred.sum(axis=(1, 2)), g.sum(axis=(1, 2))], axis=1)

    super().__init__(mesh, model, tx, (1, u.image_size, u.image_size, channels), step, score, u.eval_batch_size)

  def score(self, params: Any, images: np.ndarray, truth: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``stats.dice_counts`` of the predicted masks of ``images`` (U-Net size) against ``truth`` (N, R, R) at the
    dataset resolution."""
    counts = self.evaluate(params, images, truth).astype(np.int64)
    return counts[:, 0], counts[:, 1], counts[:, 2]

  def fit(self, images: np.ndarray, masks: np.ndarray, val_images: np.ndarray, val_truth: np.ndarray,
          val_patients: np.ndarray, seed: int, augment: bool) -> tuple[Any, dict[str, Any]]:
    """Trains from ``seed`` on (images, masks (N, s, s, 1) in {0, 1}) with uniform batches (with replacement);
    returns the params of the best validation per-patient Dice and a log."""
    u = self.config.unet
    params, opt_state = self.init(seed)
    rng = np.random.default_rng(seed)
    key = jax.random.PRNGKey(seed + 1)
    best = (-1.0, 0, None)
    history = []
    for step in range(1, u.num_steps + 1):
      take = rng.integers(len(images), size=u.batch_size)
      params, opt_state, loss = self._steps[augment](params, opt_state, jax.device_put(images[take], self.data),
                                                     jax.device_put(masks[take], self.data),
                                                     jax.random.fold_in(key, step))
      if step % u.eval_every == 0 or step == u.num_steps:
        loss = float(loss)
        if not np.isfinite(loss):
          raise FloatingPointError(f'non-finite U-Net loss at step {step}')
        val = stats.cell_dice(*self.score(params, val_images, val_truth), val_patients)
        history.append({'step': step, 'loss': loss, **{f'val_{n}': v for n, v in val.items()}})
        if val['dice_patient'] > best[0]:
          best = (val['dice_patient'], step, jax.device_get(params))
    return jax.device_put(best[2], self.repl), {'best_step': best[1], 'best_val_dice_patient': best[0],
                                                'history': history}
