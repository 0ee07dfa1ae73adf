"""experiments/methods_table: every method config loads at both budgets, and the table is written from cells."""

import json

import pytest

from fsgan_jax import config_lib
from fsgan_jax.experiments import methods_table


@pytest.mark.parametrize('variant', ['cpu', ''])
def test_every_method_config_loads(variant, tmp_path):
  for method in methods_table.METHODS:
    config = methods_table.load_config('configs', method, variant)
    if method in methods_table.TRANSFER:
      assert config.transfer.method == method
      config.transfer.source_workdir = str(tmp_path)
    config_lib.validate(config, 1)
    assert (config.num_steps == 200) == (variant == 'cpu'), method
  with pytest.raises(FileNotFoundError, match='nosuch.py not found'):
    methods_table.load_config('configs', 'nosuch', 'cpu')


def _cell(path, method, shots, fid, finished=True):
  path.mkdir(parents=True)
  cell = {'method': method, 'shots': shots, 'num_steps': 200, 'train_seconds': 90.0, 'device': 'cpu',
          'num_devices': 1}
  if finished:
    cell['eval'] = {'fid_heldout': fid, 'fid_train': fid - 10, 'kid_heldout': fid / 1000,
                    'ms_ssim_generated': 0.4, 'ms_ssim_real_train': 0.3, 'memorization_inception_ratio_median': 1.2}
  (path / 'cell.json').write_text(json.dumps(cell))


def test_table_from_cells(tmp_path):
  _cell(tmp_path / '10shot' / 'cdc', 'cdc', 10, 150.0)
  _cell(tmp_path / '100shot' / 'cdc', 'cdc', 100, 120.0)
  _cell(tmp_path / '100shot' / 'fastgan', 'fastgan', 100, 130.25)
  _cell(tmp_path / '100shot' / 'ewc', 'ewc', 100, 0.0, finished=False)  # still training: not in the table
  table = methods_table.write_table(str(tmp_path)).splitlines()
  assert table[2:] == [
      '| 100 | FastGAN (scratch) | 130.2 | 120.2 | 0.130 | 0.400 (0.300) | 1.20 | 1.5 min (200 steps) | cpu x1 |',
      '| 100 | CDC | 120.0 | 110.0 | 0.120 | 0.400 (0.300) | 1.20 | 1.5 min (200 steps) | cpu x1 |',
      '| 10 | CDC | 150.0 | 140.0 | 0.150 | 0.400 (0.300) | 1.20 | 1.5 min (200 steps) | cpu x1 |']
  assert (tmp_path / 'methods.md').read_text().splitlines() == table
  saved = json.loads((tmp_path / 'methods.json').read_text())
  assert [(c['shots'], c['method']) for c in saved['cells']] == [(100, 'cdc'), (100, 'fastgan'), (10, 'cdc')] and saved['source'] is None
