"""fileio: the helpers on local paths, and the workdir code paths with a ``gs://`` workdir.

The URL tests run with a fake GCS: ``etils.epath``'s backend table is mocked so that ``gs://fake-bucket/...`` lives
in a local temp folder, and ``os.makedirs`` / ``os.replace`` / ``os.path.exists`` / ``os.path.abspath`` / ``open``
(...) raise if they are ever called with a ``gs:`` path. So a test passes only if the code reaches the workdir
through ``etils.epath`` (what Orbax, and GCS in production, use) and the files really land in the fake bucket.
"""

import builtins
import json
import os
import pathlib
import types

from etils.epath import gpath as epath_gpath
from etils.epath import testing as epath_testing
import numpy as np
import pytest

from configs import tiny
from fsgan_jax import checkpointing, evaluate, fileio, pretrained, report as report_lib, train, workdir as workdir_lib

URL = 'gs://fake-bucket/run'


# ----------------------------------------------------------------------------
# Local paths


def test_is_url_abspath_join(tmp_path, monkeypatch):
  monkeypatch.chdir(tmp_path)
  monkeypatch.setenv('HOME', str(tmp_path / 'home'))
  assert fileio.is_url('gs://b/x') and fileio.is_url('s3://b')
  assert not fileio.is_url('/tmp/x') and not fileio.is_url(pathlib.Path('runs/gs:x')) and not fileio.is_url('://b')
  assert fileio.abspath('gs://b/x') == 'gs://b/x'  # os.path.abspath would give $PWD/gs:/b/x
  assert fileio.abspath('run') == str(tmp_path / 'run')
  assert fileio.abspath('~/run') == str(tmp_path / 'home' / 'run')
  assert fileio.join('gs://b/x', 'eval', 'history.jsonl') == 'gs://b/x/eval/history.jsonl'
  assert fileio.join(str(tmp_path), 'eval') == os.path.join(str(tmp_path), 'eval')


def test_local_helpers(tmp_path):
  d = tmp_path / 'a' / 'b'
  fileio.makedirs(d)
  fileio.makedirs(d)  # idempotent
  assert fileio.isdir(d) and fileio.exists(d) and not fileio.exists(d / 'c.json')
  path = str(d / 'c.json')
  fileio.write_text_atomic(path, 'one')
  fileio.write_text_atomic(path, 'twö')
  assert fileio.read_text(path) == 'twö'
  assert fileio.listdir(d) == ['c.json']  # no PATH.tmp left behind
  log = d / 'log.jsonl'
  fileio.append_line(log, '{"a": 1}')
  fileio.append_line(log, '{"a": 2}\n')  # no doubled newline
  assert log.read_text() == '{"a": 1}\n{"a": 2}\n'
  assert fileio.listdir(d) == ['c.json', 'log.jsonl']
  with pytest.raises(FileNotFoundError):
    fileio.read_text(d / 'missing.json')


def test_write_text_atomic_keeps_old_file_when_the_write_fails(tmp_path, monkeypatch):
  path = str(tmp_path / 'c.json')
  fileio.write_text_atomic(path, 'old')

  def broken_replace(src, dst):
    raise OSError('disk full')

  monkeypatch.setattr(os, 'replace', broken_replace)
  with pytest.raises(OSError, match='disk full'):
    fileio.write_text_atomic(path, 'new')
  assert pathlib.Path(path).read_text() == 'old'


def test_check_url_supported():
  fileio.check_url_supported('/a/local/folder')  # never complains about local paths
  fileio.check_url_supported(URL)  # tensorflow-cpu (a dependency) registers gs://
  with pytest.raises(ValueError, match=r"^--out='nope://b/x': .*nope:// .* use a local --out") as e:
    fileio.check_url_supported('nope://b/x', '--out')
  assert '\n' not in str(e.value)


def test_storage_errors_become_one_line(monkeypatch):
  import tensorflow as tf  # pylint: disable=g-import-not-at-top

  class BrokenPath:
    """What epath's tf.io.gfile backend raises without network or credentials."""

    def __init__(self, path):
      self.path = path

    def exists(self):
      raise tf.errors.FailedPreconditionError(None, None, 'Error executing an HTTP request: Could not resolve host\n'
                                              f'\twhen reading metadata of {self.path}')

    def read_text(self, encoding):
      raise KeyError('not a storage error')

  monkeypatch.setattr(fileio, 'epath', types.SimpleNamespace(Path=BrokenPath))
  with pytest.raises(fileio.StorageError, match=r'^gs://b/x: Error executing .* when reading metadata of gs://b/x$'):
    fileio.exists('gs://b/x')
  with pytest.raises(KeyError):  # other errors pass through unchanged
    fileio.read_text('gs://b/x')


