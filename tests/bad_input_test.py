"""Bad input and what you get: one row per input of README.md's table of the same name.

Every row checks the one-line error text and that the workdir (config.json, checkpoints, samples) is unchanged:
file hashes before == after, no file added. Most rows call the library directly (fails before anything compiles);
a few run the CLIs (main.py in a subprocess: no 'Traceback' on stderr; the fid/build CLIs through their main()).
"""

import errno
import hashlib
import os
import pathlib
import re
import socket
import subprocess
import sys

import numpy as np
from PIL import Image
import pytest

from configs import tiny
from fsgan_jax import errors, lock, sample, train, workdir as workdir_lib
from fsgan_jax.datasets import build
from fsgan_jax.evaluators import fid

REPO = pathlib.Path(__file__).resolve().parents[1]

# (test id, input, how it is given, expected error text). Kinds: 'config' = train_and_evaluate(tiny config with
# these overrides, workdir) on an existing workdir; 'sample' = sample_from_workdir(workdir, **kw); 'main' = the
# training CLI in a subprocess; 'fid' / 'build' = those CLIs' main(argv) (stderr).
ROWS = [
    ('resolution', 'config.model.resolution=300', ('config', {'model.resolution': 300}),
     'config.model.resolution=300 is not supported; choose one of (128, 256, 512, 1024)'),
    ('ngf_zero', 'config.model.ngf=0', ('config', {'model.ngf': 0}),
     'config.model.ngf=0 is too small for resolution 128'),
    ('nz_zero', 'config.model.nz=0', ('config', {'model.nz': 0}), 'config.model.nz=0 must be positive'),
    ('decoder_width', 'config.model.decoder_width=1', ('config', {'model.decoder_width': 1}),
     'config.model.decoder_width=1 must be >= 2'),
    ('dtype', "config.model.dtype='float16'", ('config', {'model.dtype': 'float16'}),
     "config.model.dtype='float16'; choose one of ['bfloat16', 'float32']"),
    ('channels', 'config.data.channels=2', ('config', {'data.channels': 2}), 'config.data.channels=2 must be 1 or 3'),
    ('batch_not_multiple', 'config.batch_size=12 on 8 devices', ('config', {'batch_size': 12}),
     'config.batch_size=12 must be a positive multiple of the number of devices (8)'),
    ('num_steps_zero', 'config.num_steps=0', ('config', {'num_steps': 0}), 'config.num_steps=0 must be >= 1'),
    ('checkpoint_every_zero', 'config.checkpoint_every=0', ('config', {'checkpoint_every': 0}),
     'config.checkpoint_every=0 must be >= 1'),
    ('lr_negative', 'config.lr=-0.001', ('config', {'lr': -0.001}),
     'config.lr=-0.001 must be a positive finite number'),
    ('beta1', 'config.beta1=1.0', ('config', {'beta1': 1.0}), 'config.beta1=1.0 must be in [0, 1)'),
    ('ema_decay', 'config.ema_decay=1.0', ('config', {'ema_decay': 1.0}), 'config.ema_decay=1.0 must be in [0, 1)'),
    ('diffaug_policy', "config.diffaug_policy='color,rotate'", ('config', {'diffaug_policy': 'color,rotate'}),
     "config.diffaug_policy: unknown DiffAugment op(s) ['rotate'] in policy 'color,rotate'; choose from"),
    ('recon_loss', "config.recon_loss='l1'", ('config', {'recon_loss': 'l1'}),
     "config.recon_loss='l1'; choose one of ['lpips', 'mse']"),
    ('sample_bn', "config.sample_bn='ema'", ('config', {'sample_bn': 'ema'}),
     "config.sample_bn='ema'; choose 'batch' or 'running'"),
    ('data_limit', 'config.data.limit=-1', ('config', {'data.limit': -1}),
     'config.data.limit=-1 must be >= 0 (0 = all images)'),
    ('data_dir_missing', 'config.data.dir=a folder that does not exist',
     ('config', {'data.dir': '{tmp}/nope', 'allow_config_change': True}),
     "config.data.dir='{tmp}/nope' is not a directory"),
    ('data_dir_empty', 'config.data.dir=an empty folder',
     ('config', {'data.dir': '{tmp}/empty', 'allow_config_change': True}), "data.dir '{tmp}/empty' contains no images"),
    ('data_dir_corrupt_image', 'config.data.dir=a folder with a corrupt .png',
     ('config', {'data.dir': '{tmp}/corrupt', 'allow_config_change': True}),
     "cannot read image '{tmp}/corrupt/bad.png'"),
    ('data_dir_unsupported_mode', 'config.data.dir=a folder with a CIE LAB TIFF',
     ('config', {'data.dir': '{tmp}/lab', 'allow_config_change': True}),
     "image '{tmp}/lab/a.tif' has mode 'LAB', which is not supported"),
    ('data_intensity', "config.data.intensity='minmax'", ('config', {'data.intensity': 'minmax'}),
     "config.data.intensity='minmax'; choose one of ['auto', 'percentile', 'range']"),
    ('tfds_no_split', "config.data.tfds_name='brats' without tfds_split", ('config', {'data.tfds_name': 'brats'}),
     "config.data.tfds_split must be set when config.data.tfds_name='brats'"),
    ('eval_resize', "config.eval.resize='bicubic'", ('config', {'eval.resize': 'bicubic'}),
     "config.eval.resize='bicubic'; choose one of"),
    ('eval_metric', "config.eval.metrics=('fid', 'inception_score')",
     ('config', {'eval.metrics': ('fid', 'inception_score')}),
     "config.eval.metrics has unknown metric(s) ['inception_score']"),
    ('eval_heldout_missing', 'config.eval.heldout_dir=a folder that does not exist',
     ('config', {'eval.heldout_dir': '{tmp}/nope', 'allow_config_change': True}),
     "config.eval.heldout_dir='{tmp}/nope' is not a directory"),
    ('resume_other_model', 'resume a workdir with config.model.ngf=8 (was 4)', ('config', {'model.ngf': 8}),
     "model.ngf: workdir has 4, config has 8); use a new --workdir"),
    ('resume_changed_fields', 'resume with config.log_every=5, config.seed=1 (without allow_config_change)',
     ('config', {'log_every': 5, 'seed': 1}),
     "(log_every: workdir has 2, config has 5; seed: workdir has 0, config has 1); use a new --workdir"),
    ('resume_safe_change_not_allowed', 'resume with config.log_every=5 (without allow_config_change)',
     ('config', {'log_every': 5}),
     '(log_every: workdir has 2, config has 5); set --config.allow_config_change=True to change them'),
    ('resume_unsafe_change_allowed', 'resume with config.seed=1 and allow_config_change=True',
     ('config', {'seed': 1, 'allow_config_change': True}), '(seed: workdir has 0, config has 1); use a new --workdir'),
    ('config_json_corrupt', 'a workdir whose config.json is not valid JSON', ('config', {'<corrupt config.json>': 1}),
     '{wd}/config.json is not a valid config file (Expecting value: line 1 column 1 (char 0))'),
    ('restore_step_zero', 'config.restore_step=0', ('config', {'restore_step': 0}),
     'config.restore_step=0 must be a checkpoint step >= 1 (None = the latest)'),
    ('restore_step_missing', 'resume with config.restore_step=3 (no such checkpoint)', ('config', {'restore_step': 3}),
     'no checkpoint for step 3 in {wd}/checkpoints; available: [2]'),
    ('damaged_checkpoint', 'resume a workdir whose latest checkpoint lacks a file', ('config', {}),
     'checkpoint 2 in {wd}/checkpoints is damaged ({wd}/checkpoints/2/default/_METADATA: missing); there is no older '
     'checkpoint: restore it from a backup or use a new --workdir; nothing was deleted'),
    ('data_strict_small', 'config.data.dir=a folder with a 64x80 image, config.data.strict=True',
     ('config', {'data.dir': '{tmp}/small', 'data.strict': True, 'allow_config_change': True}),
     "data.strict=True: 1 of 1 images are smaller than model.resolution=128 (upscaled), e.g. '{tmp}/small/a.png' "
     '(64x80 L)'),
    ('data_strict_channels', 'config.data.dir=a folder with an RGB image, config.data.channels=1, config.data.strict=True',
     ('config', {'data.dir': '{tmp}/rgb', 'data.strict': True, 'allow_config_change': True}),
     "data.strict=True: 1 of 1 images are converted from RGB to L (data.channels=1), e.g. '{tmp}/rgb/a.png' "
     '(128x128 RGB)'),
    ('disk_full', 'the disk is full when config.json is written (simulated; full disks while saving checkpoints: '
     'tests/reliability_test.py)', ('config', {'<disk full>': 1}),
     'could not write {tmp}/wd3/config.json (No space left on device); no checkpoint was completed; free space and '
     'run the same command to resume'),
    ('out_of_memory', 'XLA runs out of accelerator memory (RESOURCE_EXHAUSTED, simulated)', ('oom', None),
     'out of accelerator memory (RESOURCE_EXHAUSTED: Out of memory while trying to allocate 1073741824 bytes.); use a '
     "smaller --config.batch_size or --config.model.dtype='bfloat16'"),
    ('sample_num_zero', 'sample with --num=0', ('sample', {'num': 0}), '--num=0 must be >= 1'),
    ('sample_no_config', 'sample from a folder that is not a workdir', ('sample', {'workdir': '{tmp}/empty'}),
     "{tmp}/empty/config.json not found: is '{tmp}/empty' a fsgan_jax training workdir?"),
    ('sample_no_checkpoint', 'sample from a workdir without checkpoints', ('sample', {'<no checkpoints>': 1}),
     'no checkpoint in {tmp}/wd2/checkpoints: train first'),
    ('main_resolution', 'python -m fsgan_jax.main ... --config.model.resolution=300',
     ('main', ['--config=configs/tiny.py', '--config.model.resolution=300']),
     'error: config.model.resolution=300 is not supported; choose one of (128, 256, 512, 1024)'),
    ('main_workdir_busy', 'python -m fsgan_jax.main ... on a workdir that another process is training',
     ('main', ['--config=configs/tiny.py', '<locked>']), 'error: {wd} is being trained by pid {pid} on host {host}'),
    ('main_sample_not_workdir', 'python -m fsgan_jax.main --mode=sample --workdir=a folder that is not a workdir',
     ('main', ['--mode=sample', '--workdir={tmp}/empty']),
     "error: {tmp}/empty/config.json not found: is '{tmp}/empty' a fsgan_jax training workdir?"),
    ('fid_resize', 'python -m fsgan_jax.evaluators.fid A B --resize=bicubic', ('fid', ['{tmp}/empty', '{tmp}/empty',
                                                                                     '--resize=bicubic']),
     "python -m fsgan_jax.evaluators.fid: error: unknown --resize 'bicubic'; available: tf1, pytorch_fid, clean"),
    ('fid_batch_size', 'python -m fsgan_jax.evaluators.fid A B --batch-size=0',
     ('fid', ['{tmp}/empty', '{tmp}/empty', '--batch-size=0']),
     'python -m fsgan_jax.evaluators.fid: error: --batch-size must be >= 1, got 0'),
    ('fid_missing_folder', 'python -m fsgan_jax.evaluators.fid with a folder that does not exist',
     ('fid', ['{tmp}/nope', '{tmp}/empty']), 'python -m fsgan_jax.evaluators.fid: error: {tmp}/nope'),
    ('build_unknown_dataset', 'python -m fsgan_jax.datasets.build nosuch ...',
     ('build', ['nosuch', '--manual_dir={tmp}/nope', '--data_dir={tmp}/tfds']),
     "python -m fsgan_jax.datasets.build: error: argument name: invalid choice: 'nosuch'"),
    ('build_missing_manual_dir', 'python -m fsgan_jax.datasets.build brats --manual_dir=a missing folder',
     ('build', ['brats', '--manual_dir={tmp}/nope', '--data_dir={tmp}/tfds']),
     'error: {tmp}/nope: manual_dir is missing or empty'),
]


