r"""Downstream study: does a few-shot GAN's synthetic tumor data help a tumor-vs-no-tumor slice classifier?

Rare-disease setting: non-tumor slices are plentiful, tumor slices come from only k patients. For every cell
(arm, k, seed) a small ResNet (``models/classifier.py``) is trained with the same jitted data-parallel machinery as
``train.py`` (parameters replicated, batches sharded over a 1-D ``('data',)`` mesh) and scored on held-out test
patients. One command runs the whole grid, resumably, and writes ``<results_prefix>.json/.md/.png``::

  python -m fsgan_jax.experiments.classify --config=configs/classify.py:cpu --workdir=/tmp/classify_cpu

Splits (``make_split``, all patient-disjoint; the partition is the dataset builder's, ``common.partition``):

* positives (tumor class) = slices with tumor area >= ``data.min_tumor_area`` of the k patients of
  ``fewshot_k{k}_seed{S}``; the GAN of cell (k, S) is trained on exactly these slices and nothing else;
* negatives = slices with an empty mask of the ``data.negative_patients`` patients of
  ``fewshot_k{n}_seed{S}`` (nested splits: a superset of the k patients). Their tumor slices are never used;
* validation = the ``heldout`` patients, test = the ``test`` patients (both: tumor vs empty-mask slices). Slices
  with 0 < area < min_tumor_area are ambiguous and left out everywhere.

Arms (``parse_arm``): ``real``; ``real_aug`` (random flip, shift, rotation, intensity jitter on every batch);
``syn{r}x`` (real + ``synthetic_count(n_pos, r)`` synthetic tumor slices in the positive pool); ``syn_only``
(the positive pool is ``n_pos`` synthetic slices, no real tumor slice). Class balance: every batch is
``pos_fraction`` positives drawn uniformly with replacement from the positive pool (oversampling), the rest negatives.
Model selection: the evaluated step with the best validation AUROC.

Metrics (``test_metrics``): AUROC (rank based, ties count 1/2), sensitivity at ``metrics.specificity`` on the test
ROC, balanced accuracy at a threshold chosen on validation (Youden's J, or 0.5 for ``threshold='fixed'``).
Confidence intervals: percentile bootstrap that resamples test *patients* (all slices of a patient together)
and, with ``resample_seeds``, the seeds, jointly for all arms so paired differences against ``real`` use the same
resample. The paired comparison also counts per-seed wins/ties/losses with an exact two-sided sign test.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import math
import os
import pathlib
import re
import time
from typing import Any, Callable, Optional, Sequence

from absl import app
from absl import flags
from absl import logging
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from jax.sharding import NamedSharding, PartitionSpec as P

from fsgan_jax import checkpointing, compiler, default_config, input_pipeline, train
from fsgan_jax import masks as masks_lib
from fsgan_jax.models import classifier as classifier_lib
from fsgan_jax.models import fastgan

METRICS = ('balanced_accuracy', 'auroc', 'sens_at_spec')
METRIC_TITLES = {'balanced_accuracy': 'balanced accuracy', 'auroc': 'AUROC', 'sens_at_spec': 'sensitivity'}


class ConfigError(ValueError):
  """A study config value is invalid; the message is one line naming the field."""


# ----------------------------------------------------------------------------------------------------------- arms


@dataclasses.dataclass(frozen=True)
class Arm:
  """What one arm trains on: real tumor slices or not, synthetic ratio (0 = none), classic augmentation or not."""
  name: str
  real_positives: bool = True
  ratio: float = 0.0
  augment: bool = False

  @property
  def synthetic(self) -> bool:
    return self.ratio > 0


_SYN_RE = re.compile(r'^syn(?P<r>[-+]?\d+(?:\.\d+)?)x$')


def parse_arm(name: str) -> Arm:
  """``real`` | ``real_aug`` | ``syn{r}x`` (real + r x synthetic, r > 0) | ``syn_only``; else ConfigError."""
  if name == 'real':
    return Arm(name)
  if name == 'real_aug':
    return Arm(name, augment=True)
  if name == 'syn_only':
    return Arm(name, real_positives=False, ratio=1.0)
  m = _SYN_RE.match(name)
  if m is None:
    raise ConfigError(f'config.arms: unknown arm {name!r} (known: real, real_aug, syn<r>x e.g. syn0.5x, syn_only)')
  ratio = float(m['r'])
  if not ratio > 0:
    raise ConfigError(f'config.arms: arm {name!r} has synthetic ratio {ratio} <= 0')
  return Arm(name, ratio=ratio)


def synthetic_count(n_pos: int, ratio: float) -> int:
  """Synthetic tumor slices for ``ratio`` x ``n_pos`` real ones: ``floor(ratio * n_pos + 0.5)`` (half rounds up)."""
  return int(math.floor(ratio * n_pos + 0.5))


# ------------------------------------------------------------------------------------------------------- validation


def validate_grid(config: ml_collections.ConfigDict) -> list[Arm]:
  """Checks ``arms``, ``ks`` and ``seeds`` (shared with the segmentation study); returns the parsed arms."""
  arms = [parse_arm(a) for a in config.arms]
  if not arms or len({a.name for a in arms}) != len(arms):
    raise ConfigError(f'config.arms={tuple(config.arms)}: need at least one arm and no duplicates')
  if any(a.name != 'real' for a in arms) and 'real' not in config.arms:
    raise ConfigError('config.arms: the paired comparison needs the "real" arm')
  ks, seeds = tuple(config.ks), tuple(config.seeds)
  if not ks or any(not isinstance(k, int) or k < 1 for k in ks) or len(set(ks)) != len(ks):
    raise ConfigError(f'config.ks={ks}: need distinct integers >= 1')
  if not seeds or any(not isinstance(s, int) or s < 0 for s in seeds) or len(set(seeds)) != len(seeds):
    raise ConfigError(f'config.seeds={seeds}: need distinct integers >= 0')
  return arms


def validate_gan(config: ml_collections.ConfigDict, arms: Sequence[Arm], num_devices: int = 1) -> None:
  """Checks the ``gan`` section (shared with the segmentation study)."""
  d = config.data
  if any(a.synthetic for a in arms) and config.gan.workdir is None:
    if d.resolution not in fastgan.RESOLUTIONS:
      raise ConfigError(f'config.data.resolution={d.resolution}: the GAN needs one of {fastgan.RESOLUTIONS}')
    if config.gan.num_steps < 1 or config.gan.batch_size % num_devices:
      raise ConfigError(f'config.gan.num_steps={config.gan.num_steps} / batch_size={config.gan.batch_size}: need '
                        f'>= 1 steps and a batch that is a multiple of the number of devices ({num_devices})')
  if config.gan.train_size < 0:
    raise ConfigError(f'config.gan.train_size={config.gan.train_size} must be >= 0 (0 = every tumor slice once)')
  if config.gan.sample_batch < 1:
    raise ConfigError(f'config.gan.sample_batch={config.gan.sample_batch} must be >= 1')


def validate_bootstrap(m: ml_collections.ConfigDict) -> None:
  """Checks ``metrics.n_boot`` and ``metrics.level`` (shared with the segmentation study)."""
  if m.n_boot < 10 or not 0 < m.level < 1:
    raise ConfigError(f'config.metrics.n_boot={m.n_boot} / level={m.level}: need n_boot >= 10, 0 < level < 1')


def validate_batches(section: ml_collections.ConfigDict, name: str, num_devices: int) -> None:
  """``config.<name>.batch_size`` and ``eval_batch_size`` must be positive multiples of the device count (sharding)."""
  for field in ('batch_size', 'eval_batch_size'):
    value = getattr(section, field)
    if value < 1 or value % num_devices:
      raise ConfigError(f'config.{name}.{field}={value} must be a positive multiple of the number of devices '
                        f'({num_devices})')


def validate_config(config: ml_collections.ConfigDict, num_devices: int = 1) -> list[Arm]:
  """Checks every field the study uses (one-line ConfigError naming it); returns the parsed arms."""
  arms = validate_grid(config)
  ks = tuple(config.ks)
  d = config.data
  if d.negative_patients < max(ks):
    raise ConfigError(f'config.data.negative_patients={d.negative_patients} must be >= max(config.ks)={max(ks)} '
                      '(the negatives come from a superset of the k patients)')
  if d.min_tumor_area < 1:
    raise ConfigError(f'config.data.min_tumor_area={d.min_tumor_area} must be >= 1')
  c = config.classifier
  if c.image_size < 8 or d.resolution % c.image_size:
    raise ConfigError(f'config.classifier.image_size={c.image_size} must be >= 8 and divide '
                      f'config.data.resolution={d.resolution}')
  if not c.widths or min(c.widths) < 1:
    raise ConfigError(f'config.classifier.widths={tuple(c.widths)} must be positive')
  validate_batches(c, 'classifier', num_devices)
  if not 0 < c.pos_fraction < 1 or not 1 <= round(c.batch_size * c.pos_fraction) < c.batch_size:
    raise ConfigError(f'config.classifier.pos_fraction={c.pos_fraction} must leave >= 1 positive and >= 1 '
                      f'negative in a batch of {c.batch_size}')
  for name in ('num_steps', 'eval_every', 'blocks_per_stage', 'groups', 'stem_stride'):
    if getattr(c, name) < 1:
      raise ConfigError(f'config.classifier.{name}={getattr(c, name)} must be >= 1')
  if not c.lr > 0 or c.weight_decay < 0:
    raise ConfigError(f'config.classifier.lr={c.lr} / weight_decay={c.weight_decay}: need lr > 0, decay >= 0')
  m = config.metrics
  if not 0 < m.specificity < 1:
    raise ConfigError(f'config.metrics.specificity={m.specificity} must be in (0, 1)')
  if m.threshold not in ('youden', 'fixed'):
    raise ConfigError(f"config.metrics.threshold={m.threshold!r}: choose 'youden' or 'fixed'")
  validate_bootstrap(m)
  validate_gan(config, arms, num_devices)
  return arms


# ------------------------------------------------------------------------------------------------------------- data


@dataclasses.dataclass(frozen=True)
class SliceTable:
  """Every slice the study may use, once: images (N, R, R, C) in [-1, 1], patient id and tumor area per slice, and
  (``load_table(..., with_masks=True)``, the segmentation study) the uint8 0/1 tumor masks (N, R, R)."""
  images: Optional[np.ndarray]
  subject: np.ndarray
  tumor_area: np.ndarray
  masks: Optional[np.ndarray] = None


def split_names(k: int, seed: int, negative_patients: int) -> dict[str, str]:
  """Role -> dataset split name for cell (k, seed)."""
  return {'fewshot': f'fewshot_k{k}_seed{seed}', 'negatives': f'fewshot_k{negative_patients}_seed{seed}',
          'val': 'heldout', 'test': 'test'}


def built_ks(config: ml_collections.ConfigDict) -> tuple[int, ...]:
  """The few-shot sizes the dataset is built with: ``ks`` + ``data.negative_patients`` (the classifier study) or
  + ``data.extra_ks`` (the segmentation study: the classifier's pool, so one build serves both studies)."""
  d = config.data
  extra = tuple(d.extra_ks) if 'extra_ks' in d else (d.negative_patients,)
  return tuple(sorted(set(config.ks) | set(extra)))


def dataset_config(config: ml_collections.ConfigDict) -> Any:
  """The builder config the study needs: base config + resolution, slice policy, ks (+ negatives) and seeds."""
  from fsgan_jax.datasets import common  # pylint: disable=g-import-not-at-top  (imports TFDS)
  d = config.data
  module = common.builder_module(d.name)
  ks = built_ks(config)
  try:
    return module.make_config(d.base_config, resolution=d.resolution, slice_policy=d.slice_policy,
                              min_tumor_area=d.min_tumor_area, ks=ks, seeds=tuple(config.seeds))
  except (ValueError, TypeError) as e:
    raise ConfigError(f'config.data ({d.name}/{d.base_config}): {e}') from None


def prepare_dataset(config: ml_collections.ConfigDict, workdir: str) -> tuple[pathlib.Path, str]:
  """Builds the dataset (as ``python -m fsgan_jax.datasets.build``) unless present; returns (data_dir, config name).

  A k (or ``negative_patients``) larger than the few-shot pool fails here, before anything trains.
  """
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  from fsgan_jax.datasets import common  # pylint: disable=g-import-not-at-top
  d = config.data
  data_dir = pathlib.Path(d.tfds_data_dir or os.path.join(workdir, 'tfds')).expanduser().resolve()
  cfg = dataset_config(config)
  folder = data_dir / d.name / cfg.name
  if not any((v / 'dataset_info.json').is_file() for v in folder.glob('*')):
    if not d.manual_dir:
      raise ConfigError(f'{folder} is not built: set --config.data.manual_dir to the TCGA-LGG kaggle_3m folder '
                        '(or --config.data.tfds_data_dir to a built dataset)')
    manual = pathlib.Path(d.manual_dir).expanduser()
    if not manual.is_dir():
      raise ConfigError(f'config.data.manual_dir={d.manual_dir!r} is not a directory and {folder} is not built')
    logging.info('building %s/%s into %s', d.name, cfg.name, data_dir)
    tfds.disable_progress_bar()
    builder = common.builder_module(d.name).Builder(config=cfg, data_dir=str(data_dir), file_format='array_record')
    try:
      builder.download_and_prepare(download_config=tfds.download.DownloadConfig(
          manual_dir=str(manual), download_mode=tfds.download.GenerateMode.REUSE_DATASET_IF_EXISTS))
    except (common.DatasetError, ValueError) as e:
      raise ConfigError(f'config.data ({d.name}, ks {tuple(config.ks)} + negative_patients / extra_ks: '
                        f'{built_ks(config)}): {" ".join(str(e).split())}') from None
  return data_dir, cfg.name


def load_table(config: ml_collections.ConfigDict, data_dir: pathlib.Path, cfg_name: str,
               names: Optional[Sequence[str]] = None,
               with_masks: bool = False) -> tuple[SliceTable, dict[str, tuple[str, ...]]]:
  """Reads every split the grid needs once; returns the deduplicated slice table and split -> patient ids.

  ``names``: the splits to read (None = those of ``split_names`` for every cell, + heldout and test);
  ``with_masks``: also keep the ``mask`` feature (the segmentation study).
  """
  from fsgan_jax.datasets import common  # pylint: disable=g-import-not-at-top
  if names is None:
    names = {'heldout', 'test'}
    for k in config.ks:
      for s in config.seeds:
        names.update({v for r, v in split_names(k, s, config.data.negative_patients).items()})
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
  return SliceTable(np.stack(images).astype(np.float32), np.asarray(subject), np.asarray(area, np.int64),
                    np.stack(masks).astype(np.uint8) if with_masks else None), patients


@dataclasses.dataclass(frozen=True)
class CellSplit:
  """Slice indices into a ``SliceTable`` per role, and the patients of each role, for one (k, seed)."""
  gan_train: np.ndarray  # the k patients' tumor slices: the GAN's whole training set (= train_pos)
  train_pos: np.ndarray
  train_neg: np.ndarray
  val_pos: np.ndarray
  val_neg: np.ndarray
  test_pos: np.ndarray
  test_neg: np.ndarray
  patients: dict[str, tuple[str, ...]]


def make_split(subject: np.ndarray, tumor_area: np.ndarray, patients: dict[str, Sequence[str]], k: int, seed: int,
               negative_patients: int, min_tumor_area: int) -> CellSplit:
  """The one place that decides which slices each role of cell (k, seed) uses (rules: module docstring).

  Args:
    subject: patient id per slice. tumor_area: mask pixels (at 256) per slice.
    patients: split name -> patient ids (``fewshot_k{k}_seed{S}``, ``fewshot_k{n}_seed{S}``, ``heldout``, ``test``).
    k, seed: the cell. negative_patients: n of the negatives' split. min_tumor_area: positive threshold.

  Raises:
    ValueError: the splits overlap or the k-split is not inside the negatives' split (a wrong dataset).
  """
  names = split_names(k, seed, negative_patients)
  missing = [n for n in names.values() if n not in patients]
  if missing:
    raise ValueError(f'dataset has no split(s) {missing}: rebuild it with these ks/seeds')
  role = {r: frozenset(patients[n]) for r, n in names.items()}
  if len(role['fewshot']) != k:
    raise ValueError(f'{names["fewshot"]} has {len(role["fewshot"])} patients, expected {k}')
  if not role['fewshot'] <= role['negatives']:
    raise ValueError(f'{names["fewshot"]} is not inside {names["negatives"]}: splits must be nested')
  for a, b in (('negatives', 'val'), ('negatives', 'test'), ('val', 'test')):
    if role[a] & role[b]:
      raise ValueError(f'patients in both {names[a]} and {names[b]}: {sorted(role[a] & role[b])[:3]}')
  pos, neg = tumor_area >= min_tumor_area, tumor_area == 0
  member = lambda r: np.isin(subject, sorted(role[r]))
  idx = lambda m: np.flatnonzero(m)
  train_pos = idx(member('fewshot') & pos)
  return CellSplit(gan_train=train_pos, train_pos=train_pos, train_neg=idx(member('negatives') & neg),
                   val_pos=idx(member('val') & pos), val_neg=idx(member('val') & neg),
                   test_pos=idx(member('test') & pos), test_neg=idx(member('test') & neg),
                   patients={'train_pos': tuple(sorted(role['fewshot'])), 'train_neg': tuple(sorted(role['negatives'])),
                             'val': tuple(sorted(role['val'])), 'test': tuple(sorted(role['test']))})


def resize_images(x: np.ndarray, size: int) -> np.ndarray:
  """(N, R, R, C) -> (N, size, size, C): block mean when R is a multiple of size (as the builder), else bilinear."""
  r = x.shape[1]
  if r == size:
    return np.asarray(x, np.float32)
  if r % size == 0:
    f = r // size
    return x.reshape(x.shape[0], size, f, size, f, x.shape[3]).mean(axis=(2, 4)).astype(np.float32)
  return np.asarray(jax.image.resize(x, (x.shape[0], size, size, x.shape[3]), 'bilinear'), np.float32)


def positive_pool(real_pos: np.ndarray, synthetic: Optional[np.ndarray], arm: Arm) -> np.ndarray:
  """The tumor-class images of ``arm``: real ones and/or the first ``synthetic_count`` synthetic ones."""
  parts = [real_pos] if arm.real_positives else []
  if arm.synthetic:
    n = synthetic_count(len(real_pos), arm.ratio)
    if synthetic is None or len(synthetic) < n:
      raise ValueError(f'arm {arm.name}: needs {n} synthetic images, got {0 if synthetic is None else len(synthetic)}')
    parts.append(synthetic[:n])
  return np.concatenate(parts).astype(np.float32)


# -------------------------------------------------------------------------------------------------------------- GAN


def gan_config(config: ml_collections.ConfigDict, data_dir: str, seed: int, channels: int) -> ml_collections.ConfigDict:
  """The FastGAN config of one cell: ``default_config`` with the study's ``gan`` fields, trained on ``data_dir``."""
  g = config.gan
  c = default_config.get_config()
  c.model.resolution = config.data.resolution
  c.model.ngf, c.model.ndf, c.model.nz, c.model.decoder_width = g.ngf, g.ndf, g.nz, g.decoder_width
  c.data.dir = data_dir
  c.data.channels = channels
  c.batch_size = g.batch_size
  c.num_steps = g.num_steps
  c.ema_decay = g.ema_decay
  c.recon_loss = g.recon_loss
  c.seed = seed
  c.log_every = max(1, min(100, g.num_steps))
  c.sample_every = c.checkpoint_every = g.num_steps
  c.keep_checkpoints = 1
  c.eval.every = 0
  return c


def gan_workdir(config: ml_collections.ConfigDict, workdir: str, k: int, seed: int) -> tuple[str, bool]:
  """(generator workdir of cell (k, seed), whether the study trains it): the given one or WORKDIR/gans/k{k}_seed{S}."""
  if config.gan.workdir:
    return os.path.abspath(os.path.expanduser(config.gan.workdir.format(k=k, seed=seed))), False
  return os.path.join(workdir, 'gans', f'k{k}_seed{seed}'), True


class Preempted(RuntimeError):
  """A GAN's training was stopped by SIGTERM / preemption (its checkpoint is saved): rerun the command to resume."""


def gan_training_set(tumor_slices: np.ndarray, size: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
  """Indices of the slices the GAN trains on, and each slice's copy count.

  ``size = 0``: every slice once. ``size > 0``: exactly ``size`` images, every slice ``size // n`` times plus a
  seeded random ``size % n`` of them once more (each weight within a factor 1 + 1/(size // n) of uniform), so all
  GANs of a grid have the same input shape and share one XLA compilation (the CPU-small grid's largest saving).
  The set of distinct images is always exactly ``tumor_slices``.
  """
  n = len(tumor_slices)
  if size <= 0 or size <= n:
    idx = np.arange(n)
  else:
    extra = np.random.default_rng(seed).choice(n, size - n * (size // n), replace=False)
    idx = np.sort(np.concatenate([np.repeat(np.arange(n), size // n), extra]))
  return idx, np.bincount(idx, minlength=n)


def train_gan(config: ml_collections.ConfigDict, gan_dir: str, tumor_slices: np.ndarray, seed: int,
              masks: Optional[np.ndarray] = None) -> float:
  """Trains (or resumes / reuses) the cell's FastGAN on exactly ``tumor_slices``; returns the seconds spent.

  With ``masks`` (uint8 0/1, (N, R, R), the segmentation study) the GAN learns image + mask pairs: the masks are
  written as 0/255 PNGs with the images' file names into ``gan_dir/masks`` and the GAN gets
  ``model.mask_channels = 1`` (its samples have one more channel, the mask in -1/+1).

  Raises:
    Preempted: training stopped early on SIGTERM (checkpoint saved); the grid must not go on with this GAN.
  """
  t0 = time.perf_counter()
  data_dir, mask_dir = os.path.join(gan_dir, 'data'), os.path.join(gan_dir, 'masks')
  idx, _ = gan_training_set(tumor_slices, config.gan.train_size, seed)
  folders = [(data_dir, input_pipeline.to_uint8(tumor_slices))]
  if masks is not None:
    folders.append((mask_dir, (np.asarray(masks) > 0).astype(np.uint8)[..., None] * 255))
  for folder, pngs in folders:
    if not os.path.isdir(folder) or len(os.listdir(folder)) != len(idx):
      os.makedirs(folder, exist_ok=True)
      for f in os.listdir(folder):
        os.remove(os.path.join(folder, f))
      for i, j in enumerate(idx):
        input_pipeline.save_png(os.path.join(folder, f'{i:05d}_slice{j:04d}.png'), pngs[j])
  gc = gan_config(config, data_dir, seed, tumor_slices.shape[-1])
  if masks is not None:
    gc.data.mask_dir = mask_dir
    gc.model.mask_channels = 1
  manager = checkpointing.make_manager(gan_dir, gc.keep_checkpoints, gc.checkpoint_every)
  if (manager.latest_step() or 0) < gc.num_steps:
    logging.info('training the GAN in %s on %d tumor slices (%d images)', gan_dir, len(tumor_slices), len(idx))
    metrics = train.train_and_evaluate(gc, gan_dir)
    if 'preempted_at_step' in metrics:
      raise Preempted(f'stopped while training the GAN in {gan_dir} (checkpoint at step '
                      f'{int(metrics["preempted_at_step"])}); run the same command to resume')
  return time.perf_counter() - t0


def synthetic_images(gan_dir: str, num: int, seed: int, batch: int, cache_dir: str) -> np.ndarray:
  """``num`` EMA-generator images (N, R, R, C) in [-1, 1], as ``sample.py`` makes them.

  Cached as uint8 ``.npy`` (plus a grid PNG to look at) in ``cache_dir``, the study's own folder for the cell, so a
  generator workdir given in the config is only read.
  """
  os.makedirs(cache_dir, exist_ok=True)
  cache = os.path.join(cache_dir, f'synthetic_seed{seed}_n{num}.npy')
  if os.path.exists(cache):
    return np.load(cache).astype(np.float32) / 127.5 - 1.0
  config = train.read_config(gan_dir)
  setup = train.build_setup(config)
  manager = checkpointing.make_manager(gan_dir, config.keep_checkpoints, config.checkpoint_every)
  if manager.latest_step() is None:
    raise ConfigError(f'config.gan.workdir: no generator checkpoint in {gan_dir}')
  state, _ = checkpointing.restore(manager, train.create_state(config, setup, train.make_mesh()))
  sampler = train.make_sampler(setup, config.sample_bn)
  key = jax.random.PRNGKey(seed)
  out = []
  for i, start in enumerate(range(0, num, batch)):
    zk, nk = jax.random.split(jax.random.fold_in(key, i))
    z = jax.random.normal(zk, (batch, config.model.nz))  # full batches: BN batch statistics as in training
    out.append(input_pipeline.to_uint8(jax.device_get(sampler(state.ema_params, state.g_stats, z, nk))))
  images = np.concatenate(out)[:num]
  tmp = cache + '.tmp.npy'
  np.save(tmp, images)
  os.replace(tmp, cache)
  preview = images[:64]
  if preview.shape[-1] not in (1, 3):  # image + mask channels (segmentation study): channels side by side
    preview = masks_lib.side_by_side(preview)
  input_pipeline.save_png(os.path.join(cache_dir, f'synthetic_seed{seed}_grid.png'),
                          input_pipeline.make_grid(preview, ncols=8))
  return images.astype(np.float32) / 127.5 - 1.0


# ------------------------------------------------------------------------------------------------------- classifier


def augment_batch(key: jax.Array, x: jax.Array, hflip: bool, max_shift: float, max_rotate_deg: float,
                  brightness: float, contrast: float, jitter_channels: Optional[int] = None) -> jax.Array:
  """Classic per-sample augmentation: horizontal flip, shift + rotation (bilinear, background -1), intensity jitter.

  Every channel gets the same geometric transform; the intensity jitter only the first ``jitter_channels`` (None =
  all), so a mask carried as a last channel (segmentation study) moves with its image but keeps its values.
  """
  b, h, w, _ = x.shape
  kf, kr, ks, kb, kc = jax.random.split(key, 5)
  if hflip:
    flip = jax.random.bernoulli(kf, 0.5, (b,))
    x = jnp.where(flip[:, None, None, None], x[:, :, ::-1], x)
  theta = jnp.deg2rad(jax.random.uniform(kr, (b,), minval=-max_rotate_deg, maxval=max_rotate_deg))
  shift = jax.random.uniform(ks, (b, 2), minval=-max_shift, maxval=max_shift) * jnp.array([h, w])
  ii, jj = jnp.meshgrid(jnp.arange(h, dtype=jnp.float32), jnp.arange(w, dtype=jnp.float32), indexing='ij')
  ci, cj = (h - 1) / 2, (w - 1) / 2

  def warp(img, t, s):
    y, xx = ii - ci - s[0], jj - cj - s[1]
    src_y = jnp.cos(t) * y + jnp.sin(t) * xx + ci
    src_x = -jnp.sin(t) * y + jnp.cos(t) * xx + cj
    per_channel = lambda plane: jax.scipy.ndimage.map_coordinates(plane, [src_y, src_x], order=1, mode='constant',
                                                                   cval=-1.0)
    return jnp.moveaxis(jax.vmap(per_channel, in_axes=2)(img), 0, -1)

  x = jax.vmap(warp)(x, theta, shift)
  c = jax.random.uniform(kc, (b, 1, 1, 1), minval=1 - contrast, maxval=1 + contrast)
  d = jax.random.uniform(kb, (b, 1, 1, 1), minval=-brightness, maxval=brightness)
  n = x.shape[-1] if jitter_channels is None else jitter_channels
  jittered = jnp.clip((x[..., :n] + 1.0) * c - 1.0 + d, -1.0, 1.0)
  return jittered if n == x.shape[-1] else jnp.concatenate([jittered, x[..., n:]], axis=-1)


class DataParallelModel:
  """A Flax model + optax optimizer with jitted data-parallel steps: parameters replicated, batches sharded over the
  mesh's ``'data'`` axis (as ``train.py``). Shared by the classifier and the segmenter (``experiments/segment.py``).

  ``step(params, opt_state, x, y, key, augment) -> (params, opt_state, loss)`` is compiled once per ``augment``
  flag; ``evaluate(params, arrays) -> per-example outputs`` (``arrays``: a tuple of batch-major arrays) once.
  """

  def __init__(self, mesh: jax.sharding.Mesh, model: Any, tx: optax.GradientTransformation,
               shape: tuple[int, ...], step: Callable[..., Any], evaluate: Callable[..., Any], eval_batch_size: int):
    self.mesh, self.model, self.tx, self.shape, self.eval_batch_size = mesh, model, tx, shape, eval_batch_size
    self.repl, self.data = NamedSharding(mesh, P()), NamedSharding(mesh, P('data'))
    self._steps = {
        flag: jax.jit(functools.partial(step, augment=flag), in_shardings=(self.repl,) * 2 + (self.data,) * 2 +
                      (self.repl,), out_shardings=(self.repl,) * 3, donate_argnums=(0, 1),
                      compiler_options=compiler.options())
        for flag in (False, True)}
    self._evaluate = jax.jit(evaluate, in_shardings=(self.repl, self.data), out_shardings=self.repl,
                             compiler_options=compiler.options())

  def init(self, seed: int) -> tuple[Any, Any]:
    """Fresh replicated (params, optimizer state) from ``seed``."""
    params = self.model.init(jax.random.PRNGKey(seed), jnp.zeros(self.shape))['params']
    params = jax.device_put(params, self.repl)
    return params, jax.device_put(self.tx.init(params), self.repl)

  def evaluate(self, params: Any, *arrays: np.ndarray) -> np.ndarray:
    """``evaluate`` over whole sharded batches of ``eval_batch_size`` (the last one zero-padded, padding dropped)."""
    b = self.eval_batch_size
    out = []
    for start in range(0, len(arrays[0]), b):
      chunks = tuple(a[start:start + b] for a in arrays)
      pad = b - len(chunks[0])
      if pad:
        chunks = tuple(np.concatenate([c, np.zeros((pad,) + c.shape[1:], c.dtype)]) for c in chunks)
      out.append(np.asarray(jax.device_get(self._evaluate(params, jax.device_put(chunks, self.data))))[:b - pad])
    return np.concatenate(out)


class Classifier(DataParallelModel):
  """The ResNet, optimizer and jitted data-parallel train / predict functions (compiled once per study)."""

  def __init__(self, config: ml_collections.ConfigDict, mesh: jax.sharding.Mesh, channels: int):
    c = config.classifier
    self.config = config
    model = classifier_lib.ResNetClassifier(tuple(c.widths), c.blocks_per_stage, c.groups, c.stem_stride)
    tx = optax.adamw(c.lr, weight_decay=c.weight_decay)
    a = config.augment
    aug = functools.partial(augment_batch, hflip=a.hflip, max_shift=a.max_shift, max_rotate_deg=a.max_rotate_deg,
                            brightness=a.brightness, contrast=a.contrast)

    def loss_fn(params, x, y):
      return optax.sigmoid_binary_cross_entropy(model.apply({'params': params}, x), y).mean()

    def step(params, opt_state, x, y, key, augment):
      if augment:
        x = aug(key, x)
      loss, grads = jax.value_and_grad(loss_fn)(params, x, y)
      updates, opt_state = tx.update(grads, opt_state, params)
      return optax.apply_updates(params, updates), opt_state, loss

    super().__init__(mesh, model, tx, (1, c.image_size, c.image_size, channels), step,
                     lambda params, arrays: model.apply({'params': params}, arrays[0]), c.eval_batch_size)

  def predict(self, params: Any, images: np.ndarray) -> np.ndarray:
    """Logits for ``images`` (padded to whole sharded batches)."""
    return self.evaluate(params, images).astype(np.float64)

  def fit(self, pos: np.ndarray, neg: np.ndarray, val_images: np.ndarray, val_labels: np.ndarray, seed: int,
          augment: bool) -> tuple[Any, dict[str, Any]]:
    """Trains from ``seed`` with balanced batches; returns the params of the best validation AUROC and a log."""
    c = self.config.classifier
    params, opt_state = self.init(seed)
    rng = np.random.default_rng(seed)
    n_pos = int(round(c.batch_size * c.pos_fraction))
    labels = np.concatenate([np.ones(n_pos), np.zeros(c.batch_size - n_pos)]).astype(np.float32)
    y = jax.device_put(labels, self.data)
    key = jax.random.PRNGKey(seed + 1)
    best = (-1.0, 0, None)
    history = []
    for step in range(1, c.num_steps + 1):
      x = np.concatenate([pos[rng.integers(len(pos), size=n_pos)],
                          neg[rng.integers(len(neg), size=c.batch_size - n_pos)]])
      params, opt_state, loss = self._steps[augment](params, opt_state, jax.device_put(x, self.data), y,
                                                     jax.random.fold_in(key, step))
      if step % c.eval_every == 0 or step == c.num_steps:
        loss = float(loss)
        if not np.isfinite(loss):
          raise FloatingPointError(f'non-finite classifier loss at step {step}')
        val_auc = auroc(self.predict(params, val_images), val_labels)
        history.append({'step': step, 'loss': loss, 'val_auroc': val_auc})
        if val_auc > best[0]:
          best = (val_auc, step, jax.device_get(params))
    return jax.device_put(best[2], self.repl), {'best_step': best[1], 'best_val_auroc': best[0], 'history': history}


# ---------------------------------------------------------------------------------------------------------- metrics


def auroc(scores: np.ndarray, labels: np.ndarray) -> float:
  """Area under the ROC curve = P(score_pos > score_neg) + P(tie) / 2 (Mann-Whitney with average ranks)."""
  from scipy import stats  # pylint: disable=g-import-not-at-top
  labels = np.asarray(labels, bool)
  n_pos, n_neg = labels.sum(), (~labels).sum()
  if n_pos == 0 or n_neg == 0:
    return float('nan')
  ranks = stats.rankdata(scores)
  return float((ranks[labels].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def sensitivity_at_specificity(scores: np.ndarray, labels: np.ndarray, specificity: float) -> float:
  """Largest true-positive rate with false-positive rate <= 1 - ``specificity`` (positive = score above t)."""
  labels = np.asarray(labels, bool)
  pos, neg = scores[labels], np.sort(scores[~labels])[::-1]
  if len(pos) == 0 or len(neg) == 0:
    return float('nan')
  allowed = int(math.floor((1 - specificity) * len(neg) + 1e-9))  # false positives allowed
  if allowed >= len(neg):
    return 1.0
  return float(np.mean(pos > neg[allowed]))


def balanced_accuracy(scores: np.ndarray, labels: np.ndarray, threshold: float) -> float:
  """(sensitivity + specificity) / 2 with positive = score >= ``threshold``."""
  labels = np.asarray(labels, bool)
  if labels.all() or not labels.any():
    return float('nan')
  return float(0.5 * (np.mean(scores[labels] >= threshold) + np.mean(scores[~labels] < threshold)))


def youden_threshold(scores: np.ndarray, labels: np.ndarray) -> float:
  """The score threshold (positive = score >= t) that maximises sensitivity + specificity - 1 (highest on ties)."""
  labels = np.asarray(labels, bool)
  cand = np.unique(scores)[::-1]
  pos, neg = np.sort(scores[labels]), np.sort(scores[~labels])
  tpr = 1 - np.searchsorted(pos, cand, side='left') / max(len(pos), 1)
  fpr = 1 - np.searchsorted(neg, cand, side='left') / max(len(neg), 1)
  return float(cand[int(np.argmax(tpr - fpr))])


def test_metrics(scores: np.ndarray, labels: np.ndarray, threshold: float, specificity: float) -> dict[str, float]:
  """The three reported metrics of one set of test scores."""
  return {'balanced_accuracy': balanced_accuracy(scores, labels, threshold), 'auroc': auroc(scores, labels),
          'sens_at_spec': sensitivity_at_specificity(scores, labels, specificity)}


def bootstrap(stat: Callable[..., float | np.ndarray], sizes: Sequence[int], n_boot: int,
              seed: int = 0) -> np.ndarray:
  """Bootstrap replicates of ``stat(idx_1, ..., idx_d)``: each idx_i resamples range(sizes[i]) with replacement.

  One dimension = a plain bootstrap over units (e.g. test patients: a cluster bootstrap when ``stat`` gathers all
  slices of the drawn patients); two = units and seeds, resampled independently in each replicate.
  Returns the stacked replicates, shape (n_boot,) + shape of stat's output.
  """
  rng = np.random.default_rng(seed)
  return np.stack([np.asarray(stat(*(rng.integers(n, size=n) for n in sizes)), np.float64) for _ in range(n_boot)])


def percentile_ci(samples: np.ndarray, level: float = 0.95) -> tuple[np.ndarray, np.ndarray]:
  """Percentile interval of bootstrap ``samples`` along axis 0 (NaN replicates ignored)."""
  a = (1 - level) / 2
  return np.nanquantile(samples, a, axis=0), np.nanquantile(samples, 1 - a, axis=0)


def sign_test(diffs: Sequence[float]) -> dict[str, Any]:
  """Wins / ties / losses of per-seed differences and the exact two-sided sign-test p (ties dropped)."""
  from scipy import stats  # pylint: disable=g-import-not-at-top
  d = np.asarray(diffs, np.float64)
  wins, losses = int((d > 1e-12).sum()), int((d < -1e-12).sum())
  ties = len(d) - wins - losses
  p = float(stats.binomtest(wins, wins + losses, 0.5).pvalue) if wins + losses else 1.0
  return {'wins': wins, 'ties': ties, 'losses': losses, 'p_sign': p}


# ------------------------------------------------------------------------------------------------------------- grid


def cell_name(arm: str, k: int, seed: int) -> str:
  return f'k{k}_seed{seed}_{arm}'


def fingerprint(config: ml_collections.ConfigDict) -> str:
  """Hash of the fields that change what a cell computes (not the grid's extent, metrics or output paths)."""
  keep = {'data': {k: v for k, v in config.data.to_dict().items() if k not in ('manual_dir', 'tfds_data_dir')},
          'classifier': config.classifier.to_dict(), 'augment': config.augment.to_dict(), 'gan': config.gan.to_dict()}
  return hashlib.sha256(json.dumps(keep, sort_keys=True, default=list).encode()).hexdigest()[:16]


def _write_json(path: str, obj: Any) -> None:
  """Atomic write (a killed run never leaves a half-written cell that looks finished)."""
  tmp = f'{path}.tmp{os.getpid()}'
  with open(tmp, 'w') as f:
    json.dump(obj, f)
  os.replace(tmp, path)


def _read_cell(path: str, fp: str, fields: str = 'data/classifier/augment/gan') -> Optional[dict[str, Any]]:
  """A finished cell's JSON, None if absent; ConfigError if it was computed under another fingerprint."""
  if not os.path.exists(path):
    return None
  with open(path) as f:
    cell = json.load(f)
  if cell.get('fingerprint') != fp:
    raise ConfigError(f'{path} was computed with a different config ({fields} fields); use a new '
                      '--workdir or the original config')
  return cell


def record_invocation(workdir: str, run_info: dict[str, Any]) -> list[dict[str, Any]]:
  """Appends this invocation's wall time and cell count to ``workdir/invocations.json``; returns all of them, so a
  resumed grid still reports what the first run took."""
  log_path = os.path.join(workdir, 'invocations.json')
  invocations = []
  if os.path.exists(log_path):
    with open(log_path) as f:
      invocations = json.load(f)
  invocations.append({'finished_utc': time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime()),
                      'wall_seconds': run_info['wall_seconds_this_invocation'],
                      'cells_computed': run_info['cells_computed_now'], 'devices': run_info['devices']})
  _write_json(log_path, invocations)
  return invocations


def _run_group(config: ml_collections.ConfigDict, workdir: str, arms: list[Arm], group: list[Arm], k: int,
               seed: int, table: SliceTable, small: np.ndarray, patients: dict[str, tuple[str, ...]],
               model: Classifier, fp: str) -> int:
  """Computes the unfinished arms ``group`` of (k, seed): one split, one GAN (if any arm is synthetic), one
  classifier per arm; writes each cell's JSON as soon as it is done. Returns the number of cells computed."""
  split = make_split(table.subject, table.tumor_area, patients, k, seed, config.data.negative_patients,
                     config.data.min_tumor_area)
  val_idx = np.concatenate([split.val_pos, split.val_neg])
  val_labels = np.concatenate([np.ones(len(split.val_pos)), np.zeros(len(split.val_neg))])
  test_idx = np.concatenate([split.test_pos, split.test_neg])
  test_labels = np.concatenate([np.ones(len(split.test_pos)), np.zeros(len(split.test_neg))])
  synthetic, gan_seconds, gan_dir = None, 0.0, None
  if any(a.synthetic for a in group):
    gan_dir, trains = gan_workdir(config, workdir, k, seed)
    if trains:
      gan_seconds = train_gan(config, gan_dir, table.images[split.gan_train], seed)
    n_syn = max(synthetic_count(len(split.train_pos), a.ratio) for a in arms if a.synthetic)
    t0 = time.perf_counter()
    cache_dir = os.path.join(workdir, 'gans', f'k{k}_seed{seed}')
    synthetic = resize_images(synthetic_images(gan_dir, n_syn, seed, config.gan.sample_batch, cache_dir),
                              config.classifier.image_size)
    gan_seconds += time.perf_counter() - t0
  for arm in group:
    t0 = time.perf_counter()
    pos = positive_pool(small[split.train_pos], synthetic, arm)
    params, log = model.fit(pos, small[split.train_neg], small[val_idx], val_labels, seed, arm.augment)
    cell = {
        'arm': arm.name, 'k': k, 'seed': seed, 'fingerprint': fp, 'best_step': log['best_step'],
        'history': log['history'], 'n_real_pos': int(len(split.train_pos)) if arm.real_positives else 0,
        'n_synthetic': synthetic_count(len(split.train_pos), arm.ratio) if arm.synthetic else 0,
        'n_neg': int(len(split.train_neg)), 'patients': split.patients, 'gan_workdir': gan_dir,
        'val': {'scores': model.predict(params, small[val_idx]).tolist(), 'labels': val_labels.tolist()},
        'test': {'scores': model.predict(params, small[test_idx]).tolist(), 'labels': test_labels.tolist(),
                 'patients': table.subject[test_idx].tolist()},
    }
    # The GAN's time is booked to the group's first cell, so the sum over cells is the grid's compute.
    cell['seconds'] = time.perf_counter() - t0 + (gan_seconds if arm is group[0] else 0.0)
    if jax.process_index() == 0:
      _write_json(os.path.join(workdir, 'cells', cell_name(arm.name, k, seed) + '.json'), cell)
    m = cell_metrics(cell, config.metrics)
    logging.info('cell %s: %s (%.1f s)', cell_name(arm.name, k, seed), ', '.join(f'{n}={v:.3f}' for n, v in m.items()),
                 cell['seconds'])
  return len(group)


def run(config: ml_collections.ConfigDict, workdir: str) -> dict[str, Any]:
  """Runs (or resumes) the whole grid in ``workdir`` and writes the results; returns the summary dict."""
  t_start = time.perf_counter()
  arms = validate_config(config, jax.device_count())
  workdir = os.path.abspath(workdir)
  cells_dir = os.path.join(workdir, 'cells')
  os.makedirs(cells_dir, exist_ok=True)
  fp = fingerprint(config)
  todo = {(a.name, k, s) for a in arms for k in config.ks for s in config.seeds
          if _read_cell(os.path.join(cells_dir, cell_name(a.name, k, s) + '.json'), fp) is None}
  logging.info('%d of %d cells to compute', len(todo), len(arms) * len(config.ks) * len(config.seeds))
  computed = 0
  if todo:
    data_dir, cfg_name = prepare_dataset(config, workdir)
    table, patients = load_table(config, data_dir, cfg_name)
    small = resize_images(table.images, config.classifier.image_size)
    model = Classifier(config, train.make_mesh(), table.images.shape[-1])
    for k in config.ks:
      for seed in config.seeds:
        group = [a for a in arms if (a.name, k, seed) in todo]
        if group:
          computed += _run_group(config, workdir, arms, group, k, seed, table, small, patients, model, fp)
  cells = {(a.name, k, s): _read_cell(os.path.join(cells_dir, cell_name(a.name, k, s) + '.json'), fp)
           for a in arms for k in config.ks for s in config.seeds}
  return finish_run(summarize(cells, config), config, workdir, computed, time.perf_counter() - t_start, cells)


def finish_run(summary: dict[str, Any], config: ml_collections.ConfigDict, workdir: str, computed: int,
               wall_seconds: float, cells: dict[Any, dict[str, Any]],
               render: Optional[Callable[[dict[str, Any]], str]] = None, metrics: Sequence[str] = METRICS,
               titles: Optional[dict[str, str]] = None) -> dict[str, Any]:
  """Adds the run record and the config to ``summary``, logs the invocation and writes the results (process 0);
  shared with the segmentation study (``render`` / ``metrics`` / ``titles``: see :func:`write_results`)."""
  summary['run'] = {'workdir': workdir, 'variant': config.get('variant', ''), 'devices': str(jax.devices()[0].platform)
                    + f' x{jax.device_count()}', 'cells_computed_now': computed,
                    'wall_seconds_this_invocation': wall_seconds,
                    'cell_seconds_total': sum(c['seconds'] for c in cells.values())}
  summary['config'] = json.loads(config.to_json())
  if jax.process_index() == 0:
    summary['run']['invocations'] = record_invocation(workdir, summary['run'])
    write_results(summary, config.results_prefix, render, metrics, titles)
  return summary


def cell_threshold(cell: dict[str, Any], mcfg: ml_collections.ConfigDict) -> float:
  """The cell's balanced-accuracy threshold on the logit, from its validation scores (or logit 0 = probability 0.5)."""
  if mcfg.threshold == 'fixed':
    return 0.0
  return youden_threshold(np.asarray(cell['val']['scores']), np.asarray(cell['val']['labels']))


def cell_metrics(cell: dict[str, Any], mcfg: ml_collections.ConfigDict) -> dict[str, float]:
  """Test metrics of one cell; the threshold always comes from validation."""
  return test_metrics(np.asarray(cell['test']['scores']), np.asarray(cell['test']['labels']),
                      cell_threshold(cell, mcfg), mcfg.specificity)


def summarize(cells: dict[tuple[str, int, int], dict[str, Any]], config: ml_collections.ConfigDict) -> dict[str, Any]:
  """Means over seeds, bootstrap CIs over test patients (and seeds), paired differences against ``real``."""
  mcfg = config.metrics
  arms, ks, seeds = list(config.arms), list(config.ks), list(config.seeds)
  first = cells[(arms[0], ks[0], seeds[0])]
  test_patients = np.asarray(first['test']['patients'])
  for c in cells.values():
    if c['test']['patients'] != first['test']['patients']:
      raise ValueError('cells were scored on different test sets; rerun in a new workdir')
  names = sorted(set(test_patients.tolist()))
  slices_of = [np.flatnonzero(test_patients == p) for p in names]
  shape = (len(arms), len(ks), len(seeds), len(METRICS))

  prepared = {key: (cell_threshold(c, mcfg), np.asarray(c['test']['scores']), np.asarray(c['test']['labels']))
              for key, c in cells.items()}

  def metric_array(take: Optional[np.ndarray]) -> np.ndarray:
    out = np.empty(shape)
    for (i, a), (j, k), (s, seed) in ((x, y, z) for x in enumerate(arms) for y in enumerate(ks)
                                      for z in enumerate(seeds)):
      thr, scores, labels = prepared[(a, k, seed)]
      if take is not None:
        scores, labels = scores[take], labels[take]
      m = test_metrics(scores, labels, thr, mcfg.specificity)
      out[i, j, s] = [m[n] for n in METRICS]
    return out

  point = metric_array(None)  # (arm, k, seed, metric)

  def stat(patient_idx: np.ndarray, seed_idx: np.ndarray) -> np.ndarray:
    take = np.concatenate([slices_of[p] for p in patient_idx])
    per_seed = metric_array(take)
    if not mcfg.resample_seeds:
      seed_idx = np.arange(len(seeds))
    return np.nanmean(per_seed[:, :, seed_idx], axis=2)  # (arm, k, metric)

  boot = bootstrap(stat, (len(names), len(seeds)), mcfg.n_boot, seed=0)  # (B, arm, k, metric)
  table, paired = tabulate(point, boot, arms, ks, METRICS, mcfg.level)
  return {'metrics': table, 'paired_vs_real': paired, 'arms': arms, 'ks': ks, 'seeds': seeds,
          'n_test_patients': len(names), 'n_test_slices': int(len(test_patients)),
          'n_test_pos': int(np.sum(first['test']['labels'])),
          'specificity': mcfg.specificity, 'level': mcfg.level, 'n_boot': mcfg.n_boot,
          'resample_seeds': bool(mcfg.resample_seeds), 'threshold': mcfg.threshold,
          'train_counts': {f'k{k}_seed{s}': {a: {'real_pos': cells[(a, k, s)]['n_real_pos'],
                                                 'synthetic': cells[(a, k, s)]['n_synthetic'],
                                                 'neg': cells[(a, k, s)]['n_neg']} for a in arms}
                           for k in ks for s in seeds}}


def tabulate(point: np.ndarray, boot: np.ndarray, arms: Sequence[str], ks: Sequence[int], metrics: Sequence[str],
             level: float) -> tuple[dict[str, Any], dict[str, Any]]:
  """Per-arm tables and paired differences against ``real`` (shared with the segmentation study).

  Args:
    point: per-seed values (arm, k, seed, metric). boot: bootstrap replicates of the seed mean (B, arm, k, metric),
      the same resample for all arms (so differences are paired). arms, ks, metrics: the axes' labels.
    level: confidence level of the percentile intervals.

  Returns:
    (``table[arm][str(k)][metric]`` = mean over seeds, CI, per-seed values; ``paired[arm][str(k)][metric]`` = mean
    difference to ``real`` with its CI, wins / ties / losses over seeds and the sign-test p), arm ``real`` (or the
    first arm) being the reference.
  """
  lo, hi = percentile_ci(boot, level)
  ref = list(arms).index('real') if 'real' in arms else 0
  dlo, dhi = percentile_ci(boot - boot[:, ref:ref + 1], level)
  mean = point.mean(axis=2)
  table: dict[str, Any] = {}
  paired: dict[str, Any] = {}
  for i, a in enumerate(arms):
    for j, k in enumerate(ks):
      for m, n in enumerate(metrics):
        table.setdefault(a, {}).setdefault(str(k), {})[n] = {
            'mean': float(mean[i, j, m]), 'lo': float(lo[i, j, m]), 'hi': float(hi[i, j, m]),
            'per_seed': point[i, j, :, m].tolist()}
        if i != ref:
          diffs = point[i, j, :, m] - point[ref, j, :, m]
          paired.setdefault(a, {}).setdefault(str(k), {})[n] = {
              'mean_diff': float(diffs.mean()), 'lo': float(dlo[i, j, m]), 'hi': float(dhi[i, j, m]),
              **sign_test(diffs)}
  return table, paired


# ---------------------------------------------------------------------------------------------------------- outputs


def markdown(summary: dict[str, Any]) -> str:
  """The results table: arm x k, mean [95% CI] per metric, then paired differences against ``real``."""
  level = int(round(100 * summary['level']))
  run_info = summary.get('run', {})
  lines = ['# Downstream tumor classifier: real vs real + synthetic slices', '',
           f'Variant `{run_info.get("variant", "")}` on {run_info.get("devices", "?")}; '
           f'{len(summary["seeds"])} seeds per cell; test = {summary["n_test_patients"]} patients '
           f'({summary["n_test_slices"]} slices, {summary["n_test_pos"]} with tumor). '
           f'Mean over seeds [{level}% percentile bootstrap CI over test patients'
           f'{" and seeds" if summary["resample_seeds"] else ""}, {summary["n_boot"]} replicates]. '
           f'Sensitivity at {summary["specificity"]:.0%} specificity; balanced accuracy at the '
           f'{"validation Youden" if summary["threshold"] == "youden" else "0.5"} threshold.', '']
  cfg = summary.get('config')
  if cfg:
    c = cfg['classifier']
    lines += [f'Settings: {gan_settings(cfg)}; classifier '
              f'{c["image_size"]} px, widths {tuple(c["widths"])}, {c["num_steps"]} steps, batch {c["batch_size"]}; '
              f'negatives from {cfg["data"]["negative_patients"]} patients.', '']
  lines += compute_lines(run_info) + verdicts(summary) + ['']
  return '\n'.join(lines + result_tables(summary, METRICS, METRIC_TITLES))


def gan_settings(cfg: dict[str, Any]) -> str:
  """The GAN part of a results file's settings line, from the saved config dict."""
  g = cfg['gan']
  return (f'FastGAN {cfg["data"]["resolution"]} px, ngf {g["ngf"]}, ndf {g["ndf"]}, nz {g["nz"]}, '
          f'batch {g["batch_size"]}, {g["num_steps"]} steps'
          f'{" (given generator: " + str(g["workdir"]) + ")" if g.get("workdir") else ""}')


def compute_lines(run_info: dict[str, Any]) -> list[str]:
  """The compute paragraph of a results file: summed cell time and every invocation's wall time."""
  if not run_info:
    return []
  calls = '; '.join(f'{i["wall_seconds"] / 60:.1f} min wall, {i["cells_computed"]} cells ({i["finished_utc"]})'
                    for i in run_info.get('invocations', []))
  return [f'Compute: {run_info["cell_seconds_total"] / 60:.1f} min summed over cells (GAN training and sampling '
          f'included). Invocations of the grid command (data loading and results included): {calls}.', '']


def result_tables(summary: dict[str, Any], metrics: Sequence[str], titles: dict[str, str]) -> list[str]:
  """Markdown lines: per metric an arm x k table of mean [CI], then the paired differences against ``real``
  (shared with the segmentation study; ``summary`` has ``metrics``, ``paired_vs_real``, ``arms``, ``ks``, ``level``)."""
  level = int(round(100 * summary['level']))
  ks, lines = summary['ks'], []
  for n in metrics:
    lines += [f'### {titles[n]}', '', '| arm | ' + ' | '.join(f'k={k}' for k in ks) + ' |',
              '|---|' + '---|' * len(ks)]
    for a in summary['arms']:
      row = summary['metrics'][a]
      lines.append(f'| {a} | ' + ' | '.join(
          f'{row[str(k)][n]["mean"]:.3f} [{row[str(k)][n]["lo"]:.3f}, {row[str(k)][n]["hi"]:.3f}]' for k in ks) + ' |')
    lines.append('')
  if summary['paired_vs_real']:
    lines += ['### Paired difference vs `real` (same seeds and test resamples)', '',
              f'mean difference [{level}% CI] (wins/ties/losses over seeds, exact sign-test p)', '']
    for n in metrics:
      lines += [f'**{titles[n]}**', '', '| arm | ' + ' | '.join(f'k={k}' for k in ks) + ' |',
                '|---|' + '---|' * len(ks)]
      for a, row in summary['paired_vs_real'].items():
        lines.append(f'| {a} | ' + ' | '.join(
            f'{row[str(k)][n]["mean_diff"]:+.3f} [{row[str(k)][n]["lo"]:+.3f}, {row[str(k)][n]["hi"]:+.3f}] '
            f'({row[str(k)][n]["wins"]}/{row[str(k)][n]["ties"]}/{row[str(k)][n]["losses"]}, '
            f'p={row[str(k)][n]["p_sign"]:.2f})' for k in ks) + ' |')
      lines.append('')
  return lines


def verdicts(summary: dict[str, Any], metrics: Sequence[str] = ('auroc', 'balanced_accuracy'),
             titles: Optional[dict[str, str]] = None) -> list[str]:
  """One line per metric and arm: at which k the paired CI against ``real`` is above 0, below 0, or includes 0."""
  titles = titles or METRIC_TITLES
  out = ['Paired verdicts against `real` (95% CI of the mean difference above 0 = higher, below 0 = lower, else '
         'not resolved):', '']
  for n in metrics:
    for a, row in summary['paired_vs_real'].items():
      groups: dict[str, list[str]] = {}
      for k in summary['ks']:
        d = row[str(k)][n]
        word = 'higher' if d['lo'] > 0 else 'lower' if d['hi'] < 0 else 'not resolved'
        groups.setdefault(word, []).append(str(k))
      out.append(f'- {titles[n]}, {a}: ' + '; '.join(f'{w} at k={",".join(ks)}' for w, ks in groups.items()))
  return out


_COLORS = [(31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189), (140, 86, 75),
           (227, 119, 194), (127, 127, 127), (188, 189, 34), (23, 190, 207)]


def plot(summary: dict[str, Any], path: str, metrics: Sequence[str] = METRICS,
         titles: Optional[dict[str, str]] = None) -> None:
  """One panel per metric (values in [0, 1]): mean vs k (categorical axis) per arm with CI bars, drawn with Pillow."""
  from PIL import Image, ImageDraw, ImageFont  # pylint: disable=g-import-not-at-top
  titles = titles or METRIC_TITLES
  arms, ks = summary['arms'], summary['ks']
  pw, ph, ml, mt, mb = 360, 300, 50, 30, 40
  width, height = max(pw * len(metrics) + 20, 760), ph + 40 + 18 * ((len(arms) + 2) // 3)
  img = Image.new('RGB', (width, height), 'white')
  draw = ImageDraw.Draw(img)
  font = ImageFont.load_default()
  for p, n in enumerate(metrics):
    x0 = 10 + p * pw
    vals = [summary['metrics'][a][str(k)][n][f] for a in arms for k in ks for f in ('lo', 'hi')]
    vals = [v for v in vals if np.isfinite(v)] or [0.0, 1.0]
    ymin = max(0.0, math.floor(min(vals) * 10) / 10)
    ymax = min(1.0, math.ceil(max(vals) * 10) / 10)
    if ymax - ymin < 0.1:
      ymax = min(1.0, ymin + 0.1)
      ymin = ymax - 0.1
    left, right, top, bottom = x0 + ml, x0 + pw - 10, mt, ph - mb
    ypos = lambda v: bottom - (v - ymin) / (ymax - ymin) * (bottom - top)
    step = 0.1 if ymax - ymin > 0.35 else 0.05
    for t in np.arange(ymin, ymax + 1e-9, step):
      y = ypos(t)
      draw.line([left - 4, y, left, y], fill='black')
      draw.line([left + 1, y, right - 1, y], fill=(230, 230, 230))
      draw.text((left - 34, y - 6), f'{t:.2f}', fill='black', font=font)
    draw.rectangle([left, top, right, bottom], outline='black')
    xs = {k: left + (j + 0.5) / len(ks) * (right - left) for j, k in enumerate(ks)}
    for k, x in xs.items():
      draw.line([x, bottom, x, bottom + 4], fill='black')
      draw.text((x - 12, bottom + 8), f'k={k}', fill='black', font=font)
    title = titles[n] + (f' @ {summary["specificity"]:.0%} spec.' if n == 'sens_at_spec' else '')
    draw.text((left, 10), title, fill='black', font=font)
    for i, a in enumerate(arms):
      color = _COLORS[i % len(_COLORS)]
      off = (i - (len(arms) - 1) / 2) * 8
      pts = []
      for k in ks:
        c = summary['metrics'][a][str(k)][n]
        if not np.isfinite(c['mean']):
          continue
        x = xs[k] + off
        if np.isfinite(c['lo']) and np.isfinite(c['hi']):
          draw.line([x, ypos(c['lo']), x, ypos(c['hi'])], fill=color, width=2)
          for v in (c['lo'], c['hi']):
            draw.line([x - 3, ypos(v), x + 3, ypos(v)], fill=color, width=1)
        pts.append((x, ypos(c['mean'])))
      if len(pts) > 1:
        draw.line(pts, fill=color, width=1)
      for x, y in pts:
        draw.ellipse([x - 3, y - 3, x + 3, y + 3], fill=color)
  for i, a in enumerate(arms):
    x, y = 20 + (i % 3) * 200, ph + 10 + 18 * (i // 3)
    color = _COLORS[i % len(_COLORS)]
    draw.rectangle([x, y + 2, x + 14, y + 12], fill=color)
    draw.text((x + 20, y), a, fill='black', font=font)
  draw.text((620, ph + 10), f'bars: {int(round(100 * summary["level"]))}% bootstrap CI', fill='black', font=font)
  img.save(path)


def write_results(summary: dict[str, Any], prefix: str, render: Optional[Callable[[dict[str, Any]], str]] = None,
                  metrics: Sequence[str] = METRICS, titles: Optional[dict[str, str]] = None) -> None:
  """``<prefix>.json`` (everything), ``<prefix>.md`` (tables, by ``render``, default :func:`markdown`) and
  ``<prefix>.png`` (plot of ``metrics``); the segmentation study passes its own renderer and metrics."""
  folder = os.path.dirname(os.path.abspath(prefix))
  os.makedirs(folder, exist_ok=True)
  _write_json(prefix + '.json', summary)
  with open(prefix + '.md.tmp', 'w') as f:
    f.write((render or markdown)(summary) + '\n')
  os.replace(prefix + '.md.tmp', prefix + '.md')
  plot(summary, prefix + '.png', metrics, titles)


# -------------------------------------------------------------------------------------------------------------- CLI

FLAGS = flags.FLAGS


def setup_cli(workdir: str) -> None:
  """CLI set-up shared with the segmentation study: quiet orbax logs, a compilation cache in ``workdir`` (the GANs
  of all cells share their compilations) unless ``JAX_COMPILATION_CACHE_DIR`` names one."""
  logging.get_absl_handler().addFilter(
      lambda r: '/orbax/' not in r.pathname or r.levelno >= logging.converter.STANDARD_WARNING)
  if not os.environ.get('JAX_COMPILATION_CACHE_DIR'):
    jax.config.update('jax_compilation_cache_dir', os.path.join(os.path.abspath(workdir), 'xla_cache'))
    jax.config.update('jax_persistent_cache_min_compile_time_secs', 1.0)


CLI_ERRORS = (ConfigError, train.ConfigError, ValueError, FileNotFoundError, FloatingPointError, Preempted)


def main(argv: Sequence[str]) -> None:
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments: {argv[1:]}')
  setup_cli(FLAGS.workdir)
  try:
    summary = run(FLAGS.config, FLAGS.workdir)
  except CLI_ERRORS as e:
    raise SystemExit(f'error: {" ".join(str(e).split())}') from None
  r = summary['run']
  print(f'{r["cells_computed_now"]} cells computed in {r["wall_seconds_this_invocation"] / 60:.1f} min; wrote '
        f'{FLAGS.config.results_prefix}.json/.md/.png')


if __name__ == '__main__':
  from ml_collections import config_flags  # pylint: disable=g-import-not-at-top
  config_flags.DEFINE_config_file('config', None, 'Study config, e.g. configs/classify.py or configs/classify.py:cpu.',
                                  lock_config=True)
  flags.DEFINE_string('workdir', None, 'Cells, GANs, the dataset and the compilation cache go here (resumable).')
  flags.mark_flags_as_required(['config', 'workdir'])
  app.run(main)
