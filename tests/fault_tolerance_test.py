"""Fault tolerance of the training CLI: preemption (SIGTERM), kills (SIGKILL) and numerical faults.

The CLI runs in subprocesses on the tiny config with ``checkpoint_every=1`` (8 fake CPU devices, the shared
persistent compilation cache of conftest.py); the reference runs in-process with the same config.
"""

import os
import pathlib
import signal
import subprocess
import sys
import time

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest

from configs import tiny
from fsgan_jax import checkpointing, gan, train

REPO = pathlib.Path(__file__).resolve().parents[1]
NUM_STEPS = 8
# The tiny config's data and model: its train step is the one other tests compile (shared persistent cache).
OVERRIDES = {'num_steps': NUM_STEPS, 'checkpoint_every': 1, 'keep_checkpoints': 2, 'log_every': 4,
             'sample_every': 1000}


def _config():
  config = tiny.get_config()
  for k, v in OVERRIDES.items():
    section, _, name = k.rpartition('.')
    (config[section] if section else config)[name] = v
  return config


def _leaves(workdir, config):
  setup = gan.build_setup(config)
  manager = checkpointing.make_manager(workdir, config.keep_checkpoints, config.checkpoint_every)
  state, step = checkpointing.restore(manager, gan.create_state(config, setup, gan.make_mesh()))
  return step, [np.asarray(x) for x in jax.tree_util.tree_leaves(jax.device_get(state))]


def _steps(workdir):
  """Finished checkpoint steps (Orbax renames a step's temporary folder when the save is complete)."""
  d = pathlib.Path(workdir) / 'checkpoints'
  return sorted(int(p.name) for p in d.iterdir() if p.name.isdigit()) if d.is_dir() else []


def _start(workdir):
  env = dict(os.environ, XLA_FLAGS='--xla_force_host_platform_device_count=8', JAX_PLATFORMS='cpu',
             TF_CPP_MIN_LOG_LEVEL='3')
  args = [f'--config.{k}={v}' for k, v in OVERRIDES.items()]
  return subprocess.Popen([sys.executable, '-m', 'fsgan_jax.main', '--config=configs/tiny.py',
                           f'--workdir={workdir}', *args], cwd=REPO, env=env, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True)


def _run_until(workdir, min_step, sig):
  """Starts the CLI, sends ``sig`` once a checkpoint at ``>= min_step`` exists; returns (returncode, out, err)."""
  proc = _start(workdir)
  deadline = time.time() + 240
  while proc.poll() is None and time.time() < deadline:
    if _steps(workdir) and _steps(workdir)[-1] >= min_step:
      proc.send_signal(sig)
      break
    time.sleep(0.02)
  out, err = proc.communicate(timeout=240)
  return proc.returncode, out, err


