"""Tests of the evaluation suite wiring: periodic FID/KID + best checkpoint in training, ``--mode=eval``, report.

Most tests use randomly initialised FID Inception weights (the numbers are then meaningless, but every code path
runs without the 95 MB weights); the CLI test uses the real converted weights where ``../shared/data`` exists.
"""

import csv
import glob
import json
import os
import shutil
import subprocess
import sys

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from PIL import Image
import pytest

from configs import tiny
from fsgan_jax import checkpointing, config_lib, errors, evaluate, export, gan, input_pipeline, pretrained
from fsgan_jax import report as report_lib, sample
from fsgan_jax import train, workdir as workdir_lib
from fsgan_jax.evaluators import fid as fid_lib
from fsgan_jax.evaluators import inception

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def random_inception_params(seed: int = 0):
  """FID Inception parameters of the right shapes (He-normal kernels, identity batch norm); no compile."""
  shapes = jax.eval_shape(lambda: inception.FIDInceptionV3().init(
      jax.random.PRNGKey(0), jnp.zeros((1, inception.INPUT_SIZE, inception.INPUT_SIZE, 3))))['params']
  rng = np.random.default_rng(seed)

  def make(path, s):
    name = path[-1].key
    if name == 'kernel':
      fan_in = int(np.prod(s.shape[:-1]))
      return (rng.standard_normal(s.shape) * np.sqrt(2.0 / fan_in)).astype(np.float32)
    if name == 'var':
      return np.ones(s.shape, np.float32)
    return np.zeros(s.shape, np.float32)

  return jax.tree_util.tree_map_with_path(make, shapes)


@pytest.fixture(name='fake_params', scope='module')
def fixture_fake_params():
  return random_inception_params()


@pytest.fixture(name='small_heldout', scope='module')
def fixture_small_heldout(tmp_path_factory):
  """The 6 slices of 2 patients of the bundled held-out set with their index.csv: keeps Inception work small."""
  out = tmp_path_factory.mktemp('data') / 'heldout'
  out.mkdir()
  with open(evaluate.BUNDLED_HELDOUT_DIR / 'index.csv', newline='') as f:
    rows = list(csv.DictReader(f))
  keep = [r for r in rows if r['patient_id'] in {'TCGA_CS_5395', 'TCGA_HT_7680'}][:8]
  for r in keep:
    shutil.copy(evaluate.BUNDLED_HELDOUT_DIR / r['file'], out / r['file'])
  with open(out / 'index.csv', 'w', newline='') as f:
    w = csv.DictWriter(f, fieldnames=list(rows[0]))
    w.writeheader()
    w.writerows(keep)
  return str(out)


def test_bundled_heldout_is_subject_disjoint():
  def patients(folder):
    with open(folder / 'index.csv', newline='') as f:
      rows = list(csv.DictReader(f))
    assert sorted(r['file'] for r in rows) == sorted(p.name for p in folder.glob('*.png'))
    return {r['patient_id'] for r in rows}

  train_patients = patients(input_pipeline.BUNDLED_DIR)
  held = patients(evaluate.BUNDLED_HELDOUT_DIR)
  assert len(train_patients) == 100 and len(held) == 10
  assert not train_patients & held
  rs = evaluate.load_real_set('heldout', evaluate.BUNDLED_HELDOUT_DIR, 128, 1)
  assert rs.images.shape == (99, 128, 128, 1) and rs.images.dtype == np.uint8
  assert len(set(rs.groups)) == 10


def test_eval_config_errors_name_the_field():
  config = tiny.get_config()
  config.eval.metrics = ('fid', 'nope')
  with pytest.raises(errors.ConfigError, match=r'config\.eval\.metrics.*nope'):
    config_lib.validate(config, 8)
  config = tiny.get_config()
  config.eval.resize = 'bicubic'
  with pytest.raises(errors.ConfigError, match=r'config\.eval\.resize'):
    config_lib.validate(config, 8)
  config = tiny.get_config()
  config.eval.batch_size = 12
  with pytest.raises(errors.ConfigError, match=r'config\.eval\.batch_size=12'):
    config_lib.validate(config, 8)
  # Checked before anything is generated (it used to fail only after the images were made).
  config = tiny.get_config()
  config.model.mask_channels = 1
  config.eval.metrics = ('fid', 'label_consistency')
  config.eval.segmenter_size = 48
  with pytest.raises(errors.EvalError, match=r'segmenter_size=48 .*divides config\.model\.resolution=128'):
    config_lib.validate_eval(config, 8)


def test_config_with_defaults_fills_fields_of_older_versions():
  stored = tiny.get_config().to_dict()
  del stored['latent'], stored['model']['mask_channels'], stored['eval']['segmenter_size']
  config = config_lib.with_defaults(ml_collections.ConfigDict(stored))
  assert config.latent == 'gaussian' and config.model.mask_channels == 0 and config.eval.segmenter_size == 128
  assert config.model.resolution == tiny.get_config().model.resolution  # stored values win
  assert config.eval.metrics == tuple(tiny.get_config().eval.metrics)


