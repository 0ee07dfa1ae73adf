"""Reliability around a training process: the workdir lock, full disks, damaged checkpoints, input warnings.

Lock and disk-full tests run real subprocesses (the CLI, or ``disk_full_driver.py`` in its own mount namespace
with a small tmpfs); the others run the library in-process on the tiny config. Two concurrent CLI starts on one
workdir are tested in ``fault_tolerance_test.py`` (its last restart), next to the other restarts.
"""

import errno
import json
import logging
import os
import pathlib
import shutil
import signal
import subprocess
import sys

import jax
import numpy as np
import pytest
from PIL import Image

from configs import tiny
from fsgan_jax import checkpointing, errors, gan, input_pipeline, lock, main, sample, train

REPO = pathlib.Path(__file__).resolve().parents[1]
ENV = dict(os.environ, XLA_FLAGS='--xla_force_host_platform_device_count=8', JAX_PLATFORMS='cpu',
           TF_CPP_MIN_LOG_LEVEL='3')


def _leaves(workdir, config):
  setup = gan.build_setup(config)
  manager = checkpointing.make_manager(str(workdir), config.keep_checkpoints, config.checkpoint_every)
  state, step = checkpointing.restore(manager, gan.create_state(config, setup, gan.make_mesh()))
  return step, [np.asarray(x) for x in jax.tree_util.tree_leaves(jax.device_get(state))]


def test_lock_refuses_a_second_holder_and_names_the_first(tmp_path):
  first = lock.WorkdirLock(str(tmp_path / 'wd'))
  first.acquire()
  info = json.loads((tmp_path / 'wd' / lock.LOCK_NAME).read_text())
  assert info['pid'] == os.getpid()
  assert lock.holder(str(tmp_path / 'wd')).startswith(f'pid {os.getpid()} on host ')
  with pytest.raises(errors.WorkdirError, match=rf'wd is being trained by pid {os.getpid()} on host \S+, started '):
    lock.WorkdirLock(str(tmp_path / 'wd')).acquire()
  first.release()
  assert not (tmp_path / 'wd' / lock.LOCK_NAME).exists() and lock.holder(str(tmp_path / 'wd')) is None
  with lock.WorkdirLock(str(tmp_path / 'wd')):  # free again
    pass


def test_lock_of_a_killed_holder_does_not_block(tmp_path):
  """SIGKILL leaves the lock file behind, but the kernel lock died with its process."""
  wd = tmp_path / 'wd'
  code = (f'import sys, time; sys.path.insert(0, {str(REPO)!r}); from fsgan_jax import lock; '
          f'lock.WorkdirLock({str(wd)!r}).acquire(); print("locked", flush=True); time.sleep(600)')
  proc = subprocess.Popen([sys.executable, '-c', code], stdout=subprocess.PIPE, text=True, env=ENV)
  assert proc.stdout.readline().strip() == 'locked'
  assert lock.holder(str(wd)) == (f'pid {proc.pid} on host ' + json.loads((wd / lock.LOCK_NAME).read_text())['host']
                                  + ', started ' + json.loads((wd / lock.LOCK_NAME).read_text())['started'])
  proc.send_signal(signal.SIGKILL)
  proc.wait()
  assert (wd / lock.LOCK_NAME).exists() and lock.holder(str(wd)) is None
  with lock.WorkdirLock(str(wd)):
    assert json.loads((wd / lock.LOCK_NAME).read_text())['pid'] == os.getpid()


def test_partial_saves_are_removed_at_the_next_start(tmp_path, caplog):
  partial = tmp_path / 'checkpoints' / f'6{checkpointing.TMP_SUFFIX}'
  (partial / 'default').mkdir(parents=True)
  (partial / 'default' / 'junk').write_bytes(b'x' * 100)
  (tmp_path / 'checkpoints' / '4').mkdir()
  with caplog.at_level(logging.WARNING):
    removed = checkpointing.remove_partial_saves(str(tmp_path))
  assert removed == [str(partial)] and not partial.exists() and (tmp_path / 'checkpoints' / '4').is_dir()
  assert 'removed 1 incomplete checkpoint save(s)' in caplog.text


def _largest_data_file(workdir: pathlib.Path, step: int) -> pathlib.Path:
  data = sorted((workdir / 'checkpoints' / str(step) / 'default' / 'd').iterdir(), key=lambda p: p.stat().st_size)
  return data[-1]


