"""Sampling from a training workdir: restore a checkpoint with Orbax and write PNGs from the EMA generator."""

from __future__ import annotations

import os
from typing import Optional

import jax
import numpy as np

from fsgan_jax import checkpointing, input_pipeline, train


def sample_from_workdir(workdir: str, num: int = 16, seed: int = 0, out: Optional[str] = None,
                        step: Optional[int] = None, batch: int = 8) -> str:
  """Writes ``num`` images (``img_00000.png`` ...) and ``grid.png`` from the EMA generator; returns the folder.

  Deterministic for a given (checkpoint, seed, batch): z and the noise come from ``seed``, and images are
  generated in chunks of ``batch`` (BatchNorm uses batch statistics, as the official sampler).
  """
  if num < 1:
    raise ValueError(f'--num={num} must be >= 1')
  config = train.read_config(workdir)
  setup = train.build_setup(config)
  mesh = train.make_mesh()
  manager = checkpointing.make_manager(workdir, config.keep_checkpoints, config.checkpoint_every)
  if manager.latest_step() is None:
    raise FileNotFoundError(f'no checkpoint in {os.path.join(workdir, "checkpoints")}: train first')
  state, step = checkpointing.restore(manager, train.create_state(config, setup, mesh), step)
  sampler = train.make_sampler(setup, config.sample_bn)
  out = out or os.path.join(workdir, f'samples_step{step}_seed{seed}')
  os.makedirs(out, exist_ok=True)
  key = jax.random.PRNGKey(seed)
  images = []
  for i, start in enumerate(range(0, num, batch)):
    n = min(batch, num - start)
    zk, nk = jax.random.split(jax.random.fold_in(key, i))
    z = jax.random.normal(zk, (n, config.model.nz))
    images.append(input_pipeline.to_uint8(jax.device_get(sampler(state.ema_params, state.g_stats, z, nk))))
  images = np.concatenate(images)
  for i, im in enumerate(images):
    input_pipeline.save_png(os.path.join(out, f'img_{i:05d}.png'), im)
  input_pipeline.save_png(os.path.join(out, 'grid.png'),
                          input_pipeline.make_grid(images, ncols=int(np.ceil(np.sqrt(len(images))))))
  return out
