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
"""Evaluation of a trained generator: FID, KID, precision/recall, MS-SSIM diversity, memorization.

Used in two places:

* periodically during training (``config.eval.every``), with ``config.eval.train_metrics`` on
  ``config.eval.train_num_samples`` images of the EMA generator; scalars go to TensorBoard as ``eval/...`` and the
  best checkpoint by ``config.eval.best_metric`` is kept in ``WORKDIR/checkpoints_best``;
* ``python -m fsgan_jax.main --mode=eval --workdir=W [--step K] [--num N]``: restores a checkpoint, generates
  ``N`` images (default ``config.eval.num_samples`` = 5000) and computes ``config.eval.metrics`` against the training
  set (FastGAN's protocol) and a held-out set, then writes ``W/eval/eval_<step>.json``, TensorBoard scalars and
  ``W/eval/step_<step>/report.html`` (sample grid, closest generated/training pairs, metric curves over steps).

Conventions (reported in every JSON): generated images are quantised to uint8 exactly as the PNGs ``--mode=sample``
writes, real images are resized to the model resolution as for training (bilinear) and quantised the same way;
Inception features use ``config.eval.resize`` (``tf1`` by default, see ``evaluators.inception``); gray images are
fed as 3 identical channels. Paired / multi-contrast generators (``config.model.mask_channels``, ``fsgan_jax.masks``):
label channels never reach Inception; the headline FID/KID (``fid_train``) is on the contrasts if they are 1 or 3
(RGB-like), else on the first contrast, and with several contrasts every contrast also gets its own FID/KID
(replicated to 3 channels; ``fid_train_<contrast>``). ``mask_stats`` compares tumor area / location of generated and
real masks; ``label_consistency`` scores generated masks with a segmenter trained on the real pairs. At ~100 real images FID has a large small-sample bias (two disjoint 100-slice tumor
sets are at FID 66), so KID is always reported next to it.
"""

from __future__ import annotations

import csv
import dataclasses
import functools
import html
import json
import os
import pathlib
import time
from typing import Any, Optional, Sequence

from absl import logging
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from fsgan_jax import compiler, fileio, input_pipeline
from fsgan_jax.evaluators import fid as fid_lib
from fsgan_jax.evaluators import inception
from fsgan_jax.evaluators import kid as kid_lib
from fsgan_jax.evaluators import memorization as memo_lib
from fsgan_jax.evaluators import ms_ssim as ms_ssim_lib
from fsgan_jax.evaluators import precision_recall as pr_lib

METRICS = ('fid', 'kid', 'precision_recall', 'diversity', 'memorization', 'mask_stats', 'label_consistency')
MASK_METRICS = ('mask_stats', 'label_consistency')
BUNDLED_HELDOUT_DIR = input_pipeline.BUNDLED_DIR.parent / 'lgg_flair_heldout'
BUNDLED_HELDOUT_MASK_DIR = input_pipeline.BUNDLED_DIR.parent / 'lgg_flair_heldout_masks'


class EvalError(ValueError):
  """An evaluation setting or input cannot be used (names the field or file)."""


def validate_eval_config(config: ml_collections.ConfigDict, num_devices: int = 1) -> None:
  """Checks ``config.eval``; raises EvalError naming the field."""
  e = config.eval
  for name in ('metrics', 'train_metrics'):
    unknown = [m for m in e[name] if m not in METRICS]
    if unknown:
      raise EvalError(f'config.eval.{name} has unknown metric(s) {unknown}; available: {list(METRICS)}')
  if e.fid_method not in fid_lib.FRECHET_METHODS:
    raise EvalError(f'config.eval.fid_method={e.fid_method!r}; choose one of {list(fid_lib.FRECHET_METHODS)}')
  if e.resize not in inception.RESIZE_MODES:
    raise EvalError(f'config.eval.resize={e.resize!r}; choose one of {list(inception.RESIZE_MODES)}')
  if e.batch_size < 1 or e.batch_size % num_devices:
    raise EvalError(f'config.eval.batch_size={e.batch_size} must be a positive multiple of the number of devices '
                    f'({num_devices})')
  for name in ('num_samples', 'train_num_samples'):
    if e[name] < 2:
      raise EvalError(f'config.eval.{name}={e[name]} must be >= 2')
  if e.every < 0:
    raise EvalError(f'config.eval.every={e.every} must be >= 0 (0 = no evaluation during training)')
  paired = bool(config.model.get('mask_channels'))
  for name in ('metrics', 'train_metrics'):
    if not paired and any(m in MASK_METRICS for m in e[name]):
      raise EvalError(f'config.eval.{name} asks for {[m for m in e[name] if m in MASK_METRICS]}, which need a '
                      'generator with label channels (config.model.mask_channels > 0)')
  if e.every and e.best_metric and e.best_metric.split('_')[0] not in {'fid', 'kid'}:
    raise EvalError(f"config.eval.best_metric={e.best_metric!r}; use e.g. 'fid_train' or 'kid_train' (lower is "
                    "better), or '' for none")


