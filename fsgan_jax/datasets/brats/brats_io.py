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
"""BraTS raw-data handling (numpy + nibabel only): finding subjects, reading, labels, intensities, slices, splits.

Kept apart from the TFDS builder so every rule here is a plain function that tests can call directly.

Conventions (also in ``README.md`` beside this file):

* **Layouts.** Any folder under ``manual_dir`` that holds NIfTI files ``<anything><sep><token>.nii[.gz]`` (``sep``
  ``_`` or ``-``) with a contrast token is one subject; its id is the folder name. Tokens: ``t1``/``t1n`` -> t1,
  ``t1ce``/``t1c``/``t1gd`` -> t1ce, ``t2``/``t2w`` -> t2, ``flair``/``t2f`` -> flair, ``seg`` -> segmentation,
  ``brainmask`` -> brain mask. This covers BraTS 2019 (``HGG/``, ``LGG/``), 2020/2021 (``BraTS20_Training_XXX``,
  ``BraTS2021_XXXXX``), 2023 (``BraTS-GLI-XXXXX-XXX-{t1n,t1c,t2w,t2f,seg}``) and the BraTS-2015 example in shared
  data (``<s>_{flair,t1ce,seg,brainmask}``). BraTS-2020 subject 355's segmentation is misnamed
  ``W39_1998.09.19_Segm.nii``: a single ``*Segm.nii[.gz]`` file is used as the segmentation, with a warning.
* **Grade.** ``HGG``/``LGG`` from a parent folder of that name (2019), else from a ``name_mapping.csv`` (2020) in
  ``manual_dir`` (any depth) with a ``Grade`` column, else ``unknown`` (2021, 2023, examples).
* **Labels** are normalised to ONE scheme (BraTS-2017+ regions):
  0 background, 1 necrotic / non-enhancing tumor core (NCR/NET), 2 peritumoral edema (ED), 3 enhancing tumor (ET).
  Legacy files (<= 2021, and 2015 which also has 3 = non-enhancing) use {0, 1, 2, (3), 4}: 4 -> 3, 3 -> 1.
  2023 files (contrast tokens t1n/t1c/t2w/t2f) use {0, 1, 2, 3} already: unchanged. Other values: error.
* **Slices** are axial: ``vol[:, :, z].T`` (rows = second voxel axis, columns = first; for BraTS's L,P,S volumes
  anterior is up and patient right is on the image left). No reorientation by the affine.
* **Intensity**, per volume and contrast: brain voxels = the ``brainmask`` file (> 0.5) if present, else the
  contrast's nonzero voxels; clip to their (0.5, 99.5) percentiles, map linearly to [-1, 1]; non-brain -> -1.
* **Size**: a slice is padded (centered, with background: image -1, label 0) to the smallest multiple of the
  output resolution that holds it, then area-downsampled by that integer factor (image: block mean; labels: block
  majority, ties -> the lower label). BraTS 240x240 -> 256 is padding only; -> 128 is pad 256 + 2x2 mean.
* **Partition** (``common.partition``, shared by all builders; subject-disjoint, independent of numpy's RNG and of ks):
  subjects are ordered by ``sha256(f'partition:{partition_seed}:{subject_id}')``; the first
  ``n_test = ceil(test_fraction * N)`` are ``test``, the next ``n_heldout = ceil(heldout_fraction * N)`` are
  ``heldout``, the rest are the few-shot pool. For seed S the pool is ordered by
  ``sha256(f'fewshot:{S}:{subject_id}')`` and ``fewshot_k{k}_seed{S}`` takes the first k (so k-splits are nested).
"""

from __future__ import annotations

import csv
import dataclasses
import math
import os
import pathlib
import warnings
from typing import Iterable, Sequence

import numpy as np

from fsgan_jax.datasets.common import DatasetError
from fsgan_jax.datasets.common import Partition  # pylint: disable=unused-import  (shared; re-exported)
from fsgan_jax.datasets.common import partition  # pylint: disable=unused-import

CONTRASTS = ('t1', 't1ce', 't2', 'flair')
GRADES = ('unknown', 'HGG', 'LGG')
LABEL_NAMES = ('background', 'necrotic/non-enhancing core', 'edema', 'enhancing tumor')