# ----------------------------------------------------------------------------
# A gs:// workdir, on a fake GCS


@pytest.fixture
def fake_gcs(tmp_path, monkeypatch):
  """``gs://BUCKET/PATH`` -> ``tmp_path/gcs/BUCKET/PATH``; os-level calls on a ``gs:`` path fail the test."""
  root = tmp_path / 'gcs'
  root.mkdir()

  def local(path):
    path = os.fspath(path)
    assert path.startswith('gs://'), f'epath backend called with a non-URL {path!r}'
    return str(root / path[len('gs://'):])

  def one(fn, path, *args, **kwargs):
    return fn(local(path), *args, **kwargs)

  def two(fn, src, dst, *args, **kwargs):
    return fn(local(src), local(dst), *args, **kwargs)

  def guard(fn):
    def guarded(*args, **kwargs):
      for a in args:
        if isinstance(a, (str, os.PathLike)) and 'gs:' in str(os.fspath(a)):
          raise AssertionError(f'{fn.__module__}.{fn.__name__} called with a URL: {a!r}')
      return fn(*args, **kwargs)
    return guarded

  for module, name in [(os, 'makedirs'), (os, 'mkdir'), (os, 'replace'), (os, 'rename'), (os, 'remove'),
                       (os, 'listdir'), (os.path, 'exists'), (os.path, 'isdir'), (os.path, 'abspath'),
                       (builtins, 'open')]:
    monkeypatch.setattr(module, name, guard(getattr(module, name)))
  cwd = tmp_path / 'cwd'
  cwd.mkdir()
  monkeypatch.chdir(cwd)
  # epath sends gs:// to tf.io.gfile whenever TensorFlow is installed, before looking at the backend table that
  # mock_epath replaces (and caches that check, so EPATH_USE_TF=0 cannot be set here): make it use the table.
  monkeypatch.setattr(epath_gpath, '_is_tf_installed', lambda: False)
  fns = {k: one for k in ('open', 'exists', 'isdir', 'listdir', 'makedirs', 'mkdir', 'remove', 'rmtree', 'stat')}
  with epath_testing.mock_epath(rename=two, replace=two, copy=two, **fns):
    yield root / 'fake-bucket'
  assert not os.listdir(cwd), 'a URL was turned into a local path under $PWD'


def test_fake_gcs_is_what_it_claims(fake_gcs):
  """The fixture itself: helpers reach the fake bucket, and an os-level call on a URL fails."""
  fileio.makedirs(URL)
  fileio.write_text_atomic(fileio.join(URL, 'x.txt'), 'hello')
  assert (fake_gcs / 'run' / 'x.txt').read_text() == 'hello'
  assert fileio.listdir(URL) == ['x.txt']  # a URL write is one object write: no .tmp object
  fileio.append_line(fileio.join(URL, 'log.jsonl'), 'a')
  fileio.append_line(fileio.join(URL, 'log.jsonl'), 'b')
  assert (fake_gcs / 'run' / 'log.jsonl').read_text() == 'a\nb\n'
  assert fileio.isdir(URL) and fileio.exists(fileio.join(URL, 'x.txt'))
  with pytest.raises(AssertionError, match='called with a URL'):
    os.makedirs(URL, exist_ok=True)
  with pytest.raises(AssertionError, match='called with a URL'):
    open(fileio.join(URL, 'x.txt'))  # pylint: disable=unspecified-encoding


