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
"""Generates the fixtures for `tests/torch_pickle_test.py`.

NOT run in CI: it needs real PyTorch, which the project does not depend on.
The generated files are committed. To regenerate them::

  python3 -m venv /tmp/torchvenv
  /tmp/torchvenv/bin/pip install torch==2.13.0 numpy
  /tmp/torchvenv/bin/python tests/testdata/torch_pickle/make_fixtures.py

Files written next to this script:

* `fastgan_like.pth`: a small FastGAN-style checkpoint (zip format) with
  `g` (OrderedDict state dict), `d`, `g_ema` (list of tensors) and `opt_g`
  (Adam state dict after one step). Covers float32/float64/float16/bfloat16/
  int64/int32/uint8/bool/uint16, transposed and offset views, a scalar, an
  empty tensor and an `nn.Parameter`.
* `fastgan_like_legacy.pth`: `g` and `g_ema` of the same checkpoint saved with
  the legacy (non-zip) format.
* `big_endian.pth`: a zip checkpoint rewritten to big-endian byte order (as
  written on a big-endian machine); loads as `big_endian_expected` in the npz.
* `expected.npz`: the expected arrays, keyed by `/`-joined paths such as
  `g/conv.weight` or `opt_g/state/0/exp_avg`; bfloat16 values are stored as
  their uint16 bit patterns. `__dtypes__` maps each key to the torch dtype
  name.
* `malicious.pth`: a torch.save zip whose pickle calls `os.system` on load
  (writes `pwned.txt` in the working directory). Must be refused.
"""

import collections
import io
import os
import pathlib
import zipfile

import numpy as np
import torch

_OUT = pathlib.Path(__file__).resolve().parent


class _Evil:
  """Pickles as a call to os.system."""

  def __reduce__(self):
    return (os.system, ('echo pwned > pwned.txt',))


def _build_checkpoint() -> dict:
  torch.manual_seed(0)
  base = torch.arange(20, dtype=torch.float32).reshape(4, 5)
  g = collections.OrderedDict()
  g['init.conv.weight'] = torch.randn(4, 3, 3, 3)
  g['init.conv.bias'] = torch.randn(4)
  # Non-contiguous: shape (3, 5), stride (1, 3).
  g['fc.weight_t'] = torch.randn(5, 3).t()
  # Slice view sharing `base`'s storage: offset 7, stride (5, 1).
  g['slice'] = base[1:3, 2:]
  g['base'] = base
  g['bn.num_batches_tracked'] = torch.tensor(7, dtype=torch.int64)
  g['bn.running_mean'] = torch.randn(4).half()
  d = {
      'f64': torch.randn(2, 3, dtype=torch.float64),
      'bf16': torch.randn(3, 2).to(torch.bfloat16),
      'i32': torch.arange(-3, 3, dtype=torch.int32).reshape(2, 3),
      'u8': torch.arange(250, 256, dtype=torch.int64).to(torch.uint8),
      'bool': torch.tensor([True, False, True]),
      'u16': torch.tensor([1, 2, 65535]).to(torch.uint16),
      'empty': torch.zeros(0, 3),
      'param': torch.nn.Parameter(torch.randn(2, 2)),
      'every_other': torch.arange(10, dtype=torch.int64)[1::2],
  }
  model = torch.nn.Sequential(torch.nn.Linear(3, 2), torch.nn.Linear(2, 1))
  opt = torch.optim.Adam(model.parameters(), lr=2e-4, betas=(0.5, 0.999))
  model(torch.randn(4, 3)).sum().backward()
  opt.step()
  g_ema = [p.detach().clone() for p in model.parameters()]
  return {'g': g, 'd': d, 'g_ema': g_ema, 'opt_g': opt.state_dict()}


def _flatten(obj, prefix: str, out: dict) -> None:
  if isinstance(obj, torch.Tensor):
    out[prefix] = obj.detach()
  elif isinstance(obj, dict):
    for k, v in obj.items():
      _flatten(v, f'{prefix}/{k}' if prefix else str(k), out)
  elif isinstance(obj, (list, tuple)):
    for i, v in enumerate(obj):
      _flatten(v, f'{prefix}/{i}', out)


def _to_numpy(t: torch.Tensor) -> np.ndarray:
  if t.dtype == torch.bfloat16:
    return t.contiguous().view(torch.int16).numpy().view(np.uint16)
  if t.dtype == torch.uint16:
    return t.to(torch.int32).numpy().astype(np.uint16)
  return t.contiguous().numpy()


def _make_big_endian(little: bytes) -> bytes:
  """Rewrites a zip checkpoint of float32/int64 storages to big-endian."""
  itemsizes = {'0': 4, '1': 8}
  src = zipfile.ZipFile(io.BytesIO(little))
  buf = io.BytesIO()
  with zipfile.ZipFile(buf, 'w', zipfile.ZIP_STORED) as dst:
    for name in src.namelist():
      data = src.read(name)
      if name.endswith('/byteorder'):
        data = b'big'
      elif '/data/' in name:
        size = itemsizes[name.rsplit('/', 1)[1]]
        data = np.frombuffer(data, f'<u{size}').astype(f'>u{size}').tobytes()
      dst.writestr(name, data)
  return buf.getvalue()


def main() -> None:
  ckpt = _build_checkpoint()
  torch.save(ckpt, _OUT / 'fastgan_like.pth')
  torch.save({'g': ckpt['g'], 'g_ema': ckpt['g_ema']},
             _OUT / 'fastgan_like_legacy.pth',
             _use_new_zipfile_serialization=False)

  big = {'x': torch.randn(2, 3), 'n': torch.tensor([1, -2], dtype=torch.int64)}
  buf = io.BytesIO()
  torch.save(big, buf)
  big_bytes = _make_big_endian(buf.getvalue())
  (_OUT / 'big_endian.pth').write_bytes(big_bytes)
  reloaded = torch.load(io.BytesIO(big_bytes))
  for k, v in big.items():
    assert torch.equal(reloaded[k], v), k

  flat = {}
  _flatten(ckpt, '', flat)
  _flatten(big, 'big_endian_expected', flat)
  arrays = {k: _to_numpy(v) for k, v in flat.items()}
  arrays['__dtypes__'] = np.array(
      [[k, str(v.dtype).removeprefix('torch.')] for k, v in flat.items()])
  np.savez_compressed(_OUT / 'expected.npz', **arrays)

  torch.save({'w': torch.ones(2), 'evil': _Evil()}, _OUT / 'malicious.pth')

  # Sanity check: torch itself reads the checkpoints back.
  assert torch.load(_OUT / 'fastgan_like.pth', weights_only=True)
  assert torch.load(_OUT / 'fastgan_like_legacy.pth', weights_only=True)
  for p in sorted(_OUT.iterdir()):
    print(f'{p.name}: {p.stat().st_size} bytes')


if __name__ == '__main__':
  main()
