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
"""FastGAN generator and discriminator (Liu et al., ICLR 2021), faithful to the official PyTorch code.

Reference: B. Liu, Y. Zhu, K. Song, A. Elgammal, "Towards Faster and Stabilized GAN Training for High-fidelity
Few-shot Image Synthesis", ICLR 2021; code github.com/odegeasslbc/FastGAN-pytorch (models.py).

Submodule names mirror the PyTorch ``state_dict`` paths (``feat_8`` / ``main.1`` ...), so the flax variable path
``('feat_8', '1', 'kernel')`` corresponds to the PyTorch key ``feat_8.1.weight_orig`` and converting official
checkpoints is a rename plus transpose (see ``fsgan_jax/convert.py``).

Official behaviours kept on purpose (README, "Faithfulness to the official FastGAN"):
* ``tanh`` is applied to the outputs only at 1024 px; at 256/512 the outputs are raw. ``Generator.tanh``
  (None = faithful) switches it.
* Every conv is spectrally normalised with one power iteration per call in train mode.
* BatchNorm uses batch statistics in train mode; the official sampler (eval.py) never calls ``.eval()``, so
  sampling in train mode (statistics updates discarded) is the faithful choice.

The 128 px variant (for tests and CPU demos) is this project's own: G stops at ``feat_128``; D's big branch starts
with the 3x3 stride-1 conv (as at 256), so its last feature map is 4x4, the big logit map 1x1 and the part
quadrants 4x4 (upsampled to 8x8 by the decoder's adaptive pool).
"""

from __future__ import annotations

import zlib

from typing import Optional, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from fsgan_jax import latents
from fsgan_jax.models import layers
from fsgan_jax.models.layers import Array, BatchNorm, Dtype, NoiseInjection, SNConv, SNProject4x4

RESOLUTIONS = (128, 256, 512, 1024)
G_MULT = {4: 16, 8: 8, 16: 4, 32: 2, 64: 2, 128: 1, 256: 0.5, 512: 0.25, 1024: 0.125}
D_MULT = {4: 16, 8: 16, 16: 8, 32: 4, 64: 2, 128: 1, 256: 0.5, 512: 0.25, 1024: 0.125}


def _widths(mult: dict[int, float], base: int) -> dict[int, int]:
  return {k: int(v * base) for k, v in mult.items()}


class UpBlock(nn.Module):
  """Upsample x2, conv3x3 -> 2C, BN, GLU (PyTorch ``UpBlock``; indices 1, 2)."""

  features: int
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x: Array, train: bool) -> Array:
    x = SNConv(2 * self.features, 3, padding=1, dtype=self.dtype, name='1')(layers.upsample2(x), train)
    return layers.glu(BatchNorm(self.dtype, name='2')(x, train))


class UpBlockComp(nn.Module):
  """Upsample, twice (conv3x3, noise, BN, GLU) (PyTorch ``UpBlockComp``; indices 1-3 and 5-7)."""

  features: int
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x: Array, train: bool) -> Array:
    x = layers.upsample2(x)
    for conv, noise, bn in (('1', '2', '3'), ('5', '6', '7')):
      x = SNConv(2 * self.features, 3, padding=1, dtype=self.dtype, name=conv)(x, train)
      x = NoiseInjection(name=noise)(x)
      x = layers.glu(BatchNorm(self.dtype, name=bn)(x, train))
    return x


class SEBlock(nn.Module):
  """Skip-layer excitation: ``big * sigmoid(conv1x1(swish(conv4x4(avgpool4(small)))))``."""

  features: int
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, small: Array, big: Array, train: bool) -> Array:
    s = layers.adaptive_avg_pool(small, 4)
    s = layers.swish(SNConv(self.features, 4, dtype=self.dtype, name='main.1')(s, train))
    s = jax.nn.sigmoid(SNConv(self.features, 1, dtype=self.dtype, name='main.3')(s, train))
    return big * s


