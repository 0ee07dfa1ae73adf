"""Tests of the downstream classifier study (``fsgan_jax/experiments/classify.py`` and the ``fsgan_jax/downstream``
modules it uses: arms, splits, stats) on 8 fake CPU devices.

Split disjointness and the GAN's training set, the synthetic-mixing ratio, metrics and the bootstrap on known
cases, bad-input messages, and a tiny end-to-end grid of two arms on a fake compact-form dataset built in tmp_path.
"""

import csv
import json
import os
import pathlib

import numpy as np
import pytest
from PIL import Image

from configs import classify as classify_config
from fsgan_jax import errors
from fsgan_jax.datasets import common
from fsgan_jax.downstream import arms as arms_lib
from fsgan_jax.downstream import splits, stats
from fsgan_jax.experiments import classify as cl


# ----------------------------------------------------------------------------------------------------------- splits


def _fake_table(n_patients=20, slices=8, seed=0):
  """Patient ids and tumor areas: per patient, empty, ambiguous (area 50) and tumor (area >= 100) slices."""
  rng = np.random.default_rng(seed)
  ids = [f'P{i:03d}' for i in range(n_patients)]
  subject = np.repeat(ids, slices)
  area = rng.choice([0, 0, 0, 50, 150, 900], size=len(subject))
  return ids, subject, area


def _patients(part, ks, seeds):
  out = {f'fewshot_k{k}_seed{s}': part.fewshot(k, s) for k in ks for s in seeds}
  out.update({'heldout': part.heldout, 'test': part.test})
  return out


def _check_split(split, subject, area, k, seed, patients, negative_patients):
  fewshot = set(patients[f'fewshot_k{k}_seed{seed}'])
  negatives = set(patients[f'fewshot_k{negative_patients}_seed{seed}'])
  train = set(subject[split.train_pos]) | set(subject[split.train_neg])
  val = set(subject[split.val_pos]) | set(subject[split.val_neg])
  test = set(subject[split.test_pos]) | set(subject[split.test_neg])
  assert not train & val and not train & test and not val & test
  assert val <= set(patients['heldout']) and test <= set(patients['test'])
  # The GAN sees exactly the k patients' tumor slices, nothing else.
  expected = np.flatnonzero(np.isin(subject, sorted(fewshot)) & (area >= 100))
  np.testing.assert_array_equal(np.sort(split.gan_train), expected)
  assert set(subject[split.gan_train]) <= fewshot and len(fewshot) == k
  assert set(subject[split.train_neg]) <= negatives and np.all(area[split.train_neg] == 0)
  for idx in (split.val_pos, split.test_pos):
    assert np.all(area[idx] >= 100)
  for idx in (split.val_neg, split.test_neg):
    assert np.all(area[idx] == 0)
  assert not np.isin(np.flatnonzero((area > 0) & (area < 100)), np.concatenate(
      [split.train_pos, split.train_neg, split.val_pos, split.val_neg, split.test_pos, split.test_neg])).any()


def test_split_disjoint_and_gan_set():
  ids, subject, area = _fake_table()
  part = common.partition(ids, partition_seed=0, test_fraction=0.2, heldout_fraction=0.1, ks=(2, 5, 8),
                          seeds=(0, 1, 2))
  patients = _patients(part, (2, 5, 8), (0, 1, 2))
  for k in (2, 5):
    for seed in (0, 1, 2):
      split = splits.make_split(subject, area, patients, k, seed, 8, 100)
      _check_split(split, subject, area, k, seed, patients, 8)


def test_split_refuses_overlap_and_missing_split():
  ids, subject, area = _fake_table()
  part = common.partition(ids, partition_seed=0, test_fraction=0.2, heldout_fraction=0.1, ks=(2, 8), seeds=(0,))
  patients = _patients(part, (2, 8), (0,))
  bad = dict(patients, test=patients['test'] + (patients['fewshot_k8_seed0'][-1],))
  with pytest.raises(ValueError, match='patients in both'):
    splits.make_split(subject, area, bad, 2, 0, 8, 100)
  with pytest.raises(ValueError, match='no split'):
    splits.make_split(subject, area, patients, 2, 1, 8, 100)


