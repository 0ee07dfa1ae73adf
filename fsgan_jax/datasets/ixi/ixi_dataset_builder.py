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
"""TFDS builder for IXI healthy T1 axial slices: the large source domain for transfer learning (array_record).

Build: ``python -m fsgan_jax.datasets.build ixi --manual_dir=DIR --data_dir=OUT --config=t1_256``; read:
``fsgan_jax.datasets.load_split('ixi', 'train', OUT, config=...)``.

Features (conventions in ``ixi_io``'s docstring and README.md):

* ``image``: float32 [R, R, 1] in [-1, 1] (per-volume (0.5, 99.5) percentile clipping of head voxels; background -1).
* ``subject_id`` (text, e.g. ``IXI012-HH-1211``), ``slice_index`` (int32, axial index after reorienting to L,P,S),
  ``age`` (float32 years, -1 unknown), ``sex`` (ClassLabel unknown/F/M).

Splits: ``train`` and ``test``, subject-disjoint by ``common.partition`` (the training split is its pool; no
few-shot splits: this is the source domain).
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import numpy as np
import tensorflow_datasets as tfds

from fsgan_jax.datasets import common
from fsgan_jax.datasets.common import DatasetError
from fsgan_jax.datasets.common import partition
from fsgan_jax.datasets.ixi import ixi_io


@dataclasses.dataclass(eq=False)
class IxiConfig(tfds.core.BuilderConfig):
  """What to build.

  Attributes:
    resolution: output side R (power of two >= 8).
    fov_mm: field of view of the output (R pixels = fov_mm mm); 256 = BraTS's scale (1 mm/px at 256).
    foreground_fraction: head mask threshold, as a fraction of the 99.5th percentile of nonzero voxels.
    min_brain_area_mm2: head-foreground area for a slice to be kept.
    z_range: kept part (fractions) of the axial span of slices above the area threshold (drops neck slices).
    test_fraction: fraction of subjects in ``test`` (rounded up).
    partition_seed: fixes the test subjects.
  """
  resolution: int = 256
  fov_mm: float = 256.0
  foreground_fraction: float = 0.1
  min_brain_area_mm2: float = 10000.0
  z_range: tuple[float, float] = (0.4, 1.0)
  test_fraction: float = 0.2
  partition_seed: int = 0

  def __post_init__(self):
    self.z_range = tuple(float(v) for v in self.z_range)
    if self.resolution < 8 or self.resolution & (self.resolution - 1):
      raise ValueError(f'resolution {self.resolution}: need a power of two >= 8')
    if len(self.z_range) != 2 or not 0 <= self.z_range[0] <= self.z_range[1] <= 1:
      raise ValueError(f'z_range {self.z_range}: need 0 <= lo <= hi <= 1')
    if not 0 < self.test_fraction < 1 or not 0 < self.foreground_fraction < 1 or self.fov_mm <= 0:
      raise ValueError(f'test_fraction {self.test_fraction}, foreground_fraction {self.foreground_fraction}: need '
                       f'in (0, 1); fov_mm {self.fov_mm}: need > 0')

  def params(self) -> dict[str, Any]:
    """The build parameters (everything but TFDS's name/version/description fields)."""
    return common.config_params(self)


_NAMED_PARAMS: dict[str, dict[str, Any]] = {'t1_256': dict(resolution=256), 't1_128': dict(resolution=128)}


def make_config(name: str | None = None, **params: Any) -> IxiConfig:
  """A config from parameters (optionally overriding a named one): ``t1_<R>``, plus ``_x<hash>`` if not default."""
  if name is not None and name not in _NAMED_PARAMS:
    raise ValueError(f'unknown config {name!r} (named configs: {", ".join(_NAMED_PARAMS)})')
  base = dict(_NAMED_PARAMS[name]) if name is not None else {}
  base.update({k: v for k, v in params.items() if v is not None})
  full = IxiConfig(name='probe', **base).params()  # Validates and fills defaults.
  name = common.config_name(f't1_{full["resolution"]}', full,
                            IxiConfig(name='defaults', resolution=full['resolution']).params())
  return IxiConfig(name=name, description=json.dumps(full, sort_keys=True), **full)


def _named_config(name: str) -> IxiConfig:
  full = IxiConfig(name='probe', **_NAMED_PARAMS[name]).params()
  return IxiConfig(name=name, description=json.dumps(full, sort_keys=True), **full)


class Builder(tfds.core.GeneratorBasedBuilder):
  """IXI T1 volumes (original release or the project's shared/data/ixi_t1 subset) as axial brain slices."""

  VERSION = tfds.core.Version('1.0.0')
  RELEASE_NOTES = {'1.0.0': 'Initial release.'}
  BUILDER_CONFIGS = [_named_config(n) for n in _NAMED_PARAMS]
  DEFAULT_CONFIG_NAME = 't1_256'
  MANUAL_DOWNLOAD_INSTRUCTIONS = """\
  Download IXI-T1.tar from https://brain-development.org/ixi-dataset/ (license CC BY-SA 3.0), unpack it into a
  folder and pass that folder as --manual_dir. For age/sex, export IXI.xls to CSV (columns IXI_ID, SEX_ID, AGE)
  into the same folder. The project's shared/data/ixi_t1 (t1/*_T1.nii.gz + participants.csv) also works.
  Attribute: "IXI dataset, http://brain-development.org/ixi-dataset/".
  """

  def _info(self) -> tfds.core.DatasetInfo:
    r = self.builder_config.resolution
    return self.dataset_info_from_configs(
        features=tfds.features.FeaturesDict({
            'image': tfds.features.Tensor(shape=(r, r, 1), dtype=np.float32, encoding='zlib'),
            'subject_id': tfds.features.Text(),
            'slice_index': tfds.features.Scalar(dtype=np.int32),
            'age': tfds.features.Scalar(dtype=np.float32),
            'sex': tfds.features.ClassLabel(names=ixi_io.SEXES),
        }),
        supervised_keys=None,
        homepage='https://brain-development.org/ixi-dataset/',
        metadata=tfds.core.MetadataDict(params=self.builder_config.params()),
    )

  def _split_generators(self, dl_manager: tfds.download.DownloadManager) -> dict[str, Any]:
    """Finds the volumes, partitions subjects into train/test; one generator per split."""
    cfg = self.builder_config
    try:
      manual_dir = dl_manager.manual_dir
    except AssertionError as e:  # TFDS's message is many lines; ours names the folder.
      where = getattr(dl_manager, '_manual_dir', None) or 'manual_dir'
      raise DatasetError(f'{where}: manual_dir is missing or empty; see Builder.MANUAL_DOWNLOAD_INSTRUCTIONS '
                         '(IXI-T1.tar from brain-development.org)') from e
    subjects = {s.subject_id: s for s in ixi_io.find_subjects(manual_dir)}
    part = partition(sorted(subjects), partition_seed=cfg.partition_seed, test_fraction=cfg.test_fraction,
                     heldout_fraction=0.0, ks=(), seeds=(), where=str(manual_dir))
    if not part.pool:
      raise DatasetError(f'{manual_dir}: {len(subjects)} subject(s) leave no training subject after the test split')
    return {'train': self._generate_examples([subjects[i] for i in part.pool]),
            'test': self._generate_examples([subjects[i] for i in part.test])}

  def _generate_examples(self, subjects: list[ixi_io.Subject]):
    """Yields the kept axial slices of ``subjects`` (keys ``<subject>_<zzz>``)."""
    cfg = self.builder_config
    for s in subjects:
      yield from ixi_io.subject_examples(s, cfg.resolution, cfg.fov_mm, cfg.foreground_fraction,
                                         cfg.min_brain_area_mm2, cfg.z_range)
