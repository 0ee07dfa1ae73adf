"""Few-shot methods: APA, the Gaussian-mixture latent, and transfer (CDC, EWC, MineGAN) on tiny models.

Mechanism tests check each method's defining property; the end-to-end tests run real training steps on 8 fake
devices from a tiny source workdir (APA + GMM ride along with EWC to keep the number of compilations small).
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import tiny
from fsgan_jax import checkpointing, config_lib, errors, gan, latents, train, workdir as workdir_lib
from fsgan_jax.augment import apa
from fsgan_jax.models import fastgan
from fsgan_jax.transfer import cdc, ewc
from fsgan_jax.transfer import source as source_lib
from tests import compile_events

KEY = jax.random.PRNGKey(0)


def _leaves(tree):
  return [np.asarray(x) for x in jax.tree_util.tree_leaves(jax.device_get(tree))]


def _tiny_models(**g_kw):
  g = fastgan.Generator(ngf=4, nz=8, nc=1, im_size=128, **g_kw)
  d = fastgan.Discriminator(ndf=4, nc=1, im_size=128, decoder_width=4)
  g_vars, d_vars = fastgan.init_models(KEY, g, d)
  return g, d, jax.tree_util.tree_map(jnp.asarray, g_vars), jax.tree_util.tree_map(jnp.asarray, d_vars)


# --- APA --------------------------------------------------------------------------------------------------------


def _run_apa(aux, sign, steps, batch=8, interval=4, kimg=0.1):
  """``steps`` more iterations (the iteration index continues in ``aux['_step']``)."""
  start = aux.pop('_step', 0)
  for step in range(start, start + steps):
    aux, lam = apa.update(aux, jnp.full((batch, 26), sign), jnp.asarray(step), batch, 0.6, interval, kimg)
  return dict(aux, _step=start + steps), lam


def test_apa_p_rises_when_d_is_overconfident_and_falls_back():
  speed = 8 * 4 / (0.1 * 1000)  # batch * interval / (kimg * 1000) per adjustment
  aux, lam = _run_apa(apa.initial_state(), 1.0, 3)
  assert float(lam) == 1.0 and float(aux['apa_p']) == 0.0  # no adjustment before the interval ends
  aux, _ = _run_apa(aux, 1.0, 1)  # step index 3 closes the first interval (lambda_r = 1 > 0.6)
  np.testing.assert_allclose(float(aux['apa_p']), speed, rtol=1e-6)
  aux, _ = _run_apa(aux, 1.0, 8)
  np.testing.assert_allclose(float(aux['apa_p']), 3 * speed, rtol=1e-6)
  aux, lam = _run_apa(aux, -1.0, 4)  # D no longer over-confident: p moves back
  assert float(lam) == -1.0
  np.testing.assert_allclose(float(aux['apa_p']), 2 * speed, rtol=1e-6)
  aux, _ = _run_apa(aux, -1.0, 40)
  assert float(aux['apa_p']) == 0.0  # clipped at 0
  aux, _ = _run_apa(aux, 1.0, 4000)
  assert float(aux['apa_p']) == 1.0  # clipped at 1


def test_apa_mix_replaces_reals_with_detached_fakes():
  real, fake = jnp.zeros((4, 2, 2, 1)), jnp.ones((4, 2, 2, 1))
  u = jnp.asarray([0.1, 0.5, 0.7, 0.9])
  out = apa.mix(real, fake, u, jnp.asarray(0.6))
  np.testing.assert_array_equal(np.asarray(out)[:, 0, 0, 0], [1, 1, 0, 0])
  grad = jax.grad(lambda f: jnp.sum(apa.mix(real, f, u, jnp.asarray(1.0))))(fake)
  assert not np.any(np.asarray(grad))  # pseudo-reals are detached


# --- Gaussian-mixture latent -------------------------------------------------------------------------------------


def test_gmm_samples_match_mixture_parameters():
  module = latents.GaussianMixtureLatent(components=3, nz=4)
  params = {'means': jnp.asarray([[-2.0] * 4, [0.0] * 4, [3.0] * 4]),
            'log_sigma': jnp.log(jnp.asarray([[0.5] * 4, [1.0] * 4, [0.2] * 4]))}
  eps = jax.random.normal(KEY, (60000, 4))
  z = module.apply({'params': params}, eps, rngs={'noise': jax.random.PRNGKey(1)})
  mean, var = latents.mixture_moments({'latent': params})
  np.testing.assert_allclose(np.mean(np.asarray(z), 0), mean, atol=0.05)
  np.testing.assert_allclose(np.var(np.asarray(z), 0), var, rtol=0.03)
  # Every sample is one component's mean + sigma * eps.
  comp = np.argmin(np.abs(np.asarray(z)[:, :1] - np.asarray(params['means'])[None, :, 0]
                          - np.asarray(eps)[:, :1] * np.exp(np.asarray(params['log_sigma']))[None, :, 0]), 1)
  assert set(np.unique(comp)) == {0, 1, 2}


def test_gmm_gradients_reach_the_mixture_parameters():
  g, _, g_vars, _ = _tiny_models(latent='gmm', latent_components=3)
  assert g_vars['params']['latent']['means'].shape == (3, 8)
  np.testing.assert_allclose(np.exp(np.asarray(g_vars['params']['latent']['log_sigma'])), latents.GMM_INIT_SIGMA,
                             rtol=1e-6)

  def loss(params):
    (big, _), _ = g.apply({**g_vars, 'params': params}, jax.random.normal(KEY, (4, 8)), train=True,
                          mutable=['batch_stats'], rngs={'noise': KEY})
    return jnp.mean(jnp.square(big)) + latents.gmm_sigma_penalty(params)

  grads = jax.jit(jax.grad(loss))(g_vars['params'])['latent']  # one program, not op-by-op dispatch
  assert np.abs(np.asarray(grads['means'])).sum() > 0
  assert np.abs(np.asarray(grads['log_sigma'])).sum() > 0


# --- CDC, EWC, MineGAN mechanisms ---------------------------------------------------------------------------------


def test_cdc_loss_zero_for_identical_generators_positive_otherwise():
  g, _, g_vars, _ = _tiny_models()
  z = jax.random.normal(KEY, (4, 8))
  features = jax.jit(lambda p: cdc.generator_features(g, {**g_vars, 'params': p}, z, KEY))
  src = features(g_vars['params'])
  assert [f.shape[1] for f in src] == [8, 16, 32, 64, 128]
  np.testing.assert_allclose(float(cdc.distance_consistency_loss(src, src)), 0.0, atol=1e-7)
  moved = jax.tree_util.tree_map(lambda x: x + 0.05 * jax.random.normal(KEY, x.shape), g_vars['params'])
  tgt = features(moved)
  assert float(cdc.distance_consistency_loss(src, tgt)) > 0
  grads = jax.jit(jax.grad(lambda p: cdc.distance_consistency_loss(src, features(p))))(moved)
  assert any(np.abs(x).sum() > 0 for x in _leaves(grads))
  near = cdc.anchor_latents(KEY, cdc.make_anchors(KEY, 3, 8), 16, std=0.1)
  assert near.shape == (16, 8)


def test_ewc_penalty_zero_at_source_and_fisher_nonnegative():
  g, d, g_vars, d_vars = _tiny_models()
  fisher = ewc.fisher_information(g, d, g_vars, d_vars, KEY, batches=2, batch=4)
  leaves = _leaves(fisher)
  assert all(np.all(x >= 0) for x in leaves) and sum(float(x.sum()) for x in leaves) > 0
  src = g_vars['params']
  assert float(ewc.penalty(src, src, fisher)) == 0.0
  moved = jax.tree_util.tree_map(lambda x: x + 0.01, src)
  assert float(ewc.penalty(moved, src, fisher)) > 0
  with_miner = dict(moved, miner={'hidden': {'kernel': jnp.ones((8, 8))}})  # parameters absent from the source
  np.testing.assert_allclose(float(ewc.penalty(with_miner, src, fisher)), float(ewc.penalty(moved, src, fisher)))


def test_miner_starts_as_identity():
  g, _, g_vars, _ = _tiny_models(latent='miner')
  z = jax.random.normal(KEY, (4, 8))
  out = latents.Miner(8).apply({'params': g_vars['params']['miner']}, z)
  np.testing.assert_allclose(np.asarray(out), np.asarray(z))


# --- End to end on 8 fake devices --------------------------------------------------------------------------------


@pytest.fixture(scope='module')
def source_workdir(tmp_path_factory):
  """A source workdir as training writes it (config.json + an Orbax checkpoint at step 2), without compiling a
  train step: a perturbed fresh state stands in for a trained one."""
  workdir = str(tmp_path_factory.mktemp('source'))
  config = tiny.get_config()
  mesh = gan.make_mesh()
  state = gan.create_state(config, gan.build_setup(config), mesh)
  noise = jax.random.PRNGKey(7)
  state = state.replace(step=jnp.asarray(2, jnp.int32), ema_params=jax.tree_util.tree_map(
      lambda x: x + 0.01 * jax.random.normal(noise, x.shape), state.g_params))
  workdir_lib.write_config(config, workdir)
  manager = checkpointing.make_manager(workdir, config.keep_checkpoints, 1)
  checkpointing.save(manager, 2, state, force=True)
  manager.wait_until_finished()
  return workdir


def _transfer_config(method, source):
  config = tiny.get_config()
  config.num_steps = 2
  config.log_every = 1
  config.transfer.method = method
  config.transfer.source_workdir = source
  return config


def _restore(workdir, config):
  setup = gan.build_setup(config)
  manager = checkpointing.make_manager(workdir, config.keep_checkpoints, config.checkpoint_every)
  return checkpointing.restore(manager, gan.create_state(config, setup, gan.make_mesh()))[0]


def test_ewc_with_apa_and_gmm_end_to_end(source_workdir, tmp_path):
  config = _transfer_config('ewc', source_workdir)
  config.transfer.ewc_fisher_batches = 2
  config.augment.apa = True
  config.augment.apa_interval = 1
  config.augment.apa_kimg = 0.001  # p moves by batch / 1 image per adjustment: visible after one step
  config.latent = 'gmm'
  config.gmm.components = 4
  metrics = train.train_and_evaluate(config, str(tmp_path))
  assert jax.device_count() == 8
  for name in ('g_err', 'd_err_fake', 'g_ewc', 'g_gmm_sigma_reg', 'apa_p', 'apa_lambda_r'):
    assert np.isfinite(metrics[name]), name
  assert metrics['g_ewc'] > 0 and metrics['g_gmm_sigma_reg'] > 0
  state = _restore(str(tmp_path), config)
  assert float(state.aux['apa_p']) == metrics['apa_p']  # p is part of the checkpoint
  # By hand: interval 1 adjusts p every step by sign(lambda_r - 0.6) * 8 images / 1 image, clipped to [0, 1], so
  # after the last step p is 1 if its lambda_r exceeded the target and 0 if it fell short.
  assert metrics['apa_lambda_r'] != 0.6
  assert metrics['apa_p'] == (1.0 if metrics['apa_lambda_r'] > 0.6 else 0.0), metrics
  assert 'latent' in state.ema_params


def test_cdc_end_to_end(source_workdir, tmp_path):
  """The target starts as the source G, so the distance-consistency loss is 0 at the first step (as the official
  code, which loads the same weights into both) and positive once G has moved."""
  config = _transfer_config('cdc', source_workdir)
  config.transfer.cdc_anchor_every = 2  # step 0 anchors (image-level logits), step 1 patch-level
  config.num_steps = 1
  with compile_events.count_compiles() as counts:
    first = train.train_and_evaluate(config, str(tmp_path))
  # The state initialised from the source is placed as the step's output: one compilation, not one per call.
  assert counts[(compile_events.COMPILE, 'jit(train_step)')] == 1, dict(counts)
  assert first['g_cdc'] == pytest.approx(0.0, abs=1e-5) and np.isfinite(first['g_err'])  # float rounding only
  config.num_steps = 2
  second = train.train_and_evaluate(config, str(tmp_path))  # resumes at step 1
  assert np.isfinite(second['g_cdc']) and second['g_cdc'] > 1e-4, second  # measured 0.0046; 0.0128 at step 1 with the old EMA source
  state = _restore(str(tmp_path), config)
  assert 'patch_head' in state.d_params


def _adam_counts(opt_state, partition):
  leaves = jax.tree_util.tree_flatten_with_path(jax.device_get(opt_state.inner_states[partition]))[0]
  return {int(v) for path, v in leaves if 'count' in jax.tree_util.keystr(path)}


def test_minegan_stage_one_then_joint(source_workdir, tmp_path):
  """Step 1 is stage 1 (G frozen, only the miner and D learn, G's Adam does not count); step 2 is stage 2 (G moves,
  its Adam state starts fresh: count 1 while the miner's is 2)."""
  config = _transfer_config('minegan', source_workdir)
  config.latent = 'miner'
  config.transfer.minegan_stage1_steps = 1
  config.checkpoint_every = 1
  metrics = train.train_and_evaluate(config, str(tmp_path))
  assert np.isfinite(metrics['g_err'])
  src = _restore(source_workdir, tiny.get_config())
  setup = gan.build_setup(config)
  manager = checkpointing.make_manager(str(tmp_path), config.keep_checkpoints, config.checkpoint_every)
  stage1, _ = checkpointing.restore(manager, gan.create_state(config, setup, gan.make_mesh()), 1)
  stage2, _ = checkpointing.restore(manager, gan.create_state(config, setup, gan.make_mesh()), 2)
  for name, sub in stage1.g_params.items():
    if name != 'miner':
      for a, b in zip(_leaves(sub), _leaves(src.g_params[name])):
        np.testing.assert_array_equal(a, b, err_msg=name)
  assert any(np.abs(x).sum() > 0 for x in _leaves(stage1.g_params['miner']['out']))  # the miner learned
  assert any(not np.array_equal(a, b) for a, b in zip(_leaves(stage1.d_params), _leaves(src.d_params)))
  assert _adam_counts(stage1.g_opt_state, 'generator') == {0} and _adam_counts(stage1.g_opt_state, 'miner') == {1}
  moved = [not np.array_equal(a, b) for name, sub in stage2.g_params.items() if name != 'miner'
           for a, b in zip(_leaves(sub), _leaves(src.g_params[name]))]
  assert any(moved)
  assert _adam_counts(stage2.g_opt_state, 'generator') == {1} and _adam_counts(stage2.g_opt_state, 'miner') == {2}
  # Sampling uses G's EMA with the raw (not averaged) miner, as the official code samples g_ema(miner(z)).
  for a, b in zip(_leaves(stage2.ema_params['miner']), _leaves(stage2.g_params['miner'])):
    np.testing.assert_array_equal(a, b)


def test_transfer_errors_name_the_field(source_workdir, tmp_path):
  config = _transfer_config('cdc', None)
  with pytest.raises(errors.ConfigError, match='config.transfer.source_workdir'):
    config_lib.validate(config)
  config = _transfer_config('ewc', source_workdir)
  config.model.ngf = 8
  with pytest.raises(errors.ConfigError, match=r'config\.model\.ngf=8 differs from the source'):
    train.train_and_evaluate(config, str(tmp_path / 'w'))
  config = _transfer_config('minegan', source_workdir)
  with pytest.raises(errors.ConfigError, match="latent='miner'"):
    config_lib.validate(config)
  config = _transfer_config('cdc', source_workdir)
  config.latent = 'gmm'
  with pytest.raises(errors.ConfigError, match="config.latent='gmm' with config.transfer.method='cdc'"):
    config_lib.validate(config)
  config = _transfer_config('ewc', source_workdir)
  config.model.mask_channels = 1  # a paired target from the image-only source
  with pytest.raises(errors.ConfigError, match=r"method='ewc' with config.model.mask_channels=1 needs a source with"):
    train.train_and_evaluate(config, str(tmp_path / 'paired'))
  config = _transfer_config('dreambooth', source_workdir)
  with pytest.raises(errors.ConfigError, match='config.transfer.method'):
    config_lib.validate(config)
  config = _transfer_config('finetune', str(tmp_path / 'empty'))
  (tmp_path / 'empty').mkdir()
  with pytest.raises(errors.ConfigError, match='config.json not found'):
    train.train_and_evaluate(config, str(tmp_path / 'w2'))


def test_init_from_source_copies_matching_leaves(source_workdir):
  mesh = gan.make_mesh()
  config = _transfer_config('cdc', source_workdir)
  setup = gan.build_setup(config)
  _, src, step = source_lib.load_source(config, mesh)
  assert step == 2
  target = source_lib.init_from_source(gan.create_state(config, setup, mesh), src, setup.g_tx, setup.d_tx)
  for a, b in zip(_leaves(target.g_params), _leaves(src.g_params)):
    np.testing.assert_array_equal(a, b)
  for a, b in zip(_leaves(target.ema_params), _leaves(src.ema_params)):
    np.testing.assert_array_equal(a, b)
  assert 'patch_head' in target.d_params and 'patch_head' not in src.d_params
  assert int(target.step) == 0


def test_paired_target_from_image_only_source(source_workdir):
  """A FLAIR + mask target starts from a FLAIR-only source: contrast slices copied, label channels freshly initialised."""
  mesh = gan.make_mesh()
  config = _transfer_config('finetune', source_workdir)
  config.model.mask_channels = 1
  setup = gan.build_setup(config)
  _, src, _ = source_lib.load_source(config, mesh)
  fresh = gan.create_state(config, setup, mesh)
  target = source_lib.init_from_source(fresh, src, setup.g_tx, setup.d_tx)
  out_t, out_s, out_f = (np.asarray(s.g_params['to_big']['kernel']) for s in (target, src, fresh))
  assert out_t.shape[-1] == 2 and out_s.shape[-1] == 1
  np.testing.assert_array_equal(out_t[..., :1], out_s)
  np.testing.assert_array_equal(out_t[..., 1:], out_f[..., 1:])
  d_in = [k for k in _leaves(target.d_params) if k.ndim == 4 and k.shape[2] == 2]
  assert d_in  # D's input convs see FLAIR + mask
  # A source with other label channels than the target's is refused before anything is restored.
  src_config = workdir_lib.read_config(source_workdir)
  src_config.model.mask_channels = 1
  workdir_lib.write_config(src_config, source_workdir + '_m')
  config.transfer.source_workdir = source_workdir + '_m'
  config.model.mask_channels = 3
  with pytest.raises(source_lib.SourceError, match=r'mask_channels=3 differs from the source .*mask_channels=1'):
    source_lib.load_source(config, mesh)
