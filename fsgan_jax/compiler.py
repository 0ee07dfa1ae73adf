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
"""XLA compiler options for the package's top-level jits (training step, sampler, FID, studies).

XLA:CPU (jaxlib 0.10) routes every convolution into a YNNPACK fusion by default. After XLA's convolution
canonicalisation the weight gradient of a 3x3 convolution is a convolution whose window is the whole image and
whose contraction runs over the batch; YNNPACK runs those several times slower than XLA's own (Eigen) convolutions,
and the Inception network of FID is slower under it too. ``CPU_OPTIONS`` keeps XLA's other YNNPACK fusions
(dots, reductions) and sends convolutions to Eigen: the same program as
``XLA_FLAGS=--xla_cpu_experimental_ynn_fusion_type=-individual_convolution`` (the flag syntax with ``-`` is not
accepted as a compile option, so the remaining members of jaxlib 0.10's default set are listed instead).
Measured effect: BENCHMARKS.md. The option changes results only at float32 rounding level (golden parity tests).

Compile options are only honoured on a top-level ``jax.jit``; a jit traced inside another uses the outer one's.
"""

from __future__ import annotations

import functools
from typing import Optional

from absl import logging
import jax
import jax.numpy as jnp

YNN_FUSION_OPTION = 'xla_cpu_experimental_ynn_fusion_type'
# jaxlib 0.10's default is {INDIVIDUAL_DOT, REDUCE, INDIVIDUAL_CONVOLUTION}; this is that set less convolutions.
CPU_OPTIONS: dict[str, str] = {YNN_FUSION_OPTION: 'LIBRARY_FUSION_TYPE_INDIVIDUAL_DOT,LIBRARY_FUSION_TYPE_REDUCE'}


@functools.lru_cache(maxsize=None)
def _accepted() -> bool:
  """Whether this jaxlib's XLA:CPU accepts ``CPU_OPTIONS`` (the enum names may change between XLA versions)."""
  try:
    jax.jit(jnp.sin).lower(jnp.zeros(2)).compile(compiler_options=CPU_OPTIONS)
    return True
  except Exception as e:  # pylint: disable=broad-except
    logging.warning('XLA:CPU did not accept %s (%s); compiling with XLA defaults (slower convolutions).',
                    CPU_OPTIONS, str(e).splitlines()[0][:200])
    return False


def options() -> Optional[dict[str, str]]:
  """``CPU_OPTIONS`` when JAX's default backend is the CPU and accepts them, else None.

  Pass as ``jax.jit(..., compiler_options=compiler.options())`` for jits that run convolutions.
  """
  if jax.default_backend() != 'cpu' or not _accepted():
    return None
  return dict(CPU_OPTIONS)
