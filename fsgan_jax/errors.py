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
