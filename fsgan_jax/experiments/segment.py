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
r"""Downstream study: do a few-shot GAN's synthetic image + mask pairs help a tumor segmenter?

The segmentation counterpart of ``experiments/classify.py`` (whose GAN training it reuses; data handling, bootstrap,
paired comparison and result writers are the shared ``downstream`` modules). For every cell (arm, k, seed) a small
U-Net (``downstream/segmenter.py``) is trained with jitted data-parallel steps (parameters replicated, batches
sharded over a 1-D ``('data',)`` mesh) and scored on held-out test patients. One command runs the whole grid,
resumably, and writes ``<results_prefix>.json/.md/.png``::

  python -m fsgan_jax.experiments.segment --config=configs/segment.py:cpu --workdir=/tmp/segment_cpu

Splits (``make_split``: ``downstream/splits.make_split`` with the k patients as their own "negatives' pool", so
every patient-disjointness check is the classifier study's):

* train = the tumor slices (area >= ``data.min_tumor_area``) of the k patients of ``fewshot_k{k}_seed{S}``, with
  their masks; the GAN of cell (k, seed) trains on exactly these image + mask pairs and nothing else. With
  ``data.train_empty_slices`` the U-Net (not the GAN) also gets those patients' empty-mask slices. Default: no,
  so the U-Net sees what the GAN sees and the arms differ only in the tumor pairs;
* validation = the ``heldout`` patients' tumor slices (model selection: the evaluated step with the best
  per-patient Dice); test = the ``test`` patients' tumor slices. Slices with 0 < area < min_tumor_area are left out
  everywhere (ambiguous specks, as in the classifier study).

Arms (``downstream/arms.parse_arm``): ``real``; ``real_aug`` (random flip, shift and rotation applied identically
to image and mask, the mask warped bilinearly as -1/+1 and thresholded at 0, plus brightness / contrast jitter on
the image only); ``syn{r}x`` (real + ``synthetic_count(n, r)`` synthetic pairs); ``syn_only`` (n synthetic pairs,
no real one). Synthetic pairs: the GAN generates (R, R, C + 1) arrays, image = the first C channels, mask = the last
one binarised at ``masks.MASK_THRESHOLD`` (0 in [-1, 1]).

Metric (``stats.dice_counts``, ``stats.cell_dice``): the U-Net's logits are upsampled (bilinear) to the dataset
resolution and thresholded at 0 (sigmoid > 0.5). Per-patient Dice pools all of a test patient's slices, 2 sum|P n G| /
(sum|P| + sum|G|), and is averaged over patients (every patient weighs the same); per-slice Dice is the mean over
all test slices (patients with many tumor slices weigh more). Empty prediction and empty truth counts as Dice 1
(cannot happen on tumor slices, but keeps the definition total). Confidence intervals: percentile bootstrap that
resamples test patients and, with ``resample_seeds``, the seeds, jointly for all arms so paired differences against
``real`` use the same resample; per-seed wins / ties / losses with an exact two-sided sign test.
"""

from __future__ import annotations

import dataclasses
import itertools
import os
import time
from typing import Any, Optional, Sequence

from absl import app
from absl import flags
from absl import logging
import jax
import ml_collections
import numpy as np

from fsgan_jax import errors, gan
from fsgan_jax import masks as masks_lib
from fsgan_jax.downstream import arms as arms_lib
from fsgan_jax.downstream import cells as cells_lib
from fsgan_jax.downstream import dataset, reports, samples, splits, stats
from fsgan_jax.downstream import segmenter as segmenter_lib
from fsgan_jax.experiments import classify as cl

METRICS = stats.DICE_METRICS  # ('dice_patient', 'dice_slice')
METRIC_TITLES = {'dice_patient': 'Dice per patient', 'dice_slice': 'Dice per slice'}
MODEL_SECTION = 'unet'  # the model's config section (with data, augment and gan: a cell's fingerprint)


# ------------------------------------------------------------------------------------------------------- validation


