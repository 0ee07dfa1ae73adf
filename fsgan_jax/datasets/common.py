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
"""Shared pieces of the dataset builders: error type, builder registry, subject partition, ``load_split``.

TensorFlow-free: ``tensorflow_datasets`` is imported lazily and only its numpy paths (``as_data_source`` on
array_record files) are used, so reading and building work where TensorFlow is not installed.
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib
import json
import math
import pathlib
from typing import Any, Iterable, Sequence

import numpy as np

from fsgan_jax import errors

# Dataset name -> module holding its ``Builder`` (new-style TFDS layout: ``<name>/<name>_dataset_builder.py``).
BUILDERS: dict[str, str] = {
    'brats': 'fsgan_jax.datasets.brats.brats_dataset_builder',
    'ixi': 'fsgan_jax.datasets.ixi.ixi_dataset_builder',
    'lgg_kaggle3m': 'fsgan_jax.datasets.lgg_kaggle3m.lgg_kaggle3m_dataset_builder',
}


class DatasetError(errors.FsganError):
  """Bad raw input for a builder; the message is one line naming the file (or folder) and the problem."""


def builder_module(name: str) -> Any:
  """Imports and returns the module of dataset ``name`` (one registry lookup, no if/else chain)."""
  if name not in BUILDERS:
    raise DatasetError(f'{name}: unknown dataset (known: {", ".join(sorted(BUILDERS))})')
  return importlib.import_module(BUILDERS[name])


def load_split(name: str, split: str, data_dir: str | pathlib.Path, config: Any = None) -> dict[str, np.ndarray]:
  """Reads a whole prepared split into numpy arrays (for small few-shot sets that live on device).

  Args:
    name: dataset name, e.g. ``'brats'``.
    split: split name, e.g. ``'fewshot_k10_seed0'``, ``'heldout'``, ``'test'``.
    data_dir: the ``--data_dir`` the dataset was built into.
    config: builder config name (a named one or the name of a custom config built earlier), a config object, or
      None for the builder's default config.

  Returns:
    ``{feature: array}``, examples stacked along axis 0 and sorted by (``subject_id``, ``slice_index``) when the
    dataset has them, so the order does not depend on TFDS's key hashing. Text features are ``str`` arrays.
  """
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  module = builder_module(name)
  data_dir = pathlib.Path(data_dir)
  if isinstance(config, str) and config not in module.Builder.builder_configs:
    # A custom config: its code-side parameters are not known here, but the prepared folder is self-describing.
    root = data_dir / name / config
    versions = sorted(p for p in root.glob('*') if (p / 'dataset_info.json').is_file()) if root.is_dir() else []
    if not versions:
      raise DatasetError(f'{root}: no prepared dataset for config {config!r}')
    builder = tfds.builder_from_directory(str(versions[-1]))
  else:
    builder = module.Builder(config=config, data_dir=str(data_dir))
  source = builder.as_data_source(split=split)
  examples = [source[i] for i in range(len(source))]
  if not examples:
    raise DatasetError(f'{data_dir}: split {split!r} of {name} is empty')
  out = {}
  for key in examples[0]:
    values = [e[key] for e in examples]
    if isinstance(values[0], bytes):
      values = [v.decode('utf-8') for v in values]
    out[key] = np.stack([np.asarray(v) for v in values])
    dtype = getattr(builder.info.features[key], 'np_dtype', None)
    if dtype is not None and dtype != np.object_:
      out[key] = out[key].astype(dtype, copy=False)
  if 'subject_id' in out and 'slice_index' in out:
    order = np.lexsort((out['slice_index'], out['subject_id']))
    out = {k: v[order] for k, v in out.items()}
  return out


def config_params(config: Any) -> dict[str, Any]:
  """A builder config's build parameters: its dataclass fields minus TFDS's name/version/description fields."""
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  skip = {f.name for f in dataclasses.fields(tfds.core.BuilderConfig)}
  return {f.name: getattr(config, f.name) for f in dataclasses.fields(config) if f.name not in skip}


def config_name(base: str, params: dict[str, Any], defaults: dict[str, Any]) -> str:
  """``base`` when ``params`` equal the defaults, else ``base_x<8 hex digits of a hash of params>``.

  Two different parameter sets never share a dataset folder; the same parameters always give the same folder.
  """
  if params == defaults:
    return base
  return base + '_x' + hashlib.sha256(json.dumps(params, sort_keys=True).encode()).hexdigest()[:8]


def check_split_fields(ks: Sequence[int], seeds: Sequence[int], test_fraction: float,
                       heldout_fraction: float) -> None:
  """Validates the few-shot split fields shared by the BraTS and LGG configs (ValueError naming the values)."""
  if not ks or min(ks) < 1 or not seeds:
    raise ValueError(f'ks {tuple(ks)} / seeds {tuple(seeds)}: need at least one k >= 1 and one seed')
  if not (0 <= test_fraction < 1 and 0 <= heldout_fraction < 1 and test_fraction + heldout_fraction < 1):
    raise ValueError(f'test_fraction {test_fraction} + heldout_fraction {heldout_fraction}: need < 1')


def _rank(tag: str, ids: Iterable[str]) -> list[str]:
  return sorted(ids, key=lambda s: hashlib.sha256(f'{tag}:{s}'.encode()).hexdigest())


@dataclasses.dataclass(frozen=True)
class Partition:
  """Subject ids per split role; ``fewshot_order[S]`` is the pool ordered for seed S (k-split = its prefix)."""
  test: tuple[str, ...]
  heldout: tuple[str, ...]
  pool: tuple[str, ...]
  fewshot_order: dict[int, tuple[str, ...]]

  def fewshot(self, k: int, seed: int) -> tuple[str, ...]:
    return self.fewshot_order[seed][:k]


def partition(subject_ids: Sequence[str], *, partition_seed: int, test_fraction: float, heldout_fraction: float,
              ks: Sequence[int], seeds: Sequence[int], where: str = 'manual_dir') -> Partition:
  """Subject-disjoint partition shared by all builders; a k above the pool size -> one-line DatasetError.

  Independent of numpy's RNG and of which ks are asked: subjects are ordered by
  ``sha256(f'partition:{partition_seed}:{subject_id}')``; the first ``n_test = ceil(test_fraction * N)`` are
  ``test``, the next ``n_heldout = ceil(heldout_fraction * N)`` are ``heldout``, the rest are the few-shot (or
  training) pool. For seed S the pool is ordered by ``sha256(f'fewshot:{S}:{subject_id}')`` and
  ``fewshot_k{k}_seed{S}`` takes the first k, so k-splits are nested. Builders without few-shot splits (IXI) pass
  ``ks=()`` / ``seeds=()`` and use ``pool`` as their training split.
  """
  n = len(subject_ids)
  order = _rank(f'partition:{partition_seed}', subject_ids)
  n_test = math.ceil(test_fraction * n - 1e-9)
  n_heldout = math.ceil(heldout_fraction * n - 1e-9)
  test, heldout, pool = order[:n_test], order[n_test:n_test + n_heldout], order[n_test + n_heldout:]
  for k in ks:
    if k > len(pool):
      raise DatasetError(f'{where}: k={k} is larger than the few-shot pool of {len(pool)} subjects '
                         f'({n} subjects - {len(test)} test - {len(heldout)} heldout)')
  return Partition(tuple(sorted(test)), tuple(sorted(heldout)), tuple(sorted(pool)),
                   {s: tuple(_rank(f'fewshot:{s}', pool)) for s in seeds})
