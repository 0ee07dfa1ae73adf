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
"""Patient-disjoint splits of the downstream studies and the arrays they index.

``make_split`` (all patient-disjoint; the partition is the dataset builder's, ``datasets.common.partition``):

* positives (tumor class) = slices with tumor area >= ``min_tumor_area`` of the k patients of
  ``fewshot_k{k}_seed{S}``; the GAN of cell (k, S) is trained on exactly these slices and nothing else;
* negatives = slices with an empty mask of the ``negative_patients`` patients of ``fewshot_k{n}_seed{S}`` (nested
  splits: a superset of the k patients; the segmentation study passes n = k). Their tumor slices are never used;
* validation = the ``heldout`` patients, test = the ``test`` patients (both: tumor vs empty-mask slices). Slices
  with 0 < area < min_tumor_area are ambiguous and left out everywhere.

``resize_images`` / ``downsample_masks`` bring images and masks from the dataset resolution to a model's size as
the dataset builder downsamples (block mean / block majority).
"""

from __future__ import annotations

import dataclasses
from typing import Optional, Sequence

import jax
import numpy as np


@dataclasses.dataclass(frozen=True)
class SliceTable:
  """Every slice the study may use, once: images (N, R, R, C) in [-1, 1], patient id and tumor area per slice, and
  (``dataset.load_table(..., with_masks=True)``, the segmentation study) the uint8 0/1 tumor masks (N, R, R)."""
  images: Optional[np.ndarray]
  subject: np.ndarray
  tumor_area: np.ndarray
  masks: Optional[np.ndarray] = None


def split_names(k: int, seed: int, negative_patients: int) -> dict[str, str]:
  """Role -> dataset split name for cell (k, seed)."""
  return {'fewshot': f'fewshot_k{k}_seed{seed}', 'negatives': f'fewshot_k{negative_patients}_seed{seed}',
          'val': 'heldout', 'test': 'test'}


@dataclasses.dataclass(frozen=True)
class CellSplit:
  """Slice indices into a ``SliceTable`` per role, and the patients of each role, for one (k, seed)."""
  gan_train: np.ndarray  # the k patients' tumor slices: the GAN's whole training set (= train_pos)
  train_pos: np.ndarray
  train_neg: np.ndarray
  val_pos: np.ndarray
  val_neg: np.ndarray
  test_pos: np.ndarray
  test_neg: np.ndarray
  patients: dict[str, tuple[str, ...]]


def make_split(subject: np.ndarray, tumor_area: np.ndarray, patients: dict[str, Sequence[str]], k: int, seed: int,
               negative_patients: int, min_tumor_area: int) -> CellSplit:
  """The one place that decides which slices each role of cell (k, seed) uses (rules: module docstring).

  Args:
    subject: patient id per slice. tumor_area: mask pixels (at 256) per slice.
    patients: split name -> patient ids (``fewshot_k{k}_seed{S}``, ``fewshot_k{n}_seed{S}``, ``heldout``, ``test``).
    k, seed: the cell. negative_patients: n of the negatives' split. min_tumor_area: positive threshold.

  Raises:
    ValueError: the splits overlap or the k-split is not inside the negatives' split (a wrong dataset).
  """
  names = split_names(k, seed, negative_patients)
  missing = [n for n in names.values() if n not in patients]
  if missing:
    raise ValueError(f'dataset has no split(s) {missing}: rebuild it with these ks/seeds')
  role = {r: frozenset(patients[n]) for r, n in names.items()}
  if len(role['fewshot']) != k:
    raise ValueError(f'{names["fewshot"]} has {len(role["fewshot"])} patients, expected {k}')
  if not role['fewshot'] <= role['negatives']:
    raise ValueError(f'{names["fewshot"]} is not inside {names["negatives"]}: splits must be nested')
  for a, b in (('negatives', 'val'), ('negatives', 'test'), ('val', 'test')):
    if role[a] & role[b]:
      raise ValueError(f'patients in both {names[a]} and {names[b]}: {sorted(role[a] & role[b])[:3]}')
  pos, neg = tumor_area >= min_tumor_area, tumor_area == 0
  member = lambda r: np.isin(subject, sorted(role[r]))
  idx = lambda m: np.flatnonzero(m)
  train_pos = idx(member('fewshot') & pos)
  return CellSplit(gan_train=train_pos, train_pos=train_pos, train_neg=idx(member('negatives') & neg),
                   val_pos=idx(member('val') & pos), val_neg=idx(member('val') & neg),
                   test_pos=idx(member('test') & pos), test_neg=idx(member('test') & neg),
                   patients={'train_pos': tuple(sorted(role['fewshot'])), 'train_neg': tuple(sorted(role['negatives'])),
                             'val': tuple(sorted(role['val'])), 'test': tuple(sorted(role['test']))})


def resize_images(x: np.ndarray, size: int) -> np.ndarray:
  """(N, R, R, C) -> (N, size, size, C): block mean when R is a multiple of size (as the builder), else bilinear."""
  r = x.shape[1]
  if r == size:
    return np.asarray(x, np.float32)
  if r % size == 0:
    f = r // size
    return x.reshape(x.shape[0], size, f, size, f, x.shape[3]).mean(axis=(2, 4)).astype(np.float32)
  return np.asarray(jax.image.resize(x, (x.shape[0], size, size, x.shape[3]), 'bilinear'), np.float32)

def downsample_masks(masks: np.ndarray, size: int) -> np.ndarray:
  """Binary (N, R, R) masks -> float32 {0, 1} (N, size, size, 1) by block majority (ties -> background), as the
  dataset builder downsamples its masks; ``R`` must be a multiple of ``size``."""
  m = np.asarray(masks) > 0
  n, r = m.shape[0], m.shape[1]
  if r % size:
    raise ValueError(f'mask size {r} is not a multiple of {size}')
  f = r // size
  frac = m.reshape(n, size, f, size, f).mean(axis=(2, 4))
  return (frac > 0.5).astype(np.float32)[..., None]