def test_split_on_real_lgg_patients(shared_data):
  """The study's split over the real TCGA-LGG patients and tumor areas (metadata only, no dataset build)."""
  meta = shared_data / 'lgg_kaggle3m' / 'metadata.csv'
  if not meta.is_file():
    pytest.skip(f'{meta} is not present')
  with open(meta, newline='') as f:
    rows = [r for r in csv.DictReader(f) if r['kept'] == '1']
  subject = np.asarray([r['patient_id'] for r in rows])
  area = np.asarray([int(r['tumor_pixels']) for r in rows])
  ks, seeds = (5, 10, 25, 50), (0, 1, 2, 3, 4)
  part = common.partition(sorted(set(subject)), partition_seed=0, test_fraction=0.2, heldout_fraction=0.1, ks=ks,
                          seeds=seeds)
  patients = _patients(part, ks, seeds)
  for k in (5, 10, 25):
    for seed in seeds:
      split = splits.make_split(subject, area, patients, k, seed, 50, 100)
      _check_split(split, subject, area, k, seed, patients, 50)
      assert len(split.train_pos) > 0 and len(split.test_pos) > 0 and len(split.test_neg) > 0


# ------------------------------------------------------------------------------------------------------------ arms


@pytest.mark.parametrize('n_pos, expected', [(10, {'syn0.5x': 5, 'syn1x': 10, 'syn2x': 20}),
                                             (7, {'syn0.5x': 4, 'syn1x': 7, 'syn2x': 14})])
def test_synthetic_mixing_ratio(n_pos, expected):
  real = np.zeros((n_pos, 4, 4, 1), np.float32)
  synthetic = np.ones((3 * n_pos, 4, 4, 1), np.float32)
  for name, n_syn in expected.items():
    arm = arms_lib.parse_arm(name)
    assert arms_lib.synthetic_count(n_pos, arm.ratio) == n_syn
    pool = arms_lib.positive_pool(real, synthetic, arm)
    assert len(pool) == n_pos + n_syn
    assert (pool.reshape(len(pool), -1)[:, 0] == 1).sum() == n_syn  # exactly n_syn synthetic, all real kept
  only = arms_lib.positive_pool(real, synthetic, arms_lib.parse_arm('syn_only'))
  assert len(only) == n_pos and np.all(only == 1)
  assert len(arms_lib.positive_pool(real, None, arms_lib.parse_arm('real'))) == n_pos
  with pytest.raises(ValueError, match='needs'):
    arms_lib.positive_pool(real, synthetic[:1], arms_lib.parse_arm('syn2x'))