def _hashes(root: pathlib.Path) -> dict[str, str]:
  return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
          for p in sorted(root.rglob('*')) if p.is_file()}


@pytest.fixture
def workdir(tmp_path):
  """A workdir of the tiny config (config.json, a checkpoint folder, a sample) and some bad inputs next to it."""
  wd = tmp_path / 'wd'
  workdir_lib.write_config(tiny.get_config(), str(wd))
  (wd / 'checkpoints' / '2' / 'default').mkdir(parents=True)
  (wd / 'checkpoints' / '2' / 'default' / 'state').write_bytes(b'checkpoint bytes')
  (wd / 'samples').mkdir()
  (wd / 'samples' / 'step_0000002.png').write_bytes(b'png bytes')
  (tmp_path / 'empty').mkdir()
  (tmp_path / 'corrupt').mkdir()
  (tmp_path / 'corrupt' / 'bad.png').write_text('not a png')
  (tmp_path / 'small').mkdir()
  Image.fromarray(np.zeros((80, 64), np.uint8)).save(tmp_path / 'small' / 'a.png')
  (tmp_path / 'lab').mkdir()
  Image.new('LAB', (8, 8)).save(tmp_path / 'lab' / 'a.tif')
  (tmp_path / 'rgb').mkdir()
  Image.fromarray(np.zeros((128, 128, 3), np.uint8)).save(tmp_path / 'rgb' / 'a.png')
  return wd


