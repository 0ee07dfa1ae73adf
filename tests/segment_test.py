"""Tests of the downstream segmentation study (``fsgan_jax/experiments/segment.py`` and the ``fsgan_jax/downstream``
modules it uses: stats, splits, segmenter) on 8 fake CPU devices.

Dice on known cases (per slice, per patient pooled, the empty-empty convention), the bootstrap CI and paired
differences on known cases, subject-disjoint splits, image / mask alignment of the augmentation, the U-Net's
shapes, one-line config errors, and a tiny grid with a fake dataset and a fake generator that resumes.
"""

import json
import os

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from configs import segment as segment_config
from fsgan_jax import errors
from fsgan_jax import masks as masks_lib
from fsgan_jax.datasets import common
from fsgan_jax.downstream import arms as arms_lib
from fsgan_jax.downstream import segmenter as segmenter_lib
from fsgan_jax.downstream import splits, stats
from fsgan_jax.experiments import segment as sg
from fsgan_jax.models import unet as unet_lib


# ------------------------------------------------------------------------------------------------------------ Dice


def test_dice_known_cases():
  g = np.zeros((4, 8, 8), bool)
  g[:, 2:6, 2:6] = True  # 16 pixels each
  p = g.copy()
  p[1] = False  # empty prediction: Dice 0
  p[2] = np.roll(g[2], 4, axis=1)  # disjoint: Dice 0
  p[3, 2:6, 2:4] = False  # half the tumor: 2 * 8 / (8 + 16)
  inter, pred, truth = stats.dice_counts(p, g)
  np.testing.assert_array_equal(inter, [16, 0, 0, 8])
  np.testing.assert_allclose(stats.dice_from_counts(inter, pred, truth), [1.0, 0.0, 0.0, 2 * 8 / 24])
  # Both empty: 1 by convention, as masks.dice.
  assert stats.dice_from_counts([0], [0], [0])[0] == 1.0
  rng = np.random.default_rng(0)
  a, b = rng.random((20, 6, 6)) > 0.6, rng.random((20, 6, 6)) > 0.7
  b[0] = a[0] = False
  np.testing.assert_allclose(stats.dice_from_counts(*stats.dice_counts(a, b)), masks_lib.dice(a, b))


def test_dice_per_patient_pools_slices():
  # Patient A: a perfect slice (10 px) and a missed one (30 px): pooled 2 * 10 / (10 + 40) = 0.4, slices 1 and 0.
  # Patient B: one slice with Dice 2 * 5 / (10 + 10) = 0.5.
  inter, pred, truth = np.array([10, 0, 5]), np.array([10, 0, 10]), np.array([10, 30, 10])
  m = stats.cell_dice(inter, pred, truth, ['A', 'A', 'B'])
  assert m['dice_patient'] == pytest.approx((0.4 + 0.5) / 2)  # every patient weighs the same
  assert m['dice_slice'] == pytest.approx((1.0 + 0.0 + 0.5) / 3)  # every slice weighs the same
  sums = stats.patient_sums(inter, pred, truth, ['A', 'A', 'B'], ['A', 'B'])
  np.testing.assert_allclose(sums, [[10, 50, 1.0, 2], [5, 20, 0.5, 1]])
  # A bootstrap replicate that draws A twice counts it twice.
  np.testing.assert_allclose(stats.dice_from_sums(sums[[0, 0, 1]]), [(0.4 + 0.4 + 0.5) / 3, 2.5 / 5])


def _fake_cells(values, arms=('real', 'syn1x'), shift=0.0, seeds=(0,)):
  """Cells whose test patients (one 100-px slice each) have the given Dice; ``syn1x`` = real + ``shift``."""
  cells = {}
  names = [f'P{i:03d}' for i in range(len(values))]
  for a in arms:
    for s in seeds:
      v = np.clip(np.asarray(values) + (shift if a != 'real' else 0.0), 0, 1)
      inter = np.round(v * 100).astype(int)  # pred = truth = 100 px: Dice = inter / 100
      cells[(a, 5, s)] = {'test': {'inter': inter.tolist(), 'pred': [100] * len(v), 'truth': [100] * len(v),
                                   'patients': names}, 'best_step': 1, 'n_real': 10, 'n_synthetic': 0, 'n_empty': 0,
                          'seconds': 1.0}
  return cells


