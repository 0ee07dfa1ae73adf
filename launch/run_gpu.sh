#!/usr/bin/env bash
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
#
# Trains on one node with all its local GPUs (one process; the batch is sharded over the GPUs).
set -euo pipefail

usage() {
  cat >&2 <<'USAGE'
usage: launch/run_gpu.sh CONFIG WORKDIR [MAIN_FLAGS...]

  CONFIG      e.g. configs/fastgan.py; WORKDIR: a local path or gs://BUCKET/PATH
  MAIN_FLAGS  passed on to fsgan_jax.main, e.g. --config.batch_size=32
  PYTHON      optional env var: the interpreter of the venv (default: python)
  CUDA_VISIBLE_DEVICES  optional: restrict the GPUs used (config.batch_size must be a multiple of their number)

  Needs JAX with CUDA in that venv:  pip install -e . 'jax[cuda12]==0.10.2'
USAGE
  exit 2
}

[[ $# -ge 2 ]] || usage
CONFIG="$1"; WORKDIR="$2"; shift 2
PYTHON="${PYTHON:-python}"
cd "$(dirname "${BASH_SOURCE[0]}")/.."

if ! "${PYTHON}" -c 'import jax, sys; sys.exit(0 if jax.devices()[0].platform == "gpu" else 1)' 2>/dev/null; then
  echo "JAX in ${PYTHON} sees no GPU; install it with: ${PYTHON} -m pip install 'jax[cuda12]==0.10.2'" >&2
  exit 1
fi
"${PYTHON}" -c 'import jax; print(f"{jax.local_device_count()} x {jax.devices()[0].device_kind}")'
set -x
exec "${PYTHON}" -m fsgan_jax.main --config="${CONFIG}" --workdir="${WORKDIR}" "$@"
