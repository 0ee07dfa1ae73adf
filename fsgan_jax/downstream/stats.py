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
"""Statistics of the downstream studies: classifier metrics, Dice counts, the bootstrap and the paired comparison.

Classifier (``test_metrics``): AUROC (rank based, ties count 1/2), sensitivity at a specificity on the test ROC,
balanced accuracy at a threshold chosen on validation (Youden's J). Segmenter (``dice_counts``, ``cell_dice``):
per-patient Dice pools all of a patient's slices, 2 sum|P n G| / (sum|P| + sum|G|), averaged over patients;
per-slice Dice is the mean over slices; empty prediction and empty truth count as Dice 1 (as ``masks.dice``).
Confidence intervals (``bootstrap``, ``percentile_ci``): percentile bootstrap over units (test patients) and,
optionally, seeds; ``tabulate`` gives per-arm tables and paired differences against ``real`` with per-seed wins /
ties / losses and an exact two-sided sign test (``sign_test``).
"""

from __future__ import annotations

import math
from typing import Any, Callable, Sequence

import numpy as np

DICE_METRICS = ('dice_patient', 'dice_slice')  # the keys of ``cell_dice`` / the columns of ``dice_from_sums``


# ------------------------------------------------------------------------------------------------------- classifier


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



# ------------------------------------------------------------------------------------------------------------- Dice


def dice_counts(pred: np.ndarray, truth: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """Per-slice |P n G|, |P| and |G| of boolean (N, ...) masks (enough for every Dice variant and the bootstrap)."""
  p = np.asarray(pred, bool).reshape(len(pred), -1)
  g = np.asarray(truth, bool).reshape(len(truth), -1)
  return (p & g).sum(axis=1), p.sum(axis=1), g.sum(axis=1)


def dice_from_counts(inter: np.ndarray, pred: np.ndarray, truth: np.ndarray) -> np.ndarray:
  """2 |P n G| / (|P| + |G|) elementwise; 1 where both are empty (the convention of ``masks.dice``)."""
  inter, total = np.asarray(inter, np.float64), np.asarray(pred, np.float64) + np.asarray(truth, np.float64)
  return np.where(total > 0, 2.0 * inter / np.maximum(total, 1.0), 1.0)


def patient_sums(inter: np.ndarray, pred: np.ndarray, truth: np.ndarray, patients: Sequence[str],
                 names: Sequence[str]) -> np.ndarray:
  """Per patient of ``names``: [sum |P n G|, sum |P| + |G|, sum of slice Dice, slice count], shape (len(names), 4)."""
  patients = np.asarray(patients)
  slice_dice = dice_from_counts(inter, pred, truth)
  total = np.asarray(pred, np.float64) + np.asarray(truth, np.float64)
  out = np.zeros((len(names), 4))
  for i, p in enumerate(names):
    sel = patients == p
    out[i] = [np.sum(np.asarray(inter, np.float64)[sel]), total[sel].sum(), slice_dice[sel].sum(), sel.sum()]
  return out


def dice_from_sums(sums: np.ndarray) -> np.ndarray:
  """[per-patient Dice (mean over patients), per-slice Dice (mean over slices)] from ``patient_sums`` rows (..., P, 4),
  a patient drawn twice counting twice (the bootstrap)."""
  per_patient = np.where(sums[..., 1] > 0, 2.0 * sums[..., 0] / np.maximum(sums[..., 1], 1.0), 1.0)
  return np.stack([per_patient.mean(axis=-1), sums[..., 2].sum(axis=-1) / sums[..., 3].sum(axis=-1)], axis=-1)


def cell_dice(inter: np.ndarray, pred: np.ndarray, truth: np.ndarray, patients: Sequence[str]) -> dict[str, float]:
  """The reported metrics of one set of slices: per-patient and per-slice Dice."""
  names = sorted(set(np.asarray(patients).tolist()))
  values = dice_from_sums(patient_sums(inter, pred, truth, patients, names))
  return dict(zip(DICE_METRICS, map(float, values)))


# ------------------------------------------------------------------------------------------------------- comparison


def tabulate(point: np.ndarray, boot: np.ndarray, arms: Sequence[str], ks: Sequence[int], metrics: Sequence[str],
             level: float) -> tuple[dict[str, Any], dict[str, Any]]:
  """Per-arm tables and paired differences against ``real``.

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
