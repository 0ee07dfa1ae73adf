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
# Installs fsgan_jax on every worker of a TPU VM: the repository (cloned from REPO_URL, or this checkout's
# tracked and untracked-but-not-ignored files copied over), a venv, `pip install -e .` and jax[tpu]==0.10.2.
set -euo pipefail

usage() {
  cat >&2 <<'USAGE'
usage: launch/setup_tpu.sh TPU_NAME ZONE
   or: TPU_NAME=... ZONE=... launch/setup_tpu.sh

  REPO_URL   optional: git URL to clone on the workers (REPO_REF: branch/tag/commit to check out);
             default: copy this checkout (git ls-files) to ~/fsgan_jax on every worker
  PROJECT    optional: GCP project
  REMOTE_DIR optional: install location on the workers (default: fsgan_jax, i.e. ~/fsgan_jax)
  VENV       optional: venv location on the workers (default: fsgan_venv, i.e. ~/fsgan_venv)
USAGE
  exit 2
}

TPU_NAME="${1:-${TPU_NAME:-}}"
ZONE="${2:-${ZONE:-}}"
[[ -n "${TPU_NAME}" && -n "${ZONE}" ]] || usage
REMOTE_DIR="${REMOTE_DIR:-fsgan_jax}"
VENV="${VENV:-fsgan_venv}"
JAX_VERSION="0.10.2"

gc=(gcloud compute tpus tpu-vm)
where=("${TPU_NAME}" "--zone=${ZONE}" --worker=all)
[[ -n "${PROJECT:-}" ]] && where+=("--project=${PROJECT}")

if [[ -n "${REPO_URL:-}" ]]; then
  fetch="rm -rf ${REMOTE_DIR} && git clone $(printf '%q' "${REPO_URL}") ${REMOTE_DIR}"
  [[ -n "${REPO_REF:-}" ]] && fetch+=" && git -C ${REMOTE_DIR} checkout $(printf '%q' "${REPO_REF}")"
  "${gc[@]}" ssh "${where[@]}" --command="${fetch}"
else
  repo_root="$(git -C "$(dirname "${BASH_SOURCE[0]}")" rev-parse --show-toplevel)"
  tarball="$(mktemp -t fsgan_jax.XXXXXX.tar.gz)"
  trap 'rm -f "${tarball}"' EXIT
  (cd "${repo_root}" && git ls-files -z --cached --others --exclude-standard \
    | xargs -0 tar --ignore-failed-read -czf "${tarball}")
  "${gc[@]}" scp "${tarball}" "${TPU_NAME}:fsgan_jax.tar.gz" "${where[@]:1}"
  "${gc[@]}" ssh "${where[@]}" \
    --command="rm -rf ${REMOTE_DIR} && mkdir -p ${REMOTE_DIR} && tar -xzf fsgan_jax.tar.gz -C ${REMOTE_DIR}"
fi

"${gc[@]}" ssh "${where[@]}" --command="set -e
python3 -m venv ${VENV}
${VENV}/bin/pip install -q --upgrade pip
${VENV}/bin/pip install -q -e ${REMOTE_DIR} 'jax[tpu]==${JAX_VERSION}' \
  -f https://storage.googleapis.com/jax-releases/libtpu_releases.html
${VENV}/bin/python -c 'import jax; print(jax.process_index(), jax.local_devices())'"
