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
real masks; ``label_consistency`` scores generated masks with a segmenter trained on the real pairs. At ~100 real
images FID has a large small-sample bias (two disjoint 100-slice tumor sets are at FID 66), so KID is always
reported next to it.

This module loads the real sets, generates and embeds images (``Evaluator``) and runs the metrics of the table in
``metrics.py`` (adding a metric happens there); ``report.py`` writes the JSON, history and HTML report.
"""

from __future__ import annotations

import csv
import functools
import json
import os
import pathlib
import time
from typing import Any, Optional, Sequence

from absl import logging
from clu import metric_writers
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from fsgan_jax import compiler, config_lib, errors, fileio, gan, input_pipeline, masks, metrics, pretrained, report
from fsgan_jax import sampling
from fsgan_jax import workdir as workdir_lib
from fsgan_jax.evaluators import fid as fid_lib
from fsgan_jax.evaluators import inception

RealSet = metrics.RealSet
EvalError = errors.EvalError
BUNDLED_HELDOUT_DIR = input_pipeline.BUNDLED_DIR.parent / 'lgg_flair_heldout'
BUNDLED_HELDOUT_MASK_DIR = input_pipeline.BUNDLED_DIR.parent / 'lgg_flair_heldout_masks'


# ----------------------------------------------------------------------------
# Reference (real) image sets.


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


@functools.lru_cache(maxsize=None)
def _network_fn(mesh: Mesh):
  """Inception pool3 features of preprocessed [B, 299, 299, 3] batches sharded over ``mesh``.

  One program per (mesh, batch size), shared by every evaluator, resize mode, resolution and channel view: the
  network is by far the most expensive program to compile, so it is kept apart from the resize.
  """
  return jax.jit(inception.features, in_shardings=(NamedSharding(mesh, P()), NamedSharding(mesh, P('data'))),
                 out_shardings=NamedSharding(mesh, P()), compiler_options=compiler.options())


@functools.lru_cache(maxsize=None)
def _view_fn(resize: str, mesh: Mesh, view: tuple[int, ...]):
  """0..255 images [B, H, W, C] (uint8 or float, sharded) -> channels ``view`` resized for Inception."""
  def fn(images):
    return inception.preprocess(images[..., list(view)].astype(jnp.float32), resize)

  data = NamedSharding(mesh, P('data'))
  return jax.jit(fn, in_shardings=data, out_shardings=data)


def feature_views(channels: int, mask_channels: int = 0) -> tuple[tuple[int, ...], tuple[tuple[int, ...], ...]]:
  """(channels of the primary Inception view, per-contrast views) for ``channels`` contrasts + labels.

  Primary: all contrasts if they are 1 (gray) or 3 (RGB-like), else the first contrast. Per-contrast views (each
  replicated to 3 channels by Inception's preprocessing) exist when there are several contrasts. Labels: never.
  """
  del mask_channels  # labels are never fed to Inception
  primary = tuple(range(channels)) if channels in (1, 3) else (0,)
  return primary, (tuple((c,) for c in range(channels)) if channels > 1 else ())


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
    config_lib.validate_eval(config, mesh.devices.size)
    self.config = config
    self.mesh = mesh
    self.batch_size = config.eval.batch_size
    self.resize = config.eval.resize
    repl = NamedSharding(mesh, P())
    self._batch_sharding = NamedSharding(mesh, P('data'))
    if inception_params is None:
      inception_params = fid_lib.get_params()
    self.inception_params = jax.device_put(inception_params, repl)
    self._network = _network_fn(mesh)
    self.channels = config_lib.image_channels(config)
    self.mask_channels = config_lib.mask_channels(config)
    self.contrast_names = config_lib.channel_names(config)[:self.channels]
    self.primary, self.per_contrast = feature_views(self.channels)
    self._sample = sampling.uint8_sampler(setup.generator, config.sample_bn, self.channels, mesh, self.batch_size)
    if real_sets is None:
      real_sets = default_real_sets(config)
    self.real_sets = list(real_sets)
    for rs in self.real_sets:
      if rs.features is None:
        t0 = time.perf_counter()
        rs.features = self.features(rs.images)
        if self.per_contrast:
          rs.contrast_features = {self.contrast_names[v[0]]: self.features(rs.images, v) for v in self.per_contrast}
        logging.info('eval: Inception features of the %s set (%d images) in %.1f s', rs.name, len(rs.images),
                     time.perf_counter() - t0)

  def _view_features(self, images: jax.Array, view: tuple[int, ...]) -> jax.Array:
    """Features of channels ``view`` of one sharded batch of 0..255 images (two programs: resize, network)."""
    return self._network(self.inception_params, _view_fn(self.resize, self.mesh, view)(images))

  def features(self, images: np.ndarray, view: Optional[tuple[int, ...]] = None) -> np.ndarray:
    """Inception pool3 features of channels ``view`` (default: the primary view) of uint8 [N, H, W, C] images,
    in sharded batches of ``eval.batch_size`` (last batch padded): as the generated images are featurized."""
    view = self.primary if view is None else view
    out = []
    b = self.batch_size
    for start in range(0, len(images), b):
      batch = images[start:start + b]
      k = len(batch)
      if k < b:
        batch = np.concatenate([batch, np.zeros((b - k,) + batch.shape[1:], batch.dtype)])
      batch = jax.device_put(batch, self._batch_sharding)
      out.append(np.asarray(jax.device_get(self._view_features(batch, view)))[:k])
    return np.concatenate(out)

  def generate(self, g_params: Any, g_stats: Any, num: int, seed: int = 0, keep_images: Optional[int] = None,
               with_contrasts: bool = False) -> tuple[np.ndarray, ...]:
    """``num`` EMA-generator images: (uint8 images of the first ``keep_images``, float32 features of all).

    With ``with_contrasts`` a third element: ``{contrast name: features}`` of the per-contrast views.

    The images are those of ``sampling.draw`` with batch ``eval.batch_size`` (the policy in ``sampling``): the same
    as ``--mode=sample`` for the same checkpoint and seed.
    """
    keep = num if keep_images is None else min(num, keep_images)
    images, feats, extra = [], [], []
    start = 0
    def generate(z, key):
      imgs = self._sample(g_params, g_stats, z, key)
      return imgs, self._view_features(imgs, self.primary), tuple(self._view_features(imgs, v)
                                                                  for v in self.per_contrast)

    for n, out in sampling.batches(generate, num, seed, self.batch_size, self.config.model.nz):
      imgs, f, fc = jax.device_get(out)
      feats.append(np.asarray(f)[:n])
      extra.append([np.asarray(x)[:n] for x in fc])
      if start < keep:
        images.append(np.asarray(imgs)[:min(n, keep - start)])
      start += n
    if not with_contrasts:
      return np.concatenate(images), np.concatenate(feats)
    contrasts = {self.contrast_names[v[0]]: np.concatenate([e[j] for e in extra])
                 for j, v in enumerate(self.per_contrast)}
    return np.concatenate(images), np.concatenate(feats), contrasts

  def evaluate(self, g_params: Any, g_stats: Any, num_samples: int, metrics_to_run: Sequence[str],
               seed: int = 0, fid_method: Optional[str] = None) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """Runs ``metrics``; returns (JSON-ready results, image artifacts for the report).

    ``fid_method`` (default ``config.eval.fid_method``): 'sqrtm' (scipy, as pytorch-fid) or 'eigh' (6x faster,
    within ~1e-5 of it; see `evaluators.fid.frechet_distance`).
    """
    cfg = self.config.eval
    fid_method = fid_method or cfg.fid_method
    unknown = [m for m in metrics_to_run if m not in metrics.METRICS]
    if unknown:
      raise EvalError(f'unknown metric(s) {unknown}; available: {list(metrics.METRICS)}')
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
        'sets': {rs.name: {'n': int(len(rs.images)), 'source': rs.source} for rs in self.real_sets},
    }
    shown = gen_images[:64]
    real = self.real_sets[0].images  # the training set; a random subset of the same size as the samples grid
    pick = np.sort(np.random.default_rng(seed).permutation(len(real))[:len(shown)])
    artifacts: dict[str, np.ndarray] = {
        'samples': input_pipeline.make_grid(masks.display(shown, self.channels), ncols=8),
        'real': input_pipeline.make_grid(masks.display(real[pick], self.channels), ncols=8)}
    sample = metrics.Sample(config=self.config, mesh=self.mesh, channels=self.channels, primary=self.primary,
                            images=gen_images, features=gen_feats, contrast_features=gen_contrasts,
                            real_sets=self.real_sets, results=results, artifacts=artifacts, seed=seed,
                            fid_method=fid_method)
    for name, metric in metrics.METRICS.items():  # table order, whatever the order of the request
      if name in metrics_to_run:
        out = metric.compute(sample)
        if out is not None:
          results[name] = out
    results['seconds'] = {'generate_and_features': t_gen, 'total': time.perf_counter() - t0}
    return results, artifacts


# ----------------------------------------------------------------------------
# --mode=eval


def _with_eval_override(config: ml_collections.ConfigDict,
                        eval_override: Optional[ml_collections.ConfigDict] = None) -> ml_collections.ConfigDict:
  """The workdir's config with every field present (older workdirs), its ``eval`` section replaced by an override."""
  config = config_lib.with_defaults(config)
  if eval_override is not None:
    for k, v in eval_override.items():
      if k in config.eval:
        config.eval[k] = tuple(v) if isinstance(v, list) else v
  return config


def evaluate_workdir(workdir: str, step: Optional[int] = None, num: Optional[int] = None, seed: int = 0,
                     eval_config: Optional[ml_collections.ConfigDict] = None, inception_params: Any = None,
                     out: Optional[str] = None) -> tuple[dict[str, Any], str]:
  """Restores a checkpoint of ``workdir`` and runs the full evaluation; returns (results, report path).

  Args:
    workdir: A training workdir (config.json + checkpoints/).
    step: Checkpoint step (default: the latest).
    num: Generated images (default ``config.eval.num_samples``).
    seed: Seed of z / noise / KID subsets / diversity pairs.
    eval_config: Replaces the workdir's ``eval`` section (e.g. from ``--config``), model and data stay.
    inception_params: FID Inception parameters (default: the converted weights, fetched on first use).
    out: Where the JSON, history, report and TensorBoard scalars go (default: ``workdir``; required for an exported
      generator, which is read-only).
  """
  workdir = fileio.abspath(workdir)  # a gs:// URL stays as it is
  exported = pretrained.is_pretrained(workdir)
  if exported and out is None:
    raise EvalError(f'{workdir} is an exported generator (read-only): pass --out=DIR for the evaluation results')
  out = workdir if out is None else fileio.abspath(out)
  stored = (config_lib.with_defaults(ml_collections.ConfigDict(json.loads(pretrained.load(workdir)[0])))
            if exported else workdir_lib.read_config(workdir))
  config = _with_eval_override(stored, eval_config)
  num = config.eval.num_samples if num is None else num
  if num < 2:
    raise EvalError(f'--num={num}: at least 2 generated images are needed')
  mesh = gan.make_mesh()
  config_lib.validate_eval(config, mesh.devices.size)  # before the checkpoint is read or anything compiled
  run = workdir_lib.load_run(workdir, step, mesh=mesh, config=config)
  evaluator = Evaluator(config, run.setup, mesh, inception_params=inception_params)
  logging.info('eval: step %d, %d generated images, metrics %s', run.step, num, list(config.eval.metrics))
  results, artifacts = evaluator.evaluate(run.state.ema_params, run.state.g_stats, num, config.eval.metrics,
                                          seed=seed)
  results = {'step': run.step, 'workdir': workdir, **results}
  scalars = metrics.flat_scalars(results)
  writer = metric_writers.create_default_writer(out, just_logging=jax.process_index() > 0)
  writer.write_scalars(run.step, {f'eval_full/{k}': v for k, v in scalars.items()})
  writer.flush()
  path = ''
  if jax.process_index() == 0:
    report.append_history(out, run.step, scalars, kind=f'full_{num}')
    path = report.write_report(out, run.step, results, artifacts)
  return results, path
