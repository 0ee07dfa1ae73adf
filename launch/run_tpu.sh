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
# Trains on every worker of a TPU VM at once (one JAX process per host, jax.distributed over the slice).
set -euo pipefail

usage() {
  cat >&2 <<'USAGE'
usage: launch/run_tpu.sh TPU_NAME ZONE CONFIG WORKDIR [MAIN_FLAGS...]

  CONFIG   config file relative to the repository, e.g. configs/fastgan.py
  WORKDIR  gs://BUCKET/PATH: every host must see the same workdir (checkpoints are written by all hosts)
  MAIN_FLAGS  passed on to fsgan_jax.main, e.g. --config.batch_size=64 --config.num_steps=50000
  PROJECT, REMOTE_DIR (default ~/fsgan_jax), VENV (default ~/fsgan_venv): as for setup_tpu.sh
USAGE
  exit 2
}

[[ $# -ge 4 ]] || usage
TPU_NAME="$1"; ZONE="$2"; CONFIG="$3"; WORKDIR="$4"; shift 4
REMOTE_DIR="${REMOTE_DIR:-fsgan_jax}"
VENV="${VENV:-fsgan_venv}"
if [[ "${WORKDIR}" != gs://* ]]; then
  echo "WORKDIR must be a gs:// path shared by all hosts (got ${WORKDIR})" >&2
  exit 2
fi

where=("${TPU_NAME}" "--zone=${ZONE}" --worker=all)
[[ -n "${PROJECT:-}" ]] && where+=("--project=${PROJECT}")
[[ "${VENV}" == /* ]] || VENV="\$HOME/${VENV}"  # relative paths are relative to the workers' home
cmd="cd ${REMOTE_DIR} && ${VENV}/bin/python -m fsgan_jax.main --distributed"
cmd+=" --config=$(printf '%q' "${CONFIG}") --workdir=$(printf '%q' "${WORKDIR}")"
for flag in "$@"; do
  cmd+=" $(printf '%q' "${flag}")"
done
set -x
gcloud compute tpus tpu-vm ssh "${where[@]}" --command="${cmd}"