# ----------------------------------------------------------------------------
# Reference (real) image sets.


@dataclasses.dataclass
class RealSet:
  """A real image set at the model resolution with its Inception features."""
  name: str
  source: str
  images: np.ndarray  # uint8 [N, H, W, C]: the contrasts, then the label channels (0 / 255) if the set has them
  groups: Optional[list[str]]  # subject id per image when the folder has an index.csv with patient_id
  features: Optional[np.ndarray] = None  # float32 [N, 2048] of the primary view (see `feature_views`)
  contrast_features: Optional[dict[str, np.ndarray]] = None  # per-contrast views (several contrasts only)


def _groups_from_index(files: Sequence[pathlib.Path]) -> Optional[list[str]]:
  """Subject ids from ``index.csv`` (columns file, patient_id) next to the images, if every file is listed."""
  groups = []
  cache: dict[pathlib.Path, dict[str, str]] = {}
  for f in files:
    index = f.parent / 'index.csv'
    if index not in cache:
      if not index.is_file():
        return None
      with open(index, newline='') as fh:
        rows = list(csv.DictReader(fh))
      if not rows or 'file' not in rows[0] or 'patient_id' not in rows[0]:
        return None
      cache[index] = {r['file']: r['patient_id'] for r in rows}
    if f.name not in cache[index]:
      return None
    groups.append(cache[index][f.name])
  return groups


def load_real_set(name: str, directory: Optional[str | os.PathLike], size: int, channels: int,
                  limit: Optional[int] = None, mask_dir: Optional[str | os.PathLike] = None) -> RealSet:
  """Loads a folder (None = bundled training set) like the training pipeline, as uint8.

  With ``mask_dir`` the binary masks are appended as a last channel (0 / 255), as the training pairs.
  """
  root = pathlib.Path(input_pipeline.BUNDLED_DIR if directory is None else directory).expanduser()
  files = input_pipeline.list_images(root)
  if limit:
    files = files[:limit]
  images = np.stack([input_pipeline.load_image(p, size, channels) for p in files])
  if mask_dir is not None:
    from fsgan_jax import masks  # pylint: disable=g-import-not-at-top
    labels = [input_pipeline.load_mask(input_pipeline.find_mask(p, root, pathlib.Path(mask_dir)), size) for p in files]
    images = np.concatenate([images, masks.to_signed(np.stack(labels))[..., None]], axis=-1)
  if images.shape[0] < 2:
    raise EvalError(f'the {name} set {directory} has {images.shape[0]} image(s); at least 2 are needed')
  return RealSet(name=name, source=str(directory or input_pipeline.BUNDLED_DIR),
                 images=input_pipeline.to_uint8(images), groups=_groups_from_index(files))


def default_real_sets(config: ml_collections.ConfigDict) -> list[RealSet]:
  """The training set (as the model saw it) and, if there is one, the held-out set (see `heldout_dir`)."""
  res, ch = config.model.resolution, config.data.channels
  m = int(config.model.get('mask_channels') or 0)
  if config.data.get('tfds_name'):
    images, subjects = input_pipeline.load_config_data(config.data, res, return_subjects=True, mask_channels=m)
    sets = [RealSet('train', input_pipeline.describe_source(config.data), input_pipeline.to_uint8(images), subjects)]
    if not config.eval.heldout_dir:
      data = ml_collections.ConfigDict(config.data.to_dict())
      data.limit = 0  # data.limit selects the k-shot training subset; the held-out split is used whole
      try:
        images, subjects = input_pipeline.load_config_data(data, res, split='heldout', return_subjects=True,
                                                           mask_channels=m)
      except input_pipeline.DataError as e:
        logging.warning('eval: no held-out set (%s)', e)
      else:
        sets.append(RealSet('heldout', input_pipeline.describe_source(config.data, 'heldout'),
                            input_pipeline.to_uint8(images), subjects))
    if len(sets[0].images) < 2:
      raise EvalError(f'the training set {sets[0].source} has {len(sets[0].images)} image(s); at least 2 are needed')
  else:
    mask_dir = None
    if m:
      mask_dir = config.data.get('mask_dir') or (input_pipeline.BUNDLED_MASK_DIR if config.data.dir is None else None)
    sets = [load_real_set('train', config.data.dir, res, ch, config.data.limit or None, mask_dir)]
  held = heldout_dir(config)
  if held:
    held_masks = BUNDLED_HELDOUT_MASK_DIR if m == 1 and str(held) == str(BUNDLED_HELDOUT_DIR) else None
    sets.append(load_real_set('heldout', held, res, ch, mask_dir=held_masks))
  return [rs for rs in sets if len(rs.images) >= 2]


