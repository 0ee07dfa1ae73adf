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
"""The recipe screen and the long run's curve (issue 18): arm configs, equal budgets, tables, the curve (no training)."""

import json

import pytest

from configs import recipe as recipe_config
from fsgan_jax import config_lib
from fsgan_jax import errors, report
from fsgan_jax.experiments import quality_curve, recipe


@pytest.mark.parametrize('arm', sorted(recipe_config.ARMS) + ['w32+ema999', 'base+cutout+b16'])
def test_every_arm_is_a_valid_config(arm):
  config = recipe.arm_config(arm)
  config_lib.validate(config, 8)
  assert config.model.resolution == 128 and config.eval.num_samples == 1000


def test_arm_settings_and_unknown_arm():
  assert recipe.arm_config('w32').model.ngf == 32 and recipe.arm_config('w32').model.decoder_width == 16
  assert recipe.arm_config('w32+ema999').ema_decay == 0.999 and recipe.arm_config('base').ema_decay == 0.99
  assert recipe.arm_config('base+cutout').diffaug_policy == 'color,translation,cutout'
  with pytest.raises(ValueError, match="unknown arm 'nope'"):
    recipe.arm_config('w32+nope')


def test_compute_neutral_arms_share_the_step_time():
  assert recipe.timing_arm('w32+ema999') == 'w32'
  assert recipe.timing_arm('ema999') == 'base'
  assert recipe.timing_arm('base+lr1e4+cutout') == 'base+cutout'


def test_tables_rank_by_heldout_kid(tmp_path):
  times = {'base': {'step_ms': 500.0}, 'w32': {'step_ms': 1500.0}}
  rows = [{'arm': 'base', 'seed': 0, 'num_steps': 1800, 'kid_heldout': 0.2, 'fid_heldout': 190.0, 'kid_train': 0.19,
           'fid_train': 180.0, 'memorization_inception_ratio_median': 1.5},
          {'arm': 'w32+ema999', 'seed': 0, 'num_steps': 600, 'kid_heldout': 0.1, 'fid_heldout': 150.0,
           'kid_train': 0.09, 'fid_train': 140.0}]
  recipe.write_tables(str(tmp_path / 'r'), rows, times, 15.0)
  table = (tmp_path / 'r.md').read_text().splitlines()
  assert table[0].startswith('# Recipe screen: 15 CPU-minutes per arm')
  assert table[4].startswith('| w32+ema999 | 0 | 1500 | 600 | 0.1000 | 150.0 | 0.0900 | 140.0 | — |')
  assert table[5].startswith('| base | 0 | 500 | 1800 | 0.2000 | 190.0 |')
  assert json.loads((tmp_path / 'r.json').read_text())['rows'] == rows


def test_quality_curve_from_history(tmp_path):
  workdir = str(tmp_path / 'run')
  report.append_history(workdir, 1000, {'fid_train': 200.0, 'kid_train': 0.2, 'fid_heldout': 210.0,
                                        'kid_heldout': 0.21, 'ms_ssim_generated': 0.3}, kind='train')
  report.append_history(workdir, 1000, {'fid_train': 90.0}, kind='full_2000')  # a --mode=eval row: not the curve
  report.append_history(workdir, 2000, {'fid_train': 150.0, 'kid_train': 0.12, 'fid_heldout': 160.0,
                                        'kid_heldout': 0.13}, kind='train')
  out = str(tmp_path / 'results' / 'curve')
  result = quality_curve.write(workdir, 600.0, out)
  assert result['rows'] == [
      {'step': 1000, 'cpu_min': 10.0, 'fid_train': 200.0, 'kid_train': 0.2, 'fid_heldout': 210.0, 'kid_heldout': 0.21},
      {'step': 2000, 'cpu_min': 20.0, 'fid_train': 150.0, 'kid_train': 0.12, 'fid_heldout': 160.0,
       'kid_heldout': 0.13}]
  assert json.loads((tmp_path / 'results' / 'curve.json').read_text()) == result
  assert (tmp_path / 'results' / 'curve.png').read_bytes()[:4] == b'\x89PNG'
  with pytest.raises(errors.EvalError, match='no periodic evaluations'):
    quality_curve.write(str(tmp_path / 'empty'), 600.0, out)
  with pytest.raises(errors.ConfigError, match='--step_ms=0'):
    quality_curve.curve_rows([], 0)
