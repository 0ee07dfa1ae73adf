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
r"""Downstream study: does a few-shot GAN's synthetic tumor data help a tumor-vs-no-tumor slice classifier?

Rare-disease setting: non-tumor slices are plentiful, tumor slices come from only k patients. For every cell
(arm, k, seed) a small ResNet (``models/classifier.py``) is trained with the same jitted data-parallel machinery as
the GAN (parameters replicated, batches sharded over a 1-D ``('data',)`` mesh) and scored on held-out test
patients. One command runs the whole grid, resumably, and writes ``<results_prefix>.json/.md/.png``::

  python -m fsgan_jax.experiments.classify --config=configs/classify.py:cpu --workdir=/tmp/classify_cpu

Splits (``downstream/splits.make_split``, all patient-disjoint; the partition is the dataset builder's,
``common.partition``):

* positives (tumor class) = slices with tumor area >= ``data.min_tumor_area`` of the k patients of
  ``fewshot_k{k}_seed{S}``; the GAN of cell (k, S) is trained on exactly these slices and nothing else;
* negatives = slices with an empty mask of the ``data.negative_patients`` patients of
  ``fewshot_k{n}_seed{S}`` (nested splits: a superset of the k patients). Their tumor slices are never used;
* validation = the ``heldout`` patients, test = the ``test`` patients (both: tumor vs empty-mask slices). Slices
  with 0 < area < min_tumor_area are ambiguous and left out everywhere.

Arms (``downstream/arms.parse_arm``): ``real``; ``real_aug`` (random flip, shift, rotation, intensity jitter on
every batch); ``syn{r}x`` (real + ``synthetic_count(n_pos, r)`` synthetic tumor slices in the positive pool);
``syn_only`` (the positive pool is ``n_pos`` synthetic slices, no real tumor slice). Class balance: every batch is
``pos_fraction`` positives drawn uniformly with replacement from the positive pool (oversampling), the rest negatives.
Model selection: the evaluated step with the best validation AUROC.

Metrics (``downstream/stats.test_metrics``): AUROC (rank based, ties count 1/2), sensitivity at
``metrics.specificity`` on the test ROC, balanced accuracy at a threshold chosen on validation (Youden's J, or 0.5
for ``threshold='fixed'``). Confidence intervals: percentile bootstrap that resamples test *patients* (all slices of
a patient together) and, with ``resample_seeds``, the seeds, jointly for all arms so paired differences against
``real`` use the same resample. The paired comparison also counts per-seed wins/ties/losses with an exact two-sided
sign test.
"""

from __future__ import annotations

import functools
import os
import time
from typing import Any, Optional, Sequence

from absl import app
from absl import flags
from absl import logging
import jax
import ml_collections
import numpy as np
import optax

from fsgan_jax import checkpointing, default_config, errors, gan, input_pipeline, train
from fsgan_jax.downstream import arms as arms_lib
from fsgan_jax.downstream import cells as cells_lib
from fsgan_jax.downstream import dataset, reports, samples, splits, stats, trainer
from fsgan_jax.models import classifier as classifier_lib

METRICS = ('balanced_accuracy', 'auroc', 'sens_at_spec')
METRIC_TITLES = {'balanced_accuracy': 'balanced accuracy', 'auroc': 'AUROC', 'sens_at_spec': 'sensitivity'}
VERDICT_METRICS = ('auroc', 'balanced_accuracy')  # the metrics of the verdict lines of the results file
MODEL_SECTION = 'classifier'  # the model's config section (with data, augment and gan: a cell's fingerprint)


# ------------------------------------------------------------------------------------------------------- validation


