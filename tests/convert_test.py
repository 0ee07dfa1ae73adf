"""Conversion of official FastGAN checkpoints into a workdir that samples and resumes."""

import os

import numpy as np
import pytest

from fsgan_jax import convert, sample, workdir as workdir_lib

CFG = 'im256_ngf16_ndf16'


def _official_ckpt(shared_data):
  g = dict(np.load(shared_data / 'fastgan_golden' / f'{CFG}_G_params.npz'))
  d = dict(np.load(shared_data / 'fastgan_golden' / f'{CFG}_D_params.npz'))
  # Official g_ema: the G parameters (not buffers) in registration order; make it differ from g.
  keys = [k for k in g if not k.endswith(('weight_u', 'weight_v', 'running_mean', 'running_var',
                                          'num_batches_tracked'))]
  g_ema = [g[k] * 0.5 for k in keys]
  return {'g': {'module.' + k: v for k, v in g.items()}, 'd': d, 'g_ema': g_ema}, g


def test_checkpoint_to_workdir_samples(shared_data, tmp_path):
  ckpt, g = _official_ckpt(shared_data)
  wd = str(tmp_path / 'conv')
  step = convert.checkpoint_to_workdir(ckpt, wd, im_size=256, ngf=16, ndf=16, step=1234, name='golden')
  assert step == 1234
  config = workdir_lib.read_config(wd)
  assert config.model.resolution == 256 and config.model.ngf == 16
  from tests.train_test import _restore  # pylint: disable=g-import-not-at-top
  state, restored = _restore(wd, config)
  assert restored == 1234
  np.testing.assert_array_equal(np.asarray(state.g_params['to_big']['kernel']),
                                g['to_big.weight_orig'].transpose(2, 3, 1, 0))
  np.testing.assert_array_equal(np.asarray(state.ema_params['to_big']['kernel']),
                                0.5 * g['to_big.weight_orig'].transpose(2, 3, 1, 0))
  out = sample.sample_from_workdir(wd, num=2, seed=0, out=str(tmp_path / 'samples'))
  assert sorted(os.listdir(out)) == ['grid.png', 'img_00000.png', 'img_00001.png']
  with pytest.raises(FileExistsError):
    convert.checkpoint_to_workdir(ckpt, wd, im_size=256, ngf=16, ndf=16)


def test_wrong_size_names_keys(shared_data, tmp_path):
  ckpt, _ = _official_ckpt(shared_data)
  with pytest.raises(convert.ConversionError, match='shape'):
    convert.checkpoint_to_workdir(ckpt, str(tmp_path / 'w'), im_size=256, ngf=32, ndf=16)
  del ckpt['d']['rf_small.weight_orig']
  with pytest.raises(convert.ConversionError, match="missing key 'rf_small.weight_orig'"):
    convert.checkpoint_to_workdir(ckpt, str(tmp_path / 'w2'), im_size=256, ngf=16, ndf=16)
