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
"""Conversion between official FastGAN-pytorch state dicts and this package's Flax variables.

Because the Flax submodule names mirror the PyTorch module paths (see ``models/fastgan.py``), a Flax leaf
``(collection, *module_path, leaf)`` corresponds to the PyTorch key ``'.'.join(module_path) + '.' + torch_leaf``:

=================  ==================  =========================================
Flax collection    Flax leaf           PyTorch leaf (layout change)
=================  ==================  =========================================
params             kernel              weight_orig (OIHW -> HWIO; ConvTranspose
                                        (in, out, kh, kw) -> (in, kh, kw, out))
params             scale / bias        BatchNorm weight / bias
params             weight              NoiseInjection weight
batch_stats        u / v               weight_u / weight_v (spectral norm)
batch_stats        mean / var          running_mean / running_var
=================  ==================  =========================================

``num_batches_tracked`` has no counterpart (momentum is fixed) and is ignored. Checkpoints saved from
``nn.DataParallel`` carry a ``module.`` prefix, which is stripped.

Command line (no torch needed)::

  python -m fsgan_jax.convert --pth=all_50000.pth --im_size=1024 --out=DIR [--ngf=64 --ndf=64 --nc=3]

writes an Orbax checkpoint of ``{'g': ..., 'g_ema': ..., 'd': ...}`` variables that ``--mode=sample`` can read.
"""

from __future__ import annotations

import argparse
import os
import re
from typing import Any, Mapping

import jax
import numpy as np

from fsgan_jax import checkpointing, config_lib, default_config, errors, gan, torch_pickle, train_state
from fsgan_jax import workdir as workdir_lib
from fsgan_jax.models import fastgan

_LEAF_MAP = {
    ('params', 'kernel'): 'weight_orig',
    ('params', 'scale'): 'weight',
    ('params', 'bias'): 'bias',
    ('params', 'weight'): 'weight',
    ('batch_stats', 'u'): 'weight_u',
    ('batch_stats', 'v'): 'weight_v',
    ('batch_stats', 'mean'): 'running_mean',
    ('batch_stats', 'var'): 'running_var',
}
_CONV_TRANSPOSE_MODULES = ('init.init.0',)


class ConversionError(errors.FsganError):
  """A state dict does not fit the model it is loaded into."""


def _path_names(path) -> list[str]:
  return [p.key if hasattr(p, 'key') else str(p) for p in path]


def torch_key(collection: str, path: list[str]) -> str:
  """PyTorch state-dict key of the Flax leaf ``collection/path``."""
  *module, leaf = path
  try:
    return '.'.join(module) + '.' + _LEAF_MAP[(collection, leaf)]
  except KeyError:
    raise ConversionError(f'no PyTorch counterpart for Flax leaf {collection}/{"/".join(path)}') from None


def _to_flax_layout(module: str, leaf: str, value: np.ndarray) -> np.ndarray:
  if leaf == 'kernel':
    if module in _CONV_TRANSPOSE_MODULES:
      return value.transpose(0, 2, 3, 1)
    return value.transpose(2, 3, 1, 0)
  return value


def _to_torch_layout(module: str, leaf: str, value: np.ndarray) -> np.ndarray:
  if leaf == 'kernel':
    if module in _CONV_TRANSPOSE_MODULES:
      return value.transpose(0, 3, 1, 2)
    return value.transpose(3, 2, 0, 1)
  return value


def state_dict_to_variables(state_dict: Mapping[str, Any], template: Mapping[str, Any], *,
                            name: str = 'state_dict') -> dict[str, Any]:
  """Fills a Flax variable tree shaped like ``template`` from a PyTorch state dict.

  Args:
    state_dict: PyTorch key -> array (numpy or anything ``np.asarray`` takes).
    template: Flax variables (``{'params': ..., 'batch_stats': ...}``) giving the structure and shapes;
      leaves may be arrays or ``jax.ShapeDtypeStruct``.
    name: how to call the source in error messages (e.g. the file and its ``'g'`` entry).

  Returns:
    A variable tree of float32 numpy arrays with the template's structure.

  Raises:
    ConversionError: naming the missing, unexpected or mis-shaped keys.
  """
  sd = {k.removeprefix('module.'): v for k, v in state_dict.items()}
  used = set()
  problems = []

  def fill(path, leaf):
    names = _path_names(path)
    collection, rest = names[0], names[1:]
    key = torch_key(collection, rest)
    if key not in sd:
      problems.append(f'missing key {key!r}')
      return np.zeros(leaf.shape, np.float32)
    used.add(key)
    value = _to_flax_layout('.'.join(rest[:-1]), rest[-1], np.asarray(sd[key], np.float32))
    if value.shape != tuple(leaf.shape):
      problems.append(f'{key!r}: shape {value.shape} (after layout change) but the model needs {tuple(leaf.shape)}')
    return value

  out = jax.tree_util.tree_map_with_path(fill, dict(template))
  unexpected = sorted(k for k in sd if k not in used and not k.endswith('num_batches_tracked'))
  if unexpected:
    problems.append(f'unexpected keys {unexpected[:8]}{" ..." if len(unexpected) > 8 else ""}')
  if problems:
    raise ConversionError(f'{name} does not match the model (check im_size/ngf/ndf/nc): ' + '; '.join(problems[:10]))
  return out


def variables_to_state_dict(variables: Mapping[str, Any]) -> dict[str, np.ndarray]:
  """The inverse of :func:`state_dict_to_variables` (PyTorch layout, no ``num_batches_tracked``)."""
  out = {}
  for path, leaf in jax.tree_util.tree_leaves_with_path(dict(variables)):
    names = _path_names(path)
    rest = names[1:]
    out[torch_key(names[0], rest)] = _to_torch_layout('.'.join(rest[:-1]), rest[-1], np.asarray(leaf))
  return out