@pytest.fixture(name='trained_workdir', scope='module')
def fixture_trained_workdir(tmp_path_factory, fake_params, small_heldout):
  """The tiny config trained for 4 steps with FID/KID every 2 steps (random Inception weights)."""
  config = tiny.get_config()
  config.eval.every = 2
  config.eval.heldout_dir = small_heldout
  workdir = str(tmp_path_factory.mktemp('eval') / 'run')
  with pytest.MonkeyPatch.context() as mp:
    mp.setattr(fid_lib, 'get_params', lambda verbose=True: fake_params)
    train.train_and_evaluate(config, workdir)
  return workdir


def test_periodic_eval_best_checkpoint_and_eval_mode(trained_workdir, fake_params, tmp_path):
  workdir = str(tmp_path / 'run')
  shutil.copytree(trained_workdir, workdir)

  history = report_lib.read_history(workdir)
  assert [r['step'] for r in history] == [2, 4]
  for row in history:
    for key in ('fid_train', 'kid_train', 'fid_heldout', 'kid_heldout'):
      assert np.isfinite(row[key]), (key, row)
  best = checkpointing.make_best_manager(workdir, 'fid_train')
  best_step = min(history, key=lambda r: r['fid_train'])['step']
  assert best.all_steps() == [best_step]

  # --mode=eval on the trained workdir: JSON + HTML report + PNGs, every metric present.
  results, report = evaluate.evaluate_workdir(workdir, num=16, seed=1, inception_params=fake_params)
  assert results['step'] == 4 and results['num_samples'] == 16
  path = os.path.join(workdir, 'eval', 'eval_4.json')
  with open(path) as f:
    stored = json.load(f)
  assert stored['sets']['train']['n'] == 16 and stored['sets']['heldout']['n'] == 6  # 3 + 3 slices
  for name in ('train', 'heldout'):
    for key in ('fid', 'kid', 'kid_std', 'precision', 'recall'):
      assert np.isfinite(stored['sets'][name][key]), (name, key)
  assert stored['conventions']['resize'] == 'tf1'
  assert 0.0 <= stored['diversity']['generated']['mean'] <= 1.0
  assert 0.0 <= stored['diversity']['real_train']['mean'] <= 1.0
  assert {'inception', 'pixel'} <= set(stored['memorization'])
  out = os.path.dirname(report)
  for png in ('samples.png', 'real.png', 'closest_inception.png', 'closest_pixel.png'):
    assert os.path.getsize(os.path.join(out, png)) > 0, png
  with Image.open(os.path.join(out, 'samples.png')) as a, Image.open(os.path.join(out, 'real.png')) as b:
    assert a.size == b.size  # the README shows them side by side
  page = open(report).read()
  assert 'fid_train' in page and '<svg' in page and 'closest_pixel.png' in page
  assert report_lib.read_history(workdir)[-1]['kind'] == 'full_16'

  # Deterministic for a seed.
  again, _ = evaluate.evaluate_workdir(workdir, num=16, seed=1, inception_params=fake_params)
  assert again['sets']['train']['fid'] == pytest.approx(results['sets']['train']['fid'], rel=1e-6)


def test_sample_mode_and_eval_mode_draw_the_same_images(trained_workdir, fake_params, tmp_path):
  """One sampling policy (``sampling.draw``): --mode=sample's PNGs are the images --mode=eval evaluates.

  20 images with the tiny config's eval batch 8: a short last batch would change BatchNorm's batch statistics.
  """
  out = sample.sample_from_workdir(trained_workdir, num=20, seed=3, out=str(tmp_path / 's'))
  written = np.stack([np.asarray(Image.open(os.path.join(out, f'img_{i:05d}.png'))) for i in range(20)])
  run = workdir_lib.load_run(trained_workdir)
  ev = evaluate.Evaluator(run.config, run.setup, run.mesh, inception_params=fake_params,
                          real_sets=[evaluate.load_real_set('train', None, 128, 1, limit=4)])
  images, feats = ev.generate(run.state.ema_params, run.state.g_stats, 20, seed=3)
  assert images.shape == (20, 128, 128, 1) and feats.shape == (20, 2048)
  np.testing.assert_array_equal(images[..., 0], written)
  assert len({im.tobytes() for im in written}) == 20  # different latents, different images


def test_evaluator_features_match_cached_real_features(fake_params):
  """The sharded, padded feature path gives the same features for a subset as for the whole set."""
  config = tiny.get_config()
  setup = gan.build_setup(config)
  mesh = gan.make_mesh()
  real = evaluate.load_real_set('train', None, 128, 1, limit=8)
  ev = evaluate.Evaluator(config, setup, mesh, inception_params=fake_params, real_sets=[real])
  feats = ev.features(real.images[:4])
  np.testing.assert_allclose(feats, real.features[:4], rtol=1e-5, atol=1e-5)