def test_gan_training_set_is_exactly_the_tumor_slices():
  slices = np.zeros((47, 2, 2, 1))
  idx, counts = cl.gan_training_set(slices, 0, seed=0)
  np.testing.assert_array_equal(idx, np.arange(47))
  idx, counts = cl.gan_training_set(slices, 2048, seed=0)
  assert len(idx) == 2048 and set(idx.tolist()) == set(range(47))
  assert set(counts.tolist()) == {2048 // 47, 2048 // 47 + 1} and counts.sum() == 2048
  idx, _ = cl.gan_training_set(np.zeros((3000, 2, 2, 1)), 2048, seed=0)  # more slices than size: each once
  assert len(idx) == 3000


@pytest.mark.parametrize('field, value, match', [
    ('arms', ('real', 'mixup'), "unknown arm 'mixup'"),
    ('arms', ('real', 'syn0x'), 'ratio 0.0 <= 0'),
    ('arms', ('real', 'syn-1x'), 'ratio -1.0 <= 0'),
    ('arms', ('syn1x',), 'needs the "real" arm'),
    ('ks', (5, 0), 'config.ks'),
    ('data.negative_patients', 3, 'config.data.negative_patients'),
    ('classifier.image_size', 48, 'config.classifier.image_size'),
    ('classifier.batch_size', 30, 'config.classifier.batch_size'),
    ('metrics.threshold', 'otsu', 'config.metrics.threshold'),
    ('gan.train_size', -1, 'config.gan.train_size'),
])
def test_bad_config_names_field(field, value, match):
  config = classify_config.get_config('cpu')
  node, name = config, field
  if '.' in field:
    section, name = field.split('.')
    node = config[section]
  node[name] = value
  with pytest.raises(errors.ConfigError, match=match) as e:
    cl.validate_config(config, num_devices=4)
  assert '\n' not in str(e.value)


def test_unknown_variant():
  with pytest.raises(ValueError, match='unknown variant'):
    classify_config.get_config('gpu8')


# --------------------------------------------------------------------------------------------------------- metrics


def test_metrics_known_cases():
  labels = np.array([1, 1, 1, 0, 0, 0, 0])
  assert stats.auroc(np.array([3., 2, 1, 0, 0, -1, -2]), labels) == 1.0
  assert stats.auroc(-np.array([3., 2, 1, 0, 0, -1, -2]), labels) == 0.0
  assert stats.auroc(np.zeros(7), labels) == 0.5  # all tied
  rng = np.random.default_rng(0)
  s, l = rng.integers(0, 5, 200).astype(float), rng.integers(0, 2, 200)
  pos, neg = s[l == 1], s[l == 0]
  brute = np.mean((pos[:, None] > neg[None]) + 0.5 * (pos[:, None] == neg[None]))
  assert stats.auroc(s, l) == pytest.approx(brute, abs=1e-12)
  # 10 negatives 0..9: 90% specificity allows 1 false positive, so positives must score above 8.
  neg = np.arange(10.0)
  pos = np.array([8.0, 8.5, 9.5, 20.0])
  scores, labels = np.concatenate([pos, neg]), np.r_[np.ones(4), np.zeros(10)]
  assert stats.sensitivity_at_specificity(scores, labels, 0.9) == 0.75
  assert stats.sensitivity_at_specificity(scores, labels, 0.5) == 1.0
  assert stats.balanced_accuracy(scores, labels, 8.5) == pytest.approx(0.5 * (3 / 4 + 9 / 10))
  sep = np.array([0.1, 0.2, 0.3, 0.7, 0.8])
  assert stats.youden_threshold(sep, np.array([0, 0, 0, 1, 1])) == 0.7
  assert np.isnan(stats.auroc(np.ones(3), np.ones(3)))


def test_percentile_ci_level_is_exact():
  """The interval's ends are the (1 - level) / 2 and (1 + level) / 2 quantiles: exact on 0..1000."""
  lo, hi = stats.percentile_ci(np.arange(1001.0), 0.95)
  assert (lo, hi) == (pytest.approx(25.0, abs=1e-9), pytest.approx(975.0, abs=1e-9))  # (1 - .95) / 2 in floats
  lo, hi = stats.percentile_ci(np.arange(1001.0), 0.9)
  assert (lo, hi) == (pytest.approx(50.0, abs=1e-9), pytest.approx(950.0, abs=1e-9))
  lo, hi = stats.percentile_ci(np.array([[0.0, 10.0], [np.nan, np.nan], [1000.0, 1010.0]]), 0.5)  # NaN ignored
  assert lo.tolist() == [250.0, 260.0] and hi.tolist() == [750.0, 760.0]


def test_bootstrap_known_cases():
  # All-equal metric: zero-width interval.
  values = np.full(20, 0.7)
  boot = stats.bootstrap(lambda idx: values[idx].mean(), (20,), 200, seed=1)
  lo, hi = stats.percentile_ci(boot)
  assert lo == pytest.approx(0.7) and hi == pytest.approx(0.7)
  # Mean of n iid normal values: the bootstrap CI matches mean +- 1.96 sd / sqrt(n) (the known sampling law).
  rng = np.random.default_rng(0)
  x = rng.normal(2.0, 1.0, 400)
  boot = stats.bootstrap(lambda idx: x[idx].mean(), (400,), 2000, seed=2)
  lo, hi = stats.percentile_ci(boot, 0.95)
  half = 1.96 * x.std(ddof=0) / np.sqrt(400)
  assert lo == pytest.approx(x.mean() - half, abs=0.02) and hi == pytest.approx(x.mean() + half, abs=0.02)
  # Cluster bootstrap: 10 patients whose slices all share the patient's value; resampling patients (not slices)
  # gives the spread of a mean of 10 values, much wider than a mean of the 10 x 50 slices would suggest.
  patient_value = rng.normal(0.0, 1.0, 10)
  slices_of = [np.arange(50 * p, 50 * p + 50) for p in range(10)]
  slice_value = np.repeat(patient_value, 50)
  boot = stats.bootstrap(lambda idx: slice_value[np.concatenate([slices_of[p] for p in idx])].mean(), (10,), 2000, 3)
  assert np.std(boot) == pytest.approx(patient_value.std() / np.sqrt(10), rel=0.15)
  # Two dimensions are resampled independently (sizes in order).
  seen = []
  stats.bootstrap(lambda a, b: seen.append((len(a), len(b))) or 0.0, (7, 3), 5)
  assert seen == [(7, 3)] * 5


def test_sign_test():
  r = stats.sign_test([0.1, 0.2, 0.0, -0.1, 0.3])
  assert (r['wins'], r['ties'], r['losses']) == (3, 1, 1)
  assert r['p_sign'] == pytest.approx(0.625)
  assert stats.sign_test([0.1] * 5)['p_sign'] == pytest.approx(0.0625)  # the smallest p with 5 seeds


# ------------------------------------------------------------------------------------------------------ end to end


def _fake_compact_lgg(root: pathlib.Path, n_patients=14, n_slices=6):
  """A tiny compact-form kaggle_3m folder: per patient 2 empty slices then tumor slices (a bright disc)."""
  yy, xx = np.mgrid[:256, :256]
  brain = ((yy - 128) / 100.0) ** 2 + ((xx - 128) / 80.0) ** 2 < 1
  rows, packed = [], {}
  rng = np.random.default_rng(0)
  for p in range(n_patients):
    pid = f'TCGA_ZZ_{p:04d}'
    folder = f'{pid}_20000101'
    (root / 'flair' / folder).mkdir(parents=True)
    masks = []
    for n in range(1, n_slices + 1):
      mask = np.zeros((256, 256), np.uint8)
      if n > 2:
        cy, cx = rng.integers(90, 166, 2)
        mask = (((yy - cy) ** 2 + (xx - cx) ** 2) < 20 ** 2).astype(np.uint8)
      img = np.where(brain, 80, 0) + 120 * mask + rng.normal(0, 5, (256, 256))
      name = f'flair/{folder}/{folder}_{n}.png'
      Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)).save(root / name)
      masks.append(mask)
      rows.append({'patient_id': pid, 'folder': folder, 'institution': 'ZZ', 'slice_index': n,
                   'n_slices': n_slices, 'has_tumor': int(mask.any()), 'tumor_pixels': int(mask.sum()), 'kept': 1,
                   'file': name})
    packed[f'{folder}__slice_index'] = np.arange(1, n_slices + 1)
    packed[f'{folder}__mask'] = np.packbits(np.stack(masks), axis=-1)
  with open(root / 'metadata.csv', 'w', newline='') as f:
    writer = csv.DictWriter(f, fieldnames=list(rows[0]))
    writer.writeheader()
    writer.writerows(rows)
  np.savez(root / 'masks.npz', **packed)