def test_damaged_checkpoint_is_refused_and_an_older_one_resumes(tmp_path, caplog):
  """A truncated or deleted file of the latest checkpoint: one line naming step and file, for training, sampling
  and the command line; ``restore_step`` resumes from the older one (the damaged one is set aside, not deleted)."""
  config = tiny.get_config()  # checkpoints at steps 2 and 4
  wd = tmp_path / 'wd'
  train.train_and_evaluate(config, str(wd))
  target = _largest_data_file(wd, 4)
  original = target.read_bytes()
  config.num_steps = 6
  with open(target, 'r+b') as f:
    f.truncate(len(original) // 2)
  with pytest.raises(errors.WorkdirError) as e:
    train.train_and_evaluate(config, str(wd))
  assert str(e.value) == (f'checkpoint 4 in {wd}/checkpoints is damaged ({target}: truncated); choose an older '
                          'complete checkpoint with --config.restore_step=N (available: [2]); nothing was deleted')
  # The command line says it in one line (no tracebacks from Orbax's reader threads).
  proc = subprocess.run([sys.executable, '-m', 'fsgan_jax.main', '--mode=sample', f'--workdir={wd}',
                         f'--out={tmp_path / "cli"}'], cwd=REPO, env=ENV, capture_output=True, text=True,
                        timeout=300, check=False)
  assert proc.returncode == 1 and 'Traceback' not in proc.stderr and 'Event loop' not in proc.stderr, proc.stderr
  assert proc.stderr.strip().splitlines()[-1] == (
      f'error: checkpoint 4 in {wd}/checkpoints is damaged ({target}: truncated); choose an older complete '
      'checkpoint with --step=N (available: [2]); nothing was deleted')
  target.unlink()
  with pytest.raises(errors.WorkdirError, match=rf'checkpoint 4 .* damaged \({target}: missing\); .*--step=N'):
    sample.sample_from_workdir(str(wd), 4, 0, str(tmp_path / 'samples'))
  config.restore_step = 2
  train.train_and_evaluate(config, str(wd))
  assert checkpointing.complete_steps(str(wd)) == [4, 6]
  aside = list((wd / checkpointing.SET_ASIDE_DIR).iterdir())
  assert len(aside) == 1 and (aside[0] / '4').is_dir()  # the damaged checkpoint, kept
  with lock.WorkdirLock(str(wd)), caplog.at_level(logging.WARNING):  # sampling while it trains: works, says so
    sample.sample_from_workdir(str(wd), 2, 0, str(tmp_path / 'samples'))
  assert f'{wd} is being trained by pid {os.getpid()} on host ' in caplog.text
  assert 'read its complete checkpoint of step 6' in caplog.text


def _image(path: pathlib.Path, size: tuple[int, int], mode: str) -> None:
  path.parent.mkdir(parents=True, exist_ok=True)
  rng = np.random.default_rng(0)
  shape = (size[1], size[0]) + ((3,) if mode == 'RGB' else ())
  Image.fromarray(rng.integers(0, 255, shape, dtype=np.uint8), mode).save(path)


def test_input_warnings_and_strict(tmp_path, caplog):
  _image(tmp_path / 'a' / '1.png', (64, 80), 'L')
  _image(tmp_path / 'a' / '2.png', (128, 128), 'RGB')
  _image(tmp_path / 'a' / '3.png', (128, 128), 'L')
  with caplog.at_level(logging.WARNING):
    x = input_pipeline.load_images(str(tmp_path / 'a'), 128, 1)
  assert x.shape == (3, 128, 128, 1)
  lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith('data: ')]
  assert lines == [
      f"data: 1 of 3 images are smaller than model.resolution=128 (upscaled), e.g. '{tmp_path}/a/1.png' (64x80 L); "
      'set data.strict=True to refuse such images',
      f"data: 1 of 3 images are not square (stretched to 128x128), e.g. '{tmp_path}/a/1.png' (64x80 L); "
      'set data.strict=True to refuse such images',
      f"data: 1 of 3 images are converted from RGB to L (data.channels=1), e.g. '{tmp_path}/a/2.png' (128x128 RGB); "
      'set data.strict=True to refuse such images']
  with pytest.raises(errors.DataError, match=r'^data.strict=True: 1 of 3 images are smaller than model.resolution'):
    input_pipeline.load_images(str(tmp_path / 'a'), 128, 1, strict=True)
  caplog.clear()
  with caplog.at_level(logging.WARNING):  # the bundled set: square, gray, 256 px: nothing to say
    input_pipeline.load_images(None, 128, 1, limit=4, strict=True)
  assert not [r for r in caplog.records if r.getMessage().startswith('data: ')]