def heldout_dir(config: ml_collections.ConfigDict) -> Optional[str]:
  """``config.eval.heldout_dir``; the bundled held-out patients when training on the bundled set; else None."""
  if config.eval.heldout_dir:
    return config.eval.heldout_dir
  if config.data.dir is None and not config.data.get('tfds_name') and BUNDLED_HELDOUT_DIR.is_dir():
    return str(BUNDLED_HELDOUT_DIR)
  return None


# ----------------------------------------------------------------------------
# Jitted generation and features.


def _to_uint8(x: jax.Array) -> jax.Array:
  """[-1, 1] -> 0..255 as `input_pipeline.to_uint8` (kept float32 for the next op)."""
  return jnp.clip(jnp.round((x.astype(jnp.float32) + 1.0) * 127.5), 0.0, 255.0)


def _inception_features(resize: str, inc_params: Any, images_0_255: jax.Array) -> jax.Array:
  return inception.features(inc_params, inception.preprocess(images_0_255, resize))


@functools.lru_cache(maxsize=None)
def _features_fn(resize: str, mesh: Mesh):
  """One jitted feature function per (resize, mesh), shared by all evaluators (compiled once per shape)."""
  return jax.jit(functools.partial(_inception_features, resize),
                 in_shardings=(NamedSharding(mesh, P()), NamedSharding(mesh, P('data'))),
                 out_shardings=NamedSharding(mesh, P()), compiler_options=compiler.options())


def feature_views(channels: int, mask_channels: int = 0) -> tuple[tuple[int, ...], tuple[tuple[int, ...], ...]]:
  """(channels of the primary Inception view, per-contrast views) for ``channels`` contrasts + labels.

  Primary: all contrasts if they are 1 (gray) or 3 (RGB-like), else the first contrast. Per-contrast views (each
  replicated to 3 channels by Inception's preprocessing) exist when there are several contrasts. Labels: never.
  """
  del mask_channels  # labels are never fed to Inception
  primary = tuple(range(channels)) if channels in (1, 3) else (0,)
  return primary, (tuple((c,) for c in range(channels)) if channels > 1 else ())


@functools.lru_cache(maxsize=8)
def _generate_fn(generator: Any, sample_bn: str, resize: str, mesh: Mesh, channels: Optional[int] = None):
  """Jitted ``(g_params, g_stats, inception_params, z, key) -> (uint8 images, features, per-contrast features)``.

  ``channels``: the contrasts of G's output (None = all channels; the rest are labels, binarised).
  """
  from fsgan_jax import train  # pylint: disable=g-import-not-at-top  (train imports this module lazily)
  channels = generator.nc if channels is None else channels
  primary, per_contrast = feature_views(channels)

  def generate(g_params, g_stats, inc_params, z, key):
    x = train.generate(generator, sample_bn, g_params, g_stats, z, key)
    if x.shape[-1] > channels:  # labels as written by --mode=sample: exactly -1 / +1
      x = jnp.concatenate([x[..., :channels], jnp.where(x[..., channels:] > 0.0, 1.0, -1.0)], axis=-1)
    images = _to_uint8(x)
    feats = _inception_features(resize, inc_params, images[..., list(primary)])
    extra = tuple(_inception_features(resize, inc_params, images[..., list(v)]) for v in per_contrast)
    return images.astype(jnp.uint8), feats, extra

  repl = NamedSharding(mesh, P())
  return jax.jit(generate, in_shardings=(repl, repl, repl, NamedSharding(mesh, P('data')), repl),
                 out_shardings=(repl, repl, repl), compiler_options=compiler.options())


