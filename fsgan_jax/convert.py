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

from typing import Any, Mapping

import jax
import numpy as np

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


class ConversionError(ValueError):
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
  errors = []

  def fill(path, leaf):
    names = _path_names(path)
    collection, rest = names[0], names[1:]
    key = torch_key(collection, rest)
    if key not in sd:
      errors.append(f'missing key {key!r}')
      return np.zeros(leaf.shape, np.float32)
    used.add(key)
    value = _to_flax_layout('.'.join(rest[:-1]), rest[-1], np.asarray(sd[key], np.float32))
    if value.shape != tuple(leaf.shape):
      errors.append(f'{key!r}: shape {value.shape} (after layout change) but the model needs {tuple(leaf.shape)}')
    return value

  out = jax.tree_util.tree_map_with_path(fill, dict(template))
  unexpected = sorted(k for k in sd if k not in used and not k.endswith('num_batches_tracked'))
  if unexpected:
    errors.append(f'unexpected keys {unexpected[:8]}{" ..." if len(unexpected) > 8 else ""}')
  if errors:
    raise ConversionError(f'{name} does not match the model (check im_size/ngf/ndf/nc): ' + '; '.join(errors[:10]))
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