def test_storage_and_memory_errors_are_recognised():
  assert errors.storage_full(OSError(errno.ENOSPC, 'No space left on device', '/w/x')) == (
      '/w/x', 'No space left on device')
  assert errors.storage_full(OSError(errno.ENOENT, 'No such file')) is None
  tensorstore = ValueError('RESOURCE_EXHAUSTED: Error writing local file "/w/c/_sharding": Failed writing: '
                           '"/w/c/_sharding.__lock": Failed to write 194133 bytes to file 12: No space left on device '
                           "[os_error_code='28']")
  assert errors.storage_full(tensorstore) == ('/w/c/_sharding.__lock', os.strerror(errno.ENOSPC))
  assert errors.storage_full(ValueError('RESOURCE_EXHAUSTED: something else')) is None
  oom = errors.out_of_memory(RuntimeError('RESOURCE_EXHAUSTED: Out of memory while trying to allocate 1024 bytes.\n'
                                          'BufferAssignment OOM Debugging.\n...'))
  assert str(oom) == ('out of accelerator memory (RESOURCE_EXHAUSTED: Out of memory while trying to allocate 1024 '
                      "bytes.); use a smaller --config.batch_size or --config.model.dtype='bfloat16'")
  assert errors.out_of_memory(RuntimeError('INTERNAL: something')) is None
  message = train._storage_message('/nowhere', ('/nowhere/samples/step_0000004.png', 'No space left on device'), 4)  # pylint: disable=protected-access
  assert message == ('could not write /nowhere/samples/step_0000004.png at step 4 (No space left on device); no '
                     'checkpoint was completed; free space and run the same command to resume')


def _unshare_works() -> bool:
  if shutil.which('unshare') is None:
    return False
  probe = subprocess.run(['unshare', '--user', '--map-root-user', '--mount', 'true'], capture_output=True,
                         check=False)
  return probe.returncode == 0


@pytest.mark.skipif(not _unshare_works(), reason='needs unprivileged user + mount namespaces (unshare) for a tmpfs')
def test_disk_full_gives_one_line_and_resumes_bit_identical(tmp_path):
  """The disk fills up at a random save: one line naming the last complete checkpoint, which restores; after
  freeing space the same command resumes to the uninterrupted run's final state (tests/disk_full_driver.py; run it
  with --trials=10 --cli for the full study, the command line included)."""
  out = tmp_path / 'trials.json'
  proc = subprocess.run(['unshare', '--user', '--map-root-user', '--mount', sys.executable,
                         str(REPO / 'tests' / 'disk_full_driver.py'), '--trials=1', '--seed=1',
                         f'--out={out}'], cwd=REPO, env=ENV, capture_output=True, text=True, timeout=900, check=False)
  assert proc.returncode == 0, proc.stderr[-3000:]
  records = json.loads(out.read_text())
  assert len(records) == 1
  for r in records:
    assert r['error'] and not r['error'].startswith('UNEXPECTED'), r
    assert '\n' not in r['error'] and '(No space left on device)' in r['error'], r
    steps = r['complete_steps']
    assert (f'the last complete checkpoint is step {steps[-1]};' if steps else 'no checkpoint was completed') in (
        r['error']), r
    assert r.get('restored_step') == (steps[-1] if steps else None)
    assert r['partial_after_resume'] == [] and r['final_step'] == 6 and r['identical'], r


def test_command_line_hides_tracebacks_of_reported_errors():
  """What Orbax and asyncio log from their threads for a full disk or a damaged checkpoint is not shown by main.py
  (the error is printed once, in one line); other errors keep their tracebacks."""
  def record(exc, path='/site-packages/asyncio/base_events.py'):
    return logging.LogRecord('x', logging.ERROR, path, 1, 'Task exception was never retrieved', None,
                             (type(exc), exc, None))
  full = ValueError('RESOURCE_EXHAUSTED: Error writing local file "/w/c/x": Failed writing: "/w/c/x": Failed to '
                    "write 3 bytes to file 6: No space left on device [os_error_code='28']")
  damaged = ValueError('NOT_FOUND: Error opening "zarr" driver: Error reading Byte range [0, 920) of local file '
                       '"/w/checkpoints/4/default/d/abc"')
  assert not main._record_shown(record(full))  # pylint: disable=protected-access
  assert not main._record_shown(record(damaged))  # pylint: disable=protected-access
  assert not main._record_shown(record(OSError(errno.ENOSPC, 'No space left on device')))  # pylint: disable=protected-access
  assert main._record_shown(record(ValueError('something else')))  # pylint: disable=protected-access
  info = logging.LogRecord('x', logging.INFO, '/site-packages/orbax/checkpoint/x.py', 1, 'saving', None, None)
  assert not main._record_shown(info)  # pylint: disable=protected-access
