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
"""Makes the bundled held-out set ``fsgan_jax/data/lgg_flair_heldout/`` from the project's data folder (``--shared``).

Rule: the 10 TCGA-LGG patients that are NOT in lgg_flair_100 (the 110 patient folders sorted by name minus the
100 at positions round(linspace(0, 109, 100))); ALL their tumor slices (mask area > 0), copied byte-for-byte
from ``lgg_kaggle3m/flair/``. Subject-disjoint from the training set by construction.

  python tools/make_lgg_heldout.py --shared DATA_DIR [--out fsgan_jax/data/lgg_flair_heldout]
"""

import argparse
import csv
import pathlib
import shutil

import numpy as np


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__)
  parser.add_argument('--shared', required=True,
                      help='the project data folder holding lgg_kaggle3m/ and lgg_flair_100/ (maintainers only)')
  parser.add_argument('--out', default='fsgan_jax/data/lgg_flair_heldout')
  args = parser.parse_args()
  shared = pathlib.Path(args.shared)
  out = pathlib.Path(args.out)
  rows = list(csv.DictReader(open(shared / 'lgg_kaggle3m' / 'metadata.csv')))
  folders = sorted({r['folder'] for r in rows})
  assert len(folders) == 110, len(folders)
  train = {folders[int(i)] for i in np.round(np.linspace(0, 109, 100))}
  heldout = [f for f in folders if f not in train]
  assert len(heldout) == 10
  out.mkdir(parents=True, exist_ok=True)
  index = []
  for folder in heldout:
    tumor = sorted((r for r in rows if r['folder'] == folder and r['has_tumor'] == '1'),
                   key=lambda r: int(r['slice_index']))
    for r in tumor:
      name = f'{folder}_{r["slice_index"]}.png'
      shutil.copyfile(shared / 'lgg_kaggle3m' / r['file'], out / name)
      index.append((name, r['patient_id'], folder, r['slice_index'], r['tumor_pixels']))
  with open(out / 'index.csv', 'w', newline='') as f:
    w = csv.writer(f)
    w.writerow(['file', 'patient_id', 'folder', 'slice_index', 'tumor_pixels'])
    w.writerows(index)
  print(f'{len(index)} slices of {len(heldout)} patients -> {out}')


if __name__ == '__main__':
  main()