def _summary_config(arms=('real', 'syn1x'), seeds=(0,), n_boot=2000):
  c = segment_config.get_config('cpu')
  c.arms, c.ks, c.seeds = arms, (5,), seeds
  c.metrics.n_boot, c.metrics.resample_seeds = n_boot, True
  return c


def test_bootstrap_ci_known_case():
  # Mean Dice of 400 patients: the percentile CI matches mean +- 1.96 sd / sqrt(n) (the known sampling law).
  rng = np.random.default_rng(0)
  values = np.clip(rng.normal(0.6, 0.15, 400), 0, 1)
  values = np.round(values * 100) / 100
  s = sg.summarize(_fake_cells(values, shift=0.0), _summary_config())
  m = s['metrics']['real']['5']['dice_patient']
  half = 1.96 * values.std() / np.sqrt(len(values))
  assert m['mean'] == pytest.approx(values.mean())
  assert m['lo'] == pytest.approx(values.mean() - half, abs=0.005)
  assert m['hi'] == pytest.approx(values.mean() + half, abs=0.005)
  # Identical arms: paired difference exactly 0 with a zero-width CI, all ties.
  d = s['paired_vs_real']['syn1x']['5']['dice_patient']
  assert (d['mean_diff'], d['lo'], d['hi'], d['ties']) == (0.0, 0.0, 0.0, 1)
  # All patients equal: zero-width CI.
  s = sg.summarize(_fake_cells(np.full(30, 0.7)), _summary_config(n_boot=50))
  m = s['metrics']['real']['5']['dice_slice']
  assert m['lo'] == pytest.approx(0.7) and m['hi'] == pytest.approx(0.7)


def test_paired_difference_known_shift():
  values = np.random.default_rng(1).uniform(0.2, 0.7, 50)
  s = sg.summarize(_fake_cells(values, shift=0.1, seeds=(0, 1, 2)), _summary_config(seeds=(0, 1, 2), n_boot=200))
  d = s['paired_vs_real']['syn1x']['5']['dice_patient']
  assert d['mean_diff'] == pytest.approx(0.1, abs=0.006)
  assert d['lo'] > 0.09 and d['wins'] == 3 and d['losses'] == 0 and d['p_sign'] == pytest.approx(0.25)
  md = sg.markdown(s)
  assert '| syn1x |' in md and 'Dice per patient, syn1x: higher at k=5' in md


# ----------------------------------------------------------------------------------------------------------- splits


def _fake_table(n_patients=20, slices=8, seed=0):
  rng = np.random.default_rng(seed)
  ids = [f'P{i:03d}' for i in range(n_patients)]
  subject = np.repeat(ids, slices)
  area = rng.choice([0, 0, 50, 150, 900], size=len(subject))
  area[::slices] = 900  # every patient has a tumor slice
  return ids, subject, area


def test_split_subject_disjoint():
  ids, subject, area = _fake_table()
  ks, seeds = (2, 5), (0, 1, 2)
  part = common.partition(ids, partition_seed=0, test_fraction=0.2, heldout_fraction=0.1, ks=ks, seeds=seeds)
  patients = {f'fewshot_k{k}_seed{s}': part.fewshot(k, s) for k in ks for s in seeds}
  patients.update({'heldout': part.heldout, 'test': part.test})
  for k in ks:
    for seed in seeds:
      split = sg.make_split(subject, area, patients, k, seed, 100)
      train, val, test = (set(subject[i]) for i in (split.train_pos, split.val_pos, split.test_pos))
      assert not train & val and not train & test and not val & test
      assert train == set(patients[f'fewshot_k{k}_seed{seed}']) and len(train) == k
      assert val <= set(patients['heldout']) and test <= set(patients['test'])
      for idx in (split.train_pos, split.val_pos, split.test_pos):
        assert np.all(area[idx] >= 100)
      np.testing.assert_array_equal(split.gan_train, split.train_pos)  # the GAN sees exactly the training pairs
      assert np.all(area[split.train_neg] == 0) and set(subject[split.train_neg]) <= train
  with pytest.raises(ValueError, match='no split'):
    sg.make_split(subject, area, patients, 3, 0, 100)