# File-name token -> role. 2023 tokens also mark the subject as using the 2023 label values.
_TOKENS = {
    't1': 't1', 't1n': 't1',
    't1ce': 't1ce', 't1c': 't1ce', 't1gd': 't1ce',
    't2': 't2', 't2w': 't2',
    'flair': 'flair', 't2f': 'flair',
    'seg': 'seg',
    'brainmask': 'brainmask',
}
_TOKENS_2023 = frozenset({'t1n', 't1c', 't2w', 't2f'})
# Raw label -> normalised label (see module docstring).
_LABEL_MAPS = {
    'legacy': {0: 0, 1: 1, 2: 2, 3: 1, 4: 3},
    '2023': {0: 0, 1: 1, 2: 2, 3: 3},
}
_MISNAMED_SEG_SUFFIXES = ('segm.nii', 'segm.nii.gz')


@dataclasses.dataclass(frozen=True)
class Subject:
  """One subject folder: id, files by role, grade and which raw label scheme its segmentation uses."""
  subject_id: str
  folder: pathlib.Path
  files: dict[str, pathlib.Path]
  grade: str = 'unknown'
  label_scheme: str = 'legacy'


def _strip_nii(name: str) -> str | None:
  lower = name.lower()
  for ext in ('.nii.gz', '.nii'):
    if lower.endswith(ext):
      return name[:-len(ext)]
  return None


def _token(stem: str) -> str:
  cut = max(stem.rfind('_'), stem.rfind('-'))
  return stem[cut + 1:].lower()


def _read_grades(manual_dir: pathlib.Path) -> dict[str, str]:
  """Subject id -> HGG/LGG from every ``name_mapping.csv`` under ``manual_dir`` (BraTS 2020)."""
  grades = {}
  for path in sorted(manual_dir.rglob('name_mapping*.csv')):
    try:
      with open(path, newline='', encoding='utf-8-sig') as f:
        rows = list(csv.DictReader(f))
    except (OSError, UnicodeDecodeError, csv.Error) as e:
      raise DatasetError(f'{path}: cannot read CSV ({type(e).__name__}: {e})') from e
    for row in rows:
      grade = next((v for k, v in row.items() if k and k.strip().lower() == 'grade'), None)
      if grade is None or grade.strip().upper() not in ('HGG', 'LGG'):
        continue
      for k, v in row.items():
        if k and 'subject' in k.lower() and v:
          grades[v.strip()] = grade.strip().upper()
  return grades


def find_subjects(manual_dir: str | os.PathLike[str]) -> list[Subject]:
  """Finds all subject folders under ``manual_dir`` (sorted by id); see the module docstring for the rules.

  Raises:
    DatasetError: ``manual_dir`` missing or without subjects, two files for one role in a folder, or two folders
      with the same subject id.
  """
  root = pathlib.Path(manual_dir)
  if not root.is_dir():
    raise DatasetError(f'{root}: manual_dir does not exist (see MANUAL_DOWNLOAD_INSTRUCTIONS)')
  grades = _read_grades(root)
  subjects: dict[str, Subject] = {}
  for folder, _, names in sorted(os.walk(root)):
    folder = pathlib.Path(folder)
    files: dict[str, pathlib.Path] = {}
    misnamed = []
    is_2023 = False
    for name in sorted(names):
      stem = _strip_nii(name)
      if stem is None:
        continue
      if name.lower().endswith(_MISNAMED_SEG_SUFFIXES):
        misnamed.append(folder / name)
        continue
      role = _TOKENS.get(_token(stem))
      if role is None:
        continue
      if role in files:
        raise DatasetError(f'{folder / name}: second {role} file in the folder (also {files[role].name})')
      files[role] = folder / name
      is_2023 |= _token(stem) in _TOKENS_2023
    if not any(r in files for r in CONTRASTS):
      continue
    if 'seg' not in files and len(misnamed) == 1:
      warnings.warn(f'{misnamed[0]}: misnamed segmentation (known BraTS-2020 subject 355 issue); using it as seg',
                    stacklevel=2)
      files['seg'] = misnamed[0]
    sid = folder.name
    if sid in subjects:
      raise DatasetError(f'{folder}: subject id {sid} also at {subjects[sid].folder}')
    grade = grades.get(sid, 'unknown')
    for parent in folder.relative_to(root).parents:
      if parent.name.upper() in ('HGG', 'LGG'):
        grade = parent.name.upper()
    subjects[sid] = Subject(sid, folder, files, grade, '2023' if is_2023 else 'legacy')
  if not subjects:
    raise DatasetError(f'{root}: no BraTS subject folders (with *_flair/_t1/_t1ce/_t2/_seg .nii[.gz] files) '
                       'found; see MANUAL_DOWNLOAD_INSTRUCTIONS')
  return [subjects[k] for k in sorted(subjects)]