def ema_list_to_params(ema: list, g_params_template: Mapping[str, Any], g_state_dict: Mapping[str, Any]):
  """Maps the official ``g_ema`` list (tensors in ``netG.parameters()`` order) onto G's params.

  PyTorch's parameter order is the registration order of ``weight_orig`` / BN ``weight``, ``bias`` / noise
  ``weight``, which is the order of the non-buffer entries in the G state dict.
  """
  sd = {k.removeprefix('module.'): v for k, v in g_state_dict.items()}
  param_keys = [k for k in sd if not k.endswith(('weight_u', 'weight_v', 'running_mean', 'running_var',
                                                   'num_batches_tracked'))]
  if len(param_keys) != len(ema):
    raise ConversionError(f'g_ema has {len(ema)} tensors but G has {len(param_keys)} parameters')
  ema_sd = dict(zip(param_keys, ema))
  return state_dict_to_variables(ema_sd, {'params': g_params_template}, name='g_ema')['params']


def checkpoint_to_workdir(ckpt: Mapping[str, Any], workdir: str, *, im_size: int, ngf: int = 64, ndf: int = 64,
                          nz: int = 256, nc: int = 3, step: int = 0, name: str = 'checkpoint') -> int:
  """Writes an official FastGAN checkpoint dict as a fsgan_jax workdir (config.json + Orbax checkpoint).

  Args:
    ckpt: ``{'g': state_dict, 'd': state_dict[, 'g_ema': list]}`` as saved by the official train.py.
    workdir: output folder; must not already hold checkpoints (nothing is overwritten).
    im_size, ngf, ndf, nz, nc: the official model's settings (train.py uses ngf = ndf = 64, nz = 256, nc = 3).
    step: the iteration the checkpoint was taken at (kept as the state's step).
    name: how to call the source in error messages.

  Returns:
    The step written. ``python -m fsgan_jax.main --mode=sample --workdir=WORKDIR`` then samples from the EMA
    generator (``g_ema`` when present, else ``g``); training can resume from it (Adam states start fresh).
  """
  if 'g' not in ckpt or 'd' not in ckpt:
    raise ConversionError(f'{name} has no "g"/"d" state dicts (keys: {sorted(ckpt)[:10]})')
  if os.path.isdir(os.path.join(workdir, 'checkpoints')) and os.listdir(os.path.join(workdir, 'checkpoints')):
    raise FileExistsError(f'{workdir} already holds checkpoints; choose an empty --out')
  config = default_config.get_config()
  config.model.resolution, config.model.ngf, config.model.ndf, config.model.nz = im_size, ngf, ndf, nz
  config.data.channels = nc
  config_lib.validate(config)
  setup = gan.build_setup(config)
  g_shapes, d_shapes = fastgan.variable_shapes(setup.generator, setup.discriminator)
  g_vars = state_dict_to_variables(ckpt['g'], g_shapes, name=f'{name}["g"]')
  d_vars = state_dict_to_variables(ckpt['d'], d_shapes, name=f'{name}["d"]')
  ema = (ema_list_to_params(list(ckpt['g_ema']), g_shapes['params'], ckpt['g'])
         if ckpt.get('g_ema') is not None else g_vars['params'])
  state = train_state.TrainState(
      step=np.asarray(step, np.int32), rng=np.asarray(jax.random.PRNGKey(config.seed)),
      g_params=g_vars['params'], g_stats=g_vars['batch_stats'], d_params=d_vars['params'],
      d_stats=d_vars['batch_stats'], g_opt_state=setup.g_tx.init(g_vars['params']),
      d_opt_state=setup.d_tx.init(d_vars['params']), ema_params=ema)
  state = jax.tree_util.tree_map(jax.numpy.asarray, state)
  workdir_lib.write_config(config, workdir)
  manager = checkpointing.make_manager(workdir, config.keep_checkpoints, 1)
  checkpointing.save(manager, step, state, force=True)
  manager.wait_until_finished()
  return step


def main(argv=None) -> None:
  """``python -m fsgan_jax.convert --pth=FILE --im_size=N --out=WORKDIR [--ngf --ndf --nz --nc --step]``."""

  p = argparse.ArgumentParser(description='Convert an official FastGAN-pytorch checkpoint (no torch needed).')
  p.add_argument('--pth', required=True, help='all_<iter>.pth or <iter>.pth from FastGAN-pytorch')
  p.add_argument('--im_size', type=int, required=True)
  p.add_argument('--out', required=True, help='new workdir to write')
  p.add_argument('--ngf', type=int, default=64)
  p.add_argument('--ndf', type=int, default=64)
  p.add_argument('--nz', type=int, default=256)
  p.add_argument('--nc', type=int, default=3)
  p.add_argument('--step', type=int, default=None, help='default: the number in the file name')
  a = p.parse_args(argv)
  try:
    ckpt = torch_pickle.load(a.pth)
    if a.step is None:
      m = re.search(r'(\d+)\.pth?$', os.fspath(a.pth))
      a.step = int(m.group(1)) if m else 0
    step = checkpoint_to_workdir(ckpt, a.out, im_size=a.im_size, ngf=a.ngf, ndf=a.ndf, nz=a.nz, nc=a.nc,
                                 step=a.step, name=os.fspath(a.pth))
  except (ValueError, OSError) as e:
    raise SystemExit(f'error: {e}') from None
  print(f'wrote {a.out} (step {step}); sample with: python -m fsgan_jax.main --mode=sample --workdir={a.out}')


if __name__ == '__main__':
  main()