def test_training_pairs_mixing():
  real_x, real_y = np.zeros((6, 4, 4, 1)), np.zeros((6, 4, 4, 1))
  syn = (np.ones((20, 4, 4, 1)), np.ones((20, 4, 4, 1)))
  x, y = sg.training_pairs(real_x, real_y, syn, arms_lib.parse_arm('syn0.5x'))
  assert len(x) == len(y) == 9 and x[:, 0, 0, 0].sum() == 3 and np.array_equal(x, y)  # pairs stay paired
  x, y = sg.training_pairs(real_x, real_y, syn, arms_lib.parse_arm('syn_only'))
  assert len(x) == 6 and np.all(x == 1) and np.all(y == 1)
  x, y = sg.training_pairs(real_x, real_y, None, arms_lib.parse_arm('real'), np.full((2, 4, 4, 1), 5.0),
                           np.zeros((2, 4, 4, 1)))
  assert len(x) == len(y) == 8 and np.all(x[6:] == 5)


def test_downsample_masks_majority():
  m = np.zeros((1, 4, 4), np.uint8)
  m[0, :2, :2] = 1  # full block
  m[0, 2:, :2] = [[1, 1], [0, 0]]  # tie -> background
  m[0, :2, 2:] = [[1, 1], [1, 0]]  # majority
  np.testing.assert_array_equal(splits.downsample_masks(m, 2)[0, ..., 0], [[1, 1], [0, 0]])


# ----------------------------------------------------------------------------------------------------- augmentation


def test_augmentation_moves_mask_with_image():
  """Image = a bright square exactly where the mask is: after the random flip / shift / rotation the thresholded
  image and the augmented mask agree pixel for pixel (same transform), and the mask stays binary."""
  n, size = 8, 32
  y = np.zeros((n, size, size, 1), np.float32)
  for i in range(n):
    y[i, 6 + i:16 + i, 4 + 2 * i:12 + 2 * i] = 1
  x = np.where(y > 0, 0.8, -1.0).astype(np.float32)
  a = ml_collections.ConfigDict({'hflip': True, 'max_shift': 0.15, 'max_rotate_deg': 20.0, 'brightness': 0.0,
                                 'contrast': 0.0})
  ax, ay = segmenter_lib.augment_pairs(jax.random.PRNGKey(3), jnp.asarray(x), jnp.asarray(y), a)
  ax, ay = np.asarray(ax), np.asarray(ay)
  assert set(np.unique(ay)) <= {0.0, 1.0} and not np.array_equal(ay, y)  # moved, still binary
  # Bilinear weights t: image = -1 + 1.8 t, mask = -1 + 2 t; image > -0.1 <=> t > 1/2 <=> mask > 0.
  np.testing.assert_array_equal(ax > -0.1, ay > 0.5)
  # A pure shift moves the mask by as many pixels as the image (centre of mass).
  a.hflip, a.max_rotate_deg = False, 0.0
  ax, ay = map(np.asarray, segmenter_lib.augment_pairs(jax.random.PRNGKey(4), jnp.asarray(x), jnp.asarray(y), a))
  com = lambda m: np.array(np.nonzero(m)).mean(axis=1)
  for i in range(n):
    moved_mask = com(ay[i, ..., 0]) - com(y[i, ..., 0])
    np.testing.assert_allclose(moved_mask, com(ax[i, ..., 0] > -0.1) - com(x[i, ..., 0] > 0), atol=1e-6)
  # Intensity jitter touches the image only.
  a.brightness, a.contrast = 0.3, 0.3
  ax, ay = map(np.asarray, segmenter_lib.augment_pairs(jax.random.PRNGKey(5), jnp.asarray(x), jnp.asarray(y), a))
  assert set(np.unique(ay)) <= {0.0, 1.0} and len(np.unique(ax.round(4))) > 2