class Evaluator:
  """Generates images and computes the configured metrics against real sets (features of real sets cached)."""

  def __init__(self, config: ml_collections.ConfigDict, setup: Any, mesh: Mesh,
               inception_params: Any = None, real_sets: Optional[Sequence[RealSet]] = None):
    """Builds the jitted functions and the real sets.

    Args:
      config: The run's config (``model``, ``data``, ``eval`` and ``sample_bn`` are used).
      setup: ``steps.GanSetup`` of the run (its generator is used).
      mesh: 1-D ('data',) mesh; batches are sharded over it.
      inception_params: FID Inception parameters; None loads (and the first time fetches) the converted weights.
      real_sets: Override of the real sets (default: training set, plus held-out set if any).
    """
    validate_eval_config(config, mesh.devices.size)
    self.config = config
    self.mesh = mesh
    self.batch_size = config.eval.batch_size
    self.resize = config.eval.resize
    repl = NamedSharding(mesh, P())
    self._batch_sharding = NamedSharding(mesh, P('data'))
    if inception_params is None:
      inception_params = fid_lib.get_params()
    self.inception_params = jax.device_put(inception_params, repl)
    self._features = _features_fn(self.resize, mesh)
    from fsgan_jax import train  # pylint: disable=g-import-not-at-top
    self.channels = train.image_channels(config)
    self.mask_channels = train.mask_channels(config)
    self.contrast_names = train.channel_names(config)[:self.channels]
    self.primary, self.per_contrast = feature_views(self.channels)
    self._generate = _generate_fn(setup.generator, config.sample_bn, self.resize, mesh, self.channels)
    if real_sets is None:
      real_sets = default_real_sets(config)
    self.real_sets = list(real_sets)
    for rs in self.real_sets:
      if rs.features is None:
        t0 = time.perf_counter()
        rs.features = self.features(rs.images[..., list(self.primary)])
        if self.per_contrast:
          rs.contrast_features = {self.contrast_names[v[0]]: self.features(rs.images[..., list(v)])
                                  for v in self.per_contrast}
        logging.info('eval: Inception features of the %s set (%d images) in %.1f s', rs.name, len(rs.images),
                     time.perf_counter() - t0)

  def features(self, images: np.ndarray) -> np.ndarray:
    """Inception pool3 features of uint8 [N, H, W, C] images, in sharded batches (last batch padded)."""
    out = []
    b = self.batch_size
    for start in range(0, len(images), b):
      batch = images[start:start + b]
      k = len(batch)
      if k < b:
        batch = np.concatenate([batch, np.zeros((b - k,) + batch.shape[1:], batch.dtype)])
      out.append(np.asarray(jax.device_get(self._features(self.inception_params,
                                                           batch.astype(np.float32))))[:k])
    return np.concatenate(out)

  def generate(self, g_params: Any, g_stats: Any, num: int, seed: int = 0, keep_images: Optional[int] = None,
               with_contrasts: bool = False) -> tuple[np.ndarray, ...]:
    """``num`` EMA-generator images: (uint8 images of the first ``keep_images``, float32 features of all).

    With ``with_contrasts`` a third element: ``{contrast name: features}`` of the per-contrast views.

    Deterministic given (params, seed, eval.batch_size): z and noise of batch i come from fold_in(seed, i).
    With ``sample_bn='batch'`` BatchNorm uses the statistics of each generation batch, as the official sampler.
    """
    keep = num if keep_images is None else min(num, keep_images)
    key = jax.random.PRNGKey(seed)
    images, feats, extra = [], [], []
    nz = self.config.model.nz
    for i, start in enumerate(range(0, num, self.batch_size)):
      zk, nk = jax.random.split(jax.random.fold_in(key, i))
      z = jax.random.normal(zk, (self.batch_size, nz))
      imgs, f, fc = jax.device_get(self._generate(g_params, g_stats, self.inception_params, z, nk))
      n = min(self.batch_size, num - start)
      feats.append(np.asarray(f)[:n])
      extra.append([np.asarray(x)[:n] for x in fc])
      if start < keep:
        images.append(np.asarray(imgs)[:min(n, keep - start)])
    if not with_contrasts:
      return np.concatenate(images), np.concatenate(feats)
    contrasts = {self.contrast_names[v[0]]: np.concatenate([e[j] for e in extra])
                 for j, v in enumerate(self.per_contrast)}
    return np.concatenate(images), np.concatenate(feats), contrasts

  def evaluate(self, g_params: Any, g_stats: Any, num_samples: int, metrics: Sequence[str],
               seed: int = 0, fid_method: Optional[str] = None) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """Runs ``metrics``; returns (JSON-ready results, image artifacts for the report).

    ``fid_method`` (default ``config.eval.fid_method``): 'sqrtm' (scipy, as pytorch-fid) or 'eigh' (6x faster,
    within ~1e-5 of it; see `evaluators.fid.frechet_distance`).
    """
    cfg = self.config.eval
    fid_method = fid_method or cfg.fid_method
    t0 = time.perf_counter()
    gen_images, gen_feats, gen_contrasts = self.generate(g_params, g_stats, num_samples, seed,
                                                         keep_images=cfg.keep_images, with_contrasts=True)
    t_gen = time.perf_counter() - t0
    results: dict[str, Any] = {
        'num_samples': int(num_samples),
        'seed': int(seed),
        'conventions': {
            'resize': self.resize,
            'generated': 'EMA generator, uint8-quantised as the PNGs of --mode=sample, '
                         f'sample_bn={self.config.sample_bn}, generation batch {self.batch_size}',
            'real': f'resized to {self.config.model.resolution} px (bilinear) and uint8-quantised, as for training',
            'fid': f'Frechet distance of float64 pool3 statistics (TF FID Inception), {fid_method}',
            'kid': f'unbiased MMD^2, cubic polynomial kernel, {cfg.kid_subsets} subsets of min(1000, n)',
            'channels': (f'{self.channels} contrast(s) {self.contrast_names} + {self.mask_channels} label channel(s); '
                         f'headline FID/KID on contrast channel(s) {list(self.primary)}'
                         + ('; per_contrast: each contrast replicated to 3 channels' if self.per_contrast else '')),
        },
        'sets': {},
    }
    from fsgan_jax import masks  # pylint: disable=g-import-not-at-top
    artifacts: dict[str, np.ndarray] = {
        'samples': input_pipeline.make_grid(masks.display(gen_images[:64], self.channels), ncols=8)}
    for rs in self.real_sets:
      r: dict[str, Any] = {'n': int(len(rs.images)), 'source': rs.source}
      if 'fid' in metrics:
        r['fid'] = fid_lib.frechet_distance(*fid_lib.stats(gen_feats), *fid_lib.stats(rs.features),
                                            method=fid_method)
      if 'kid' in metrics:
        r['kid'], r['kid_std'] = kid_lib.kernel_inception_distance(gen_feats, rs.features,
                                                                   num_subsets=cfg.kid_subsets, seed=seed)
      if 'precision_recall' in metrics:
        pr = pr_lib.precision_recall(rs.features, gen_feats, k=3)
        r['precision'], r['recall'] = float(pr['precision']), float(pr['recall'])
      if rs.contrast_features and ('fid' in metrics or 'kid' in metrics):
        r['per_contrast'] = {}
        for name, real_f in rs.contrast_features.items():
          c: dict[str, float] = {}
          if 'fid' in metrics:
            c['fid'] = fid_lib.frechet_distance(*fid_lib.stats(gen_contrasts[name]), *fid_lib.stats(real_f),
                                                method=fid_method)
          if 'kid' in metrics:
            c['kid'], c['kid_std'] = kid_lib.kernel_inception_distance(gen_contrasts[name], real_f,
                                                                       num_subsets=cfg.kid_subsets, seed=seed)
          r['per_contrast'][name] = c
      results['sets'][rs.name] = r
    train_set = self.real_sets[0]
    if 'mask_stats' in metrics:
      results['mask_stats'] = self.mask_stats(gen_images)
    if 'label_consistency' in metrics:
      from fsgan_jax.evaluators import label_consistency  # pylint: disable=g-import-not-at-top
      results['label_consistency'] = label_consistency.evaluate(
          self.config, train_set.images, gen_images, self.channels, self.mesh, seed=seed,
          heldout=next((rs.images for rs in self.real_sets[1:] if rs.images.shape[-1] > self.channels), None))
    pixels = list(self.primary)  # pixel-space metrics on the contrasts of the headline view, never on labels
    gen_images, real_pixels = gen_images[..., pixels], train_set.images[..., pixels]
    if 'diversity' in metrics:
      n_pairs = cfg.diversity_pairs
      results['diversity'] = {
          'generated': _jsonable(ms_ssim_lib.diversity(gen_images, num_pairs=n_pairs, seed=seed)),
          f'real_{train_set.name}': _jsonable(ms_ssim_lib.diversity(real_pixels, num_pairs=n_pairs, seed=seed,
                                                                    groups=train_set.groups)),
          'note': 'mean MS-SSIM over random pairs (lower = more diverse); real pairs from different subjects '
                  'when subject ids are known',
      }
    if 'memorization' in metrics:
      memo = memo_lib.memorization(gen_feats[:len(gen_images)], train_set.features, gen_pixels=_flat(gen_images),
                                   train_pixels=_flat(real_pixels), k=cfg.num_closest_pairs)
      results['memorization'] = _jsonable(memo_lib.json_summary(memo))
      results['memorization']['note'] = (
          'ratio = distance of each generated image to its nearest training image / median leave-one-out '
          'nearest-neighbour distance among training images (Inception pool3 features; pixels in [0, 1]); '
          'ratios well below 1 (frac_ratio_below_0_5) suggest copies of training images')
      for space, m in memo.items():
        grid = memo_lib.closest_pairs_grid(gen_images, real_pixels, np.asarray(m['closest_gen_idx']),
                                           np.asarray(m['closest_train_idx']))
        artifacts[f'closest_{space}'] = grid if grid.ndim == 3 else grid[..., None]
    results['seconds'] = {'generate_and_features': t_gen, 'total': time.perf_counter() - t0}
    return results, artifacts

  def mask_stats(self, gen_images: np.ndarray) -> dict[str, Any]:
    """Tumor area / location statistics of the generated masks and of every real set that has masks."""
    from fsgan_jax import masks  # pylint: disable=g-import-not-at-top
    if gen_images.shape[-1] <= self.channels:
      raise EvalError('mask_stats needs a generator with label channels (config.model.mask_channels > 0)')
    out: dict[str, Any] = {'generated': masks.mask_statistics(gen_images[..., self.channels:] > 127)}
    for rs in self.real_sets:
      if rs.images.shape[-1] > self.channels:
        out[f'real_{rs.name}'] = masks.mask_statistics(rs.images[..., self.channels:] > 127)
    out['note'] = ('masks binarised at 0 in [-1, 1]; area = tumor fraction of the image; centroid = (row, column) '
                   'as fractions of the size, over non-empty masks; first label channel or their union')
    return out


