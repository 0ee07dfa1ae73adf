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
"""An exported generator: the EMA generator of one checkpoint with its config, small enough to ship and checksummed.

``python -m fsgan_jax.export --workdir=W [--step=K] --out=pretrained/NAME [--dtype=bfloat16]`` writes
``NAME/config.json`` (the run's config), ``NAME/generator.npz`` (EMA parameters and G's BatchNorm / spectral norm
statistics; no optimiser, no discriminator) and ``NAME/MANIFEST.json`` (format, step, storage dtype and the sha256
of both files). Such a folder is used like a training workdir by ``--mode=sample`` and ``--mode=eval``
(``workdir.load_run`` reads it), read-only: both modes need ``--out`` for what they write. A missing or altered file
is refused with one line naming it. ``--dtype=bfloat16`` stores floating-point arrays as bfloat16 (halves the size;
they are computed in float32 after loading).
"""

from __future__ import annotations

import hashlib
import io
import json
import os
from typing import Any

import jax
import ml_dtypes
import numpy as np

from fsgan_jax import errors, fileio

FORMAT = 'fsgan_jax.pretrained/1'
MANIFEST = 'MANIFEST.json'
CONFIG = 'config.json'
GENERATOR = 'generator.npz'
STORAGE_DTYPES = ('float32', 'bfloat16')


class PretrainedError(errors.FsganError):
  """An exported generator folder is incomplete, altered or not one."""


def is_pretrained(path: str) -> bool:
  """Whether ``path`` is an exported generator folder (it has a MANIFEST.json)."""
  return fileio.exists(fileio.join(path, MANIFEST))


def _sha256(data: bytes) -> str:
  return hashlib.sha256(data).hexdigest()


def _flatten(tree: Any, prefix: str = '') -> dict[str, np.ndarray]:
  out = {}
  for k, v in tree.items():
    if isinstance(v, dict):
      out.update(_flatten(v, f'{prefix}{k}/'))
    else:
      out[f'{prefix}{k}'] = np.asarray(jax.device_get(v))
  return out


def _unflatten(flat: dict[str, np.ndarray]) -> dict[str, Any]:
  tree: dict[str, Any] = {}
  for key, v in flat.items():
    node = tree
    *path, leaf = key.split('/')
    for p in path:
      node = node.setdefault(p, {})
    node[leaf] = v
  return tree


def export(config_json: str, ema_params: Any, g_stats: Any, step: int, out: str, dtype: str = 'float32',
           source: str = '') -> dict[str, Any]:
  """Writes ``out/{config.json, generator.npz, MANIFEST.json}``; returns the manifest.

  ``out`` must not hold an exported generator already (nothing is overwritten).
  """
  if dtype not in STORAGE_DTYPES:
    raise PretrainedError(f'--dtype={dtype!r}; choose one of {list(STORAGE_DTYPES)}')
  if fileio.exists(fileio.join(out, MANIFEST)) or fileio.exists(fileio.join(out, GENERATOR)):
    raise PretrainedError(f'{out} already holds an exported generator; choose another --out')
  flat = {f'params/{k}': v for k, v in _flatten(ema_params).items()}
  flat.update({f'batch_stats/{k}': v for k, v in _flatten(g_stats).items()})
  if dtype == 'bfloat16':
    flat = {k: (v.astype(ml_dtypes.bfloat16).view(np.uint16) if np.issubdtype(v.dtype, np.floating) else v)
            for k, v in flat.items()}
  buf = io.BytesIO()
  np.savez(buf, **flat)
  files = {CONFIG: config_json.encode(), GENERATOR: buf.getvalue()}
  manifest = {'format': FORMAT, 'step': int(step), 'storage_dtype': dtype, 'source': source,
              'sha256': {name: _sha256(data) for name, data in files.items()},
              'bytes': {name: len(data) for name, data in files.items()}}
  fileio.makedirs(out)
  for name, data in files.items():
    path = fileio.join(out, name)
    if name == CONFIG:
      fileio.write_text_atomic(path, data.decode())
    else:
      with open(path + '.tmp', 'wb') as f:
        f.write(data)
      os.replace(path + '.tmp', path)
  fileio.write_text_atomic(fileio.join(out, MANIFEST), json.dumps(manifest, indent=1, sort_keys=True))
  return manifest


def _read_checked(path: str, name: str, manifest: dict[str, Any]) -> bytes:
  file = fileio.join(path, name)
  if not fileio.exists(file):
    raise PretrainedError(f'{file} is missing: the exported generator {path} is incomplete')
  with open(file, 'rb') as f:
    data = f.read()
  expected = manifest.get('sha256', {}).get(name)
  if _sha256(data) != expected:
    raise PretrainedError(f'{file}: checksum mismatch (sha256 {_sha256(data)[:16]}..., MANIFEST.json has '
                          f'{str(expected)[:16]}...): the file was altered or damaged; restore it')
  return data


def read_manifest(path: str) -> dict[str, Any]:
  file = fileio.join(path, MANIFEST)
  try:
    manifest = json.loads(fileio.read_text(file))
  except (json.JSONDecodeError, UnicodeDecodeError) as e:
    raise PretrainedError(f'{file} is not valid JSON ({e})') from None
  if manifest.get('format') != FORMAT or manifest.get('storage_dtype') not in STORAGE_DTYPES:
    raise PretrainedError(f'{file}: format {manifest.get("format")!r} / storage_dtype '
                          f'{manifest.get("storage_dtype")!r} is not {FORMAT!r} with one of {list(STORAGE_DTYPES)}')
  return manifest


def load(path: str) -> tuple[str, dict[str, Any], dict[str, Any], int]:
  """``(config JSON text, EMA params, G statistics, step)`` of an exported generator, checksums verified.

  Arrays come back as float32 numpy arrays (whatever the storage dtype), in the template layout of the config's G.
  """
  manifest = read_manifest(path)
  config_json = _read_checked(path, CONFIG, manifest).decode()
  with np.load(io.BytesIO(_read_checked(path, GENERATOR, manifest))) as npz:
    flat = {k: npz[k] for k in npz.files}
  if manifest['storage_dtype'] == 'bfloat16':
    flat = {k: (v.view(ml_dtypes.bfloat16).astype(np.float32) if v.dtype == np.uint16 else v)
            for k, v in flat.items()}
  tree = _unflatten(flat)
  if set(tree) != {'params', 'batch_stats'}:
    raise PretrainedError(f'{fileio.join(path, GENERATOR)} holds {sorted(tree)}, not params and batch_stats')
  return config_json, tree['params'], tree['batch_stats'], int(manifest['step'])