def test_eval_without_checkpoint_is_clear(tmp_path):
  config = tiny.get_config()
  workdir = tmp_path / 'empty'
  workdir.mkdir()
  (workdir / 'config.json').write_text(config.to_json())
  with pytest.raises(FileNotFoundError, match='no checkpoint'):
    evaluate.evaluate_workdir(str(workdir), num=8)


@pytest.mark.usefixtures('shared_data')
def test_cli_eval_mode_real_weights(tmp_path, trained_workdir):
  """``python -m fsgan_jax.main --mode=eval`` end to end with the converted FID weights."""
  try:
    inception.fetch(source=os.environ.get('FSGAN_JAX_FID_SOURCE'))
  except (subprocess.CalledProcessError, OSError) as e:
    pytest.skip(f'FID Inception weights unavailable (offline?): {e}')
  workdir = str(tmp_path / 'run')
  shutil.copytree(trained_workdir, workdir)
  proc = subprocess.run([sys.executable, '-m', 'fsgan_jax.main', '--mode=eval', f'--workdir={workdir}', '--num=16'],
                        cwd=REPO, capture_output=True, text=True, timeout=900, check=False)
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert 'fid_train:' in proc.stdout and 'report.html' in proc.stdout
  assert glob.glob(os.path.join(workdir, 'eval', 'eval_4.json'))
  # Bad --step: one line naming the step.
  proc = subprocess.run([sys.executable, '-m', 'fsgan_jax.main', '--mode=eval', f'--workdir={workdir}', '--step=3'],
                        cwd=REPO, capture_output=True, text=True, timeout=300, check=False)
  assert proc.returncode != 0 and 'step 3' in proc.stderr and 'Traceback' not in proc.stderr


def test_exported_generator_samples_evaluates_and_refuses_altered_files(trained_workdir, fake_params, tmp_path):
  """``python -m fsgan_jax.export``: a read-only folder that samples like the workdir; damage is refused by name."""
  out = str(tmp_path / 'pretrained')
  assert export.main(['--workdir', trained_workdir, '--out', out]) == 0
  assert sorted(os.listdir(out)) == ['MANIFEST.json', 'config.json', 'generator.npz']
  assert export.main(['--workdir', trained_workdir, '--out', out]) == 2  # never overwrites
  before = {p: os.path.getmtime(os.path.join(out, p)) for p in os.listdir(out)}

  # Same images as the workdir's latest checkpoint (float32 storage), deterministic.
  a = sample.sample_from_workdir(out, num=4, seed=1, out=str(tmp_path / 'a'))
  b = sample.sample_from_workdir(trained_workdir, num=4, seed=1, out=str(tmp_path / 'b'))
  for i in range(4):
    np.testing.assert_array_equal(np.asarray(Image.open(os.path.join(a, f'img_{i:05d}.png'))),
                                  np.asarray(Image.open(os.path.join(b, f'img_{i:05d}.png'))))
  with pytest.raises(errors.FsganError, match='exported generator .*read-only.*--out'):
    sample.sample_from_workdir(out, num=2)
  with pytest.raises(errors.EvalError, match='exported generator .*read-only.*--out'):
    evaluate.evaluate_workdir(out, num=4, inception_params=fake_params)
  results, report = evaluate.evaluate_workdir(out, num=8, inception_params=fake_params, out=str(tmp_path / 'ev'))
  assert results['step'] == 4 and report.startswith(str(tmp_path / 'ev'))
  assert {p: os.path.getmtime(os.path.join(out, p)) for p in os.listdir(out)} == before  # nothing written into it

  # bfloat16 storage: about half the size, parameters within bfloat16 rounding.
  out16 = str(tmp_path / 'pretrained16')
  assert export.main(['--workdir', trained_workdir, '--out', out16, '--dtype', 'bfloat16']) == 0
  size = lambda folder: os.path.getsize(os.path.join(folder, 'generator.npz'))
  assert size(out16) < 0.6 * size(out)
  run, run16 = workdir_lib.load_run(out), workdir_lib.load_run(out16)
  for x, y in zip(jax.tree_util.tree_leaves(run.state.ema_params), jax.tree_util.tree_leaves(run16.state.ema_params)):
    np.testing.assert_allclose(np.asarray(y), np.asarray(x), rtol=1e-2, atol=1e-6)

  # Altered or missing files: one line naming the file.
  with open(os.path.join(out16, 'generator.npz'), 'r+b') as f:
    f.seek(200)
    byte = f.read(1)
    f.seek(200)
    f.write(bytes([byte[0] ^ 1]))
  with pytest.raises(pretrained.PretrainedError, match=r'generator\.npz: checksum mismatch'):
    workdir_lib.load_run(out16)
  os.remove(os.path.join(out, 'config.json'))
  with pytest.raises(pretrained.PretrainedError, match=r'config\.json is missing'):
    workdir_lib.load_run(out)