def test_config_write_read_and_backup_on_url(fake_gcs):
  config = tiny.get_config()
  workdir_lib.write_config(config, URL)
  assert json.loads((fake_gcs / 'run' / 'config.json').read_text()) == json.loads(config.to_json())
  assert workdir_lib.read_config(URL).to_dict() == json.loads(config.to_json())
  assert workdir_lib.config_changes(config, URL) == {}
  longer = tiny.get_config()
  longer.num_steps = config.num_steps + 5
  assert workdir_lib.config_changes(longer, URL) == {'num_steps': (config.num_steps, longer.num_steps)}
  assert workdir_lib.check_config_compatible(longer, URL) == {'num_steps': (config.num_steps, longer.num_steps)}
  workdir_lib.write_config(longer, URL, replace=True)
  names = fileio.listdir(URL)
  assert len(names) == 2 and 'config.json' in names, names
  backup = next(n for n in names if n != 'config.json')
  assert backup.startswith('config.') and backup.endswith('.json')
  assert json.loads((fake_gcs / 'run' / backup).read_text())['num_steps'] == config.num_steps
  assert workdir_lib.read_config(URL).num_steps == longer.num_steps
  with pytest.raises(FileNotFoundError, match='gs://fake-bucket/other/config.json not found'):
    workdir_lib.read_config('gs://fake-bucket/other')


def test_eval_history_and_report_on_url(fake_gcs):
  assert report_lib.read_history(URL) == []
  report_lib.append_history(URL, 10, {'fid': 12.5}, kind='train')
  report_lib.append_history(URL, 20, {'fid': 11.0}, kind='full_16')
  assert report_lib.read_history(URL) == [{'step': 10, 'kind': 'train', 'fid': 12.5},
                                        {'step': 20, 'kind': 'full_16', 'fid': 11.0}]
  assert len((fake_gcs / 'run' / 'eval' / 'history.jsonl').read_text().splitlines()) == 2
  results = {'step': 20, 'num_samples': 16, 'seed': 0, 'sets': {'train': {'n': 16, 'fid': 11.0}}}
  report = report_lib.write_report(URL, 20, results, {'samples': np.zeros((8, 8, 1), np.uint8)})
  assert report == 'gs://fake-bucket/run/eval/step_20/report.html'
  assert json.loads((fake_gcs / 'run' / 'eval' / 'eval_20.json').read_text()) == results
  assert (fake_gcs / 'run' / 'eval' / 'step_20' / 'samples.png').read_bytes()[:8] == b'\x89PNG\r\n\x1a\n'
  page = (fake_gcs / 'run' / 'eval' / 'step_20' / 'report.html').read_text()
  assert 'Evaluation at step 20' in page and '<svg' in page  # the history above is plotted
  assert sorted(fileio.listdir(fileio.join(URL, 'eval'))) == ['eval_20.json', 'history.jsonl', 'step_20']


def test_checkpoint_managers_keep_urls(tmp_path, monkeypatch):
  monkeypatch.chdir(tmp_path)
  monkeypatch.setattr(checkpointing.ocp, 'CheckpointManager', lambda directory, options: directory)
  assert checkpointing.make_manager(URL) == URL + '/checkpoints'
  assert checkpointing.make_best_manager(URL, 'fid') == URL + '/checkpoints_best'
  assert checkpointing.make_manager('run') == str(tmp_path / 'run' / 'checkpoints')


class _Reached(Exception):
  """Stops an entry point at its first workdir access, carrying the workdir it was given."""


def test_entry_points_do_not_abspath_a_url(monkeypatch):
  def stop(*args, **kwargs):
    raise _Reached(args[-1] if args else kwargs)

  monkeypatch.setattr(workdir_lib, 'check_config_compatible', stop)
  with pytest.raises(_Reached) as e:
    train.train_and_evaluate(tiny.get_config(), URL)
  assert e.value.args[0] == URL
  monkeypatch.setattr(pretrained, 'is_pretrained', stop)  # the first look at the workdir (no network in CI)
  with pytest.raises(_Reached) as e:
    evaluate.evaluate_workdir(URL)
  assert e.value.args[0] == URL


def test_transfer_source_workdir_url(fake_gcs, monkeypatch):
  from fsgan_jax.transfer import source as source_lib  # pylint: disable=g-import-not-at-top
  config = tiny.get_config()
  config.transfer.method = 'finetune'
  config.transfer.source_workdir = 'gs://fake-bucket/source'
  with pytest.raises(source_lib.SourceError, match="source_workdir='gs://fake-bucket/source' is not a directory"):
    source_lib.load_source(config, mesh=None)
  workdir_lib.write_config(tiny.get_config(), 'gs://fake-bucket/source')
  monkeypatch.setattr(checkpointing, 'make_manager', lambda workdir, *a: (_ for _ in ()).throw(_Reached(workdir)))
  with pytest.raises(_Reached) as e:  # the source config was read from the bucket and matched
    source_lib.load_source(config, mesh=None)
  assert e.value.args[0] == 'gs://fake-bucket/source'