def _flat(images: np.ndarray) -> np.ndarray:
  return images.reshape(images.shape[0], -1).astype(np.float32) / 255.0


def _jsonable(x: Any) -> Any:
  """Nested dicts/lists of numpy values -> plain Python (arrays become lists)."""
  if isinstance(x, dict):
    return {str(k): _jsonable(v) for k, v in x.items()}
  if isinstance(x, (list, tuple)):
    return [_jsonable(v) for v in x]
  if isinstance(x, (np.ndarray, jax.Array)):
    return _jsonable(np.asarray(x).tolist())
  if isinstance(x, np.generic):
    return x.item()
  return x


def flat_scalars(results: dict[str, Any]) -> dict[str, float]:
  """The headline numbers as flat TensorBoard scalars (``fid_train``, ``kid_heldout``, ``ms_ssim_generated``...)."""
  out: dict[str, float] = {}
  for set_name, r in results.get('sets', {}).items():
    for k in ('fid', 'kid', 'precision', 'recall'):
      if k in r:
        out[f'{k}_{set_name}'] = float(r[k])
    for contrast, c in r.get('per_contrast', {}).items():
      for k in ('fid', 'kid'):
        if k in c:
          out[f'{k}_{set_name}_{contrast}'] = float(c[k])
  for k, v in results.get('mask_stats', {}).items():
    if isinstance(v, dict):
      for stat in ('area_mean', 'empty_fraction'):
        if stat in v:
          out[f'mask_{stat}_{k}'] = float(v[stat])
  lc = results.get('label_consistency', {})
  for k in ('dice_mean', 'segmenter_dice_heldout'):
    if k in lc:
      out[f'label_consistency_{k}'] = float(lc[k])
  div = results.get('diversity', {})
  for k, v in div.items():
    if isinstance(v, dict) and 'mean' in v:
      out[f'ms_ssim_{k}'] = float(v['mean'])
  for space, m in results.get('memorization', {}).items():
    if isinstance(m, dict):
      for k in ('ratio_median', 'frac_ratio_below_0_5'):
        if k in m:
          out[f'memorization_{space}_{k}'] = float(m[k])
  return out