def check_subject(subject: Subject, contrasts: Sequence[str]) -> tuple[int, ...]:
  """Checks files and shapes from the NIfTI headers only (cheap, before anything is written); returns the shape."""
  import nibabel as nib  # pylint: disable=g-import-not-at-top
  if 'seg' not in subject.files:
    raise DatasetError(f'{subject.folder}: missing segmentation (no *_seg.nii[.gz] file)')
  shape, first = None, None
  for role in ('seg', *contrasts, 'brainmask'):  # The segmentation's shape is the reference.
    if role not in subject.files:
      if role == 'brainmask':
        continue
      raise DatasetError(f'{subject.folder}: missing {role} (no *_{role}.nii[.gz] file)')
    path = subject.files[role]
    try:
      img_shape = tuple(int(s) for s in nib.load(path).shape)
    except Exception as e:  # pylint: disable=broad-except  (nibabel raises many types)
      raise DatasetError(f'{path}: unreadable NIfTI ({_one_line(e)})') from e
    if len(img_shape) != 3:
      raise DatasetError(f'{path}: expected a 3-D volume, got shape {img_shape}')
    if shape is None:
      shape, first = img_shape, path
    elif img_shape != shape:
      raise DatasetError(f'{path}: shape {img_shape} differs from {first.name} shape {shape}')
  return shape


def _one_line(e: BaseException) -> str:
  return f'{type(e).__name__}: ' + ' '.join(str(e).split())


def read_volume(path: pathlib.Path) -> np.ndarray:
  """Reads a NIfTI volume as float32; any read failure (truncated gzip, bad header) -> one-line DatasetError."""
  import nibabel as nib  # pylint: disable=g-import-not-at-top
  try:
    data = np.asarray(nib.load(path).get_fdata(dtype=np.float32))
  except Exception as e:  # pylint: disable=broad-except
    raise DatasetError(f'{path}: unreadable NIfTI ({_one_line(e)})') from e
  if not np.all(np.isfinite(data)):
    raise DatasetError(f'{path}: NaN or infinite voxel values')
  return data


def normalise_labels(seg: np.ndarray, scheme: str, path: pathlib.Path) -> np.ndarray:
  """Maps raw BraTS labels to the project scheme (0 bg, 1 NCR/NET, 2 ED, 3 ET) as uint8; unknown values -> error."""
  mapping = _LABEL_MAPS[scheme]
  values = np.unique(seg)
  bad = [int(v) if float(v).is_integer() else v for v in values.tolist() if v not in mapping]
  if bad:
    raise DatasetError(f'{path}: unknown label values {bad[:8]} (expected {sorted(mapping)} for the {scheme} '
                       'BraTS scheme)')
  lut = np.zeros(max(mapping) + 1, np.uint8)
  for raw, new in mapping.items():
    lut[raw] = new
  return lut[seg.astype(np.int64)]


def scale_intensity(vol: np.ndarray, brain: np.ndarray, path: pathlib.Path,
                    percentiles: tuple[float, float] = (0.5, 99.5)) -> np.ndarray:
  """Clips to the brain voxels' percentiles, maps linearly to [-1, 1]; non-brain voxels -> -1 (float32)."""
  values = vol[brain]
  if values.size == 0:
    raise DatasetError(f'{path}: no brain voxels (all zero, or empty brain mask)')
  lo, hi = np.percentile(values, percentiles)
  if not hi > lo:
    raise DatasetError(f'{path}: constant intensity inside the brain ({lo:g}); cannot scale')
  out = (np.clip(vol, lo, hi) - lo) * (2.0 / (hi - lo)) - 1.0
  return np.where(brain, out, -1.0).astype(np.float32)


