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
"""The recipe screen (issue 18): arm configs, equal budgets, the result tables (no training here)."""

import json

import pytest

from configs import recipe as recipe_config
from fsgan_jax import config_lib
from fsgan_jax.experiments import recipe


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