def validate_config(config: ml_collections.ConfigDict, num_devices: int = 1) -> list[arms_lib.Arm]:
  """Checks every field the study uses (one-line ConfigError naming it); returns the parsed arms."""
  arms = arms_lib.validate_grid(config)
  d, u = config.data, config.unet
  if d.min_tumor_area < 1:
    raise errors.ConfigError(f'config.data.min_tumor_area={d.min_tumor_area} must be >= 1')
  if any(not isinstance(k, int) or k < 1 for k in d.extra_ks):
    raise errors.ConfigError(f'config.data.extra_ks={tuple(d.extra_ks)}: need integers >= 1')
  if not u.widths or min(u.widths) < 1:
    raise errors.ConfigError(f'config.unet.widths={tuple(u.widths)} must be non-empty and positive')
  factor = 2 ** (len(u.widths) - 1)
  if u.image_size < 8 or d.resolution % u.image_size or u.image_size % factor:
    raise errors.ConfigError(f'config.unet.image_size={u.image_size} must be >= 8, divide config.data.resolution='
                             f'{d.resolution} and be divisible by {factor} (2 ** (len(widths) - 1))')
  if u.activation not in ('relu', 'silu'):
    raise errors.ConfigError(f"config.unet.activation={u.activation!r}: choose 'relu' or 'silu'")
  arms_lib.validate_batches(u, 'unet', num_devices)
  for name in ('num_steps', 'eval_every', 'groups'):
    if getattr(u, name) < 1:
      raise errors.ConfigError(f'config.unet.{name}={getattr(u, name)} must be >= 1')
  if not u.lr > 0 or u.weight_decay < 0 or u.dice_weight < 0:
    raise errors.ConfigError(f'config.unet.lr={u.lr} / weight_decay={u.weight_decay} / dice_weight={u.dice_weight}: '
                             'need lr > 0, the others >= 0')
  arms_lib.validate_bootstrap(config.metrics)
  arms_lib.validate_gan(config, arms, num_devices)
  return arms


# ------------------------------------------------------------------------------------------------------------- data


def split_names(k: int, seed: int) -> dict[str, str]:
  """Role -> dataset split name for cell (k, seed) (the classifier's, with the k patients as their own pool)."""
  return splits.split_names(k, seed, k)


def make_split(subject: np.ndarray, tumor_area: np.ndarray, patients: dict[str, Sequence[str]], k: int, seed: int,
               min_tumor_area: int) -> splits.CellSplit:
  """Slice indices per role of cell (k, seed) (rules: module docstring).

  ``train_pos`` (= ``gan_train``) are the k patients' tumor slices, ``train_neg`` their empty-mask slices,
  ``val_pos`` / ``test_pos`` the heldout / test patients' tumor slices (``val_neg`` / ``test_neg`` are unused).

  Raises:
    ValueError: the splits overlap or one is missing (a wrong dataset).
  """
  return splits.make_split(subject, tumor_area, patients, k, seed, k, min_tumor_area)


def training_pairs(real_images: np.ndarray, real_masks: np.ndarray, synthetic: Optional[tuple[np.ndarray, np.ndarray]],
                   arm: arms_lib.Arm, empty_images: Optional[np.ndarray] = None,
                   empty_masks: Optional[np.ndarray] = None) -> tuple[np.ndarray, np.ndarray]:
  """The (images, masks) the U-Net of ``arm`` trains on: real tumor pairs and / or the first ``synthetic_count``
  synthetic pairs (``arms.positive_pool`` rules), plus the empty-mask slices if given."""
  syn_images, syn_masks = synthetic if synthetic is not None else (None, None)
  images = arms_lib.positive_pool(real_images, syn_images, arm)
  masks = arms_lib.positive_pool(real_masks, syn_masks, arm)
  if empty_images is not None and len(empty_images):
    images = np.concatenate([images, empty_images.astype(np.float32)])
    masks = np.concatenate([masks, empty_masks.astype(np.float32)])
  return images, masks


# ------------------------------------------------------------------------------------------------------------- GAN