class Generator(nn.Module):
  """FastGAN generator: z (N, nz) -> (image at ``im_size``, image at 128), NHWC.

  Attributes:
    ngf: base width (64 official).
    nz: latent size (256 official).
    nc: image channels.
    im_size: 128, 256, 512 or 1024.
    tanh: apply tanh to both outputs; None = official behaviour (only at 1024).
    dtype: compute dtype.
    latent: what maps the input ``z ~ N(0, I)`` to G's latent (``fsgan_jax.latents``): ``'gaussian'`` (nothing,
      official), ``'gmm'`` (learnable Gaussian mixture, params under ``latent``) or ``'miner'`` (MineGAN's miner,
      params under ``miner``).
    latent_components: mixture components K for ``latent='gmm'``.
  """

  ngf: int = 64
  nz: int = 256
  nc: int = 3
  im_size: int = 1024
  tanh: Optional[bool] = None
  dtype: Dtype = jnp.float32
  latent: str = 'gaussian'
  latent_components: int = 10

  @nn.compact
  def __call__(self, z: Array, train: bool = True) -> tuple[Array, Array]:
    if self.im_size not in RESOLUTIONS:
      raise ValueError(f'Generator.im_size must be one of {RESOLUTIONS}, got {self.im_size}')
    nfc = _widths(G_MULT, self.ngf)
    dt = self.dtype
    if self.latent == 'gmm':
      z = latents.GaussianMixtureLatent(self.latent_components, self.nz, name='latent')(z)
    elif self.latent == 'miner':
      z = latents.Miner(self.nz, name='miner')(z)
    elif self.latent != 'gaussian':
      raise ValueError(f'Generator.latent must be one of {latents.LATENTS}, got {self.latent!r}')
    x = SNProject4x4(2 * nfc[4], dtype=dt, name='init.init.0')(z, train)
    feat_4 = layers.glu(BatchNorm(dt, name='init.init.1')(x, train))
    feat_8 = UpBlockComp(nfc[8], dt, name='feat_8')(feat_4, train)
    feat_16 = UpBlock(nfc[16], dt, name='feat_16')(feat_8, train)
    feat_32 = UpBlockComp(nfc[32], dt, name='feat_32')(feat_16, train)
    feat_64 = SEBlock(nfc[64], dt, name='se_64')(
        feat_4, UpBlock(nfc[64], dt, name='feat_64')(feat_32, train), train)
    feat_128 = SEBlock(nfc[128], dt, name='se_128')(
        feat_8, UpBlockComp(nfc[128], dt, name='feat_128')(feat_64, train), train)
    last = feat_128
    if self.im_size >= 256:
      last = SEBlock(nfc[256], dt, name='se_256')(
          feat_16, UpBlock(nfc[256], dt, name='feat_256')(feat_128, train), train)
    if self.im_size >= 512:
      last = SEBlock(nfc[512], dt, name='se_512')(
          feat_32, UpBlockComp(nfc[512], dt, name='feat_512')(last, train), train)
    if self.im_size >= 1024:
      last = UpBlock(nfc[1024], dt, name='feat_1024')(last, train)
    img_128 = SNConv(self.nc, 1, dtype=dt, name='to_128')(feat_128, train)
    img_big = SNConv(self.nc, 3, padding=1, dtype=dt, name='to_big')(last, train)
    use_tanh = (self.im_size == 1024) if self.tanh is None else self.tanh
    if use_tanh:
      img_big, img_128 = jnp.tanh(img_big), jnp.tanh(img_128)
    return img_big.astype(jnp.float32), img_128.astype(jnp.float32)


class DownBlock(nn.Module):
  """conv4x4 stride 2, BN, LeakyReLU(0.2) (PyTorch ``DownBlock.main``)."""

  features: int
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x: Array, train: bool) -> Array:
    x = SNConv(self.features, 4, 2, 1, dtype=self.dtype, name='main.0')(x, train)
    return layers.leaky_relu(BatchNorm(self.dtype, name='main.1')(x, train))


class DownBlockComp(nn.Module):
  """``(main(x) + direct(x)) / 2`` with main = two convs and direct = avgpool + conv1x1."""

  features: int
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x: Array, train: bool) -> Array:
    f, dt = self.features, self.dtype
    m = SNConv(f, 4, 2, 1, dtype=dt, name='main.0')(x, train)
    m = layers.leaky_relu(BatchNorm(dt, name='main.1')(m, train))
    m = SNConv(f, 3, 1, 1, dtype=dt, name='main.3')(m, train)
    m = layers.leaky_relu(BatchNorm(dt, name='main.4')(m, train))
    d = SNConv(f, 1, dtype=dt, name='direct.1')(layers.avg_pool2(x), train)
    d = layers.leaky_relu(BatchNorm(dt, name='direct.2')(d, train))
    return (m + d) / 2


class SimpleDecoder(nn.Module):
  """Adaptive pool to 8x8, four up blocks, conv3x3, tanh -> 128x128.

  The official widths are fixed (base 32, independent of ndf); ``width`` exists only so CPU demos can shrink
  the decoders, which otherwise dominate the cost of a small model.
  """

  nc: int = 3
  width: int = 32
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x: Array, train: bool) -> Array:
    nfc = _widths(G_MULT, self.width)
    x = layers.adaptive_avg_pool(x, 8)
    for i, res in enumerate((16, 32, 64, 128)):
      x = UpBlock(nfc[res], self.dtype, name=f'main.{i + 1}')(x, train)
    x = SNConv(self.nc, 3, padding=1, dtype=self.dtype, name='main.5')(x, train)
    return jnp.tanh(x).astype(jnp.float32)


