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
"""TCGA-LGG kaggle_3m raw-data handling (numpy + Pillow only): finding slices, reading, masks, resizing.

Kept apart from the TFDS builder so every rule is a plain function that tests can call directly.

Conventions (also in ``README.md`` beside this file):

* **Two input forms**, detected from ``manual_dir``:

  * *original* (Kaggle ``mateuszbuda/lgg-mri-segmentation``): ``<patient_folder>/<patient_folder>_<n>.tif`` with
    ``<patient_folder>_<n>_mask.tif`` anywhere under ``manual_dir`` (usually ``kaggle_3m/``). Images are 3-channel
    256x256 uint8 TIFs, channels pre-contrast, FLAIR, post-contrast; masks 1-channel 0/255.
  * *compact* (``shared/data/lgg_kaggle3m``): ``metadata.csv`` + ``masks.npz`` + ``flair/<folder>/<folder>_<n>.png``
    directly in ``manual_dir``; FLAIR only, so asking it for pre/post-contrast is an error.

* **Subject** = TCGA patient id, the first three ``_`` fields of the folder name (``TCGA_CS_4941_19960909`` ->
  ``TCGA_CS_4941``; the compact form's ``patient_id`` column). Several folders of one patient (several studies) are
  one subject, so the partition never splits a patient. ``institution`` = the tissue-source-site code (second field).
* **Slice index** = the ``<n>`` of the file name (1-based, one axial direction); ``tumor_area`` = mask pixels at
  256x256.
* **Intensity**: ``x / 127.5 - 1`` of the 8-bit pixels, no per-volume percentile clipping. The kaggle_3m slices are
  already windowed to 8 bits per volume by the dataset authors, and this is exactly what
  ``input_pipeline.load_images`` does for the bundled ``lgg_flair_100`` set and the FID reference statistics, so
  the same slice gives the same array through either path (clipping again would change the FID reference domain).
* **Size**: 256 is native; 128 = 2x2 block mean (image) and 2x2 block majority, ties -> background (mask).
* **Mask** = ``mask > 0`` as uint8 0/1.
"""

from __future__ import annotations

import csv
import dataclasses
import os
import pathlib
import re
from typing import Iterable, Sequence

import numpy as np
from PIL import Image

from fsgan_jax.datasets.brats.brats_io import resize_plane
from fsgan_jax.datasets.common import DatasetError

# Channel name -> index in the 3-channel TIF.
CHANNELS = ('pre', 'flair', 'post')
NATIVE = 256
_SLICE_RE = re.compile(r'^(?P<folder>.+)_(?P<n>\d+)\.tif$', re.IGNORECASE)


@dataclasses.dataclass(frozen=True)
class Slice:
  """One source slice: where it is and what the metadata says (``mask`` inline for the compact form)."""
  patient_id: str
  folder: str
  institution: str
  slice_index: int
  image_path: pathlib.Path
  mask_path: pathlib.Path | None = None
  mask: np.ndarray | None = dataclasses.field(default=None, compare=False, repr=False)


def _one_line(e: BaseException) -> str:
  return f'{type(e).__name__}: ' + ' '.join(str(e).split())


def patient_of(folder: str) -> tuple[str, str]:
  """``TCGA_CS_4941_19960909`` -> (``TCGA_CS_4941``, ``CS``); other names: (folder, ``unknown``)."""
  parts = folder.split('_')
  if len(parts) >= 3 and parts[0] == 'TCGA':
    return '_'.join(parts[:3]), parts[1]
  return folder, 'unknown'


def is_compact(manual_dir: pathlib.Path) -> bool:
  return (manual_dir / 'metadata.csv').is_file() and (manual_dir / 'masks.npz').is_file()


def find_slices(manual_dir: str | os.PathLike[str]) -> tuple[str, list[Slice]]:
  """Returns (``'original'`` or ``'compact'``, all slices sorted by (patient, folder, slice index)).

  Raises:
    DatasetError: ``manual_dir`` missing, no slices, an image without its mask, or a bad compact-form file.
  """
  root = pathlib.Path(manual_dir)
  if not root.is_dir():
    raise DatasetError(f'{root}: manual_dir does not exist (see MANUAL_DOWNLOAD_INSTRUCTIONS)')
  if is_compact(root):
    return 'compact', _compact_slices(root)
  slices = []
  for folder, _, names in sorted(os.walk(root)):
    folder = pathlib.Path(folder)
    lower = {n.lower() for n in names}
    for name in sorted(names):
      m = _SLICE_RE.match(name)
      if m is None or name.lower().endswith('_mask.tif'):
        continue
      mask_name = f'{name[:-4]}_mask{name[-4:]}'
      if mask_name.lower() not in lower:
        raise DatasetError(f'{folder / name}: no mask file {mask_name} beside it')
      mask_path = folder / next(n for n in names if n.lower() == mask_name.lower())
      patient, inst = patient_of(m['folder'])
      slices.append(Slice(patient, m['folder'], inst, int(m['n']), folder / name, mask_path))
  if not slices:
    raise DatasetError(f'{root}: no kaggle_3m slices (<folder>/<folder>_<n>.tif + _mask.tif) and no compact form '
                       '(metadata.csv + masks.npz) found; see MANUAL_DOWNLOAD_INSTRUCTIONS')
  return 'original', sorted(slices, key=lambda s: (s.patient_id, s.folder, s.slice_index))