def _fill(x, tmp, wd):
  if isinstance(x, str):
    return (x.replace('{tmp}', str(tmp)).replace('{wd}', str(wd)).replace('{pid}', str(os.getpid()))
            .replace('{host}', socket.gethostname()))
  if isinstance(x, (list, tuple)) and all(isinstance(v, str) for v in x):
    return type(x)(_fill(v, tmp, wd) for v in x)
  return x


def _disk_full(config, workdir, **kwargs):  # in place of workdir.write_config, before the train step compiles
  del config, kwargs
  raise OSError(errno.ENOSPC, 'No space left on device', f'{workdir}/config.json')


def _error_of(kind, arg, tmp, wd, capsys, monkeypatch) -> str:
  """Runs one bad input; returns the error text as printed (one line)."""
  if kind == 'oom':  # what main.py prints for XLA's out-of-memory error
    return str(errors.out_of_memory(RuntimeError(
        'RESOURCE_EXHAUSTED: Out of memory while trying to allocate 1073741824 bytes.\nBufferAssignment OOM ...')))
  if kind == 'config':
    config = tiny.get_config()
    for field, value in arg.items():
      if field == '<corrupt config.json>':
        (wd / 'config.json').write_text('')
        continue
      if field == '<disk full>':  # a fresh workdir on a full disk
        wd = tmp / 'wd3'
        monkeypatch.setattr(workdir_lib, 'write_config', _disk_full)
        continue
      section, _, name = field.rpartition('.')
      (config[section] if section else config)[name] = _fill(value, tmp, wd)
    with pytest.raises((errors.ConfigError, ValueError, FileNotFoundError)) as e:
      train.train_and_evaluate(config, str(wd))
    return str(e.value)
  if kind == 'sample':
    kwargs = {k: _fill(v, tmp, wd) for k, v in arg.items() if not k.startswith('<')}
    if '<no checkpoints>' in arg:
      wd = tmp / 'wd2'
      workdir_lib.write_config(tiny.get_config(), str(wd))
    with pytest.raises((ValueError, FileNotFoundError)) as e:
      sample.sample_from_workdir(**{'workdir': str(wd), **kwargs})
    return str(e.value)
  argv = _fill(arg, tmp, wd)
  if kind == 'main':
    env = dict(os.environ, XLA_FLAGS='--xla_force_host_platform_device_count=8', JAX_PLATFORMS='cpu',
               TF_CPP_MIN_LOG_LEVEL='3')
    locked = '<locked>' in argv  # this test process trains the workdir (holds its lock) meanwhile
    argv = [a for a in argv if a != '<locked>']
    if not any(a.startswith('--workdir') for a in argv):
      argv = argv + [f'--workdir={wd}']
    holder = lock.WorkdirLock(str(wd))
    if locked:
      holder.acquire()
    try:
      proc = subprocess.run([sys.executable, '-m', 'fsgan_jax.main', *argv], cwd=REPO, env=env,
                            capture_output=True, text=True, timeout=300)
    finally:
      holder.release()
    assert proc.returncode == 1 and 'Traceback' not in proc.stderr, proc.stderr[-3000:]
    return proc.stderr.strip().splitlines()[-1]
  main = {'fid': fid.main, 'build': build.main}[kind]
  try:
    code = main(argv)
  except SystemExit as e:  # argparse
    code = e.code
  assert code and code != 0
  err = capsys.readouterr().err.strip().splitlines()
  return err[-1]


