"""Paired image + label generation (``config.model.mask_channels``): data, augmentation, losses, sampling, NIfTI.

The end-to-end test trains the tiny config with the bundled FLAIR slices + masks on 8 fake devices, samples with
NIfTI export and evaluates with random Inception weights (the numbers are meaningless; every path runs).
"""

import glob
import os

import jax
import jax.numpy as jnp
import nibabel as nib
import numpy as np
from PIL import Image
import pytest

from configs import paired
from configs import tiny
from fsgan_jax import config_lib, errors, evaluate, gan, input_pipeline, losses, masks, metrics, sample, steps, train
from fsgan_jax.augment import diffaug
from tests.evaluate_test import random_inception_params


def _square_pair(n: int = 4, size: int = 32) -> np.ndarray:
  """Images with a bright square (0.8 inside, -0.6 outside) and the square as the mask, (n, size, size, 2)."""
  x = np.full((n, size, size, 2), -0.6, np.float32)
  x[..., 1] = -1.0
  for i in range(n):
    r, c = 6 + 2 * i, 10 + i
    x[i, r:r + 8, c:c + 6, 0] = 0.8
    x[i, r:r + 8, c:c + 6, 1] = 1.0
  return x


@pytest.mark.parametrize('policy', ['translation', 'cutout', 'translation,cutout', 'color,translation,cutout'])
def test_augmentations_move_masks_with_the_image(policy):
  x = _square_pair()
  draws = diffaug.sample_draws(jax.random.PRNGKey(3), x.shape, policy)
  out = np.asarray(diffaug.apply(jnp.asarray(x), draws, policy, image_channels=1))
  plain = np.asarray(diffaug.apply(jnp.asarray(x[..., :1]), draws, policy))
  np.testing.assert_allclose(out[..., :1], plain, atol=1e-6)  # the image is augmented exactly as without labels
  mask = out[..., 1]
  assert set(np.unique(mask)) <= {-1.0, 1.0}  # labels stay hard: no colour op, background fill -1
  if 'color' not in policy:
    # Where the (shifted / cut) image shows the square, the mask does, and nowhere else.
    np.testing.assert_array_equal(mask > 0, out[..., 0] > 0.5)
  # The shifted image has an equally shifted mask: compare with the geometric op applied to the mask alone.
  geometric = ','.join(op for op in policy.split(',') if op != 'color')
  alone = np.asarray(diffaug.apply(jnp.asarray(x[..., 1:] + 1.0), draws, geometric))[..., 0] - 1.0
  np.testing.assert_array_equal(mask, alone)


def test_flip_moves_masks_with_the_image():
  x = jnp.asarray(_square_pair(8))
  out = np.asarray(steps.sample_real_batch(x, jax.random.PRNGKey(0), jnp.asarray(3), 8, flip=True))
  np.testing.assert_array_equal(out[..., 1] > 0, out[..., 0] > 0.5)


def test_reconstruction_groups_and_mse_unchanged():
  assert losses.channel_groups(2, 1) == [(0,), (1,)]
  assert losses.channel_groups(4, 3) == [(0, 1, 2), (3,)]
  assert losses.channel_groups(7, 4) == [(0,), (1,), (2,), (3,), (4,), (5,), (6,)]
  rec, target = jnp.zeros((2, 8, 8, 2)), jnp.ones((2, 8, 8, 2))
  np.testing.assert_allclose(losses.reconstruction('mse', None, rec, target, 1), losses.mse_recon(None, rec, target))
  # LPIPS on groups: a fake per-group loss shows it is the mean over groups (one image's scale).
  fake = lambda _, r, t: jnp.full((r.shape[0],), float(r.shape[-1]))
  losses.RECON_LOSSES['fake_test'] = fake
  try:
    np.testing.assert_allclose(losses.reconstruction('fake_test', None, jnp.zeros((2, 8, 8, 5)), jnp.zeros((2, 8, 8, 5)), 4),
                               [1.0, 1.0])
    np.testing.assert_allclose(losses.reconstruction('fake_test', None, jnp.zeros((2, 8, 8, 4)), jnp.zeros((2, 8, 8, 4)), 3),
                               [2.0, 2.0])  # (3 + 1) / 2
  finally:
    del losses.RECON_LOSSES['fake_test']


