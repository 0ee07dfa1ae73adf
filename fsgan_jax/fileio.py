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
"""Workdir file access that works for local paths and for URLs such as ``gs://bucket/run``.

Multi-host runs need a workdir that every host sees, on TPU VMs a ``gs://`` bucket. ``os.path.abspath``,
``os.makedirs``, ``open`` and ``os.replace`` do not understand URLs (``os.path.abspath('gs://b/run')`` is the local
``$PWD/gs:/b/run``), so every access to the workdir goes through these helpers instead. They use
``etils.epath``, which Orbax also uses: local paths go to the ``os`` functions, ``gs://`` (and ``s3://``, ...) URLs
to ``tf.io.gfile`` when TensorFlow is installed (it is a dependency of fsgan_jax: ``tensorflow-cpu`` registers the
``gs`` file system), otherwise to ``fsspec`` (which needs ``gcsfs`` for ``gs://``).

Local paths keep the exact behaviour of the code they replace (``write_text_atomic`` writes a temporary file and
renames it); URLs use the object-store equivalent, documented on each function.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import posixpath
import re
from typing import Iterator

from etils import epath

from fsgan_jax import errors

_URL_RE = re.compile(r'^[A-Za-z][A-Za-z0-9+.-]*://')


StorageError = errors.StorageError


@contextlib.contextmanager
def _storage_errors(path: str | os.PathLike) -> Iterator[None]:
  """Turns a ``tf.errors.OpError`` of the ``tf.io.gfile`` backend into a one-line ``StorageError`` naming ``path``.

  etils.epath converts only "not found" (and a few others) to Python exceptions; GCS failures such as an
  unresolvable host or missing credentials surface as TensorFlow exceptions with multi-line messages, which the
  command line would show as a deep traceback.
  """
  try:
    yield
  except OSError:
    raise
  except Exception as e:  # pylint: disable=broad-except
    if not type(e).__module__.startswith('tensorflow'):
      raise
    message = ' '.join(str(getattr(e, 'message', e)).split())
    raise StorageError(f'{os.fspath(path)}: {message}') from e


def is_url(path: str | os.PathLike) -> bool:
  """Whether ``path`` is a URL (``scheme://...``, e.g. ``gs://bucket/run``) rather than a local path."""
  return bool(_URL_RE.match(os.fspath(path)))


def abspath(path: str | os.PathLike) -> str:
  """A local path with ``~`` expanded, made absolute; a URL unchanged (it is already absolute)."""
  path = os.fspath(path)
  if is_url(path):
    return path
  return os.path.abspath(os.path.expanduser(path))


def join(path: str | os.PathLike, *parts: str) -> str:
  """``path/part/...``: ``os.path.join`` for local paths, ``/``-separated for URLs on every OS."""
  path = os.fspath(path)
  return posixpath.join(path, *parts) if is_url(path) else os.path.join(path, *parts)


def exists(path: str | os.PathLike) -> bool:
  """Whether the file or folder exists (on GCS: an object, or a prefix with objects under it)."""
  with _storage_errors(path):
    return epath.Path(path).exists()


def isdir(path: str | os.PathLike) -> bool:
  """Whether ``path`` is a folder (on GCS: a prefix with objects under it, or a folder placeholder object)."""
  with _storage_errors(path):
    return epath.Path(path).is_dir()


def makedirs(path: str | os.PathLike) -> None:
  """Creates the folder and its parents if missing (on object stores folders are implicit: cheap, idempotent)."""
  with _storage_errors(path):
    epath.Path(path).mkdir(parents=True, exist_ok=True)


def read_text(path: str | os.PathLike) -> str:
  """The whole file as UTF-8 text; ``FileNotFoundError`` if it does not exist."""
  with _storage_errors(path):
    return epath.Path(path).read_text(encoding='utf-8')


def write_text_atomic(path: str | os.PathLike, text: str) -> None:
  """Replaces the file's content with ``text`` so that readers see the old or the new content, never a part.

  Local: writes ``PATH.tmp``, flushes it to disk and renames it over ``PATH`` (``os.replace`` is atomic on POSIX),
  so a crash mid-write leaves the previous file intact. URL: writes the object directly: a GCS object upload is
  atomic (the new object becomes visible only once the upload completes), and object stores have no atomic rename
  (``rename`` there is copy + delete), so a temporary object would add cost and no safety.
  """
  path = os.fspath(path)
  if is_url(path):
    with _storage_errors(path):
      epath.Path(path).write_text(text, encoding='utf-8')
    return
  tmp = path + '.tmp'
  with open(tmp, 'w', encoding='utf-8') as f:
    f.write(text)
    f.flush()
    os.fsync(f.fileno())
  os.replace(tmp, path)


def append_line(path: str | os.PathLike, line: str) -> None:
  """Appends ``line`` (a newline is added if missing) to a text file, creating it if needed.

  Local: ``open(path, 'a')``. URL: objects are immutable and ``gcsfs`` has no append mode, so this reads the
  object, adds the line and writes it back as one atomic upload. That is O(file size) per call and not safe
  against concurrent writers; it is meant for small logs written by one process (e.g. process 0's
  ``eval/history.jsonl``, one line per evaluation).
  """
  path = os.fspath(path)
  if not line.endswith('\n'):
    line += '\n'
  if is_url(path):
    old = read_text(path) if exists(path) else ''
    with _storage_errors(path):
      epath.Path(path).write_text(old + line, encoding='utf-8')
    return
  with open(path, 'a', encoding='utf-8') as f:
    f.write(line)


def listdir(path: str | os.PathLike) -> list[str]:
  """The sorted names (not paths) of the entries of a folder."""
  with _storage_errors(path):
    return sorted(p.name for p in epath.Path(path).iterdir())


def rename(src: str | os.PathLike, dst: str | os.PathLike) -> None:
  """Moves a file or folder (atomic on one local file system; copy + delete on object stores)."""
  with _storage_errors(src):
    epath.Path(src).rename(dst)


def check_url_supported(path: str | os.PathLike, field: str = '--workdir') -> None:
  """Fails early, with one line naming ``field``, when ``path`` is a URL that cannot be written here.

  Orbax and these helpers reach ``gs://`` through ``etils.epath`` and clu's TensorBoard writer through
  ``tf.io.gfile``; both need TensorFlow with the URL's file system registered. Without this check a missing
  backend shows up as a deep traceback after the model is built (or, worse, as a local folder named ``gs:``).

  Raises:
    ValueError: if TensorFlow is missing or does not know the URL's scheme.
  """
  path = os.fspath(path)
  if not is_url(path):
    return
  scheme = path.split('://', 1)[0]
  hint = f'use a local {field} (or a mounted shared file system) instead'
  if importlib.util.find_spec('tensorflow') is None:
    raise ValueError(f'{field}={path!r}: {scheme}:// needs TensorFlow (tf.io.gfile, used by the TensorBoard '
                     f'writer and etils.epath); pip install tensorflow-cpu (a dependency of fsgan_jax), or {hint}')
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  schemes = tf.io.gfile.get_registered_schemes() if hasattr(tf.io.gfile, 'get_registered_schemes') else None
  if schemes is not None and scheme not in schemes:
    raise ValueError(f'{field}={path!r}: this TensorFlow has no {scheme}:// file system (it knows '
                     f'{", ".join(s + "://" for s in schemes if s)}); {hint}')
