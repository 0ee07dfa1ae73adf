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
"""IXI T1 raw-data handling (numpy + nibabel + Pillow): finding volumes, demographics, orientation, slices.

Kept apart from the TFDS builder so every rule is a plain function that tests can call directly.

Conventions (also in ``README.md`` beside this file):

* **Files**: every ``<subject>[-_]T1.nii[.gz]`` under ``manual_dir`` is one subject (IXI release:
  ``IXI002-Guys-0828-T1.nii.gz``; shared/data/ixi_t1: ``t1/IXI012-HH-1211_T1.nii.gz``); the id is ``<subject>``.
* **Demographics**: every ``*.csv`` under ``manual_dir`` with an id column (``MRID``, ``IXI_ID``, ``participant_id``
  or ``subject_id``) and ``Age``/``AGE`` and/or ``Sex``/``SEX_ID`` columns. ``IXI_ID`` (the IXI.xls export) matches
  the number after ``IXI``. Sex: ``M``/``male``/``1`` -> M, ``F``/``female``/``2`` -> F (IXI.xls: 1 male, 2 female),
  else unknown; age unknown -> -1.
* **Orientation**: volumes are reoriented by their affine's axis codes (``nib.aff2axcodes``; shared/data is
  P,S,R) to L,P,S (BraTS's orientation, via ``as_reoriented``), and slices are taken like BraTS: ``vol[:, :, z].T``,
  i.e. axial, anterior up, patient right on the image left, z from inferior to superior.
* **Head mask**: IXI is not skull-stripped, so the "brain" mask is the head foreground: voxels above
  ``foreground_fraction`` x the 99.5th percentile of the nonzero voxels. Slices are kept when their foreground area
  is >= ``min_brain_area_mm2`` and their index lies in ``z_range`` (fractions of the span between the first and last
  such slice; the default 0.4..1.0 drops the neck / face / skull-base slices, which a brain GAN should not see).
* **Intensity**, per volume: clip to the (0.5, 99.5) percentiles of the foreground voxels, map linearly to [-1, 1];
  background -> -1 (as BraTS).
* **Size**: each slice is resampled to ``fov_mm / resolution`` mm per pixel (Pillow bilinear on float32, which
  antialiases when shrinking), then center-padded (-1) or cropped to ``resolution``. The default ``fov_mm=256`` gives
  BraTS's scale: 1 mm/px at 256 (IXI 2 mm 120 px -> 240 px, padded to 256) and 2 mm/px at 128 (120 px, padded).
"""

from __future__ import annotations

import csv
import dataclasses
import math
import os
import pathlib
import re
from typing import Iterable

import numpy as np
from PIL import Image

from fsgan_jax.datasets.brats.brats_io import scale_intensity
from fsgan_jax.datasets.common import DatasetError

SEXES = ('unknown', 'F', 'M')
_T1_RE = re.compile(r'^(?P<id>.+?)[-_]T1\.nii(\.gz)?$', re.IGNORECASE)
_ID_COLUMNS = ('mrid', 'participant_id', 'subject_id', 'ixi_id')
_SEX = {'m': 'M', 'male': 'M', '1': 'M', 'f': 'F', 'female': 'F', '2': 'F'}


@dataclasses.dataclass(frozen=True)
class Subject:
  """One T1 volume with its demographics (age -1 / sex ``unknown`` when not given)."""
  subject_id: str
  path: pathlib.Path
  age: float = -1.0
  sex: str = 'unknown'


def _one_line(e: BaseException) -> str:
  return f'{type(e).__name__}: ' + ' '.join(str(e).split())


def _ixi_number(sid: str) -> int | None:
  m = re.match(r'^IXI0*(\d+)', sid, re.IGNORECASE)
  return int(m.group(1)) if m else None


def read_demographics(root: pathlib.Path) -> dict[str, tuple[float, str]]:
  """Id (``MRID`` etc., or ``IXI<n>`` for an ``IXI_ID`` column) -> (age, sex) from every usable CSV under root."""
  out: dict[str, tuple[float, str]] = {}
  for path in sorted(root.rglob('*.csv')):
    try:
      with open(path, newline='', encoding='utf-8-sig') as f:
        rows = list(csv.DictReader(f))
    except (OSError, UnicodeDecodeError, csv.Error) as e:
      raise DatasetError(f'{path}: cannot read CSV ({_one_line(e)})') from e
    if not rows:
      continue
    cols = {k.strip().lower(): k for k in rows[0] if k}
    id_col = next((cols[c] for c in _ID_COLUMNS if c in cols), None)
    age_col, sex_col = cols.get('age'), cols.get('sex') or cols.get('sex_id')
    if id_col is None or (age_col is None and sex_col is None):
      continue
    for row in rows:
      sid = (row.get(id_col) or '').strip()
      if not sid:
        continue
      if id_col == cols.get('ixi_id'):
        sid = f'IXI{int(float(sid))}' if sid.replace('.', '', 1).isdigit() else sid
      try:
        age = float(row.get(age_col) or 'nan') if age_col else math.nan
      except ValueError:
        age = math.nan
      sex = _SEX.get((row.get(sex_col) or '').strip().lower(), 'unknown') if sex_col else 'unknown'
      out[sid] = (age if math.isfinite(age) else -1.0, sex)
  return out