def synthetic_pairs(config: ml_collections.ConfigDict, workdir: str, gan_dir: str, num: int, seed: int, k: int,
                    channels: int) -> tuple[np.ndarray, np.ndarray]:
  """``num`` synthetic (images (N, R, R, C) in [-1, 1], binary masks (N, R, R)) of the cell's image + mask GAN."""
  cache_dir = os.path.join(workdir, 'gans', f'k{k}_seed{seed}')
  out = samples.synthetic_images(gan_dir, num, seed, config.gan.sample_batch, cache_dir)
  if out.shape[-1] != channels + 1:
    raise errors.ConfigError(f'config.gan.workdir: the generator in {gan_dir} makes {out.shape[-1]} channels, expected '
                             f'{channels} image + 1 mask (train it with model.mask_channels=1)')
  images, labels = masks_lib.split(out, channels)
  return images, labels[..., 0]


# ------------------------------------------------------------------------------------------------------------- grid


@dataclasses.dataclass(frozen=True)
class StudyData:
  """What every cell reads: the slice table (with masks at the dataset resolution), the U-Net-size images and
  masks, and split name -> patient ids."""
  table: splits.SliceTable
  small_images: np.ndarray
  small_masks: np.ndarray
  patients: dict[str, tuple[str, ...]]


def load_data(config: ml_collections.ConfigDict, workdir: str) -> StudyData:
  """Builds (if needed) and reads the dataset once for the whole grid."""
  data_dir, cfg_name = dataset.prepare_dataset(config, workdir)
  names = {'heldout', 'test'} | {split_names(k, s)['fewshot'] for k in config.ks for s in config.seeds}
  table, patients = dataset.load_table(config, data_dir, cfg_name, names=sorted(names), with_masks=True)
  size = config.unet.image_size
  return StudyData(table, splits.resize_images(table.images, size), splits.downsample_masks(table.masks, size),
                   patients)


def _run_group(config: ml_collections.ConfigDict, workdir: str, arms: list[arms_lib.Arm], group: list[arms_lib.Arm],
               k: int, seed: int, data: StudyData, model: segmenter_lib.Segmenter, fp: str) -> int:
  """Computes the unfinished arms ``group`` of (k, seed): one split, one image + mask GAN (if any arm is
  synthetic), one U-Net per arm; writes each cell's JSON as soon as it is done. Returns the cells computed."""
  table = data.table
  split = make_split(table.subject, table.tumor_area, data.patients, k, seed, config.data.min_tumor_area)
  channels = table.images.shape[-1]
  n_real = len(split.train_pos)
  synthetic, gan_seconds, gan_dir = None, 0.0, None
  if any(a.synthetic for a in group):
    gan_dir, trains = cl.gan_workdir(config, workdir, k, seed)
    if trains:
      gan_seconds = cl.train_gan(config, gan_dir, table.images[split.gan_train], seed,
                                 masks=table.masks[split.gan_train])
    t0 = time.perf_counter()
    n_syn = max(arms_lib.synthetic_count(n_real, a.ratio) for a in arms if a.synthetic)
    images, labels = synthetic_pairs(config, workdir, gan_dir, n_syn, seed, k, channels)
    size = config.unet.image_size
    synthetic = (splits.resize_images(images, size), splits.downsample_masks(labels, size))
    gan_seconds += time.perf_counter() - t0
  empty = split.train_neg if config.data.train_empty_slices else split.train_neg[:0]
  val_patients = table.subject[split.val_pos]
  for arm in group:
    t0 = time.perf_counter()
    x, y = training_pairs(data.small_images[split.train_pos], data.small_masks[split.train_pos], synthetic, arm,
                          data.small_images[empty], data.small_masks[empty])
    params, log = model.fit(x, y, data.small_images[split.val_pos], table.masks[split.val_pos], val_patients, seed,
                            arm.augment)
    inter, pred, truth = model.score(params, data.small_images[split.test_pos], table.masks[split.test_pos])
    test_patients = table.subject[split.test_pos].tolist()
    cell = {
        'arm': arm.name, 'k': k, 'seed': seed, 'fingerprint': fp, 'best_step': log['best_step'],
        'best_val_dice_patient': log['best_val_dice_patient'], 'history': log['history'],
        'n_real': n_real if arm.real_positives else 0,
        'n_synthetic': arms_lib.synthetic_count(n_real, arm.ratio) if arm.synthetic else 0, 'n_empty': int(len(empty)),
        'patients': {'train': split.patients['train_pos'], 'val': split.patients['val'],
                     'test': split.patients['test']}, 'gan_workdir': gan_dir,
        'test': {'inter': inter.tolist(), 'pred': pred.tolist(), 'truth': truth.tolist(), 'patients': test_patients},
    }
    cell['test_metrics'] = stats.cell_dice(inter, pred, truth, test_patients)
    # The GAN's time is booked to the group's first cell, so the sum over cells is the grid's compute.
    cell['seconds'] = time.perf_counter() - t0 + (gan_seconds if arm is group[0] else 0.0)
    if jax.process_index() == 0:
      cells_lib.write_json(cells_lib.cell_path(workdir, arm.name, k, seed), cell)
    logging.info('cell %s: %s (%.1f s)', cells_lib.cell_name(arm.name, k, seed),
                 ', '.join(f'{n}={v:.3f}' for n, v in cell['test_metrics'].items()), cell['seconds'])
  return len(group)


