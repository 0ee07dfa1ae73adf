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
"""The downstream studies' dataset: built with TFDS (as ``python -m fsgan_jax.datasets.build``) unless present,
then read once into a deduplicated ``splits.SliceTable`` and the patient ids of every split.

The builder config follows the study config: ``data.resolution``, ``slice_policy``, ``min_tumor_area``, the seeds,
and the few-shot sizes ``built_ks`` (the grid's ks plus the classifier's negatives' pool), so one build serves both
studies.
"""

from __future__ import annotations

import os
import pathlib
from typing import Any, Optional, Sequence

from absl import logging
import ml_collections
import numpy as np

from fsgan_jax import errors
from fsgan_jax.datasets import common
from fsgan_jax.downstream import splits


def built_ks(config: ml_collections.ConfigDict) -> tuple[int, ...]:
  """The few-shot sizes the dataset is built with: ``ks`` + ``data.negative_patients`` (the classifier study) or
  + ``data.extra_ks`` (the segmentation study: the classifier's pool, so one build serves both studies)."""
  d = config.data
  extra = tuple(d.extra_ks) if 'extra_ks' in d else (d.negative_patients,)
  return tuple(sorted(set(config.ks) | set(extra)))


def dataset_config(config: ml_collections.ConfigDict) -> Any:
  """The builder config the study needs: base config + resolution, slice policy, ks (+ negatives) and seeds."""
  d = config.data
  module = common.builder_module(d.name)
  ks = built_ks(config)
  try:
    return module.make_config(d.base_config, resolution=d.resolution, slice_policy=d.slice_policy,
                              min_tumor_area=d.min_tumor_area, ks=ks, seeds=tuple(config.seeds))
  except (ValueError, TypeError) as e:
    raise errors.ConfigError(f'config.data ({d.name}/{d.base_config}): {e}') from None


def prepare_dataset(config: ml_collections.ConfigDict, workdir: str) -> tuple[pathlib.Path, str]:
  """Builds the dataset (as ``python -m fsgan_jax.datasets.build``) unless present; returns (data_dir, config name).

  A k (or ``negative_patients``) larger than the few-shot pool fails here, before anything trains.
  """
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  d = config.data
  data_dir = pathlib.Path(d.tfds_data_dir or os.path.join(workdir, 'tfds')).expanduser().resolve()
  cfg = dataset_config(config)
  folder = data_dir / d.name / cfg.name
  if not any((v / 'dataset_info.json').is_file() for v in folder.glob('*')):
    if not d.manual_dir:
      raise errors.ConfigError(f'{folder} is not built: set --config.data.manual_dir to the TCGA-LGG kaggle_3m folder '
                               '(or --config.data.tfds_data_dir to a built dataset)')
    manual = pathlib.Path(d.manual_dir).expanduser()
    if not manual.is_dir():
      raise errors.ConfigError(f'config.data.manual_dir={d.manual_dir!r} is not a directory and {folder} is not built')
    logging.info('building %s/%s into %s', d.name, cfg.name, data_dir)
    tfds.disable_progress_bar()
    builder = common.builder_module(d.name).Builder(config=cfg, data_dir=str(data_dir), file_format='array_record')
    try:
      builder.download_and_prepare(download_config=tfds.download.DownloadConfig(
          manual_dir=str(manual), download_mode=tfds.download.GenerateMode.REUSE_DATASET_IF_EXISTS))
    except (common.DatasetError, ValueError) as e:
      raise errors.ConfigError(f'config.data ({d.name}, ks {tuple(config.ks)} + negative_patients / extra_ks: '
                               f'{built_ks(config)}): {" ".join(str(e).split())}') from None
  return data_dir, cfg.name


def load_table(config: ml_collections.ConfigDict, data_dir: pathlib.Path, cfg_name: str,
               names: Optional[Sequence[str]] = None,
               with_masks: bool = False) -> tuple[splits.SliceTable, dict[str, tuple[str, ...]]]:
  """Reads every split the grid needs once; returns the deduplicated slice table and split -> patient ids.

  ``names``: the splits to read (None = those of ``splits.split_names`` for every cell, + heldout and test);
  ``with_masks``: also keep the ``mask`` feature (the segmentation study).
  """
  if names is None:
    names = {'heldout', 'test'}
    for k in config.ks:
      for s in config.seeds:
        names.update({v for r, v in splits.split_names(k, s, config.data.negative_patients).items()})
  seen: dict[tuple[str, str, int], int] = {}
  images, subject, area, masks = [], [], [], []
  patients: dict[str, tuple[str, ...]] = {}
  for name in sorted(names):
    rows = common.load_split(config.data.name, name, data_dir, cfg_name)
    patients[name] = tuple(sorted(set(str(x) for x in rows['subject_id'])))
    for i in range(len(rows['subject_id'])):
      key = (str(rows['subject_id'][i]), str(rows['folder'][i]), int(rows['slice_index'][i]))
      if key not in seen:
        seen[key] = len(subject)
        images.append(rows['image'][i])
        subject.append(key[0])
        area.append(int(rows['tumor_area'][i]))
        if with_masks:
          masks.append(rows['mask'][i])
  return splits.SliceTable(np.stack(images).astype(np.float32), np.asarray(subject), np.asarray(area, np.int64),
                           np.stack(masks).astype(np.uint8) if with_masks else None), patients