# ------------------------------------------------------------------------------------------------------------ U-Net


def test_unet_shapes():
  model = unet_lib.UNet(widths=(4, 8, 16), groups=2, out_channels=1)
  x = jnp.zeros((2, 32, 32, 1))
  params = model.init(jax.random.PRNGKey(0), x)
  y = model.apply(params, x)
  assert y.shape == (2, 32, 32, 1) and y.dtype == jnp.float32
  assert unet_lib.UNet(widths=(4, 8), out_channels=3, activation='silu').init_with_output(
      jax.random.PRNGKey(0), jnp.zeros((1, 16, 16, 2)))[0].shape == (1, 16, 16, 3)
  with pytest.raises(ValueError, match='divisible by 4'):
    model.init(jax.random.PRNGKey(0), jnp.zeros((1, 30, 30, 1)))


# --------------------------------------------------------------------------------------------------------- config


@pytest.mark.parametrize('field, value, match', [
    ('arms', ('real', 'mixup'), "unknown arm 'mixup'"),
    ('arms', ('syn1x',), 'needs the "real" arm'),
    ('ks', (5, 0), 'config.ks'),
    ('seeds', (), 'config.seeds'),
    ('data.min_tumor_area', 0, 'config.data.min_tumor_area'),
    ('unet.image_size', 48, 'config.unet.image_size'),
    ('unet.widths', (4, 8, 16, 32, 64, 128, 256, 512), 'config.unet.image_size'),
    ('unet.batch_size', 10, 'config.unet.batch_size'),
    ('unet.activation', 'gelu', 'config.unet.activation'),
    ('unet.lr', 0.0, 'config.unet.lr'),
    ('metrics.n_boot', 5, 'config.metrics.n_boot'),
    ('gan.train_size', -1, 'config.gan.train_size'),
])
def test_bad_config_names_field(field, value, match):
  config = segment_config.get_config('cpu')
  config.update_from_flattened_dict({field: value})
  with pytest.raises(errors.ConfigError, match=match) as e:
    sg.validate_config(config, num_devices=4)
  assert '\n' not in str(e.value)


def test_configs_valid_and_unknown_variant():
  for variant, extra in ((None, ['syn_only']), ('cpu', [])):
    assert [a.name for a in sg.validate_config(segment_config.get_config(variant), 4)] == [
        'real', 'real_aug', 'syn0.5x', 'syn1x', 'syn2x'] + extra
  with pytest.raises(ValueError, match='unknown variant'):
    segment_config.get_config('gpu8')


# ------------------------------------------------------------------------------------------------------------ grid


def _fake_data(n_patients=12, slices=4, res=32, size=16):
  """A StudyData of bright-disc tumors without building a dataset; every patient has tumor slices."""
  rng = np.random.default_rng(0)
  ids = [f'P{i:03d}' for i in range(n_patients)]
  subject = np.repeat(ids, slices)
  yy, xx = np.mgrid[:res, :res]
  masks, area = [], []
  for i in range(len(subject)):
    cy, cx = rng.integers(10, res - 10, 2)
    m = (((yy - cy) ** 2 + (xx - cx) ** 2) < rng.integers(9, 30)).astype(np.uint8) if i % slices else \
        np.zeros((res, res), np.uint8)
    masks.append(m)
    area.append(int(m.sum()) * 64 if m.any() else 0)  # pixels at 256
  masks = np.stack(masks)
  images = np.where(masks[..., None] > 0, 0.8, -0.6).astype(np.float32) + rng.normal(0, 0.05, masks.shape + (1,))
  part = common.partition(ids, partition_seed=0, test_fraction=0.25, heldout_fraction=0.2, ks=(2,), seeds=(0, 1))
  patients = {f'fewshot_k2_seed{s}': part.fewshot(2, s) for s in (0, 1)}
  patients.update({'heldout': part.heldout, 'test': part.test})
  table = splits.SliceTable(images.astype(np.float32), subject, np.asarray(area), masks)
  return sg.StudyData(table, splits.resize_images(table.images, size), splits.downsample_masks(masks, size), patients)


