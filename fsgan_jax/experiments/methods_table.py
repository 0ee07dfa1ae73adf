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
r"""Reproduces the few-shot method comparison of RESULTS.md: every method, the same budget, two shot counts.

For each shot count (the bundled 100-shot TCGA-LGG FLAIR set, and its first 10 images — 10 different patients)
and each method (FastGAN from scratch, + APA, + GMM latent, and transfer from a source GAN pretrained on IXI T1:
fine-tune, CDC, EWC, MineGAN), it trains ``configs/<method>.py:<variant>`` in ``OUT/<shots>shot/<method>``, then
evaluates the EMA generator (FID / KID against the training images and the 99 held-out tumor slices of 10 unseen
patients, MS-SSIM diversity, Inception-space memorization ratio) and writes ``OUT/methods.json`` and
``OUT/methods.md``. Resumable: finished training runs and evaluations are reused (each cell's result is a JSON file
written atomically); the source GAN is trained first (``configs/pretrain_source.py``) and shared.

Run (CPU budget, as in RESULTS.md; needs the IXI TFDS dataset, see configs/pretrain_source.py)::

  python -m fsgan_jax.experiments.methods_table --out=results/methods_cpu --variant=cpu \
      --tfds_data_dir=~/tensorflow_datasets
  # --shots=100 / --shots=10 run one half (two processes can share the work); --table_only re-writes the table.
"""

from __future__ import annotations

import importlib.util
import json
import os
import pathlib
import time
from typing import Any, Optional

from absl import app, flags, logging
import jax
import ml_collections

from fsgan_jax import default_config, evaluate, metrics, train

METHODS = ('fastgan', 'apa', 'gmm', 'finetune', 'cdc', 'ewc', 'minegan')
TRANSFER = ('finetune', 'cdc', 'ewc', 'minegan')
LABELS = {'fastgan': 'FastGAN (scratch)', 'apa': 'FastGAN + APA', 'gmm': 'FastGAN + GMM latent',
          'finetune': 'Fine-tune from IXI source', 'cdc': 'CDC', 'ewc': 'EWC', 'minegan': 'MineGAN'}
CONFIG_FILE = {'fastgan': 'fastgan.py'}
EVAL_METRICS = ('fid', 'kid', 'diversity', 'memorization')

FLAGS = flags.FLAGS


def define_flags() -> None:
  """The command-line flags (defined only when run as a program, so that importing this module defines none)."""
  flags.DEFINE_string('out', 'results/methods_cpu', 'Output folder (one workdir per cell + the table).')
  flags.DEFINE_string('variant', 'cpu', "Config variant passed to every config ('cpu' = the small CPU budget; '' = "
                      'full).')
  flags.DEFINE_string('configs_dir', 'configs', 'Folder with the method configs.')
  flags.DEFINE_string('tfds_data_dir', None, 'TFDS data_dir holding the IXI dataset for the source GAN.')
  flags.DEFINE_multi_integer('shots', [100, 10], 'Shot counts (0 or 100 = the whole bundled set).')
  flags.DEFINE_multi_string('methods', list(METHODS), 'Methods to run.')
  flags.DEFINE_integer('num_samples', 0, 'Generated images per evaluation (0 = the config eval.num_samples).')
  flags.DEFINE_bool('table_only', False, 'Only collect finished cells and write the table.')