def test_bundled_pairs_load_aligned():
  x = input_pipeline.load_images(None, 64, 1, limit=5, mask_channels=1)
  assert x.shape == (5, 64, 64, 2) and x.dtype == np.float32
  assert set(np.unique(x[..., 1])) == {-1.0, 1.0}  # every bundled slice has tumor
  full = np.asarray(Image.open(sorted(input_pipeline.BUNDLED_MASK_DIR.glob('*.png'))[0]))
  assert full.shape == (256, 256) and set(np.unique(full)) == {0, 255}
  # Nearest resize keeps labels hard: output pixel i samples input pixel 4i + 2 (PIL: the centre of its block).
  np.testing.assert_array_equal(x[0, ..., 1] > 0, full[2::4, 2::4] > 127)


def test_folder_masks_by_name_and_mask_suffix(tmp_path):
  (tmp_path / 'img').mkdir()
  (tmp_path / 'msk').mkdir()
  for i, suffix in enumerate(['', '_mask']):
    Image.fromarray(np.full((16, 16), 100 + i, np.uint8)).save(tmp_path / 'img' / f'a{i}.png')
    m = np.zeros((16, 16), np.uint8)
    m[:4 * (i + 1)] = 255
    Image.fromarray(m).save(tmp_path / 'msk' / f'a{i}{suffix}.png')
  x = input_pipeline.load_images(str(tmp_path / 'img'), 16, 1, mask_dir=str(tmp_path / 'msk'), mask_channels=1)
  assert (x[0, ..., 1] > 0).sum() == 64 and (x[1, ..., 1] > 0).sum() == 128
  os.remove(tmp_path / 'msk' / 'a1_mask.png')
  with pytest.raises(input_pipeline.DataError, match=r'no mask for image .*a1\.png'):
    input_pipeline.load_images(str(tmp_path / 'img'), 16, 1, mask_dir=str(tmp_path / 'msk'), mask_channels=1)


@pytest.mark.parametrize('changes, message', [
    ({'model.mask_channels': 2}, r'config.model.mask_channels=2 must be 0 .*1 .*or 3'),
    ({'model.mask_channels': 3}, r'mask_channels=3 \(BraTS sub-regions\) needs config.data.tfds_name'),
    ({'model.channels': 3}, r'config.model.channels=3 differs from config.data.channels=1'),
    ({'data.dir': '.'}, r'set config.data.mask_dir'),
    ({'data.contrast_names': 'flair,t1'}, r'names 2 contrast\(s\) but there are 1'),
])
def test_paired_config_errors_are_one_line(changes, message):
  c = paired.get_config('cpu')
  for k, v in changes.items():
    section, field = k.split('.')
    c[section][field] = v
  with pytest.raises(errors.ConfigError, match=message) as e:
    config_lib.validate(c, 8)
  assert '\n' not in str(e.value)


def test_mask_metrics_need_labels():
  c = tiny.get_config()
  c.eval.metrics = ('fid', 'mask_stats')
  with pytest.raises(errors.ConfigError, match='mask_channels > 0'):
    config_lib.validate(c, 8)


def test_dice_statistics_and_seg_map():
  a = np.zeros((3, 4, 4), bool)
  b = np.zeros((3, 4, 4), bool)
  a[0, :2], b[0, :2] = True, True  # identical
  a[1, :2], b[1, 2:] = True, True  # disjoint
  np.testing.assert_allclose(masks.dice(a, b), [1.0, 0.0, 1.0])  # both empty -> 1
  a[2, 0, :2], b[2, 0, 1:3] = True, True  # overlap 1 of 2 + 2
  assert masks.dice(a, b)[2] == pytest.approx(0.5)
  s = masks.mask_statistics(np.stack([np.pad(np.ones((2, 2), bool), ((0, 3), (3, 0))), np.zeros((5, 5), bool)]))
  assert s['empty_fraction'] == 0.5 and s['area_mean'] == pytest.approx(4 / 25 / 2)
  assert s['centroid_row_mean'] == pytest.approx(0.5 / 4) and s['centroid_col_mean'] == pytest.approx(3.5 / 4)
  labels = np.zeros((1, 2, 2, 3), bool)
  labels[0, 0, 0] = [True, True, False]  # core inside edema -> core (1)
  labels[0, 0, 1] = [False, True, True]  # enhancing inside edema -> 4
  labels[0, 1, 0, 1] = True  # edema only -> 2
  np.testing.assert_array_equal(sample.seg_map(labels)[0], [[1, 4], [2, 0]])
  np.testing.assert_array_equal(masks.label_channels(np.array([[[0, 1], [2, 3]]]), 3)[0, 1, 1], [-1, -1, 1])


