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
"""TFDS builder for TCGA-LGG kaggle_3m slices (Buda et al.) with patient-disjoint, seeded few-shot splits.

Build: ``python -m fsgan_jax.datasets.build lgg_kaggle3m --manual_dir=DIR --data_dir=OUT --config=flair_256_tumor``
where DIR is the original ``kaggle_3m`` folder or the compact ``shared/data/lgg_kaggle3m`` form (FLAIR only).
Read: ``fsgan_jax.datasets.load_split('lgg_kaggle3m', 'fewshot_k10_seed0', OUT, config=...)``.

Features (conventions in ``lgg_kaggle3m_io``'s docstring and README.md):

* ``image``: float32 [R, R, C] in [-1, 1] = uint8 / 127.5 - 1; channels = ``config.contrasts`` (pre, flair, post).
* ``mask``: uint8 [R, R], 1 = FLAIR abnormality.
* ``subject_id`` (text, TCGA patient id), ``folder`` (text, source folder), ``slice_index`` (int32, from the file
  name), ``tumor_area`` (int32, mask pixels at 256x256), ``institution`` (text, tissue-source-site code).

Splits: ``fewshot_k{k}_seed{S}``, ``heldout``, ``test`` by ``common.partition`` over patient ids (as BraTS).
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
from fsgan_jax.datasets.lgg_kaggle3m import lgg_kaggle3m_io as lio

_DEFAULT_KS = (5, 10, 25, 50)
_DEFAULT_SEEDS = (0, 1, 2)


@dataclasses.dataclass(eq=False)
class LggConfig(tfds.core.BuilderConfig):
  """What to build.

  Attributes:
    contrasts: channels, a subset of pre, flair, post in channel order (compact form: flair only).
    resolution: output side R (power of two, 8..256; 256 native, smaller = block mean).
    slice_policy: ``tumor`` (mask area >= min_tumor_area), ``all`` or ``nontumor`` (empty mask).
    min_tumor_area: mask pixels at 256x256 for ``tumor``.
    ks / seeds / test_fraction / heldout_fraction / partition_seed: as the BraTS builder (patients, not slices).
  """
  contrasts: tuple[str, ...] = ('flair',)
  resolution: int = 256
  slice_policy: str = 'tumor'
  min_tumor_area: int = 100
  ks: tuple[int, ...] = _DEFAULT_KS
  seeds: tuple[int, ...] = _DEFAULT_SEEDS
  test_fraction: float = 0.2
  heldout_fraction: float = 0.1
  partition_seed: int = 0

  def __post_init__(self):
    self.contrasts = tuple(self.contrasts)
    self.ks = tuple(int(k) for k in self.ks)
    self.seeds = tuple(int(s) for s in self.seeds)
    bad = [c for c in self.contrasts if c not in lio.CHANNELS]
    if not self.contrasts or bad or len(set(self.contrasts)) != len(self.contrasts):
      raise ValueError(f'contrasts {self.contrasts}: need distinct values from {lio.CHANNELS}')
    if not 8 <= self.resolution <= lio.NATIVE or self.resolution & (self.resolution - 1):
      raise ValueError(f'resolution {self.resolution}: need a power of two in [8, 256]')
    if self.slice_policy not in ('tumor', 'all', 'nontumor'):
      raise ValueError(f'slice_policy {self.slice_policy!r}: need tumor, all or nontumor')
    common.check_split_fields(self.ks, self.seeds, self.test_fraction, self.heldout_fraction)

  def params(self) -> dict[str, Any]:
    """The build parameters (everything but TFDS's name/version/description fields)."""
    return common.config_params(self)


_NAMED_PARAMS: dict[str, dict[str, Any]] = {
    'flair_256_tumor': dict(contrasts=('flair',), resolution=256, slice_policy='tumor'),
    'flair_128_tumor': dict(contrasts=('flair',), resolution=128, slice_policy='tumor'),
    'flair_256_all': dict(contrasts=('flair',), resolution=256, slice_policy='all'),
    'flair_256_nontumor': dict(contrasts=('flair',), resolution=256, slice_policy='nontumor'),
    'all_256_tumor': dict(contrasts=lio.CHANNELS, resolution=256, slice_policy='tumor'),
    'all_128_tumor': dict(contrasts=lio.CHANNELS, resolution=128, slice_policy='tumor'),
}


def make_config(name: str | None = None, **params: Any) -> LggConfig:
  """A config from parameters, optionally starting from a named one; naming rule as ``brats.make_config``.

  The name is ``<contrasts>_<resolution>_<policy>`` (``all`` = pre-flair-post) when the other parameters are the
  defaults, else that plus ``_x<8 hex digits of a hash of all parameters>``.
  """
  if name is not None and name not in _NAMED_PARAMS:
    raise ValueError(f'unknown config {name!r} (named configs: {", ".join(_NAMED_PARAMS)})')
  base = dict(_NAMED_PARAMS[name]) if name is not None else {}
  base.update({k: v for k, v in params.items() if v is not None})
  full = LggConfig(name='probe', **base).params()  # Validates and fills defaults.
  contrasts = 'all' if full['contrasts'] == lio.CHANNELS else '-'.join(full['contrasts'])
  defaults = LggConfig(name='defaults', contrasts=full['contrasts'], resolution=full['resolution'],
                       slice_policy=full['slice_policy']).params()
  name = common.config_name(f'{contrasts}_{full["resolution"]}_{full["slice_policy"]}', full, defaults)
  return LggConfig(name=name, description=json.dumps(full, sort_keys=True), **full)


def _named_config(name: str) -> LggConfig:
  full = LggConfig(name='probe', **_NAMED_PARAMS[name]).params()
  return LggConfig(name=name, description=json.dumps(full, sort_keys=True), **full)


class Builder(tfds.core.GeneratorBasedBuilder):
  """TCGA-LGG kaggle_3m (original TIF layout or the project's compact FLAIR form) as few-shot slice datasets."""

  VERSION = tfds.core.Version('1.0.0')
  RELEASE_NOTES = {'1.0.0': 'Initial release.'}
  BUILDER_CONFIGS = [_named_config(n) for n in _NAMED_PARAMS]
  DEFAULT_CONFIG_NAME = 'flair_256_tumor'
  MANUAL_DOWNLOAD_INSTRUCTIONS = """\
  Download "Brain MRI segmentation" (kaggle_3m) from Kaggle, mateuszbuda/lgg-mri-segmentation
  (https://www.kaggle.com/datasets/mateuszbuda/lgg-mri-segmentation; license CC BY-NC-SA 4.0), unpack it and pass
  the kaggle_3m folder (or its parent) as --manual_dir. The project's compact FLAIR-only copy
  (shared/data/lgg_kaggle3m: metadata.csv, masks.npz, flair/) is also accepted. Cite Buda et al., Comput. Biol. Med.
  109 (2019) 218-225 (doi:10.1016/j.compbiomed.2019.05.002), Mazurowski et al., J Neurooncol 2017
  (doi:10.1007/s11060-017-2420-1) and the TCGA-LGG TCIA collection (doi:10.7937/K9/TCIA.2016.L4LTD3TK).
  """

  def _info(self) -> tfds.core.DatasetInfo:
    r, c = self.builder_config.resolution, len(self.builder_config.contrasts)
    return self.dataset_info_from_configs(
        features=tfds.features.FeaturesDict({
            'image': tfds.features.Tensor(shape=(r, r, c), dtype=np.float32, encoding='zlib'),
            'mask': tfds.features.Tensor(shape=(r, r), dtype=np.uint8, encoding='zlib'),
            'subject_id': tfds.features.Text(),
            'folder': tfds.features.Text(),
            'slice_index': tfds.features.Scalar(dtype=np.int32),
            'tumor_area': tfds.features.Scalar(dtype=np.int32),
            'institution': tfds.features.Text(),
        }),
        supervised_keys=None,
        homepage='https://www.kaggle.com/datasets/mateuszbuda/lgg-mri-segmentation',
        metadata=tfds.core.MetadataDict(params=self.builder_config.params()),
    )

  def _split_generators(self, dl_manager: tfds.download.DownloadManager) -> dict[str, Any]:
    """Finds all slices, checks the form supports the channels, partitions patients; one generator per split."""
    cfg = self.builder_config
    try:
      manual_dir = dl_manager.manual_dir
    except AssertionError as e:  # TFDS's message is many lines; ours names the folder.
      where = getattr(dl_manager, '_manual_dir', None) or 'manual_dir'
      raise DatasetError(f'{where}: manual_dir is missing or empty; see Builder.MANUAL_DOWNLOAD_INSTRUCTIONS '
                         '(Kaggle mateuszbuda/lgg-mri-segmentation)') from e
    form, slices = lio.find_slices(manual_dir)
    if form == 'compact' and cfg.contrasts != ('flair',):
      raise DatasetError(f'{manual_dir}: the compact lgg_kaggle3m form has the FLAIR channel only, but contrasts '
                         f'{cfg.contrasts} were asked; use the original kaggle_3m TIFs for pre/post-contrast')
    by_patient: dict[str, list[lio.Slice]] = {}
    for s in slices:
      by_patient.setdefault(s.patient_id, []).append(s)
    part = partition(sorted(by_patient), partition_seed=cfg.partition_seed, test_fraction=cfg.test_fraction,
                     heldout_fraction=cfg.heldout_fraction, ks=cfg.ks, seeds=cfg.seeds, where=str(manual_dir))
    groups = {f'fewshot_k{k}_seed{s}': part.fewshot(k, s) for s in cfg.seeds for k in cfg.ks}
    groups.update({'heldout': part.heldout, 'test': part.test})
    return {name: self._generate_examples([s for p in sorted(ids) for s in by_patient[p]])
            for name, ids in groups.items() if ids}

  def _generate_examples(self, slices: list[lio.Slice]):
    """Yields the policy's slices (keys ``<folder>_<nnn>``)."""
    cfg = self.builder_config
    yield from lio.examples(slices, cfg.contrasts, cfg.resolution, lio.SlicePolicy(cfg.slice_policy,
                                                                                 cfg.min_tumor_area))
