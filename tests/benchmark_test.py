"""Smoke run of the throughput benchmark (tiny sizes; no assertions on speed)."""

import json
import os
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_train_throughput_quick(tmp_path):
  out = tmp_path / 'bench.json'
  env = dict(os.environ, XLA_FLAGS='--xla_force_host_platform_device_count=8', TF_CPP_MIN_LOG_LEVEL='3')
  proc = subprocess.run([sys.executable, 'benchmarks/train_throughput.py', '--quick', f'--json={out}'], cwd=REPO,
                        env=env, capture_output=True, text=True, timeout=600)
  assert proc.returncode == 0, proc.stderr[-2000:]
  result = json.loads(out.read_text())
  assert result['device_count'] == 8 and result['batch'] == 8
  for key in ('compile_s', 'step_ms_median', 'img_per_s'):
    assert result[key] > 0, key


def test_input_pipeline_quick(tmp_path):
  out = tmp_path / 'input.json'
  proc = subprocess.run([sys.executable, 'benchmarks/input_pipeline.py', '--quick', f'--json={out}'], cwd=REPO,
                        env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL='3'), capture_output=True, text=True, timeout=300)
  assert proc.returncode == 0, proc.stderr[-2000:]
  result = json.loads(out.read_text())
  assert result['batch'] == 8 and result['examples'] == 12
  for key in ('on_device_batches_per_s', 'streaming_batches_per_s', 'ratio_on_device_over_streaming'):
    assert result[key] > 0, key


def test_inception_throughput_quick(tmp_path):
  """JAX side only (torch is not a dependency); random-init weights where the converted ones are absent."""
  out = tmp_path / 'inception.json'
  proc = subprocess.run([sys.executable, 'benchmarks/inception_throughput.py', '--quick', '--skip_torch',
                         f'--json={out}'], cwd=REPO, env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL='3'),
                        capture_output=True, text=True, timeout=300)
  assert proc.returncode == 0, proc.stderr[-2000:]
  result = json.loads(out.read_text())
  assert result['torch'] is None and result['weights'] in ('converted', 'random-init')
  (row,) = result['results']
  assert row['batch'] == 8 and len(row['jax_step_ms_all']) == 1
  for key in ('jax_compile_s', 'jax_step_ms_median', 'jax_img_per_s'):
    assert row[key] > 0, key