class Discriminator(nn.Module):
  """FastGAN discriminator with a big branch (``im_size``) and a small branch (128 px).

  ``__call__(big, small, part)`` returns logits of shape (N, L): the big branch's map flattened, then the small
  branch's 5x5 map (L = 50 at 256..1024 px, 26 at 128 px). The official code returns the same values flattened
  over the batch (``cat([rf_big.view(-1), rf_small.view(-1)])``). With ``part`` given (real images), it also
  returns the three 128 px reconstructions (whole, small, quadrant ``part``), as the official ``label='real'``.
  With ``patch_head`` (CDC, this project's adaptation) the logits gain one patch logit per cell of the
  ``se_4_32`` feature map (a 1x1 spectral-norm conv), appended after the L image-level logits.
  """

  ndf: int = 64
  nc: int = 3
  im_size: int = 1024
  decoder_width: int = 32
  dtype: Dtype = jnp.float32
  patch_head: bool = False

  @nn.compact
  def __call__(self, big: Array, small: Array, part: Optional[Array] = None, train: bool = True):
    if self.im_size not in RESOLUTIONS:
      raise ValueError(f'Discriminator.im_size must be one of {RESOLUTIONS}, got {self.im_size}')
    nfc = _widths(D_MULT, self.ndf)
    dt = self.dtype
    x = big
    if self.im_size == 1024:
      x = layers.leaky_relu(SNConv(nfc[1024], 4, 2, 1, dtype=dt, name='down_from_big.0')(x, train))
      x = SNConv(nfc[512], 4, 2, 1, dtype=dt, name='down_from_big.2')(x, train)
      x = layers.leaky_relu(BatchNorm(dt, name='down_from_big.3')(x, train))
    elif self.im_size == 512:
      x = layers.leaky_relu(SNConv(nfc[512], 4, 2, 1, dtype=dt, name='down_from_big.0')(x, train))
    else:
      x = layers.leaky_relu(SNConv(nfc[512], 3, 1, 1, dtype=dt, name='down_from_big.0')(x, train))
    feat_2 = x
    feat_4 = DownBlockComp(nfc[256], dt, name='down_4')(feat_2, train)
    feat_8 = DownBlockComp(nfc[128], dt, name='down_8')(feat_4, train)
    feat_16 = DownBlockComp(nfc[64], dt, name='down_16')(feat_8, train)
    feat_16 = SEBlock(nfc[64], dt, name='se_2_16')(feat_2, feat_16, train)
    feat_32 = DownBlockComp(nfc[32], dt, name='down_32')(feat_16, train)
    feat_32 = SEBlock(nfc[32], dt, name='se_4_32')(feat_4, feat_32, train)
    feat_last = DownBlockComp(nfc[16], dt, name='down_64')(feat_32, train)
    feat_last = SEBlock(nfc[16], dt, name='se_8_64')(feat_8, feat_last, train)

    r = SNConv(nfc[8], 1, dtype=dt, name='rf_big.0')(feat_last, train)
    r = layers.leaky_relu(BatchNorm(dt, name='rf_big.1')(r, train))
    rf_big = SNConv(1, 4, dtype=dt, name='rf_big.3')(r, train)

    s = layers.leaky_relu(SNConv(nfc[256], 4, 2, 1, dtype=dt, name='down_from_small.0')(small, train))
    for i, res in enumerate((128, 64, 32)):
      s = DownBlock(nfc[res], dt, name=f'down_from_small.{i + 2}')(s, train)
    feat_small = s
    rf_small = SNConv(1, 4, dtype=dt, name='rf_small')(feat_small, train)

    n = big.shape[0]
    outs = [rf_big.reshape(n, -1), rf_small.reshape(n, -1)]
    if self.patch_head:  # CDC's patch-level realism: one logit per cell of feat_32 (16x16 at 256 px, 8x8 at 128)
      outs.append(SNConv(1, 1, dtype=dt, name='patch_head')(feat_32, train).reshape(n, -1))
    logits = jnp.concatenate(outs, axis=1).astype(jnp.float32)
    if part is None:
      return logits
    dw = self.decoder_width
    rec_big = SimpleDecoder(self.nc, dw, dt, name='decoder_big')(feat_last, train)
    rec_small = SimpleDecoder(self.nc, dw, dt, name='decoder_small')(feat_small, train)
    rec_part = SimpleDecoder(self.nc, dw, dt, name='decoder_part')(crop_quadrant(feat_32, part), train)
    return logits, (rec_big, rec_small, rec_part)