def _tiny_config(tmp_path):
  c = classify_config.get_config('cpu')
  c.ks, c.seeds, c.arms = (2,), (0,), ('real', 'syn1x')
  c.results_prefix = str(tmp_path / 'results' / 'classify')
  c.data.manual_dir = str(tmp_path / 'raw')
  c.data.negative_patients = 4
  c.classifier.image_size = 32
  c.classifier.widths = (4, 8)
  c.classifier.stem_stride = 1
  c.classifier.batch_size = 16
  c.classifier.eval_batch_size = 16
  c.classifier.num_steps = 4
  c.classifier.eval_every = 2
  # The GAN is configs/tiny.py's FastGAN (its compilations are shared with train_test.py through the test cache).
  c.gan.ngf, c.gan.ndf, c.gan.nz, c.gan.decoder_width = 4, 4, 16, 4
  c.gan.batch_size, c.gan.num_steps, c.gan.ema_decay, c.gan.sample_batch = 8, 2, 0.999, 8
  c.gan.train_size = 16  # 2 patients x 4 tumor slices, each twice: tiny.py's data.limit, so its shapes
  c.metrics.n_boot = 50
  return c


def test_tiny_grid_two_arms_end_to_end_and_resume(tmp_path):
  (tmp_path / 'raw').mkdir()
  _fake_compact_lgg(tmp_path / 'raw')
  config = _tiny_config(tmp_path)
  workdir = str(tmp_path / 'study')
  summary = cl.run(config, workdir)
  assert summary['run']['cells_computed_now'] == 2
  for suffix in ('.json', '.md', '.png'):
    assert os.path.getsize(config.results_prefix + suffix) > 0
  with open(config.results_prefix + '.json') as f:
    saved = json.load(f)
  for arm in ('real', 'syn1x'):
    m = saved['metrics'][arm]['2']
    for name in cl.METRICS:
      assert 0.0 <= m[name]['lo'] <= m[name]['hi'] <= 1.0 and np.isfinite(m[name]['mean'])
  paired = saved['paired_vs_real']['syn1x']['2']['auroc']
  assert paired['wins'] + paired['ties'] + paired['losses'] == 1
  # Mixing ratio and the GAN's training set, as recorded by the run.
  counts = saved['train_counts']['k2_seed0']
  assert counts['syn1x']['synthetic'] == counts['syn1x']['real_pos'] == counts['real']['real_pos'] > 0
  gan_files = os.listdir(os.path.join(workdir, 'gans', 'k2_seed0', 'data'))
  assert len(gan_files) == 16 and counts['real']['real_pos'] == 8
  assert len({f.split('_slice')[1] for f in gan_files}) == 8  # all 8 tumor slices of the 2 patients, each twice
  with open(os.path.join(workdir, 'cells', 'k2_seed0_syn1x.json')) as f:
    cell = json.load(f)
  assert not set(cell['patients']['train_neg']) & set(cell['patients']['test'])
  assert not set(cell['patients']['val']) & set(cell['patients']['test'])
  assert len(cell['patients']['train_pos']) == 2
  md = pathlib.Path(config.results_prefix + '.md').read_text()
  assert '| syn1x |' in md and 'Paired difference' in md
  with Image.open(config.results_prefix + '.png') as im:
    assert im.size[0] > 500
  # Resumable: a second run recomputes nothing; a changed classifier refuses the old cells.
  again = cl.run(config, workdir)
  assert again['run']['cells_computed_now'] == 0
  assert again['metrics'] == summary['metrics']
  config.classifier.num_steps = 5
  with pytest.raises(errors.ConfigError, match='different config'):
    cl.run(config, workdir)


