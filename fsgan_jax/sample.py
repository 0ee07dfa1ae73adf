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
"""Sampling from a training workdir: restore a checkpoint with Orbax and write PNGs from the EMA generator.

Plain gray / RGB generators write ``img_00000.png`` ...; generators with label channels or other contrast counts
(``config.model.mask_channels``, see ``fsgan_jax.masks``) write one PNG per channel, ``img_00000_<contrast>.png``
and ``img_00000_mask.png`` (labels binarised at ``masks.MASK_THRESHOLD``: 0 / 255), and with ``nifti=True`` also
one NIfTI case in the BraTS layout, ``nifti/<case>/<case>_<contrast>.nii.gz`` + ``<case>_seg.nii.gz``, where the
samples are the axial slices of one stack (see :func:`write_nifti`).
"""

from __future__ import annotations

import gzip
from typing import Optional

from etils import epath
import numpy as np

from fsgan_jax import config_lib, errors, fileio, input_pipeline, masks, sampling, workdir as workdir_lib

# BraTS label values of the sub-region channels (NCR/NET = 1, edema = 2, enhancing = 4) and of a binary mask (1).
BRATS_SEG_VALUES = (1, 2, 4)
NIFTI_SPACING_MM = 1.0  # voxel size written into the affine (synthetic slices have no physical size)


def seg_map(labels: np.ndarray) -> np.ndarray:
  """Binarised label channels (N, H, W, m) -> a BraTS label map (N, H, W) uint8.

  m = 1: tumor = 1. m = 3 (NCR, ED, ET channels): 1 / 2 / 4 as BraTS, where channels overlap the enhancing tumor
  wins, then the core, then edema (the nesting of the BraTS regions).
  """
  labels = np.asarray(labels, bool)
  out = np.zeros(labels.shape[:3], np.uint8)
  if labels.shape[-1] == 1:
    out[labels[..., 0]] = 1
    return out
  for channel in (1, 0, 2):  # edema first, enhancing last (highest priority)
    out[labels[..., channel]] = BRATS_SEG_VALUES[channel]
  return out


def write_nifti(out: str, case: str, images_uint8: np.ndarray, channels: int, names: list[str]) -> list[str]:
  """Writes samples (N, H, W, channels + m) uint8 as one BraTS-style case; returns the file paths.

  Each contrast becomes ``<case>_<name>.nii.gz`` (uint8, shape (W, H, N)) and the labels ``<case>_seg.nii.gz``
  (:func:`seg_map`), with slice ``z`` = sample ``z`` stored as ``vol[:, :, z] = image.T``: the inverse of the
  BraTS builder's ``vol[:, :, z].T``, so reading the case back with ``fsgan_jax.datasets.brats`` gives the same
  slices. Affine: ``diag(s, s, s, 1)`` with s = ``NIFTI_SPACING_MM``.
  """
  import nibabel as nib  # pylint: disable=g-import-not-at-top
  folder = fileio.join(out, 'nifti', case)
  fileio.makedirs(folder)
  affine = np.diag([NIFTI_SPACING_MM] * 3 + [1.0])
  volumes = {names[c]: images_uint8[..., c] for c in range(channels)}
  if images_uint8.shape[-1] > channels:
    volumes['seg'] = seg_map(images_uint8[..., channels:] > 127)
  paths = []
  for name, vol in volumes.items():
    img = nib.Nifti1Image(np.ascontiguousarray(np.transpose(vol, (2, 1, 0))).astype(np.uint8), affine)
    img.header.set_xyzt_units('mm')
    path = fileio.join(folder, f'{case}_{name}.nii.gz')
    epath.Path(path).write_bytes(_gzip(img.to_bytes()))  # local path or gs:// URL
    paths.append(path)
  return paths


def _gzip(data: bytes) -> bytes:
  return gzip.compress(data, mtime=0)


def sample_from_workdir(workdir: str, num: int = 16, seed: int = 0, out: Optional[str] = None,
                        step: Optional[int] = None, batch: Optional[int] = None, nifti: bool = False) -> str:
  """Writes ``num`` images (``img_00000.png`` ...) and ``grid.png`` from the EMA generator; returns the folder.

  Paired / multi-contrast generators: one PNG per channel and optionally a NIfTI case (module docstring).

  The images are ``sampling.draw``'s for (checkpoint, seed, batch), ``batch`` defaulting to the run's
  ``config.eval.batch_size``: the same images ``--mode=eval`` evaluates for that seed.
  """
  if num < 1:
    raise errors.FsganError(f'--num={num} must be >= 1')
  run = workdir_lib.load_run(workdir, step)
  config, step = run.config, run.step
  if run.exported and out is None:
    raise errors.FsganError(f'{run.workdir} is an exported generator (read-only): pass --out=DIR for the samples')
  batch = config.eval.batch_size if batch is None else batch
  out = out or fileio.join(run.workdir, f'samples_step{step}_seed{seed}')  # a local path or a gs:// URL
  fileio.makedirs(out)
  channels = config_lib.image_channels(config)
  images = sampling.draw(run.setup.generator, config.sample_bn, channels, run.state.ema_params, run.state.g_stats,
                         num, seed, batch, mesh=run.mesh)
  plain = images.shape[-1] == channels and channels in (1, 3)
  names = config_lib.channel_names(config)
  for i, im in enumerate(images):
    if plain:
      input_pipeline.save_png(fileio.join(out, f'img_{i:05d}.png'), im)
      continue
    for c, name in enumerate(names):
      input_pipeline.save_png(fileio.join(out, f'img_{i:05d}_{name}.png'), im[..., c:c + 1])
  shown = masks.display(images, channels)
  input_pipeline.save_png(fileio.join(out, 'grid.png'),
                          input_pipeline.make_grid(shown, ncols=int(np.ceil(np.sqrt(len(shown))))))
  if nifti:
    write_nifti(out, f'fsgan_step{step}_seed{seed}', images, channels, names)
  return out