# ----------------------------------------------------------------------------
# Files: JSON, history, HTML report.


def eval_dir(workdir: str) -> str:
  return fileio.join(workdir, 'eval')


def append_history(workdir: str, step: int, scalars: dict[str, float], kind: str) -> None:
  """Appends one line to ``WORKDIR/eval/history.jsonl`` (process 0): the metric curves of the report."""
  if jax.process_index() != 0:
    return
  fileio.makedirs(eval_dir(workdir))
  fileio.append_line(fileio.join(eval_dir(workdir), 'history.jsonl'),
                     json.dumps({'step': int(step), 'kind': kind, **scalars}))


def read_history(workdir: str) -> list[dict[str, Any]]:
  path = fileio.join(eval_dir(workdir), 'history.jsonl')
  if not fileio.exists(path):
    return []
  rows = []
  for line in fileio.read_text(path).splitlines():
    line = line.strip()
    if line:
      try:
        rows.append(json.loads(line))
      except json.JSONDecodeError:  # a line cut by a crash: skip it, keep the rest
        continue
  return rows


def _write_json_atomic(path: str, obj: Any) -> None:
  fileio.write_text_atomic(path, json.dumps(obj, indent=2, sort_keys=True))


def _svg_plot(rows: list[dict[str, Any]], key: str, width: int = 360, height: int = 200) -> str:
  """A small inline SVG line plot of ``key`` over ``step`` (no plotting dependency)."""
  pts = sorted((r['step'], r[key]) for r in rows if key in r and np.isfinite(r[key]))
  if not pts:
    return ''
  xs, ys = np.array([p[0] for p in pts], float), np.array([p[1] for p in pts], float)
  x0, x1 = xs.min(), max(xs.max(), xs.min() + 1)
  y0, y1 = ys.min(), max(ys.max(), ys.min() + 1e-12)
  m = 30
  px = m + (xs - x0) / (x1 - x0) * (width - 2 * m)
  py = height - m - (ys - y0) / (y1 - y0) * (height - 2 * m)
  poly = ' '.join(f'{a:.1f},{b:.1f}' for a, b in zip(px, py))
  dots = ''.join(f'<circle cx="{a:.1f}" cy="{b:.1f}" r="2.5"/>' for a, b in zip(px, py))
  return (f'<figure><svg width="{width}" height="{height}" xmlns="http://www.w3.org/2000/svg" '
          f'style="border:1px solid #ccc"><polyline fill="none" stroke="steelblue" stroke-width="2" '
          f'points="{poly}"/>{dots}<text x="{m}" y="14" font-size="11">{html.escape(key)}: '
          f'{ys[-1]:.4g} at step {int(xs[-1])} (min {ys.min():.4g})</text>'
          f'<text x="{m}" y="{height - 8}" font-size="10">step {int(x0)}</text>'
          f'<text x="{width - m - 60}" y="{height - 8}" font-size="10">step {int(xs.max())}</text></svg>'
          f'</figure>')


