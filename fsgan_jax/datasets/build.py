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
"""Builds a dataset without TensorFlow or apache-beam: ``python -m fsgan_jax.datasets.build NAME [flags]``.

Example (3 example subjects, one subject per split)::

  python -m fsgan_jax.datasets.build brats --manual_dir=PATH/brats_examples --data_dir=/tmp/tfds \\
      --config=flair_256_tumor --ks=1 --seeds=0 --test_fraction=0.2 --heldout_fraction=0.2

``--config`` picks a named config; any builder-specific flag (``--ks --seeds --contrasts --resolution
--slice_policy --min_tumor_area --min_brain_area --test_fraction --heldout_fraction --partition_seed`` for brats;
lgg_kaggle3m takes the same minus ``--min_brain_area``; ixi takes ``--resolution --fov_mm --foreground_fraction
--min_brain_area_mm2 --z_range=LO,HI --test_fraction --partition_seed``) overrides its field and makes a custom
config whose name the command prints (pass that name to ``load_split``).
Output: array_record files under ``DATA_DIR/NAME/CONFIG/VERSION/``; TFDS writes into a temporary folder and
renames it at the end, so a failed build leaves no complete-looking dataset folder. Prints one line per split.
"""

from __future__ import annotations

import argparse
import sys
from typing import Sequence

from fsgan_jax.datasets import common


def _ints(s: str) -> tuple[int, ...]:
  return tuple(int(v) for v in s.split(',') if v.strip())


def _strs(s: str) -> tuple[str, ...]:
  return tuple(v.strip() for v in s.split(',') if v.strip())


# Flag -> parser, for the override flags every builder may understand (unknown fields are rejected by its config).
_OVERRIDES = {
    'contrasts': _strs, 'resolution': int, 'slice_policy': str, 'min_tumor_area': int, 'min_brain_area': int,
    'ks': _ints, 'seeds': _ints, 'test_fraction': float, 'heldout_fraction': float, 'partition_seed': int,
    # ixi only:
    'fov_mm': float, 'foreground_fraction': float, 'min_brain_area_mm2': float,
    'z_range': lambda s: tuple(float(v) for v in s.split(',')),
}


def main(argv: Sequence[str] | None = None) -> int:
  """Parses flags, builds, prints the config name and the examples per split; returns the exit code."""
  p = argparse.ArgumentParser(prog='python -m fsgan_jax.datasets.build', description=__doc__.splitlines()[0])
  p.add_argument('name', choices=sorted(common.BUILDERS))
  p.add_argument('--manual_dir', required=True, help='folder with the raw data')
  p.add_argument('--data_dir', required=True, help='TFDS output folder')
  p.add_argument('--config', default=None, help='named config (default: the builder default)')
  p.add_argument('--force', action='store_true', help='rebuild even if the dataset folder exists')
  for flag, parse in _OVERRIDES.items():
    p.add_argument(f'--{flag}', type=parse, default=None)
  args = p.parse_args(argv)

  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  tfds.disable_progress_bar()
  module = common.builder_module(args.name)
  overrides = {k: getattr(args, k) for k in _OVERRIDES if getattr(args, k) is not None}
  try:
    if overrides:
      config = module.make_config(args.config, **overrides)
    else:
      config = args.config or module.Builder.DEFAULT_CONFIG_NAME
    builder = module.Builder(config=config, data_dir=args.data_dir, file_format='array_record')
    mode = tfds.download.GenerateMode.FORCE_REDOWNLOAD if args.force else None
    builder.download_and_prepare(download_config=tfds.download.DownloadConfig(
        manual_dir=args.manual_dir, download_mode=mode or tfds.download.GenerateMode.REUSE_DATASET_IF_EXISTS))
  except (common.DatasetError, ValueError, TypeError) as e:  # TypeError: a flag the builder does not take.
    print(f'error: {e}', file=sys.stderr)
    return 1
  print(f'{args.name}/{builder.builder_config.name} {builder.version} -> {builder.data_dir}')
  for split, info in sorted(builder.info.splits.items()):
    print(f'  {split}: {info.num_examples} examples')
  return 0


if __name__ == '__main__':
  sys.exit(main())