def _tiny_config(tmp_path):
  c = segment_config.get_config('cpu')
  c.ks, c.seeds, c.arms = (2,), (0, 1), ('real', 'syn1x')
  c.results_prefix = str(tmp_path / 'results' / 'segment')
  c.unet.image_size, c.unet.widths, c.unet.groups = 16, (4, 8), 2
  c.unet.batch_size, c.unet.eval_batch_size, c.unet.num_steps, c.unet.eval_every = 8, 8, 3, 2
  c.gan.workdir = str(tmp_path / 'given_gan_k{k}_seed{seed}')  # a "given" generator: the study trains none
  c.metrics.n_boot = 20
  return c


def test_tiny_grid_resumes(tmp_path, monkeypatch):
  data = _fake_data()
  loads, sampled = [], []

  def fake_load(config, workdir):
    loads.append(workdir)
    return data

  def fake_pairs(config, workdir, gan_dir, num, seed, k, channels):
    sampled.append((gan_dir, num))
    return data.table.images[:num], data.table.masks[:num]  # "generated" pairs at the dataset resolution

  monkeypatch.setattr(sg, 'load_data', fake_load)
  monkeypatch.setattr(sg, 'synthetic_pairs', fake_pairs)
  config = _tiny_config(tmp_path)
  workdir = str(tmp_path / 'study')
  summary = sg.run(config, workdir)
  assert summary['run']['cells_computed_now'] == 4 and len(loads) == 1
  assert sampled[0][0] == str(tmp_path / 'given_gan_k2_seed0')
  for suffix in ('.json', '.md', '.png'):
    assert os.path.getsize(config.results_prefix + suffix) > 0
  with open(config.results_prefix + '.json') as f:
    saved = json.load(f)
  for arm in ('real', 'syn1x'):
    for n in sg.METRICS:
      m = saved['metrics'][arm]['2'][n]
      assert 0.0 <= m['lo'] <= m['hi'] <= 1.0 and np.isfinite(m['mean'])
  counts = saved['train_counts']['k2_seed0']
  assert counts['syn1x']['synthetic'] == counts['syn1x']['real'] == counts['real']['real'] > 0
  with open(os.path.join(workdir, 'cells', 'k2_seed0_real.json')) as f:
    cell = json.load(f)
  assert not set(cell['patients']['train']) & set(cell['patients']['test'])
  assert set(cell['test']['patients']) <= set(cell['patients']['test'])
  # Resumable: nothing is recomputed (not even the data loaded); a lost cell is the only one recomputed.
  again = sg.run(config, workdir)
  assert again['run']['cells_computed_now'] == 0 and len(loads) == 1
  assert again['metrics'] == summary['metrics']
  mtime = os.path.getmtime(os.path.join(workdir, 'cells', 'k2_seed1_real.json'))
  os.remove(os.path.join(workdir, 'cells', 'k2_seed0_syn1x.json'))
  assert sg.run(config, workdir)['run']['cells_computed_now'] == 1
  assert os.path.getmtime(os.path.join(workdir, 'cells', 'k2_seed1_real.json')) == mtime
  with open(os.path.join(workdir, 'invocations.json')) as f:
    assert [i['cells_computed'] for i in json.load(f)] == [4, 0, 1]
  # A changed U-Net refuses the old cells with a one-line error.
  config.unet.num_steps = 4
  with pytest.raises(errors.ConfigError, match='different config') as e:
    sg.run(config, workdir)
  assert '\n' not in str(e.value)