def write_report(workdir: str, step: int, results: dict[str, Any], artifacts: dict[str, np.ndarray]) -> str:
  """Writes ``eval_<step>.json`` and ``step_<step>/report.html`` (+ PNGs); returns the report path."""
  out = fileio.join(eval_dir(workdir), f'step_{step}')
  fileio.makedirs(out)
  _write_json_atomic(fileio.join(eval_dir(workdir), f'eval_{step}.json'), results)
  for name, img in artifacts.items():
    input_pipeline.save_png(fileio.join(out, f'{name}.png'), img)
  rows = []
  for set_name, r in results.get('sets', {}).items():
    cells = ''.join(f'<td>{r[k]:.4g}</td>' if k in r else '<td>-</td>'
                    for k in ('fid', 'kid', 'kid_std', 'precision', 'recall'))
    rows.append(f'<tr><td>{html.escape(set_name)}</td><td>{r["n"]}</td>{cells}</tr>')
    for contrast, c in r.get('per_contrast', {}).items():
      cells = ''.join(f'<td>{c[k]:.4g}</td>' if k in c else '<td>-</td>'
                      for k in ('fid', 'kid', 'kid_std', 'precision', 'recall'))
      rows.append(f'<tr><td>{html.escape(set_name)}: {html.escape(contrast)} only</td><td>{r["n"]}</td>{cells}</tr>')
  table = ('<table border="1" cellpadding="4"><tr><th>real set</th><th>n real</th><th>FID</th><th>KID</th>'
           '<th>KID std</th><th>precision</th><th>recall</th></tr>' + ''.join(rows) + '</table>')
  div = results.get('diversity')
  div_html = ''
  if div:
    items = ''.join(f'<li>{html.escape(k)}: {v["mean"]:.4f} ± {v.get("std", float("nan")):.4f} '
                    f'({v.get("n_pairs", "?")} pairs)</li>' for k, v in div.items() if isinstance(v, dict))
    div_html = f'<h2>Diversity (MS-SSIM, lower = more diverse)</h2><ul>{items}</ul>'
  memo_html = ''
  for space, m in results.get('memorization', {}).items():
    if not isinstance(m, dict):
      continue
    summary = ', '.join(f'{k} {v:.3g}' for k, v in m.items() if isinstance(v, (int, float)))
    img = f'<img src="closest_{space}.png">' if f'closest_{space}' in artifacts else ''
    memo_html += (f'<h3>Nearest training image in {space} space</h3><p>{html.escape(summary)}</p>'
                  f'<p>Closest pairs (generated left, training right):</p>{img}')
  if memo_html:
    memo_html = ('<h2>Memorization</h2><p>ratio = distance of a generated image to its nearest training image / '
                 'median nearest-neighbour distance among training images; ratios well below 1 suggest copies.</p>'
                 + memo_html)
  for key in ('mask_stats', 'label_consistency'):
    if key in results:
      memo_html += (f'<h2>{key}</h2><pre>{html.escape(json.dumps(results[key], indent=1, sort_keys=True)[:4000])}'
                    '</pre>')
  history = read_history(workdir)
  keys = sorted({k for r in history for k in r if k not in ('step', 'kind')})
  plots = ''.join(_svg_plot(history, k) for k in keys)
  conv = ''.join(f'<li>{html.escape(k)}: {html.escape(str(v))}</li>'
                 for k, v in results.get('conventions', {}).items())
  page = (f'<!doctype html><html><head><meta charset="utf-8"><title>fsgan_jax eval step {step}</title></head>'
          f'<body style="font-family:sans-serif"><h1>Evaluation at step {step}</h1>'
          f'<p>{results["num_samples"]} generated images, seed {results["seed"]}, workdir '
          f'{html.escape(workdir)}</p>{table}<h3>Conventions</h3><ul>{conv}</ul>{div_html}'
          f'<h2>Samples</h2><img src="samples.png">{memo_html}'
          f'<h2>Metrics over training steps</h2>{plots or "<p>(no history yet)</p>"}</body></html>')
  path = fileio.join(out, 'report.html')
  fileio.write_text_atomic(path, page)
  return path