def validate_config(config: ml_collections.ConfigDict, num_devices: int = 1) -> list[arms_lib.Arm]:
  """Checks every field the study uses (one-line ConfigError naming it); returns the parsed arms."""
  arms = arms_lib.validate_grid(config)
  ks = tuple(config.ks)
  d = config.data
  if d.negative_patients < max(ks):
    raise errors.ConfigError(f'config.data.negative_patients={d.negative_patients} must be >= max(config.ks)={max(ks)} '
                             '(the negatives come from a superset of the k patients)')
  if d.min_tumor_area < 1:
    raise errors.ConfigError(f'config.data.min_tumor_area={d.min_tumor_area} must be >= 1')
  c = config.classifier
  if c.image_size < 8 or d.resolution % c.image_size:
    raise errors.ConfigError(f'config.classifier.image_size={c.image_size} must be >= 8 and divide '
                             f'config.data.resolution={d.resolution}')
  if not c.widths or min(c.widths) < 1:
    raise errors.ConfigError(f'config.classifier.widths={tuple(c.widths)} must be positive')
  arms_lib.validate_batches(c, 'classifier', num_devices)
  if not 0 < c.pos_fraction < 1 or not 1 <= round(c.batch_size * c.pos_fraction) < c.batch_size:
    raise errors.ConfigError(f'config.classifier.pos_fraction={c.pos_fraction} must leave >= 1 positive and >= 1 '
                             f'negative in a batch of {c.batch_size}')
  for name in ('num_steps', 'eval_every', 'blocks_per_stage', 'groups', 'stem_stride'):
    if getattr(c, name) < 1:
      raise errors.ConfigError(f'config.classifier.{name}={getattr(c, name)} must be >= 1')
  if not c.lr > 0 or c.weight_decay < 0:
    raise errors.ConfigError(f'config.classifier.lr={c.lr} / weight_decay={c.weight_decay}: need lr > 0, decay >= 0')
  m = config.metrics
  if not 0 < m.specificity < 1:
    raise errors.ConfigError(f'config.metrics.specificity={m.specificity} must be in (0, 1)')
  if m.threshold not in ('youden', 'fixed'):
    raise errors.ConfigError(f"config.metrics.threshold={m.threshold!r}: choose 'youden' or 'fixed'")
  arms_lib.validate_bootstrap(m)
  arms_lib.validate_gan(config, arms, num_devices)
  return arms


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


# ------------------------------------------------------------------------------------------------------- classifier


class Classifier(trainer.DataParallelModel):
  """The ResNet, optimizer and jitted data-parallel train / predict functions (compiled once per study)."""

  def __init__(self, config: ml_collections.ConfigDict, mesh: jax.sharding.Mesh, channels: int):
    c = config.classifier
    self.config = config
    model = classifier_lib.ResNetClassifier(tuple(c.widths), c.blocks_per_stage, c.groups, c.stem_stride)
    tx = optax.adamw(c.lr, weight_decay=c.weight_decay)
    a = config.augment
    aug = functools.partial(trainer.augment_batch, hflip=a.hflip, max_shift=a.max_shift,
                            max_rotate_deg=a.max_rotate_deg, brightness=a.brightness, contrast=a.contrast)

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
        val_auc = stats.auroc(self.predict(params, val_images), val_labels)
        history.append({'step': step, 'loss': loss, 'val_auroc': val_auc})
        if val_auc > best[0]:
          best = (val_auc, step, jax.device_get(params))
    return jax.device_put(best[2], self.repl), {'best_step': best[1], 'best_val_auroc': best[0], 'history': history}


# ------------------------------------------------------------------------------------------------------------- grid