@pytest.mark.parametrize('row', ROWS, ids=[r[0] for r in ROWS])
def test_bad_input(row, workdir, capsys, monkeypatch):
  _, _, (kind, arg), expected = row
  tmp = workdir.parent
  corrupt = kind == 'config' and '<corrupt config.json>' in arg
  before = _hashes(workdir)
  message = _error_of(kind, arg, tmp, workdir, capsys, monkeypatch)
  assert '\n' not in message
  assert _fill(expected, tmp, workdir) in message
  after = _hashes(workdir)
  if corrupt:  # the test itself emptied config.json; nothing else changed
    before.pop('config.json'), after.pop('config.json')
  assert after == before


def _readme_text(x: str) -> str:
  return (x.replace('{tmp}', 'DIR').replace('{wd}', 'DIR/wd').replace('{pid}', 'PID').replace('{host}', 'HOST')
          .replace('|', '\\|'))


def test_readme_table_matches():
  """README.md's "Bad input and what you get" table has exactly these rows (input, message, test id)."""
  text = (REPO / 'README.md').read_text()
  section = text.split('## Bad input and what you get', 1)[1].split('\n## ', 1)[0]
  lines = [line for line in section.splitlines() if line.startswith('| ')][1:]  # without the header
  rows = [[c.strip() for c in re.split(r'(?<!\\)\|', line.strip())[1:-1]] for line in lines]
  assert len(rows) == len(ROWS) >= 25
  for (test_id, text_in, _, expected), (cell_in, cell_msg, cell_test) in zip(ROWS, rows):
    assert cell_test == f'`test_bad_input[{test_id}]`'
    assert cell_in == _readme_text(text_in), test_id
    assert cell_msg == '`' + _readme_text(expected) + '`', test_id