def find_subjects(manual_dir: str | os.PathLike[str]) -> list[Subject]:
  """All T1 volumes under ``manual_dir`` (sorted by id) with demographics; see the module docstring."""
  root = pathlib.Path(manual_dir)
  if not root.is_dir():
    raise DatasetError(f'{root}: manual_dir does not exist (see MANUAL_DOWNLOAD_INSTRUCTIONS)')
  demo = read_demographics(root)
  subjects: dict[str, Subject] = {}
  for path in sorted(root.rglob('*')):
    m = _T1_RE.match(path.name)
    if m is None or not path.is_file():
      continue
    sid = m['id']
    if sid in subjects:
      raise DatasetError(f'{path}: subject id {sid} also at {subjects[sid].path}')
    num = _ixi_number(sid)
    age, sex = demo.get(sid) or (demo.get(f'IXI{num}') if num is not None else None) or (-1.0, 'unknown')
    subjects[sid] = Subject(sid, path, age, sex)
  if not subjects:
    raise DatasetError(f'{root}: no IXI T1 volumes (*-T1.nii[.gz] / *_T1.nii[.gz]) found; see '
                       'MANUAL_DOWNLOAD_INSTRUCTIONS')
  return [subjects[k] for k in sorted(subjects)]


def read_lps(path: pathlib.Path) -> tuple[np.ndarray, tuple[float, float, float]]:
  """The volume reoriented to L,P,S as float32, and its voxel sizes (mm) in that order; errors -> DatasetError."""
  import nibabel as nib  # pylint: disable=g-import-not-at-top
  try:
    img = nib.load(path)
    if len(img.shape) != 3:
      raise DatasetError(f'{path}: expected a 3-D volume, got shape {img.shape}')
    ornt = nib.orientations.ornt_transform(nib.orientations.io_orientation(img.affine),
                                           nib.orientations.axcodes2ornt(('L', 'P', 'S')))
    img = img.as_reoriented(ornt)
    data = np.asarray(img.get_fdata(dtype=np.float32))
    zooms = tuple(float(z) for z in img.header.get_zooms()[:3])
  except DatasetError:
    raise
  except Exception as e:  # pylint: disable=broad-except  (nibabel raises many types)
    raise DatasetError(f'{path}: unreadable NIfTI ({_one_line(e)})') from e
  if not np.all(np.isfinite(data)):
    raise DatasetError(f'{path}: NaN or infinite voxel values')
  return data, zooms


def resample_plane(x: np.ndarray, spacing: tuple[float, float], resolution: int, fov_mm: float) -> np.ndarray:
  """[H, W] float32 with (row, col) ``spacing`` mm -> [R, R] at ``fov_mm / R`` mm/px; bilinear, pad -1 / crop."""
  target = fov_mm / resolution
  h = max(1, round(x.shape[0] * spacing[0] / target))
  w = max(1, round(x.shape[1] * spacing[1] / target))
  if (h, w) != x.shape:
    x = np.asarray(Image.fromarray(x.astype(np.float32), mode='F').resize((w, h), Image.BILINEAR))
  out = np.full((resolution, resolution), -1.0, np.float32)
  sr, sc = max(0, (h - resolution) // 2), max(0, (w - resolution) // 2)  # Crop offsets.
  dr, dc = max(0, (resolution - h) // 2), max(0, (resolution - w) // 2)  # Pad offsets.
  n_r, n_c = min(h, resolution), min(w, resolution)
  out[dr:dr + n_r, dc:dc + n_c] = x[sr:sr + n_r, sc:sc + n_c]
  return out


def select_slices(area_mm2: np.ndarray, min_area_mm2: float, z_range: tuple[float, float]) -> np.ndarray:
  """Axial indices with foreground area >= ``min_area_mm2`` inside ``z_range`` of the span of such slices."""
  big = np.nonzero(area_mm2 >= min_area_mm2)[0]
  if big.size == 0:
    return big
  lo, hi = big[0], big[-1]
  z0, z1 = lo + z_range[0] * (hi - lo), lo + z_range[1] * (hi - lo)
  return big[(big >= z0 - 1e-9) & (big <= z1 + 1e-9)]


def subject_examples(subject: Subject, resolution: int, fov_mm: float, foreground_fraction: float,
                     min_brain_area_mm2: float,
                     z_range: tuple[float, float]) -> Iterable[tuple[str, dict[str, object]]]:
  """Yields ``(key, example)`` for the kept axial slices of one volume (rules in the module docstring)."""
  vol, (sx, sy, sz) = read_lps(subject.path)
  del sz
  nonzero = vol[vol > 0]
  if nonzero.size == 0:
    raise DatasetError(f'{subject.path}: all voxels are zero')
  fg = vol > foreground_fraction * np.percentile(nonzero, 99.5)
  scaled = scale_intensity(vol, fg, subject.path)
  area = fg.sum(axis=(0, 1)) * (sx * sy)
  for z in select_slices(area, min_brain_area_mm2, z_range).tolist():
    image = resample_plane(scaled[:, :, z].T, (sy, sx), resolution, fov_mm)
    yield f'{subject.subject_id}_{z:03d}', {
        'image': np.clip(image, -1.0, 1.0)[..., None].astype(np.float32),
        'subject_id': subject.subject_id,
        'slice_index': np.int32(z),
        'age': np.float32(subject.age),
        'sex': subject.sex,
    }
