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
"""The evaluation metrics by name: what ``config.eval.metrics`` may list, each one function of a ``Sample``.

Adding a metric: write ``def my_metric(s: Sample) -> dict`` (its JSON-ready result, stored as
``results['my_metric']``), optionally a scalars function (TensorBoard / history / ``--mode=eval`` printout), and add
``'my_metric': Metric(my_metric, my_scalars)`` to ``METRICS``; plus its test. Nothing else changes: validation,
the evaluator, the JSON and the report read this table. Per-real-set metrics (FID, KID, precision/recall) write into
``results['sets'][<set>]`` instead and return nothing.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Optional

import jax
import ml_collections
import numpy as np

from fsgan_jax import errors, masks
from fsgan_jax.evaluators import fid as fid_lib
from fsgan_jax.evaluators import kid as kid_lib
from fsgan_jax.evaluators import label_consistency
from fsgan_jax.evaluators import memorization as memo_lib
from fsgan_jax.evaluators import ms_ssim as ms_ssim_lib
from fsgan_jax.evaluators import precision_recall as pr_lib


@dataclasses.dataclass
class RealSet:
  """A real image set at the model resolution with its Inception features."""
  name: str
  source: str
  images: np.ndarray  # uint8 [N, H, W, C]: the contrasts, then the label channels (0 / 255) if the set has them
  groups: Optional[list[str]]  # subject id per image when the folder has an index.csv with patient_id
  features: Optional[np.ndarray] = None  # float32 [N, 2048] of the primary view (see `evaluate.feature_views`)
  contrast_features: Optional[dict[str, np.ndarray]] = None  # per-contrast views (several contrasts only)


@dataclasses.dataclass
class Sample:
  """Everything a metric sees: the generated images and features, the real sets and the settings."""
  config: ml_collections.ConfigDict
  mesh: jax.sharding.Mesh
  channels: int  # contrast channels (the rest of the images' channels are labels)
  primary: tuple[int, ...]  # channels of the headline Inception view
  images: np.ndarray  # uint8, the first config.eval.keep_images generated images
  features: np.ndarray  # float32 [num, 2048] of all generated images (primary view)
  contrast_features: dict[str, np.ndarray]  # per-contrast views
  real_sets: list[RealSet]  # the training set first
  results: dict[str, Any]  # 'sets': {name: {...}} filled by the per-set metrics
  artifacts: dict[str, np.ndarray]  # images for the report
  seed: int
  fid_method: str


@dataclasses.dataclass(frozen=True)
class Metric:
  compute: Callable[[Sample], Optional[dict[str, Any]]]
  scalars: Optional[Callable[[dict[str, Any]], dict[str, float]]] = None  # (its result) -> flat scalars
  needs_labels: bool = False  # only for generators with label channels (config.model.mask_channels > 0)


def _per_set(s: Sample, name: str, fn: Callable[[np.ndarray, np.ndarray], dict[str, float]]) -> None:
  """``fn(generated features, real features)`` for every real set, and per contrast when there are several."""
  for rs in s.real_sets:
    r = s.results['sets'][rs.name]
    r.update(fn(s.features, rs.features))
    for contrast, real_f in (rs.contrast_features or {}).items():
      if name != 'precision_recall':
        r.setdefault('per_contrast', {}).setdefault(contrast, {}).update(fn(s.contrast_features[contrast], real_f))


def fid(s: Sample) -> None:
  _per_set(s, 'fid', lambda g, r: {'fid': fid_lib.frechet_distance(*fid_lib.stats(g), *fid_lib.stats(r),
                                                                     method=s.fid_method)})


def kid(s: Sample) -> None:
  def fn(g, r):
    value, std = kid_lib.kernel_inception_distance(g, r, num_subsets=s.config.eval.kid_subsets, seed=s.seed)
    return {'kid': value, 'kid_std': std}
  _per_set(s, 'kid', fn)


def precision_recall(s: Sample) -> None:
  def fn(g, r):
    pr = pr_lib.precision_recall(r, g, k=3)
    return {'precision': float(pr['precision']), 'recall': float(pr['recall'])}
  _per_set(s, 'precision_recall', fn)


def jsonable(x: Any) -> Any:
  """numpy scalars / arrays -> Python floats / lists, recursively."""
  if isinstance(x, dict):
    return {k: jsonable(v) for k, v in x.items()}
  if isinstance(x, (list, tuple)):
    return [jsonable(v) for v in x]
  if isinstance(x, np.ndarray):
    return x.tolist()
  if isinstance(x, (np.floating, np.integer)):
    return x.item()
  return x


def _pixels(s: Sample) -> tuple[np.ndarray, np.ndarray]:
  """Generated and training images on the contrasts of the headline view (pixel-space metrics never see labels)."""
  return s.images[..., list(s.primary)], s.real_sets[0].images[..., list(s.primary)]


def _flat(images: np.ndarray) -> np.ndarray:
  return images.reshape(images.shape[0], -1).astype(np.float32) / 255.0


def diversity(s: Sample) -> dict[str, Any]:
  gen, real = _pixels(s)
  n_pairs, train_set = s.config.eval.diversity_pairs, s.real_sets[0]
  return {
      'generated': jsonable(ms_ssim_lib.diversity(gen, num_pairs=n_pairs, seed=s.seed)),
      f'real_{train_set.name}': jsonable(ms_ssim_lib.diversity(real, num_pairs=n_pairs, seed=s.seed,
                                                                groups=train_set.groups)),
      'note': 'mean MS-SSIM over random pairs (lower = more diverse); real pairs from different subjects '
              'when subject ids are known',
  }


def memorization(s: Sample) -> dict[str, Any]:
  gen, real = _pixels(s)
  memo = memo_lib.memorization(s.features[:len(gen)], s.real_sets[0].features, gen_pixels=_flat(gen),
                               train_pixels=_flat(real), k=s.config.eval.num_closest_pairs)
  out = jsonable(memo_lib.json_summary(memo))
  out['note'] = ('ratio = distance of each generated image to its nearest training image / median leave-one-out '
                 'nearest-neighbour distance among training images (Inception pool3 features; pixels in [0, 1]); '
                 'ratios well below 1 (frac_ratio_below_0_5) suggest copies of training images')
  for space, m in memo.items():
    grid = memo_lib.closest_pairs_grid(gen, real, np.asarray(m['closest_gen_idx']), np.asarray(m['closest_train_idx']))
    s.artifacts[f'closest_{space}'] = grid if grid.ndim == 3 else grid[..., None]
  return out


def mask_stats(s: Sample) -> dict[str, Any]:
  """Tumor area / location statistics of the generated masks and of every real set that has masks."""
  if s.images.shape[-1] <= s.channels:
    raise errors.EvalError('mask_stats needs a generator with label channels (config.model.mask_channels > 0)')
  out: dict[str, Any] = {'generated': masks.mask_statistics(s.images[..., s.channels:] > 127)}
  for rs in s.real_sets:
    if rs.images.shape[-1] > s.channels:
      out[f'real_{rs.name}'] = masks.mask_statistics(rs.images[..., s.channels:] > 127)
  out['note'] = ('masks binarised at 0 in [-1, 1]; area = tumor fraction of the image; centroid = (row, column) '
                 'as fractions of the size, over non-empty masks; first label channel or their union')
  return out


def label_consistency_metric(s: Sample) -> dict[str, Any]:
  heldout = next((rs.images for rs in s.real_sets[1:] if rs.images.shape[-1] > s.channels), None)
  return label_consistency.evaluate(s.config, s.real_sets[0].images, s.images, s.channels, s.mesh, seed=s.seed,
                                    heldout=heldout)


def _diversity_scalars(r: dict[str, Any]) -> dict[str, float]:
  return {f'ms_ssim_{k}': float(v['mean']) for k, v in r.items() if isinstance(v, dict) and 'mean' in v}


def _memorization_scalars(r: dict[str, Any]) -> dict[str, float]:
  return {f'memorization_{space}_{k}': float(m[k]) for space, m in r.items() if isinstance(m, dict)
          for k in ('ratio_median', 'frac_ratio_below_0_5') if k in m}


def _mask_stats_scalars(r: dict[str, Any]) -> dict[str, float]:
  return {f'mask_{stat}_{k}': float(v[stat]) for k, v in r.items() if isinstance(v, dict)
          for stat in ('area_mean', 'empty_fraction') if stat in v}


def _label_consistency_scalars(r: dict[str, Any]) -> dict[str, float]:
  return {f'label_consistency_{k}': float(r[k]) for k in ('dice_mean', 'segmenter_dice_heldout') if k in r}


METRICS: dict[str, Metric] = {
    'fid': Metric(fid),
    'kid': Metric(kid),
    'precision_recall': Metric(precision_recall),
    'diversity': Metric(diversity, _diversity_scalars),
    'memorization': Metric(memorization, _memorization_scalars),
    'mask_stats': Metric(mask_stats, _mask_stats_scalars, needs_labels=True),
    'label_consistency': Metric(label_consistency_metric, _label_consistency_scalars, needs_labels=True),
}
SET_SCALARS = ('fid', 'kid', 'precision', 'recall')  # per real set: '<name>_<set>' and '<name>_<set>_<contrast>'


def flat_scalars(results: dict[str, Any]) -> dict[str, float]:
  """The headline numbers as flat TensorBoard scalars (``fid_train``, ``kid_heldout``, ``ms_ssim_generated``...)."""
  out: dict[str, float] = {}
  for set_name, r in results.get('sets', {}).items():
    for k in SET_SCALARS:
      if k in r:
        out[f'{k}_{set_name}'] = float(r[k])
    for contrast, c in r.get('per_contrast', {}).items():
      for k in ('fid', 'kid'):
        if k in c:
          out[f'{k}_{set_name}_{contrast}'] = float(c[k])
  for name, metric in METRICS.items():
    if metric.scalars is not None and name in results:
      out.update(metric.scalars(results[name]))
  return out