def run(config: ml_collections.ConfigDict, workdir: str) -> dict[str, Any]:
  """Runs (or resumes) the whole grid in ``workdir`` and writes the results; returns the summary dict."""
  t_start = time.perf_counter()
  arms = validate_config(config, jax.device_count())
  workdir = os.path.abspath(workdir)
  os.makedirs(os.path.join(workdir, 'cells'), exist_ok=True)
  fp = cells_lib.fingerprint(config, MODEL_SECTION)
  read = lambda a, k, s: cells_lib.read_cell(cells_lib.cell_path(workdir, a, k, s), fp, MODEL_SECTION)
  todo = {(a.name, k, s) for a in arms for k in config.ks for s in config.seeds if read(a.name, k, s) is None}
  logging.info('%d of %d cells to compute', len(todo), len(arms) * len(config.ks) * len(config.seeds))
  computed = 0
  if todo:
    data = load_data(config, workdir)
    model = segmenter_lib.Segmenter(config, gan.make_mesh(), data.table.images.shape[-1], data.table.masks.shape[1])
    for k, seed in itertools.product(config.ks, config.seeds):  # one GAN per (k, seed), shared by its arms
      group = [a for a in arms if (a.name, k, seed) in todo]
      computed += _run_group(config, workdir, arms, group, k, seed, data, model, fp) if group else 0
  cells = {(a.name, k, s): read(a.name, k, s) for a in arms for k in config.ks for s in config.seeds}
  return reports.finish_run(summarize(cells, config), config, workdir, computed, time.perf_counter() - t_start,
                            cells, markdown, METRICS, METRIC_TITLES)


def summarize(cells: dict[tuple[str, int, int], dict[str, Any]], config: ml_collections.ConfigDict) -> dict[str, Any]:
  """Means over seeds, bootstrap CIs over test patients (and seeds), paired differences against ``real``."""
  mcfg = config.metrics
  arms, ks, seeds = list(config.arms), list(config.ks), list(config.seeds)
  first = cells[(arms[0], ks[0], seeds[0])]
  for c in cells.values():
    if c['test']['patients'] != first['test']['patients']:
      raise ValueError('cells were scored on different test sets; rerun in a new workdir')
  names = sorted(set(first['test']['patients']))
  sums = np.empty((len(arms), len(ks), len(seeds), len(names), 4))  # (arm, k, seed, patient, patient_sums)
  for (i, a), (j, k), (s, seed) in ((x, y, z) for x in enumerate(arms) for y in enumerate(ks)
                                    for z in enumerate(seeds)):
    t = cells[(a, k, seed)]['test']
    sums[i, j, s] = stats.patient_sums(t['inter'], t['pred'], t['truth'], t['patients'], names)
  point = stats.dice_from_sums(sums)  # (arm, k, seed, metric)

  def stat(patient_idx: np.ndarray, seed_idx: np.ndarray) -> np.ndarray:
    per_seed = stats.dice_from_sums(sums[:, :, :, patient_idx])
    if not mcfg.resample_seeds:
      seed_idx = np.arange(len(seeds))
    return per_seed[:, :, seed_idx].mean(axis=2)  # (arm, k, metric)

  boot = stats.bootstrap(stat, (len(names), len(seeds)), mcfg.n_boot, seed=0)  # (B, arm, k, metric)
  table, paired = stats.tabulate(point, boot, arms, ks, METRICS, mcfg.level)
  truth = np.asarray(first['test']['truth'])
  return {'metrics': table, 'paired_vs_real': paired, 'arms': arms, 'ks': ks, 'seeds': seeds,
          'n_test_patients': len(names), 'n_test_slices': int(len(truth)),
          'level': mcfg.level, 'n_boot': mcfg.n_boot, 'resample_seeds': bool(mcfg.resample_seeds),
          'best_steps': {f'k{k}_seed{s}': {a: cells[(a, k, s)]['best_step'] for a in arms} for k in ks for s in seeds},
          'train_counts': {f'k{k}_seed{s}': {a: {'real': cells[(a, k, s)]['n_real'],
                                                 'synthetic': cells[(a, k, s)]['n_synthetic'],
                                                 'empty': cells[(a, k, s)]['n_empty']} for a in arms}
                           for k in ks for s in seeds}}