def _compact_slices(root: pathlib.Path) -> list[Slice]:
  """Slices of the compact form; masks are unpacked from ``masks.npz`` (a few MiB for all 3929 slices)."""
  meta = root / 'metadata.csv'
  try:
    with open(meta, newline='', encoding='utf-8') as f:
      rows = list(csv.DictReader(f))
    npz = np.load(root / 'masks.npz')
    packed = {k: npz[k] for k in npz.files}
  except Exception as e:  # pylint: disable=broad-except  (csv, zipfile, OSError, ValueError)
    raise DatasetError(f'{root}: cannot read metadata.csv / masks.npz ({_one_line(e)})') from e
  need = {'patient_id', 'folder', 'institution', 'slice_index', 'kept', 'file'}
  if not rows or not need <= set(rows[0]):
    raise DatasetError(f'{meta}: expected columns {sorted(need)}')
  masks: dict[tuple[str, int], np.ndarray] = {}
  for key in packed:
    if key.endswith('__slice_index'):
      folder = key[:-len('__slice_index')]
      bits = np.unpackbits(packed[f'{folder}__mask'], axis=-1)[..., :NATIVE].astype(np.uint8)
      masks.update({(folder, int(n)): bits[i] for i, n in enumerate(packed[key])})
  slices = []
  for row in rows:
    if row['kept'] != '1':
      continue
    key = (row['folder'], int(row['slice_index']))
    if key not in masks:
      raise DatasetError(f'{root / "masks.npz"}: no mask for {row["folder"]} slice {row["slice_index"]}')
    slices.append(Slice(row['patient_id'], row['folder'], row['institution'], key[1], root / row['file'],
                        mask=masks[key]))
  if not slices:
    raise DatasetError(f'{meta}: no kept slices')
  return sorted(slices, key=lambda s: (s.patient_id, s.folder, s.slice_index))


def read_mask(s: Slice) -> np.ndarray:
  """The slice's binary mask, uint8 0/1 [256, 256]; unreadable or wrong-shape TIF -> one-line DatasetError."""
  if s.mask is not None:
    return s.mask
  try:
    with Image.open(s.mask_path) as im:
      arr = np.asarray(im)
  except Exception as e:  # pylint: disable=broad-except  (PIL raises OSError, SyntaxError, ValueError, ...)
    raise DatasetError(f'{s.mask_path}: unreadable mask TIF ({_one_line(e)})') from e
  if arr.ndim == 3:
    arr = arr[..., 0]
  if arr.shape != (NATIVE, NATIVE):
    raise DatasetError(f'{s.mask_path}: mask shape {arr.shape}, expected ({NATIVE}, {NATIVE})')
  return (arr > 0).astype(np.uint8)


def read_image(s: Slice, channels: Sequence[str]) -> np.ndarray:
  """The slice's ``channels`` as uint8 [256, 256, C]; unreadable / wrong-shape file -> one-line DatasetError."""
  path = s.image_path
  try:
    with Image.open(path) as im:
      arr = np.asarray(im)
  except Exception as e:  # pylint: disable=broad-except
    raise DatasetError(f'{path}: unreadable image ({_one_line(e)})') from e
  if s.mask is not None:  # Compact form: 8-bit gray FLAIR PNG.
    if arr.ndim != 2 or arr.shape != (NATIVE, NATIVE) or arr.dtype != np.uint8:
      raise DatasetError(f'{path}: expected a 256x256 8-bit gray PNG, got {arr.shape} {arr.dtype}')
    return arr[..., None]
  if arr.ndim != 3 or arr.shape[:2] != (NATIVE, NATIVE) or arr.shape[2] < 3 or arr.dtype != np.uint8:
    raise DatasetError(f'{path}: expected a 256x256 3-channel uint8 TIF, got {arr.shape} {arr.dtype}')
  return arr[..., [CHANNELS.index(c) for c in channels]]


@dataclasses.dataclass(frozen=True)
class SlicePolicy:
  """Which slices to keep: ``tumor`` (area >= ``min_tumor_area``), ``all``, or ``nontumor`` (empty mask)."""
  kind: str = 'tumor'
  min_tumor_area: int = 100

  def keep(self, tumor_area: int) -> bool:
    if self.kind == 'tumor':
      return tumor_area >= self.min_tumor_area
    if self.kind == 'all':
      return True
    if self.kind == 'nontumor':
      return tumor_area == 0
    raise ValueError(f'unknown slice policy {self.kind!r} (tumor, all, nontumor)')


def examples(slices: Iterable[Slice], channels: Sequence[str], resolution: int,
             policy: SlicePolicy) -> Iterable[tuple[str, dict[str, object]]]:
  """Yields ``(key, example)`` for the kept slices (mask read first, so skipped slices' images are not read)."""
  for s in slices:
    mask = read_mask(s)
    area = int(mask.sum())
    if not policy.keep(area):
      continue
    image = read_image(s, channels).astype(np.float32) / 127.5 - 1.0
    if resolution != NATIVE:
      image = resize_plane(image, resolution, -1.0)
      mask = resize_plane(mask, resolution, 0, labels=True)
    yield f'{s.folder}_{s.slice_index:03d}', {
        'image': np.clip(image, -1.0, 1.0).astype(np.float32),
        'mask': mask.astype(np.uint8),
        'subject_id': s.patient_id,
        'folder': s.folder,
        'slice_index': np.int32(s.slice_index),
        'tumor_area': np.int32(area),
        'institution': s.institution,
    }