def test_k_larger_than_pool_is_one_line_error(tmp_path):
  (tmp_path / 'raw').mkdir()
  _fake_compact_lgg(tmp_path / 'raw', n_patients=6, n_slices=3)
  config = _tiny_config(tmp_path)
  config.ks = (9,)
  config.data.negative_patients = 9
  with pytest.raises(errors.ConfigError, match='k=9 is larger than the few-shot pool') as e:
    cl.run(config, str(tmp_path / 'study'))
  assert '\n' not in str(e.value)


def test_summarize_known_cells():
  """A perfect arm and an inverted arm on 20 test patients (one tumor and one empty slice each): AUROC and
  balanced accuracy are exactly 1 and 0, and the paired difference is -1 with a zero-width interval."""
  patients = [f'P{i:02d}' for i in range(20) for _ in range(2)]
  labels = [1, 0] * 20
  val = {'scores': [-1.0, 1.0], 'labels': [0, 1]}  # Youden threshold between them
  cells = {}
  for arm, sign in (('real', 1.0), ('syn1x', -1.0)):
    scores = [sign * (2.0 if y else -2.0) for y in labels]
    cells[(arm, 5, 0)] = {'test': {'patients': patients, 'scores': scores, 'labels': labels}, 'val': val,
                          'n_real_pos': 5, 'n_synthetic': 5 if arm != 'real' else 0, 'n_neg': 10}
  config = classify_config.get_config('cpu')
  config.arms, config.ks, config.seeds = ('real', 'syn1x'), (5,), (0,)
  config.metrics.n_boot = 50
  s = cl.summarize(cells, config)
  real, syn = s['metrics']['real']['5'], s['metrics']['syn1x']['5']
  assert (real['auroc']['mean'], real['balanced_accuracy']['mean']) == (1.0, 1.0)
  assert (syn['auroc']['mean'], syn['balanced_accuracy']['mean']) == (0.0, 0.0)
  assert (real['auroc']['lo'], real['auroc']['hi']) == (1.0, 1.0)
  d = s['paired_vs_real']['syn1x']['5']['auroc']
  assert (d['mean_diff'], d['lo'], d['hi'], d['losses']) == (-1.0, -1.0, -1.0, 1)
  assert (s['n_test_patients'], s['n_test_slices'], s['n_test_pos']) == (20, 40, 20)