def load_config(configs_dir: str, method: str, variant: str) -> ml_collections.ConfigDict:
  """``configs/<method>.py``'s ``get_config(variant)`` (``fastgan.py`` takes no variant: the CPU budget is applied)."""
  name = CONFIG_FILE.get(method, f'{method}.py')
  path = os.path.join(configs_dir, name)
  if not os.path.exists(path):
    raise FileNotFoundError(f'{path} not found (--configs_dir={configs_dir!r})')
  spec = importlib.util.spec_from_file_location(f'_fsgan_config_{method}', path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  if method == 'fastgan':
    config = module.get_config()
    return default_config.shrink_for_cpu(config) if variant == 'cpu' else config
  return module.get_config(variant)


def _write_json(path: str, obj: Any) -> None:
  tmp = path + '.tmp'
  with open(tmp, 'w') as f:
    json.dump(obj, f, indent=2)
  os.replace(tmp, path)


def _read_json(path: str) -> Optional[dict]:
  if not os.path.exists(path):
    return None
  with open(path) as f:
    return json.load(f)


class Interrupted(RuntimeError):
  """Training stopped early (SIGTERM / preemption): the cell is not finished; rerun to resume."""


def train_cell(config: ml_collections.ConfigDict, workdir: str) -> float:
  """Trains (or resumes) ``workdir`` to ``config.num_steps``; returns the wall seconds of all invocations.

  Seconds spent by earlier, interrupted invocations are kept in ``WORKDIR/train_seconds.json`` and added.
  """
  os.makedirs(workdir, exist_ok=True)
  spent_path = os.path.join(workdir, 'train_seconds.json')
  spent = (_read_json(spent_path) or {}).get('seconds', 0.0)
  t0 = time.perf_counter()
  try:
    last = train.train_and_evaluate(config, workdir)
  finally:
    spent += time.perf_counter() - t0
    _write_json(spent_path, {'seconds': spent})
  if 'preempted_at_step' in last:
    raise Interrupted(f'{workdir}: training was interrupted at step {int(last["preempted_at_step"])}; run the '
                      'same command again to resume')
  return spent


def run_cell(method: str, shots: int, out: str, source: Optional[str]) -> dict[str, Any]:
  """Trains and evaluates one (method, shots) cell; reuses whatever is finished."""
  workdir = os.path.join(out, f'{shots}shot', method)
  result_path = os.path.join(workdir, 'cell.json')
  cell = _read_json(result_path) or {}
  config = load_config(FLAGS.configs_dir, method, FLAGS.variant)
  config.data.limit = 0 if shots >= 100 else shots
  if method in TRANSFER:
    config.transfer.source_workdir = source
  if 'eval' not in cell:
    if 'train_seconds' not in cell:
      logging.info('training %s (%d-shot) in %s', method, shots, workdir)
      seconds = train_cell(config, workdir)
      cell.update(method=method, shots=shots, num_steps=config.num_steps, train_seconds=seconds,
                  train_seconds_per_step=seconds / config.num_steps, device=jax.devices()[0].device_kind,
                  num_devices=jax.device_count())
      os.makedirs(workdir, exist_ok=True)
      _write_json(result_path, cell)
    eval_config = ml_collections.ConfigDict(config.eval.to_dict())
    eval_config.metrics = EVAL_METRICS
    t0 = time.perf_counter()
    results, _ = evaluate.evaluate_workdir(workdir, num=FLAGS.num_samples or None, eval_config=eval_config)
    cell['eval'] = metrics.flat_scalars(results)
    cell['eval_seconds'] = time.perf_counter() - t0
    cell['eval_num_samples'] = FLAGS.num_samples or config.eval.num_samples
    cell['eval_resize'] = config.eval.resize
    _write_json(result_path, cell)
  return cell


def train_source(out: str) -> str:
  """The shared source GAN (``configs/pretrain_source.py``) in ``OUT/source``."""
  workdir = os.path.join(out, 'source')
  config = load_config(FLAGS.configs_dir, 'pretrain_source', FLAGS.variant)
  if FLAGS.tfds_data_dir:
    config.data.tfds_data_dir = os.path.expanduser(FLAGS.tfds_data_dir)
  info_path = os.path.join(workdir, 'source.json')
  if _read_json(info_path) is None:
    seconds = train_cell(config, workdir)
    _write_json(info_path, {'train_seconds': seconds, 'num_steps': config.num_steps,
                            'data': f'{config.data.tfds_name}/{config.data.tfds_config}:{config.data.tfds_split}',
                            'device': jax.devices()[0].device_kind})
  return workdir


def _fmt(v: Optional[float], digits: int = 1) -> str:
  return '—' if v is None else f'{v:.{digits}f}'


def write_table(out: str) -> str:
  """Collects every finished cell into ``OUT/methods.json`` and a markdown table ``OUT/methods.md``."""
  cells = []
  for path in sorted(pathlib.Path(out).glob('*shot/*/cell.json')):
    cell = _read_json(str(path))
    if cell and 'eval' in cell:
      cells.append(cell)
  source = _read_json(os.path.join(out, 'source', 'source.json'))
  _write_json(os.path.join(out, 'methods.json'), {'cells': cells, 'source': source})
  lines = ['| shots | method | FID held-out ↓ | FID train ↓ | KID held-out ↓ | MS-SSIM gen. (real) | '
           'memorization ratio (median) | train time | device |',
           '|---:|---|---:|---:|---:|---|---:|---:|---|']
  order = {m: i for i, m in enumerate(METHODS)}
  for c in sorted(cells, key=lambda c: (-c['shots'], order.get(c['method'], 99))):
    e = c['eval']
    lines.append(
        f"| {c['shots']} | {LABELS.get(c['method'], c['method'])} | {_fmt(e.get('fid_heldout'))} | "
        f"{_fmt(e.get('fid_train'))} | {_fmt(e.get('kid_heldout'), 3)} | {_fmt(e.get('ms_ssim_generated'), 3)} "
        f"({_fmt(e.get('ms_ssim_real_train'), 3)}) | {_fmt(e.get('memorization_inception_ratio_median'), 2)} | "
        f"{c['train_seconds'] / 60:.1f} min ({c['num_steps']} steps) | {c['device']} x{c['num_devices']} |")
  table = '\n'.join(lines) + '\n'
  with open(os.path.join(out, 'methods.md'), 'w') as f:
    f.write(table)
  return table


def main(argv) -> None:
  del argv
  jax.config.update('jax_compilation_cache_dir', os.path.join(FLAGS.out, '.xla_cache'))
  jax.config.update('jax_persistent_cache_min_compile_time_secs', 1.0)
  os.makedirs(FLAGS.out, exist_ok=True)
  if not FLAGS.table_only:
    bad = [m for m in FLAGS.methods if m not in METHODS]
    if bad:
      raise app.UsageError(f'--methods: unknown {bad}; choose from {list(METHODS)}')
    source = train_source(FLAGS.out) if any(m in TRANSFER for m in FLAGS.methods) else None
    for shots in FLAGS.shots:
      for method in FLAGS.methods:
        run_cell(method, shots, FLAGS.out, source)
  print(write_table(FLAGS.out))


if __name__ == '__main__':
  define_flags()
  app.run(main)
