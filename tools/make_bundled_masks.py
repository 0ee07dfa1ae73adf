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
"""Makes the tumor masks of the bundled sets (``fsgan_jax/data/lgg_flair_100_masks``, ``lgg_flair_heldout_masks``).

For every bundled FLAIR slice (``lgg_flair_100/NNN_<folder>_<slice>.png`` and ``lgg_flair_heldout/<folder>_<slice>
.png``) the TCGA-LGG (kaggle_3m, Buda et al.) mask of the same slice, from ``lgg_kaggle3m/masks.npz`` of the
project's data folder, as an 8-bit PNG with the same file name (0 = background, 255 = FLAIR abnormality). Same
license as the images (CC BY-NC-SA 4.0).

  python tools/make_bundled_masks.py --shared DATA_DIR
"""

import argparse
import pathlib
import re

import numpy as np
from PIL import Image

_NAME = re.compile(r'^(?:\d{3}_)?(TCGA_[A-Z0-9]+_[A-Z0-9]+_\d{8})_(\d+)\.png$')


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__)
  parser.add_argument('--shared', required=True, help='the project data folder holding lgg_kaggle3m/masks.npz')
  parser.add_argument('--package_data', default='fsgan_jax/data')
  args = parser.parse_args()
  masks = np.load(pathlib.Path(args.shared) / 'lgg_kaggle3m' / 'masks.npz')
  data = pathlib.Path(args.package_data)
  for name in ('lgg_flair_100', 'lgg_flair_heldout'):
    out = data / f'{name}_masks'
    out.mkdir(exist_ok=True)
    n = 0
    for png in sorted((data / name).glob('*.png')):
      m = _NAME.match(png.name)
      if not m:
        raise SystemExit(f'{png}: unexpected file name')
      folder, slice_index = m.group(1), int(m.group(2))
      rows = np.flatnonzero(masks[f'{folder}__slice_index'] == slice_index)
      if len(rows) != 1:
        raise SystemExit(f'{png}: slice {slice_index} of {folder} not in masks.npz')
      mask = np.unpackbits(masks[f'{folder}__mask'][rows[0]], axis=-1).astype(bool)
      Image.fromarray(mask.astype(np.uint8) * 255).save(out / png.name, optimize=True)
      n += 1
    print(f'{n} masks -> {out}')


if __name__ == '__main__':
  main()
