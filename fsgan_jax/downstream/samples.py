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
"""Synthetic samples of a cell's generator for the downstream studies, drawn once and cached.

``synthetic_images`` restores a generator workdir (``workdir.load_run``) and draws with ``sampling.draw``, the
policy of ``--mode=sample`` and ``--mode=eval`` (full batches, label channels of image + mask generators exactly
-1 / +1), so a study trains on the images those modes would make for the same checkpoint, seed and batch.
"""

from __future__ import annotations

import os

import numpy as np

from fsgan_jax import config_lib, errors, input_pipeline, sampling
from fsgan_jax import masks as masks_lib
from fsgan_jax import workdir as workdir_lib


def synthetic_images(gan_dir: str, num: int, seed: int, batch: int, cache_dir: str) -> np.ndarray:
  """``num`` EMA-generator images (N, R, R, C) in [-1, 1], as ``sample.py`` makes them.

  Cached as uint8 ``.npy`` (plus a grid PNG to look at) in ``cache_dir``, the study's own folder for the cell, so a
  generator workdir given in the config is only read.

  Raises:
    errors.ConfigError: ``gan_dir`` holds no generator checkpoint.
  """
  os.makedirs(cache_dir, exist_ok=True)
  cache = os.path.join(cache_dir, f'synthetic_seed{seed}_n{num}.npy')
  if os.path.exists(cache):
    return np.load(cache).astype(np.float32) / 127.5 - 1.0
  try:
    run = workdir_lib.load_run(gan_dir)
  except FileNotFoundError:
    raise errors.ConfigError(f'config.gan.workdir: no generator checkpoint in {gan_dir}') from None
  images = sampling.draw(run.setup.generator, run.config.sample_bn, config_lib.image_channels(run.config),
                         run.state.ema_params, run.state.g_stats, num, seed, batch, mesh=run.mesh)
  tmp = cache + '.tmp.npy'
  np.save(tmp, images)
  os.replace(tmp, cache)
  preview = images[:64]
  if preview.shape[-1] not in (1, 3):  # image + mask channels (segmentation study): channels side by side
    preview = masks_lib.side_by_side(preview)
  input_pipeline.save_png(os.path.join(cache_dir, f'synthetic_seed{seed}_grid.png'),
                          input_pipeline.make_grid(preview, ncols=8))
  return images.astype(np.float32) / 127.5 - 1.0
