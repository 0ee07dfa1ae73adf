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
"""The package's errors: every bad input a user can cause is an ``FsganError`` with a one-line message.

Entry points (``main``, the study and tool CLIs) catch ``FsganError`` and print ``error: <message>``; anything
else is a bug and keeps its traceback. Subclasses say where the problem was found; they subclass ``ValueError``
(through ``FsganError``) so that callers that caught ``ValueError`` keep working.
"""

import errno
import os
import re
from typing import Optional


class FsganError(ValueError):
  """A bad input (config value, file, workdir, data) with a one-line message naming it."""


class ConfigError(FsganError):
  """A config value is invalid; raised before anything is compiled."""


class EvalError(FsganError):
  """An evaluation setting or input cannot be used (names the field or file)."""


class DataError(FsganError):
  """Training data cannot be read or is unusable (names the file or folder)."""


class SourceError(FsganError):
  """The source run of a transfer method cannot be used (names the field or workdir)."""


class WorkdirError(FsganError):
  """A workdir cannot be used as asked: another process trains it, or its latest checkpoint is damaged."""


class StorageError(FsganError, OSError):
  """Storage failed: a full disk, a quota or a read-only file system while writing the workdir, or the storage
  behind a URL (unreachable, no credentials, no permission); the message says what failed and what to do."""


def out_of_memory(e: BaseException) -> 'FsganError | None':
  """A one-line error for XLA's out-of-memory (``RESOURCE_EXHAUSTED``) with what to change, or None for others."""
  text = str(e)
  if 'RESOURCE_EXHAUSTED' not in text and 'Out of memory' not in text:
    return None
  first = next((line.strip() for line in text.splitlines() if line.strip()), '')[:200]
  return FsganError(f'out of accelerator memory ({first}); use a smaller --config.batch_size or '
                    "--config.model.dtype='bfloat16'")


# Write failures that mean "no room or no write access".
STORAGE_ERRNOS = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS)


def storage_full(e: BaseException) -> Optional[tuple[Optional[str], str]]:
  """(file or None, reason) if ``e`` is a write that failed for lack of space or write access, else None.

  Recognises Python's OSError and tensorstore's (Orbax's array writer) ``ValueError('RESOURCE_EXHAUSTED: ...
  Failed writing: "FILE": ... [os_error_code='28']')``.
  """
  if isinstance(e, OSError) and not isinstance(e, FsganError):
    return (e.filename, e.strerror or str(e)) if e.errno in STORAGE_ERRNOS else None
  if not isinstance(e, ValueError):
    return None
  code = re.search(r"os_error_code='(\d+)'", str(e))
  if not code or int(code.group(1)) not in STORAGE_ERRNOS:
    return None
  written = re.findall(r'Failed writing: "([^"]+)"', str(e))
  return (written[-1] if written else None), os.strerror(int(code.group(1)))
