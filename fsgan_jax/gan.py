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
"""The GAN of a config: models, optimisers and method switches (``GanSetup``), mesh, state, constants, step.

Data parallel over all devices (and hosts) with ``jax.jit`` on a 1-D ``Mesh(('data',))``: the state is
replicated, the batch is sharded along 'data', and XLA inserts the gradient and BatchNorm all-reduces. Because
BN statistics are computed over the global batch, a step on N devices equals the step on 1 device.
(``jax.pmap`` would do the same; in JAX 0.10 it is itself a wrapper over jit + shard_map, and jit with
NamedSharding is the recommended form, which is why it is used here.)

The few-shot methods' switches come from ``methods`` (adding one touches ``default_config``, ``methods`` and
``steps`` only).
"""

from __future__ import annotations

import functools
from typing import Any, Optional

import jax
import ml_collections
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from fsgan_jax import compiler, config_lib, losses, methods, steps, train_state
from fsgan_jax.models import fastgan


def build_models(config: ml_collections.ConfigDict) -> tuple[fastgan.Generator, fastgan.Discriminator]:
  m = config.model
  dtype = config_lib.DTYPES[m.dtype]
  g = fastgan.Generator(ngf=m.ngf, nz=m.nz, nc=config_lib.num_channels(config), im_size=m.resolution, tanh=m.tanh,
                        dtype=dtype, latent=config.get('latent', 'gaussian'),
                        latent_components=config.get('gmm', {}).get('components', 10))
  cdc_patches = methods.method(config) == 'cdc' and config.transfer.cdc_anchor_every > 0
  d = fastgan.Discriminator(ndf=m.ndf, nc=config_lib.num_channels(config), im_size=m.resolution,
                            decoder_width=m.decoder_width, dtype=dtype, patch_head=cdc_patches)
  return g, d


def build_setup(config: ml_collections.ConfigDict) -> steps.GanSetup:
  """Models, optimisers and the method switches of ``config`` (plain FastGAN when no method is set)."""
  g, d = build_models(config)
  tx = train_state.make_optimizer(config)
  return steps.GanSetup(generator=g, discriminator=d, g_tx=methods.generator_optimizer(config, tx), d_tx=tx,
                        policy=config.diffaug_policy, recon=config.recon_loss, ema_decay=config.ema_decay,
                        image_channels=config_lib.image_channels(config) if config_lib.mask_channels(config) else 0,
                        **methods.setup_kwargs(config, g))


def make_consts(config: ml_collections.ConfigDict, setup: steps.GanSetup, mesh: Mesh, num_images: int,
                source: Optional[train_state.TrainState] = None) -> dict[str, Any]:
  """Constant inputs of the train step, replicated: LPIPS weights and the methods' constants (``methods.consts``)."""
  consts: dict[str, Any] = {}
  if config.recon_loss == 'lpips':
    consts['lpips'] = losses.load_lpips_params()
  consts.update(methods.consts(config, setup.generator, setup.discriminator, num_images, source))
  return jax.device_put(consts, NamedSharding(mesh, P()))


def make_mesh(devices: Optional[list] = None) -> Mesh:
  """A 1-D ('data',) mesh over ``devices`` (default: all devices of all processes)."""
  devices = jax.devices() if devices is None else devices
  return Mesh(np.asarray(devices), ('data',), axis_types=(jax.sharding.AxisType.Auto,))


def create_state(config: ml_collections.ConfigDict, setup: steps.GanSetup, mesh: Mesh) -> train_state.TrainState:
  """A fresh, replicated train state from ``config.seed``."""
  state = train_state.create(jax.random.PRNGKey(config.seed), setup.generator, setup.discriminator,
                             setup.g_tx, setup.d_tx)
  return train_state.place(state, NamedSharding(mesh, P()))


def make_train_step(config: ml_collections.ConfigDict, setup: steps.GanSetup, mesh: Mesh,
                    return_grads: bool = False):
  """The jitted, state-donating step ``(state, images, consts) -> (state, metrics)`` (see :func:`make_consts`)."""
  repl = NamedSharding(mesh, P())
  fn = functools.partial(steps.train_step, setup, batch=config.batch_size, flip=config.data.flip,
                         batch_sharding=NamedSharding(mesh, P('data')), return_grads=return_grads)
  return jax.jit(fn, in_shardings=(repl, repl, repl), out_shardings=(repl, repl), donate_argnums=(0,),
                 compiler_options=compiler.options())