def crop_quadrant(x: Array, part: Array) -> Array:
  """Quadrant ``part`` of an NHWC map: 0 top-left, 1 top-right, 2 bottom-left, 3 bottom-right.

  ``part`` may be a traced scalar (one quadrant per batch, as the official code draws it).
  """
  h, w = x.shape[1] // 2, x.shape[2] // 2
  part = jnp.asarray(part, jnp.int32)
  return jax.lax.dynamic_slice_in_dim(
      jax.lax.dynamic_slice_in_dim(x, (part // 2) * h, h, axis=1), (part % 2) * w, w, axis=2)


def count_params(params) -> int:
  """Number of trainable scalars in a parameter tree."""
  return sum(int(x.size) for x in jax.tree_util.tree_leaves(params))


def _init_leaf(seed: Sequence[int], names: list[str], shape: tuple[int, ...]) -> np.ndarray:
  """FastGAN's initial value of one variable (``weights_init`` for params, PyTorch defaults for buffers)."""
  rng = np.random.default_rng([*seed, zlib.crc32('/'.join(names).encode())])
  kind = (names[0], names[-1])
  if names[1:2] == ['miner'] and kind == ('params', 'kernel'):  # identity start: see latents.Miner
    if names[2] == 'out':
      return np.zeros(shape, np.float32)
    return (rng.standard_normal(shape) * np.sqrt(2.0 / shape[0])).astype(np.float32)
  if kind == ('params', 'means'):
    return rng.uniform(-1.0, 1.0, shape).astype(np.float32)
  if kind == ('params', 'log_sigma'):
    return np.full(shape, np.log(latents.GMM_INIT_SIGMA), np.float32)
  if kind == ('params', 'kernel'):
    return (0.02 * rng.standard_normal(shape)).astype(np.float32)
  if kind == ('params', 'scale'):
    return (1.0 + 0.02 * rng.standard_normal(shape)).astype(np.float32)
  if kind in (('params', 'bias'), ('params', 'weight'), ('batch_stats', 'mean')):
    return np.zeros(shape, np.float32)
  if kind == ('batch_stats', 'var'):
    return np.ones(shape, np.float32)
  if kind in (('batch_stats', 'u'), ('batch_stats', 'v')):
    x = rng.standard_normal(shape)
    return (x / max(np.linalg.norm(x), layers.SN_EPS)).astype(np.float32)
  raise ValueError(f'no initialiser for variable {"/".join(names)}')


def variable_shapes(g: Generator, d: Discriminator) -> tuple[dict, dict]:
  """``jax.ShapeDtypeStruct`` trees of G's and D's variables (no computation)."""
  keys = {'params': jax.random.PRNGKey(0), 'noise': jax.random.PRNGKey(0)}
  z = jnp.zeros((1, g.nz), jnp.float32)
  big = jnp.zeros((1, d.im_size, d.im_size, d.nc), jnp.float32)
  small = jnp.zeros((1, 128, 128, d.nc), jnp.float32)
  return (jax.eval_shape(lambda: g.init(keys, z, train=False)),
          jax.eval_shape(lambda: d.init(keys, big, small, 0, train=False)))


def init_models(key: Array, g: Generator, d: Discriminator) -> tuple[dict, dict]:
  """G and D variables (``params``, ``batch_stats``) as numpy arrays, initialised as the official code.

  Conv kernels N(0, 0.02), BN scale N(1, 0.02), BN bias 0, noise weights 0, spectral-norm u/v random unit
  vectors. The structure comes from ``jax.eval_shape`` of ``Module.init``; the values are drawn on the host
  with numpy (seeded by ``key`` and the variable path) because ``Module.init`` compiles one threefry kernel per
  distinct parameter shape, which costs 20-40 s on a CPU. ``Module.init`` gives the same distributions.
  """
  seed = [int(w) for w in np.asarray(jax.random.key_data(key)).ravel()]
  out = []
  for offset, struct in enumerate(variable_shapes(g, d)):
    out.append(jax.tree_util.tree_map_with_path(
        lambda path, leaf, o=offset: _init_leaf(seed + [o], [p.key for p in path], tuple(leaf.shape)), struct))
  return out[0], out[1]


def resize_real_for_d(x: Array, im_size: int) -> tuple[Array, Array]:
  """What the official ``D(imgs, 'real')`` does to a tensor input: nearest resize to ``im_size`` and 128."""
  return layers.nearest_resize(x, im_size), layers.nearest_resize(x, 128)


__all__: Sequence[str] = ('Generator', 'Discriminator', 'SimpleDecoder', 'init_models', 'count_params',
                          'crop_quadrant', 'resize_real_for_d', 'RESOLUTIONS')
