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
"""Counting JAX traces and XLA compilations in a block (for tests that a program is built once)."""

from __future__ import annotations

import collections
import contextlib
from typing import Iterator

from jax import monitoring

TRACE = '/jax/core/compile/jaxpr_trace_duration'
COMPILE = '/jax/core/compile/backend_compile_duration'


@contextlib.contextmanager
def count_compiles() -> Iterator[collections.Counter]:
  """Counts ``(event, fun_name)`` of JAX trace / XLA compile events inside the block (cache hits included)."""
  counts: collections.Counter = collections.Counter()

  def listener(event: str, duration: float, **kwargs) -> None:
    del duration
    if event in (TRACE, COMPILE):
      counts[(event, kwargs.get('fun_name', ''))] += 1

  monitoring.register_event_duration_secs_listener(listener)
  try:
    yield counts
  finally:
    monitoring.unregister_event_duration_listener(listener)