# ---------------------------------------------------------------------------------------------------------- outputs


def markdown(summary: dict[str, Any]) -> str:
  """The results: settings, compute, verdicts, arm x k tables of mean [CI], paired differences against ``real``."""
  level = int(round(100 * summary['level']))
  run_info = summary.get('run', {})
  lines = ['# Downstream tumor segmentation: real vs real + synthetic image + mask pairs', '',
           f'Variant `{run_info.get("variant", "")}` on {run_info.get("devices", "?")}; '
           f'{len(summary["seeds"])} seeds per cell; test = the tumor slices of {summary["n_test_patients"]} '
           f'patients ({summary["n_test_slices"]} slices). Dice of the predicted mask (sigmoid > 0.5, at the dataset '
           'resolution): per patient = all of a patient\'s slices pooled, then the mean over patients; per slice = '
           f'mean over slices. Mean over seeds [{level}% percentile bootstrap CI over test patients'
           f'{" and seeds" if summary["resample_seeds"] else ""}, {summary["n_boot"]} replicates].', '']
  cfg = summary.get('config')
  if cfg:
    u = cfg['unet']
    lines += [f'Settings: {reports.gan_settings(cfg)}, image + mask channels; U-Net {u["image_size"]} px, widths '
              f'{tuple(u["widths"])}, {u["num_steps"]} steps, batch {u["batch_size"]}, model selection on validation '
              f'per-patient Dice every {u["eval_every"]} steps; training slices: the k patients\' tumor slices'
              f'{" + their empty-mask slices" if cfg["data"]["train_empty_slices"] else ""}.', '']
  lines += reports.compute_lines(run_info) + reports.verdicts(summary, METRICS, METRIC_TITLES) + ['']
  return '\n'.join(lines + reports.result_tables(summary, METRICS, METRIC_TITLES))


# -------------------------------------------------------------------------------------------------------------- CLI

FLAGS = flags.FLAGS


def main(argv: Sequence[str]) -> None:
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments: {argv[1:]}')
  cl.setup_cli(FLAGS.workdir)
  try:
    summary = run(FLAGS.config, FLAGS.workdir)
  except cl.CLI_ERRORS as e:
    raise SystemExit(f'error: {" ".join(str(e).split())}') from None
  r = summary['run']
  print(f'{r["cells_computed_now"]} cells computed in {r["wall_seconds_this_invocation"] / 60:.1f} min; wrote '
        f'{FLAGS.config.results_prefix}.json/.md/.png')


if __name__ == '__main__':
  from ml_collections import config_flags  # pylint: disable=g-import-not-at-top
  config_flags.DEFINE_config_file('config', None, 'Study config, e.g. configs/segment.py or configs/segment.py:cpu.',
                                  lock_config=True)
  flags.DEFINE_string('workdir', None, 'Cells, GANs, the dataset and the compilation cache go here (resumable).')
  flags.mark_flags_as_required(['config', 'workdir'])
  app.run(main)
