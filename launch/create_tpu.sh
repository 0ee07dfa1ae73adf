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
# Creates a Cloud TPU VM (single host or multi-host slice). See launch/README.md.
set -euo pipefail

usage() {
  cat >&2 <<'USAGE'
usage: launch/create_tpu.sh TPU_NAME ZONE [ACCELERATOR_TYPE] [TPU_VERSION]
   or: TPU_NAME=... ZONE=... [ACCELERATOR_TYPE=...] [TPU_VERSION=...] launch/create_tpu.sh

  ACCELERATOR_TYPE  default v5litepod-16 (4 hosts x 4 chips); e.g. v5litepod-8, v4-32, v6e-16
  TPU_VERSION       runtime image matching the type; default v2-alpha-tpuv5-lite
                    (v4: tpu-ubuntu2204-base, v5p: v2-alpha-tpuv5, v6e: v2-alpha-tpuv6e)
  PROJECT           optional env var: GCP project (default: gcloud's configured project)
  SPOT=1            optional env var: create a Spot (preemptible) TPU
USAGE
  exit 2
}

TPU_NAME="${1:-${TPU_NAME:-}}"
ZONE="${2:-${ZONE:-}}"
ACCELERATOR_TYPE="${3:-${ACCELERATOR_TYPE:-v5litepod-16}}"
TPU_VERSION="${4:-${TPU_VERSION:-v2-alpha-tpuv5-lite}}"
[[ -n "${TPU_NAME}" && -n "${ZONE}" ]] || usage

extra=()
[[ -n "${PROJECT:-}" ]] && extra+=("--project=${PROJECT}")
[[ "${SPOT:-0}" == "1" ]] && extra+=("--spot")

set -x
gcloud compute tpus tpu-vm create "${TPU_NAME}" --zone="${ZONE}" --accelerator-type="${ACCELERATOR_TYPE}" \
  --version="${TPU_VERSION}" "${extra[@]}"