def resize_plane(x: np.ndarray, resolution: int, fill: float, labels: bool = False) -> np.ndarray:
  """Pads [H, W, ...] (centered, ``fill``) to the smallest multiple of ``resolution`` holding it, then downsamples.

  Images: block mean. Label maps (``labels=True``, values 0..3): block majority, ties -> the lower label.
  """
  h, w = x.shape[:2]
  side = resolution * max(1, math.ceil(max(h, w) / resolution))
  pad = [((side - h) // 2, side - h - (side - h) // 2), ((side - w) // 2, side - w - (side - w) // 2)]
  x = np.pad(x, pad + [(0, 0)] * (x.ndim - 2), constant_values=fill)
  f = side // resolution
  if f == 1:
    return x
  blocks = x.reshape(resolution, f, resolution, f, *x.shape[2:])
  if not labels:
    return blocks.mean(axis=(1, 3)).astype(x.dtype)
  counts = np.stack([(blocks == v).sum(axis=(1, 3)) for v in range(len(LABEL_NAMES))], axis=-1)
  return counts.argmax(axis=-1).astype(x.dtype)


@dataclasses.dataclass(frozen=True)
class SlicePolicy:
  """Which axial slices to keep: ``tumor``, ``brain`` or ``nontumor``, with native-pixel area thresholds."""
  kind: str = 'tumor'
  min_tumor_area: int = 100
  min_brain_area: int = 1000


def select_slices(tumor_area: np.ndarray, brain_area: np.ndarray, policy: SlicePolicy) -> np.ndarray:
  """Axial indices kept by ``policy``. Areas are per-slice pixel counts at the native resolution.

  ``tumor``: tumor area >= ``min_tumor_area``; ``brain``: brain area >= ``min_brain_area``; ``nontumor``: brain
  slices without any tumor pixel.
  """
  if policy.kind == 'tumor':
    keep = tumor_area >= policy.min_tumor_area
  elif policy.kind == 'brain':
    keep = brain_area >= policy.min_brain_area
  elif policy.kind == 'nontumor':
    keep = (brain_area >= policy.min_brain_area) & (tumor_area == 0)
  else:
    raise ValueError(f'unknown slice policy {policy.kind!r} (tumor, brain, nontumor)')
  return np.nonzero(keep)[0]


def subject_examples(subject: Subject, contrasts: Sequence[str], resolution: int,
                     policy: SlicePolicy) -> Iterable[tuple[str, dict[str, object]]]:
  """Yields ``(key, example)`` for the kept slices of one subject (see the module docstring for every rule)."""
  shape = check_subject(subject, contrasts)
  seg_path = subject.files['seg']
  seg = read_volume(seg_path)
  if not np.array_equal(seg, np.round(seg)):
    raise DatasetError(f'{seg_path}: non-integer label values')
  labels = normalise_labels(seg, subject.label_scheme, seg_path)
  mask_file = subject.files.get('brainmask')
  given_brain = read_volume(mask_file) > 0.5 if mask_file is not None else None
  channels, brain_any = [], np.zeros(shape, bool)
  for c in contrasts:
    vol = read_volume(subject.files[c])
    brain = given_brain if given_brain is not None else vol != 0
    channels.append(scale_intensity(vol, brain, subject.files[c]))
    brain_any |= brain
  tumor_area = (labels > 0).sum(axis=(0, 1))
  brain_area = brain_any.sum(axis=(0, 1))
  grade = subject.grade
  for z in select_slices(tumor_area, brain_area, policy).tolist():
    image = np.stack([ch[:, :, z].T for ch in channels], axis=-1)
    mask = labels[:, :, z].T
    yield f'{subject.subject_id}_{z:03d}', {
        'image': np.clip(resize_plane(image, resolution, -1.0), -1.0, 1.0).astype(np.float32),
        'mask': resize_plane(mask, resolution, 0, labels=True).astype(np.uint8),
        'subject_id': subject.subject_id,
        'slice_index': np.int32(z),
        'tumor_area': np.int32(tumor_area[z]),
        'grade': grade,
    }