def test_paired_train_sample_nifti_eval(tmp_path):
  c = tiny.get_config()
  c.model.mask_channels = 1
  c.data.contrast_names = 'flair'
  c.num_steps = 2
  c.diffaug_policy = 'color,translation,cutout'
  workdir = str(tmp_path / 'w')
  last = train.train_and_evaluate(c, workdir)
  assert np.isfinite(last['d_rec_big'])
  grid = np.asarray(Image.open(os.path.join(workdir, 'samples', 'step_0000002.png')))
  assert grid.shape[1] > 1.5 * grid.shape[0]  # FLAIR and mask side by side

  out = sample.sample_from_workdir(workdir, num=6, seed=1, nifti=True)
  flair = [np.asarray(Image.open(os.path.join(out, f'img_{i:05d}_flair.png'))) for i in range(6)]
  mask = [np.asarray(Image.open(os.path.join(out, f'img_{i:05d}_mask.png'))) for i in range(6)]
  assert flair[0].shape == (128, 128) and all(set(np.unique(m)) <= {0, 255} for m in mask)
  case = glob.glob(os.path.join(out, 'nifti', '*'))
  assert len(case) == 1
  name = os.path.basename(case[0])
  vol = nib.load(os.path.join(case[0], f'{name}_flair.nii.gz'))
  seg = nib.load(os.path.join(case[0], f'{name}_seg.nii.gz'))
  assert vol.shape == seg.shape == (128, 128, 6)
  np.testing.assert_array_equal(vol.affine, np.diag([sample.NIFTI_SPACING_MM] * 3 + [1.0]))
  v, s = np.asarray(vol.dataobj), np.asarray(seg.dataobj)
  for z in range(6):  # the BraTS builder's slice convention vol[:, :, z].T gives back the PNGs
    np.testing.assert_array_equal(v[:, :, z].T, flair[z])
    np.testing.assert_array_equal(s[:, :, z].T, (mask[z] > 127).astype(np.uint8))

  c.eval.metrics = ('fid', 'kid', 'diversity', 'memorization', 'mask_stats', 'label_consistency')
  c.eval.segmenter_steps, c.eval.segmenter_size = 2, 32
  setup = gan.build_setup(c)
  ev = evaluate.Evaluator(c, setup, gan.make_mesh(), inception_params=random_inception_params())
  assert ev.real_sets[0].images.shape[-1] == 2 and ev.real_sets[1].images.shape[-1] == 2  # masks of both sets
  state = gan.create_state(c, setup, gan.make_mesh())
  results, artifacts = ev.evaluate(state.ema_params, state.g_stats, 16, c.eval.metrics)
  assert np.isfinite(results['sets']['train']['fid']) and 'per_contrast' not in results['sets']['train']
  stats = results['mask_stats']
  assert stats['real_train']['empty_fraction'] == 0.0 and 0 < stats['real_train']['area_mean'] < 0.2
  assert 'generated' in stats and 'real_heldout' in stats
  assert artifacts['samples'].shape[1] > artifacts['samples'].shape[0]
  assert 'mask_area_mean_generated' in metrics.flat_scalars(results)
  lc = results['label_consistency']
  assert 0.0 <= lc['dice_mean'] <= 1.0 and lc['n_generated'] == 16 and sum(lc['dice_histogram']['counts']) == 16
  assert 0.0 <= lc['segmenter_dice_heldout'] <= 1.0 and lc['segmenter']['trained_on_real_pairs'] == 16


def test_per_contrast_views():
  assert evaluate.feature_views(1) == ((0,), ())
  assert evaluate.feature_views(3) == ((0, 1, 2), ((0,), (1,), (2,)))
  assert evaluate.feature_views(2, 1) == ((0,), ((0,), (1,)))


def test_discriminator_sees_hard_labels_with_straight_through_gradient():
  x = jnp.asarray(_square_pair(2)) * 0.3  # soft labels
  hard = steps.hard_labels(x, 1)
  np.testing.assert_array_equal(hard[..., 0], x[..., 0])
  assert set(np.unique(np.asarray(hard[..., 1]))) == {-1.0, 1.0}
  grad = jax.grad(lambda v: jnp.sum(steps.hard_labels(v, 1) * 2.0))(x)
  np.testing.assert_array_equal(grad, 2.0 * np.ones_like(x))  # identity backward on every channel
  assert steps.hard_labels(x[..., :1], 1) is not None and steps.hard_labels(x, 0) is x
