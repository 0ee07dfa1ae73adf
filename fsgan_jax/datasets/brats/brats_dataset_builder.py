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
"""TFDS builder for BraTS axial slices with subject-disjoint, seeded few-shot splits (array_record, no TensorFlow).

Build: ``python -m fsgan_jax.datasets.build brats --manual_dir=DIR --data_dir=OUT --config=flair_256_tumor`` (custom
configs from flags, see ``build.py``), or ``tfds build fsgan_jax/datasets/brats --manual_dir=DIR`` for named
configs, or from Python ``Builder(config=make_config(...), data_dir=OUT, file_format='array_record')
.download_and_prepare(download_config=tfds.download.DownloadConfig(manual_dir=DIR))``.
Read: ``fsgan_jax.datasets.load_split('brats', 'fewshot_k10_seed0', OUT, config=...)`` or
``builder.as_data_source(split)``.

Features (conventions in ``brats_io``'s docstring and README.md):

* ``image``: float32 [R, R, C] in [-1, 1], channels = ``config.contrasts`` in that order; background -1. Stored
  as float32 (zlib-compressed) rather than uint8 because the training pipeline takes float32 in [-1, 1]: no second
  quantisation, no rescaling rule to remember.
* ``mask``: uint8 [R, R] label map, 0 background, 1 necrotic/non-enhancing core, 2 edema, 3 enhancing tumor.
* ``subject_id`` (text, the subject folder name), ``slice_index`` (int32, axial index in the volume),
  ``tumor_area`` (int32, tumor pixels of the slice at the native resolution), ``grade`` (ClassLabel unknown/HGG/LGG).

Splits: ``fewshot_k{k}_seed{S}`` for every k in ``config.ks`` and S in ``config.seeds``, ``heldout`` and ``test``
(omitted when their fraction is 0); all subject-disjoint, k-splits nested per seed (partition rule in ``brats_io``).
Each split holds the slices chosen by ``config.slice_policy`` of its subjects.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any, Sequence

import numpy as np
import tensorflow_datasets as tfds

from fsgan_jax.datasets.brats import brats_io
from fsgan_jax.datasets import common
from fsgan_jax.datasets.common import DatasetError

_DEFAULT_KS = (5, 10, 25, 50, 100)
_DEFAULT_SEEDS = (0, 1, 2)


@dataclasses.dataclass(eq=False)
class BratsConfig(tfds.core.BuilderConfig):
  """What to build: contrasts (channels), output resolution, slice policy and the few-shot regime.

  Attributes:
    contrasts: any subset of t1, t1ce, t2, flair, in channel order.
    resolution: output side R (any power of two >= 8; 256 = pad BraTS 240 -> 256, 128 = pad + 2x2 mean).
    slice_policy: ``tumor`` (tumor area >= min_tumor_area), ``brain`` (brain area >= min_brain_area) or
      ``nontumor`` (brain slices without tumor pixels).
    min_tumor_area: native-resolution tumor pixels for the ``tumor`` policy (100 = 1 cm^2 at BraTS's 1 mm).
    min_brain_area: native-resolution brain pixels for ``brain`` / ``nontumor``.
    ks: few-shot subject counts; each must be <= the pool size.
    seeds: few-shot seeds.
    test_fraction: fraction of all subjects in ``test`` (rounded up; 0 = no test split).
    heldout_fraction: fraction of all subjects in ``heldout`` (rounded up; 0 = no heldout split).
    partition_seed: fixes test/heldout (dataset-level), independent of the few-shot seeds.
  """
  contrasts: tuple[str, ...] = ('flair',)
  resolution: int = 256
  slice_policy: str = 'tumor'
  min_tumor_area: int = 100
  min_brain_area: int = 1000
  ks: tuple[int, ...] = _DEFAULT_KS
  seeds: tuple[int, ...] = _DEFAULT_SEEDS
  test_fraction: float = 0.2
  heldout_fraction: float = 0.1
  partition_seed: int = 0

  def __post_init__(self):
    self.contrasts = tuple(self.contrasts)
    self.ks = tuple(int(k) for k in self.ks)
    self.seeds = tuple(int(s) for s in self.seeds)
    bad = [c for c in self.contrasts if c not in brats_io.CONTRASTS]
    if not self.contrasts or bad or len(set(self.contrasts)) != len(self.contrasts):
      raise ValueError(f'contrasts {self.contrasts}: need distinct values from {brats_io.CONTRASTS}')
    if self.resolution < 8 or self.resolution & (self.resolution - 1):
      raise ValueError(f'resolution {self.resolution}: need a power of two >= 8')
    if self.slice_policy not in ('tumor', 'brain', 'nontumor'):
      raise ValueError(f'slice_policy {self.slice_policy!r}: need tumor, brain or nontumor')
    common.check_split_fields(self.ks, self.seeds, self.test_fraction, self.heldout_fraction)

  def params(self) -> dict[str, Any]:
    """The build parameters (everything but TFDS's name/version/description fields)."""
    return common.config_params(self)


def _base_name(contrasts: Sequence[str], resolution: int, slice_policy: str) -> str:
  return f'{"-".join(contrasts)}_{resolution}_{slice_policy}'


def make_config(name: str | None = None, **params: Any) -> BratsConfig:
  """A config from parameters, optionally starting from a named config (``name``) and overriding fields.

  The name is ``<contrasts>_<resolution>_<policy>`` (e.g. ``t1ce-flair_128_brain``) when the other parameters are
  the defaults, else that plus ``_x<8 hex digits of a hash of all parameters>``, so two different configs never
  share a dataset folder and the same parameters always give the same folder.
  """
  base = dict(_NAMED_PARAMS[name]) if name is not None else {}
  if name is not None and name not in _NAMED_PARAMS:
    raise ValueError(f'unknown config {name!r} (named configs: {", ".join(_NAMED_PARAMS)})')
  base.update({k: v for k, v in params.items() if v is not None})
  probe = BratsConfig(name='probe', **base)  # Validates and fills defaults.
  full = probe.params()
  defaults = BratsConfig(name='defaults', contrasts=full['contrasts'], resolution=full['resolution'],
                         slice_policy=full['slice_policy']).params()
  name = common.config_name(_base_name(full['contrasts'], full['resolution'], full['slice_policy']), full, defaults)
  return BratsConfig(name=name, description=json.dumps(full, sort_keys=True), **full)


_NAMED_PARAMS: dict[str, dict[str, Any]] = {
    'flair_256_tumor': dict(contrasts=('flair',), resolution=256, slice_policy='tumor'),
    'flair_128_tumor': dict(contrasts=('flair',), resolution=128, slice_policy='tumor'),
    'flair_256_nontumor': dict(contrasts=('flair',), resolution=256, slice_policy='nontumor'),
    't1ce-flair_256_tumor': dict(contrasts=('t1ce', 'flair'), resolution=256, slice_policy='tumor'),
    'all_256_tumor': dict(contrasts=brats_io.CONTRASTS, resolution=256, slice_policy='tumor'),
    'all_128_brain': dict(contrasts=brats_io.CONTRASTS, resolution=128, slice_policy='brain'),
}


def _named_config(name: str) -> BratsConfig:
  params = _NAMED_PARAMS[name]
  full = BratsConfig(name='probe', **params).params()
  return BratsConfig(name=name, description=json.dumps(full, sort_keys=True), **params)


class Builder(tfds.core.GeneratorBasedBuilder):
  """BraTS (2019, 2020/2021, 2023 and the BraTS-2015 example layouts) as few-shot axial-slice datasets."""

  VERSION = tfds.core.Version('1.0.0')
  RELEASE_NOTES = {'1.0.0': 'Initial release.'}
  BUILDER_CONFIGS = [_named_config(n) for n in _NAMED_PARAMS]
  DEFAULT_CONFIG_NAME = 'flair_256_tumor'
  MANUAL_DOWNLOAD_INSTRUCTIONS = """\
  BraTS cannot be downloaded automatically (registration and a data-use agreement are required).
  Get a training set and pass its folder as --manual_dir (any of these layouts, unpacked):
    * BraTS 2023 glioma (BraTS-GLI-XXXXX-XXX/...-{t1n,t1c,t2w,t2f,seg}.nii.gz): Synapse, project syn51156910
      (https://www.synapse.org/brats2023), after joining the challenge.
    * BraTS 2021 (BraTS2021_XXXXX/..._{t1,t1ce,t2,flair,seg}.nii.gz): Synapse syn25829067, or Kaggle
      "dschettler8845/brats-2021-task1".
    * BraTS 2020 (BraTS20_Training_XXX, name_mapping.csv with grades): CBICA Image Processing Portal
      (https://ipp.cbica.upenn.edu/, "BraTS'20") or Kaggle "awsaf49/brats20-dataset-training-validation".
    * BraTS 2019 (HGG/, LGG/ folders): CBICA IPP ("BraTS'19").
  Only the training data (with *_seg files) is usable. License and citation terms of the release apply; cite
  Menze et al., IEEE TMI 2015 (doi:10.1109/TMI.2014.2377694); Bakas et al., Sci. Data 2017
  (doi:10.1038/sdata.2017.117); Bakas et al., arXiv:1811.02629 (2018); Baid et al., arXiv:2107.02314 (2021).
  """

  def _info(self) -> tfds.core.DatasetInfo:
    r, c = self.builder_config.resolution, len(self.builder_config.contrasts)
    return self.dataset_info_from_configs(
        features=tfds.features.FeaturesDict({
            'image': tfds.features.Tensor(shape=(r, r, c), dtype=np.float32, encoding='zlib'),
            'mask': tfds.features.Tensor(shape=(r, r), dtype=np.uint8, encoding='zlib'),
            'subject_id': tfds.features.Text(),
            'slice_index': tfds.features.Scalar(dtype=np.int32),
            'tumor_area': tfds.features.Scalar(dtype=np.int32),
            'grade': tfds.features.ClassLabel(names=brats_io.GRADES),
        }),
        supervised_keys=None,
        homepage='https://www.synapse.org/brats',
        metadata=tfds.core.MetadataDict(params=self.builder_config.params(),
                                        label_names=brats_io.LABEL_NAMES),
    )

  def _split_generators(self, dl_manager: tfds.download.DownloadManager) -> dict[str, Any]:
    """Finds and checks all subjects (headers only), partitions them, and returns one generator per split."""
    cfg = self.builder_config
    try:
      manual_dir = dl_manager.manual_dir
    except AssertionError as e:  # TFDS's message is many lines; ours names the folder.
      where = getattr(dl_manager, '_manual_dir', None) or 'manual_dir'
      raise DatasetError(f'{where}: manual_dir is missing or empty; see '
                         'Builder.MANUAL_DOWNLOAD_INSTRUCTIONS (BraTS via Synapse, Kaggle or CBICA IPP)') from e
    subjects = {s.subject_id: s for s in brats_io.find_subjects(manual_dir)}
    for s in subjects.values():
      brats_io.check_subject(s, cfg.contrasts)
    part = brats_io.partition(sorted(subjects), partition_seed=cfg.partition_seed,
                              test_fraction=cfg.test_fraction, heldout_fraction=cfg.heldout_fraction,
                              ks=cfg.ks, seeds=cfg.seeds, where=str(manual_dir))
    splits = {}
    for seed in cfg.seeds:
      for k in cfg.ks:
        splits[f'fewshot_k{k}_seed{seed}'] = self._generate_examples([subjects[i] for i in part.fewshot(k, seed)])
    if part.heldout:
      splits['heldout'] = self._generate_examples([subjects[i] for i in part.heldout])
    if part.test:
      splits['test'] = self._generate_examples([subjects[i] for i in part.test])
    return splits

  def _generate_examples(self, subjects: list[brats_io.Subject]):
    """Yields the policy's slices of ``subjects`` (keys ``<subject>_<zzz>``)."""
    cfg = self.builder_config
    policy = brats_io.SlicePolicy(cfg.slice_policy, cfg.min_tumor_area, cfg.min_brain_area)
    for subject in subjects:
      yield from brats_io.subject_examples(subject, cfg.contrasts, cfg.resolution, policy)