def test_kill_and_preempt_resume_bit_identical(tmp_path):
  """SIGKILL and SIGTERM at different steps, restarting each time: the final state is bit-identical.

  The last restart is two starts at once on the same workdir (a restart script racing a job that is still
  running): exactly one trains, the other exits 1 with one line naming the holder of the workdir lock and writes
  nothing (no event file of its own). (Each restart is a new process that imports JAX and TensorFlow: two
  interruptions cover both signals.)
  """
  config = _config()
  ref = str(tmp_path / 'ref')
  ref_config = _config()
  ref_config.checkpoint_every = NUM_STEPS  # the same run; only the final state is saved
  train.train_and_evaluate(ref_config, ref)
  work = str(tmp_path / 'run')
  rng = np.random.default_rng(0)
  kills = sorted(rng.choice(np.arange(1, NUM_STEPS - 2), 2, replace=False))
  for i, (at, sig) in enumerate(zip(kills, (signal.SIGKILL, signal.SIGTERM))):
    before = _steps(work)
    at = max(at, before[-1] + 1 if before else 1)  # a new checkpoint: the restarted run is in its training loop
    code, out, err = _run_until(work, at, sig)
    assert 'Traceback' not in err, err[-3000:]
    after = _steps(work)
    assert after and after[-1] >= at, (i, after, err[-2000:])
    if sig == signal.SIGTERM:
      assert code == 0, err[-3000:]
      assert 'preempted: checkpoint saved at step' in out, out
      assert int(out.split('saved at step ')[1].split()[0]) == after[-1]
    else:
      assert code == -signal.SIGKILL
    assert not before or after[-1] > before[-1]
  events = sorted(p.name for p in pathlib.Path(work).glob('events.out.tfevents.*'))
  procs = [_start(work), _start(work)]
  results = [(p, *p.communicate(timeout=300)) for p in procs]
  assert sorted(p.returncode for p in procs) == [0, 1], [r[2][-2000:] for r in results]
  winner = next(p for p in procs if p.returncode == 0)
  refused = next(r for r in results if r[0].returncode == 1)
  assert 'Traceback' not in refused[2], refused[2][-3000:]
  assert refused[2].strip().splitlines()[-1].startswith(f'error: {work} is being trained by pid {winner.pid} on host ')
  new_events = sorted(p.name for p in pathlib.Path(work).glob('events.out.tfevents.*'))
  assert len(new_events) == len(events) + 1 and f'.{winner.pid}.' in (set(new_events) - set(events)).pop()
  assert not (pathlib.Path(work) / 'train.lock').exists()
  ref_step, ref_leaves = _leaves(ref, ref_config)
  step, leaves = _leaves(work, config)
  assert ref_step == step == NUM_STEPS
  assert len(leaves) == len(ref_leaves)
  for a, b in zip(ref_leaves, leaves):
    assert np.array_equal(a, b)


def test_incomplete_checkpoint_is_never_latest(tmp_path):
  """A save killed before Orbax's final rename leaves ``<step>.orbax-checkpoint-tmp``: never listed or restored."""
  manager = checkpointing.make_manager(str(tmp_path), keep=2, save_every=1)
  checkpointing.save(manager, 2, {'x': np.arange(3.0)}, force=True)
  manager.wait_until_finished()
  for name in ('3', '4-123'):  # orbax 0.12 names it '<step>.orbax-checkpoint-tmp'; older ones add a timestamp
    step, _, suffix = name.partition('-')
    partial = tmp_path / 'checkpoints' / f'{step}{ocp.path.atomicity.TMP_DIR_SUFFIX}{"-" + suffix if suffix else ""}'
    partial.mkdir()
    (partial / 'junk').write_text('half a checkpoint')
  manager = checkpointing.make_manager(str(tmp_path), keep=2, save_every=1)
  assert manager.latest_step() == 2 and manager.all_steps() == [2]
  restored, step = checkpointing.restore(manager, {'x': np.zeros(3)})
  assert step == 2 and np.array_equal(restored['x'], np.arange(3.0))


def test_nan_in_parameters_stops_training_and_keeps_last_checkpoint(tmp_path, monkeypatch):
  """NaN in the EMA parameters after step 3 (losses stay finite): found at step 4, the step-4 state is not saved."""
  config = tiny.get_config()
  config.num_steps = 6  # checkpoints at 2 (good), 4 (bad: must not be written)
  make = gan.make_train_step

  def poisoned(*args, **kwargs):
    step_fn = make(*args, **kwargs)

    def wrapped(state, images, lpips_params):
      state, metrics = step_fn(state, images, lpips_params)
      if int(state.step) == 3:
        state = state.replace(ema_params=jax.tree_util.tree_map(lambda x: x * np.nan, state.ema_params))
      return state, metrics
    return wrapped

  monkeypatch.setattr(gan, 'make_train_step', poisoned)
  previous = signal.getsignal(signal.SIGTERM)
  with pytest.raises(FloatingPointError, match=r'non-finite ema_params/\S+ at step 4; .*last checkpoint is kept'):
    train.train_and_evaluate(config, str(tmp_path))
  assert _steps(tmp_path) == [2]
  assert signal.getsignal(signal.SIGTERM) is previous  # the preemption handler was uninstalled


def test_nonfinite_loss_message():
  with pytest.raises(FloatingPointError, match='non-finite g_err at step 7'):
    train._check_finite(7, {'g_err': float('inf'), 'd_err_fake': 1.0})  # pylint: disable=protected-access
