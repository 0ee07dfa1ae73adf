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
"""The workdir lock: one training process per workdir.

Training holds an exclusive ``flock`` on ``WORKDIR/train.lock`` for as long as it runs. The file says who holds it
(host, pid, start time, command line) so a refused second start can name the holder; the lock itself belongs to
the kernel, so a holder killed with SIGKILL (or a crashed machine) never blocks the next run: its lock ends with
its process, whatever the file still says. The file is removed when the holder exits cleanly.

Sampling and evaluation never take the lock: they read only complete checkpoints (Orbax renames a checkpoint into
place when it is complete) and write files of their own, so they work next to a training process and say so
(``holder``).

gs:// workdirs cannot be locked (object stores have no locks): a warning says so and the user keeps to one
training job per workdir. Multi-host runs lock from process 0 only (one lock per run, on the host that writes
the workdir's files).
"""

from __future__ import annotations

import datetime
import fcntl
import json
import os
import socket
import sys
import time
from typing import Optional

from absl import logging

from fsgan_jax import errors, fileio

LOCK_NAME = 'train.lock'


def _describe(info: dict) -> str:
  if not info:
    return 'another process (its lock file is empty or unreadable)'
  return f'pid {info.get("pid")} on host {info.get("host")}, started {info.get("started")}'


def _read_info(path: str) -> dict:
  try:
    with open(path, encoding='utf-8') as f:
      info = json.loads(f.read() or '{}')
    return info if isinstance(info, dict) else {}
  except (OSError, ValueError):
    return {}


class WorkdirLock:
  """An exclusive, process-lifetime lock on a local workdir (a no-op with a warning on gs://).

  Use as a context manager; ``acquire`` raises ``errors.WorkdirError`` naming the holder if another live process
  holds it.
  """

  def __init__(self, workdir: str):
    self.workdir = workdir
    self.path = fileio.join(workdir, LOCK_NAME)
    self._fd: Optional[int] = None

  def acquire(self) -> None:
    """Takes the lock (creating the workdir if needed) or raises WorkdirError naming the holder."""
    if fileio.is_url(self.workdir):
      logging.warning('%s is not a local folder: it cannot be locked, so never train two jobs on it at once',
                      self.workdir)
      return
    os.makedirs(self.workdir, exist_ok=True)
    tries = 0
    while True:
      fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
      try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
      except BlockingIOError:
        os.close(fd)
        tries += 1
        if tries < 5:  # ``holder`` (a sampler asking) holds a shared lock for a moment: ask again
          time.sleep(0.05)
          continue
        raise errors.WorkdirError(
            f'{self.workdir} is being trained by {_describe(_read_info(self.path))}: wait for it to finish or stop '
            'it, or use another --workdir (sampling and evaluation may read it meanwhile)') from None
      # The holder before us may have removed the file between our open and our flock: then we hold a lock on a
      # file nobody else can see; start again on the current one.
      try:
        same = os.fstat(fd).st_ino == os.stat(self.path).st_ino
      except FileNotFoundError:
        same = False
      if same:
        break
      os.close(fd)
    info = {'host': socket.gethostname(), 'pid': os.getpid(),
            'started': datetime.datetime.now(datetime.timezone.utc).strftime('%Y-%m-%d %H:%M:%S UTC'),
            'command': ' '.join(sys.argv)}
    try:
      os.ftruncate(fd, 0)
      os.pwrite(fd, (json.dumps(info) + '\n').encode(), 0)
    except OSError as e:  # e.g. a full disk: the lock holds all the same, only its description is missing
      logging.warning('could not describe the lock in %s (%s)', self.path, e)
    self._fd = fd

  def release(self) -> None:
    """Removes the lock file and releases the lock (removed while still held, so no one else's file is removed)."""
    if self._fd is None:
      return
    try:
      os.unlink(self.path)
    except OSError:
      pass
    os.close(self._fd)
    self._fd = None

  def __enter__(self) -> 'WorkdirLock':
    self.acquire()
    return self

  def __exit__(self, *exc) -> None:
    self.release()


def holder(workdir: str) -> Optional[str]:
  """Who is training ``workdir`` now (``'pid ... on host ..., started ...'``), or None (also for gs:// URLs).

  Never blocks and never changes the workdir: a shared lock attempt on the existing lock file only.
  """
  path = fileio.join(workdir, LOCK_NAME)
  if fileio.is_url(workdir) or not os.path.exists(path):
    return None
  try:
    fd = os.open(path, os.O_RDONLY)
  except OSError:
    return None
  try:
    fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
  except BlockingIOError:
    return _describe(_read_info(path))
  finally:
    os.close(fd)  # also releases the shared lock if we got it
  return None