# ----------------------------------------------------------------------------
# --mode=eval


def _with_eval_defaults(config: ml_collections.ConfigDict,
                        eval_override: Optional[ml_collections.ConfigDict] = None) -> ml_collections.ConfigDict:
  """The workdir's config with every ``eval`` field present (older workdirs), optionally replaced by an override."""
  from fsgan_jax import default_config  # pylint: disable=g-import-not-at-top
  merged = default_config.get_config().eval
  source = eval_override if eval_override is not None else config.get('eval', ml_collections.ConfigDict())
  for k, v in source.items():
    if k in merged:
      merged[k] = tuple(v) if isinstance(v, list) else v
  config = ml_collections.ConfigDict(config.to_dict())
  config.eval = merged
  return config


def evaluate_workdir(workdir: str, step: Optional[int] = None, num: Optional[int] = None, seed: int = 0,
                     eval_config: Optional[ml_collections.ConfigDict] = None, inception_params: Any = None
                     ) -> tuple[dict[str, Any], str]:
  """Restores a checkpoint of ``workdir`` and runs the full evaluation; returns (results, report path).

  Args:
    workdir: A training workdir (config.json + checkpoints/).
    step: Checkpoint step (default: the latest).
    num: Generated images (default ``config.eval.num_samples``).
    seed: Seed of z / noise / KID subsets / diversity pairs.
    eval_config: Replaces the workdir's ``eval`` section (e.g. from ``--config``), model and data stay.
    inception_params: FID Inception parameters (default: the converted weights, fetched on first use).
  """
  from fsgan_jax import checkpointing, train  # pylint: disable=g-import-not-at-top
  from clu import metric_writers  # pylint: disable=g-import-not-at-top
  workdir = fileio.abspath(workdir)  # a gs:// URL stays as it is
  config = _with_eval_defaults(train.read_config(workdir), eval_config)
  num = config.eval.num_samples if num is None else num
  if num < 2:
    raise EvalError(f'--num={num}: at least 2 generated images are needed')
  mesh = train.make_mesh()
  validate_eval_config(config, mesh.devices.size)
  setup = train.build_setup(config)
  manager = checkpointing.make_manager(workdir, config.keep_checkpoints, config.checkpoint_every)
  if manager.latest_step() is None:
    raise FileNotFoundError(f'no checkpoint in {os.path.join(workdir, "checkpoints")}: train first')
  state, step = checkpointing.restore(manager, train.create_state(config, setup, mesh), step)
  evaluator = Evaluator(config, setup, mesh, inception_params=inception_params)
  logging.info('eval: step %d, %d generated images, metrics %s', step, num, list(config.eval.metrics))
  results, artifacts = evaluator.evaluate(state.ema_params, state.g_stats, num, config.eval.metrics, seed=seed)
  results = {'step': int(step), 'workdir': workdir, **results}
  scalars = flat_scalars(results)
  writer = metric_writers.create_default_writer(workdir, just_logging=jax.process_index() > 0)
  writer.write_scalars(step, {f'eval_full/{k}': v for k, v in scalars.items()})
  writer.flush()
  report = ''
  if jax.process_index() == 0:
    append_history(workdir, step, scalars, kind=f'full_{num}')
    report = write_report(workdir, step, results, artifacts)
  return results, report