def _run_group(config: ml_collections.ConfigDict, workdir: str, arms: list[arms_lib.Arm], group: list[arms_lib.Arm],
               k: int, seed: int, table: splits.SliceTable, small: np.ndarray, patients: dict[str, tuple[str, ...]],
               model: Classifier, fp: str) -> int:
  """Computes the unfinished arms ``group`` of (k, seed): one split, one GAN (if any arm is synthetic), one
  classifier per arm; writes each cell's JSON as soon as it is done. Returns the number of cells computed."""
  split = splits.make_split(table.subject, table.tumor_area, patients, k, seed, config.data.negative_patients,
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
    n_syn = max(arms_lib.synthetic_count(len(split.train_pos), a.ratio) for a in arms if a.synthetic)
    t0 = time.perf_counter()
    cache_dir = os.path.join(workdir, 'gans', f'k{k}_seed{seed}')
    synthetic = splits.resize_images(samples.synthetic_images(gan_dir, n_syn, seed, config.gan.sample_batch,
                                                              cache_dir), config.classifier.image_size)
    gan_seconds += time.perf_counter() - t0
  for arm in group:
    t0 = time.perf_counter()
    pos = arms_lib.positive_pool(small[split.train_pos], synthetic, arm)
    params, log = model.fit(pos, small[split.train_neg], small[val_idx], val_labels, seed, arm.augment)
    cell = {
        'arm': arm.name, 'k': k, 'seed': seed, 'fingerprint': fp, 'best_step': log['best_step'],
        'history': log['history'], 'n_real_pos': int(len(split.train_pos)) if arm.real_positives else 0,
        'n_synthetic': arms_lib.synthetic_count(len(split.train_pos), arm.ratio) if arm.synthetic else 0,
        'n_neg': int(len(split.train_neg)), 'patients': split.patients, 'gan_workdir': gan_dir,
        'val': {'scores': model.predict(params, small[val_idx]).tolist(), 'labels': val_labels.tolist()},
        'test': {'scores': model.predict(params, small[test_idx]).tolist(), 'labels': test_labels.tolist(),
                 'patients': table.subject[test_idx].tolist()},
    }
    # The GAN's time is booked to the group's first cell, so the sum over cells is the grid's compute.
    cell['seconds'] = time.perf_counter() - t0 + (gan_seconds if arm is group[0] else 0.0)
    if jax.process_index() == 0:
      cells_lib.write_json(cells_lib.cell_path(workdir, arm.name, k, seed), cell)
    m = cell_metrics(cell, config.metrics)
    logging.info('cell %s: %s (%.1f s)', cells_lib.cell_name(arm.name, k, seed),
                 ', '.join(f'{n}={v:.3f}' for n, v in m.items()), cell['seconds'])
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
    data_dir, cfg_name = dataset.prepare_dataset(config, workdir)
    table, patients = dataset.load_table(config, data_dir, cfg_name)
    small = splits.resize_images(table.images, config.classifier.image_size)
    model = Classifier(config, gan.make_mesh(), table.images.shape[-1])
    for k in config.ks:
      for seed in config.seeds:
        group = [a for a in arms if (a.name, k, seed) in todo]
        if group:
          computed += _run_group(config, workdir, arms, group, k, seed, table, small, patients, model, fp)
  cells = {(a.name, k, s): read(a.name, k, s) for a in arms for k in config.ks for s in config.seeds}
  return reports.finish_run(summarize(cells, config), config, workdir, computed, time.perf_counter() - t_start,
                            cells, markdown, METRICS, METRIC_TITLES)


def cell_threshold(cell: dict[str, Any], mcfg: ml_collections.ConfigDict) -> float:
  """The cell's balanced-accuracy threshold on the logit, from its validation scores (or logit 0 = probability 0.5)."""
  if mcfg.threshold == 'fixed':
    return 0.0
  return stats.youden_threshold(np.asarray(cell['val']['scores']), np.asarray(cell['val']['labels']))


def cell_metrics(cell: dict[str, Any], mcfg: ml_collections.ConfigDict) -> dict[str, float]:
  """Test metrics of one cell; the threshold always comes from validation."""
  return stats.test_metrics(np.asarray(cell['test']['scores']), np.asarray(cell['test']['labels']),
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
      m = stats.test_metrics(scores, labels, thr, mcfg.specificity)
      out[i, j, s] = [m[n] for n in METRICS]
    return out

  point = metric_array(None)  # (arm, k, seed, metric)

  def stat(patient_idx: np.ndarray, seed_idx: np.ndarray) -> np.ndarray:
    take = np.concatenate([slices_of[p] for p in patient_idx])
    per_seed = metric_array(take)
    if not mcfg.resample_seeds:
      seed_idx = np.arange(len(seeds))
    return np.nanmean(per_seed[:, :, seed_idx], axis=2)  # (arm, k, metric)

  boot = stats.bootstrap(stat, (len(names), len(seeds)), mcfg.n_boot, seed=0)  # (B, arm, k, metric)
  table, paired = stats.tabulate(point, boot, arms, ks, METRICS, mcfg.level)
  return {'metrics': table, 'paired_vs_real': paired, 'arms': arms, 'ks': ks, 'seeds': seeds,
          'n_test_patients': len(names), 'n_test_slices': int(len(test_patients)),
          'n_test_pos': int(np.sum(first['test']['labels'])),
          'specificity': mcfg.specificity, 'level': mcfg.level, 'n_boot': mcfg.n_boot,
          'resample_seeds': bool(mcfg.resample_seeds), 'threshold': mcfg.threshold,
          'train_counts': {f'k{k}_seed{s}': {a: {'real_pos': cells[(a, k, s)]['n_real_pos'],
                                                 'synthetic': cells[(a, k, s)]['n_synthetic'],
                                                 'neg': cells[(a, k, s)]['n_neg']} for a in arms}
                           for k in ks for s in seeds}}


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
    lines += [f'Settings: {reports.gan_settings(cfg)}; classifier '
              f'{c["image_size"]} px, widths {tuple(c["widths"])}, {c["num_steps"]} steps, batch {c["batch_size"]}; '
              f'negatives from {cfg["data"]["negative_patients"]} patients.', '']
  lines += reports.compute_lines(run_info) + reports.verdicts(summary, VERDICT_METRICS, METRIC_TITLES) + ['']
  return '\n'.join(lines + reports.result_tables(summary, METRICS, METRIC_TITLES))


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


CLI_ERRORS = (errors.ConfigError, ValueError, FileNotFoundError, FloatingPointError, Preempted)


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
