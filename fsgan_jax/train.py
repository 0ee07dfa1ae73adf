"""FastGAN training loop: ``train_and_evaluate(config, workdir)``.

Data parallel over all devices (and hosts) with ``jax.jit`` on a 1-D ``Mesh(('data',))``: the state is
replicated, the batch is sharded along 'data', and XLA inserts the gradient and BatchNorm all-reduces. Because
BN statistics are computed over the global batch, a step on N devices equals the step on 1 device.
(``jax.pmap`` would do the same; in JAX 0.10 it is itself a wrapper over jit + shard_map, and jit with
NamedSharding is the recommended form, which is why it is used here.)
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import signal
import threading
import time
from typing import Any, Iterator, Optional

from absl import logging
from clu import metric_writers
from clu import periodic_actions
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from fsgan_jax import checkpointing, compiler, fileio, input_pipeline, losses, masks, steps, train_state
from fsgan_jax.augment import diffaug
from fsgan_jax.models import fastgan

DTYPES = {'float32': jnp.float32, 'bfloat16': jnp.bfloat16}


class ConfigError(ValueError):
  """A config value is invalid; raised before anything is compiled."""


def image_channels(config: ml_collections.ConfigDict) -> int:
  """Contrast channels G generates: ``model.channels``, or ``data.channels`` when unset (and in older configs)."""
  return config.model.get('channels') or config.data.channels


def mask_channels(config: ml_collections.ConfigDict) -> int:
  """Label channels after the contrasts (``model.mask_channels``; 0 in older configs)."""
  return int(config.model.get('mask_channels') or 0)


def num_channels(config: ml_collections.ConfigDict) -> int:
  """All channels of G's output and D's input: contrasts then labels."""
  return image_channels(config) + mask_channels(config)


def channel_names(config: ml_collections.ConfigDict) -> list[str]:
  """A file-name suffix per channel (``data.contrast_names``, then ``mask`` or the BraTS sub-region names)."""
  names = [n.strip() for n in (config.data.get('contrast_names') or '').split(',') if n.strip()]
  return masks.channel_names(names, image_channels(config), mask_channels(config))


def validate_config(config: ml_collections.ConfigDict, num_devices: int = 1) -> None:
  """Checks every field a run depends on and raises a one-line ConfigError naming the field."""
  m = config.model
  if m.resolution not in fastgan.RESOLUTIONS:
    raise ConfigError(f'config.model.resolution={m.resolution} is not supported; choose one of {fastgan.RESOLUTIONS}')
  for name in ('ngf', 'ndf'):
    width = getattr(m, name)
    mult = fastgan.G_MULT if name == 'ngf' else fastgan.D_MULT
    smallest = min(int(v * width) for k, v in mult.items() if k <= max(m.resolution, 512))
    if not isinstance(width, int) or smallest < 1:
      raise ConfigError(f'config.model.{name}={width} is too small for resolution {m.resolution} '
                        '(every layer width int(mult * width) must be >= 1)')
  if m.decoder_width < 1 or int(0.5 * m.decoder_width) < 1:
    raise ConfigError(f'config.model.decoder_width={m.decoder_width} must be >= 2')
  if m.nz < 1:
    raise ConfigError(f'config.model.nz={m.nz} must be positive')
  if m.dtype not in DTYPES:
    raise ConfigError(f'config.model.dtype={m.dtype!r}; choose one of {sorted(DTYPES)}')
  tfds_source = bool(config.data.get('tfds_name'))
  if not isinstance(config.data.channels, int) or config.data.channels < 1 or (
      not tfds_source and config.data.channels not in (1, 3)):
    raise ConfigError(f'config.data.channels={config.data.channels} must be 1 or 3 for an image folder '
                      '(a TFDS source: its number of contrasts)')
  if m.get('channels') is not None and m.channels != config.data.channels:
    raise ConfigError(f'config.model.channels={m.channels} differs from config.data.channels='
                      f'{config.data.channels} (the contrasts the data provides); set both to the same value')
  try:
    masks.check_channels(image_channels(config), mask_channels(config))
  except ValueError as e:
    raise ConfigError(str(e)) from None
  if mask_channels(config) == 3 and config.data.get('tfds_name') != 'brats':
    raise ConfigError('config.model.mask_channels=3 (BraTS sub-regions) needs config.data.tfds_name=\'brats\'')
  if mask_channels(config) and not tfds_source:
    mask_dir = config.data.get('mask_dir')
    if mask_dir is None and config.data.dir is not None:
      raise ConfigError(f'config.model.mask_channels={mask_channels(config)} with config.data.dir='
                        f'{config.data.dir!r}: set config.data.mask_dir to the folder of its masks')
    if mask_dir is not None and not os.path.isdir(os.path.expanduser(mask_dir)):
      raise ConfigError(f'config.data.mask_dir={mask_dir!r} is not a directory')
  names = [n for n in (config.data.get('contrast_names') or '').split(',') if n.strip()]
  if names and len(names) != image_channels(config):
    raise ConfigError(f'config.data.contrast_names={config.data.contrast_names!r} names {len(names)} contrast(s) '
                      f'but there are {image_channels(config)}')
  if config.batch_size < 1 or config.batch_size % num_devices:
    raise ConfigError(f'config.batch_size={config.batch_size} must be a positive multiple of the number of '
                      f'devices ({num_devices})')
  for name in ('num_steps', 'log_every', 'sample_every', 'checkpoint_every', 'keep_checkpoints',
               'num_sample_images'):
    if getattr(config, name) < 1:
      raise ConfigError(f'config.{name}={getattr(config, name)} must be >= 1')
  if not 0.0 <= config.ema_decay < 1.0:
    raise ConfigError(f'config.ema_decay={config.ema_decay} must be in [0, 1)')
  if not config.lr > 0 or not np.isfinite(config.lr):
    raise ConfigError(f'config.lr={config.lr} must be a positive finite number')
  for name in ('beta1', 'beta2'):
    if not 0.0 <= getattr(config, name) < 1.0:
      raise ConfigError(f'config.{name}={getattr(config, name)} must be in [0, 1)')
  if config.data.limit < 0:
    raise ConfigError(f'config.data.limit={config.data.limit} must be >= 0 (0 = all images)')
  if config.data.get('tfds_name'):
    if not config.data.get('tfds_split'):
      raise ConfigError(f'config.data.tfds_split must be set when config.data.tfds_name={config.data.tfds_name!r} '
                        '(e.g. fewshot_k10_seed0, train)')
  elif config.data.dir is not None and not os.path.isdir(os.path.expanduser(config.data.dir)):
    raise ConfigError(f'config.data.dir={config.data.dir!r} is not a directory')
  heldout = config.eval.get('heldout_dir') if 'eval' in config else None
  if heldout is not None and not os.path.isdir(os.path.expanduser(heldout)):
    raise ConfigError(f'config.eval.heldout_dir={heldout!r} is not a directory')
  try:
    diffaug.parse_policy(config.diffaug_policy)
  except ValueError as e:
    raise ConfigError(f'config.diffaug_policy: {e}') from None
  if config.recon_loss not in losses.RECON_LOSSES:
    raise ConfigError(f'config.recon_loss={config.recon_loss!r}; choose one of {sorted(losses.RECON_LOSSES)}')
  if config.sample_bn not in ('batch', 'running'):
    raise ConfigError(f"config.sample_bn={config.sample_bn!r}; choose 'batch' or 'running'")
  _validate_methods(config)
  if 'eval' in config:
    from fsgan_jax import evaluate  # pylint: disable=g-import-not-at-top
    try:
      evaluate.validate_eval_config(config, num_devices)
    except evaluate.EvalError as e:
      raise ConfigError(str(e)) from None


TRANSFER_METHODS = ('finetune', 'cdc', 'ewc', 'minegan')


def _method(config: ml_collections.ConfigDict) -> Optional[str]:
  return config.get('transfer', {}).get('method')


def _validate_methods(config: ml_collections.ConfigDict) -> None:
  """The few-shot method fields (augment.apa*, latent, gmm.*, transfer.*)."""
  from fsgan_jax import latents  # pylint: disable=g-import-not-at-top
  latent = config.get('latent', 'gaussian')
  if latent not in latents.LATENTS:
    raise ConfigError(f'config.latent={latent!r}; choose one of {list(latents.LATENTS)}')
  if 'augment' in config and config.augment.apa:
    a = config.augment
    if not 0.0 < a.apa_target < 1.0:
      raise ConfigError(f'config.augment.apa_target={a.apa_target} must be in (0, 1)')
    if a.apa_interval < 1 or not a.apa_kimg > 0:
      raise ConfigError(f'config.augment.apa_interval={a.apa_interval} must be >= 1 and config.augment.apa_kimg='
                        f'{a.apa_kimg} > 0')
  if latent == 'gmm':
    if config.gmm.components < 1:
      raise ConfigError(f'config.gmm.components={config.gmm.components} must be >= 1')
    if config.gmm.sigma_reg < 0:
      raise ConfigError(f'config.gmm.sigma_reg={config.gmm.sigma_reg} must be >= 0')
  method = _method(config)
  if method is None:
    if latent == 'miner':
      raise ConfigError("config.latent='miner' is MineGAN's miner: it needs config.transfer.method='minegan' and a "
                        'source workdir')
    return
  t = config.transfer
  if method not in TRANSFER_METHODS:
    raise ConfigError(f'config.transfer.method={method!r}; choose one of {list(TRANSFER_METHODS)} or None')
  if not t.source_workdir:
    raise ConfigError(f'config.transfer.method={method!r} needs config.transfer.source_workdir (a workdir trained '
                      'with configs/pretrain_source.py)')
  if (method == 'minegan') != (latent == 'miner'):
    raise ConfigError(f"config.transfer.method={method!r} with config.latent={latent!r}: MineGAN uses "
                      "latent='miner' and the miner is only used by MineGAN")
  for name in ('cdc_weight', 'ewc_weight', 'cdc_anchor_std', 'minegan_stage1_steps', 'cdc_num_anchors'):
    if t[name] < 0:
      raise ConfigError(f'config.transfer.{name}={t[name]} must be >= 0')
  if t.cdc_batch < 2:
    raise ConfigError(f'config.transfer.cdc_batch={t.cdc_batch} must be >= 2 (pairwise similarities)')
  if t.cdc_anchor_every < 0 or t.ewc_fisher_batches < 1:
    raise ConfigError(f'config.transfer.cdc_anchor_every={t.cdc_anchor_every} must be >= 0 and '
                      f'config.transfer.ewc_fisher_batches={t.ewc_fisher_batches} >= 1')


def build_models(config: ml_collections.ConfigDict) -> tuple[fastgan.Generator, fastgan.Discriminator]:
  m = config.model
  dtype = DTYPES[m.dtype]
  g = fastgan.Generator(ngf=m.ngf, nz=m.nz, nc=num_channels(config), im_size=m.resolution, tanh=m.tanh,
                        dtype=dtype, latent=config.get('latent', 'gaussian'),
                        latent_components=config.get('gmm', {}).get('components', 10))
  cdc_patches = _method(config) == 'cdc' and config.transfer.cdc_anchor_every > 0
  d = fastgan.Discriminator(ndf=m.ndf, nc=num_channels(config), im_size=m.resolution,
                            decoder_width=m.decoder_width, dtype=dtype, patch_head=cdc_patches)
  return g, d


def build_setup(config: ml_collections.ConfigDict) -> steps.GanSetup:
  """Models, optimisers and the method switches of ``config`` (plain FastGAN when no method is set)."""
  g, d = build_models(config)
  tx = train_state.make_optimizer(config)
  method = _method(config)
  g_tx = tx
  kw = {}
  if 'augment' in config and config.augment.apa:
    kw.update(apa=True, apa_target=config.augment.apa_target, apa_interval=config.augment.apa_interval,
              apa_kimg=float(config.augment.apa_kimg))
  if g.latent == 'gmm':
    kw['gmm_sigma_reg'] = float(config.gmm.sigma_reg)
  t = config.get('transfer')
  if method == 'cdc':
    kw.update(cdc_weight=float(t.cdc_weight), cdc_batch=t.cdc_batch, cdc_anchor_every=t.cdc_anchor_every,
              cdc_anchor_std=float(t.cdc_anchor_std), source_generator=g.clone(latent='gaussian'))
  elif method == 'ewc':
    kw['ewc_weight'] = float(t.ewc_weight)
  elif method == 'minegan' and t.minegan_stage1_steps:
    # Separate Adam states for the miner and the rest of G, so stage 2 starts G's Adam fresh.
    g_tx = optax.multi_transform({'miner': tx, 'generator': tx},
                                 lambda params: {k: ('miner' if k == 'miner' else 'generator') for k in params})
    kw['freeze_g_steps'] = t.minegan_stage1_steps
  return steps.GanSetup(generator=g, discriminator=d, g_tx=g_tx, d_tx=tx, policy=config.diffaug_policy,
                        recon=config.recon_loss, ema_decay=config.ema_decay,
                        image_channels=image_channels(config) if mask_channels(config) else 0, **kw)


def make_consts(config: ml_collections.ConfigDict, setup: steps.GanSetup, mesh: Mesh, num_images: int,
                source: Optional[train_state.TrainState] = None) -> dict[str, Any]:
  """Constant inputs of the train step, replicated: LPIPS weights and the transfer methods' constants.

  ``anchors`` (CDC: ``cdc_num_anchors`` latents, default one per training image), ``source_g`` (CDC: the frozen
  source G's EMA parameters and statistics), ``source_params`` and ``fisher`` (EWC: the source G's parameters and
  their Fisher information, estimated once here; deterministic in ``config.seed``).
  """
  from fsgan_jax.transfer import cdc, ewc  # pylint: disable=g-import-not-at-top
  consts: dict[str, Any] = {}
  if config.recon_loss == 'lpips':
    consts['lpips'] = losses.load_lpips_params()
  method, t = _method(config), config.get('transfer')
  key = jax.random.fold_in(jax.random.PRNGKey(config.seed), 0x7C0)
  if method in ('cdc', 'ewc') and source is None:
    raise ValueError(f'transfer method {method!r} needs the source state')
  if method == 'cdc':
    consts['source_g'] = {'params': source.ema_params, 'batch_stats': source.g_stats}
    consts['anchors'] = cdc.make_anchors(key, t.cdc_num_anchors or num_images, config.model.nz)
  elif method == 'ewc':
    g_vars = {'params': source.g_params, 'batch_stats': source.g_stats}
    d_vars = {'params': source.d_params, 'batch_stats': source.d_stats}
    fisher_fn = jax.jit(functools.partial(ewc.fisher_information, setup.generator.clone(latent='gaussian'),
                                          setup.discriminator.clone(patch_head=False),
                                          batches=t.ewc_fisher_batches, batch=config.batch_size),
                        compiler_options=compiler.options())
    consts['source_params'] = source.g_params
    consts['fisher'] = fisher_fn(g_vars, d_vars, key)
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


def generate(generator: fastgan.Generator, sample_bn: str, params, stats, z: jax.Array, key: jax.Array) -> jax.Array:
  """Images of ``generator`` for latents ``z`` in [-1, 1] (clipped); traceable.

  ``sample_bn='batch'``: BatchNorm with the statistics of this batch, as the official eval.py (updates are
  discarded); ``'running'``: the running averages.
  """
  variables = {'params': params, 'batch_stats': stats}
  if sample_bn == 'batch':
    (big, _), _ = generator.apply(variables, z, train=True, mutable=['batch_stats'], rngs={'noise': key})
  else:
    big, _ = generator.apply(variables, z, train=False, rngs={'noise': key})
  return jnp.clip(big, -1.0, 1.0)


def make_sampler(setup: steps.GanSetup, sample_bn: str = 'batch'):
  """Jitted ``(ema_params, g_stats, z, noise_key) -> images`` at G's resolution, in [-1, 1] (clipped)."""
  return jax.jit(functools.partial(generate, setup.generator, sample_bn), compiler_options=compiler.options())


# Fields that change what a checkpoint holds or how it was produced: a workdir never continues with other values.
# (Everything not in _SAFE_FIELDS is treated like these.)
_SHAPE_FIELDS = ('model.resolution', 'model.ngf', 'model.ndf', 'model.nz', 'model.decoder_width', 'model.tanh',
                 'model.dtype', 'data.channels', 'recon_loss', 'diffaug_policy', 'batch_size', 'seed', 'lr', 'beta1',
                 'beta2', 'ema_decay')
# Fields that only change bookkeeping, evaluation or where the same data lives: may change with
# ``config.allow_config_change=True``. ``num_steps`` may always change (extending a run); ``allow_config_change``
# itself is never compared.
_SAFE_FIELDS = ('num_steps', 'log_every', 'sample_every', 'checkpoint_every', 'keep_checkpoints', 'num_sample_images',
                'sample_bn', 'data.dir', 'data.tfds_data_dir', 'eval.*')
_IGNORED_FIELDS = ('allow_config_change',)


def _flatten(d: dict, prefix: str = '') -> dict[str, Any]:
  out = {}
  for k, v in d.items():
    if isinstance(v, dict):
      out.update(_flatten(v, f'{prefix}{k}.'))
    else:
      out[f'{prefix}{k}'] = v
  return out


def _is_safe(field: str) -> bool:
  return field not in _SHAPE_FIELDS and any(field == f or (f.endswith('.*') and field.startswith(f[:-1]))
                                            for f in _SAFE_FIELDS)


def config_changes(config: ml_collections.ConfigDict, workdir: str) -> dict[str, tuple[Any, Any]]:
  """``{field: (stored value, new value)}`` for every field that differs from ``WORKDIR/config.json``.

  Fields missing from the stored config (written by an older version) are not compared.
  """
  if not fileio.exists(fileio.join(workdir, 'config.json')):
    return {}
  old = _flatten(read_config(workdir).to_dict())
  new = _flatten(json.loads(config.to_json()))  # JSON round trip: tuples compare equal to stored lists
  return {k: (old[k], v) for k, v in sorted(new.items())
          if k in old and k not in _IGNORED_FIELDS and old[k] != v}


def check_config_compatible(config: ml_collections.ConfigDict, workdir: str) -> dict[str, tuple[Any, Any]]:
  """Refuses to resume a workdir whose stored config differs (nothing touched); returns the allowed changes.

  ``num_steps`` may always change. With ``config.allow_config_change`` the fields in ``_SAFE_FIELDS`` may change
  too; any other difference (model shapes, losses, augmentation, optimizer, seed, batch) always refuses. The error
  lists every differing field.
  """
  changes = config_changes(config, workdir)
  allow = bool(config.get('allow_config_change', False))
  refused = {k: v for k, v in changes.items() if k != 'num_steps' and not (allow and _is_safe(k))}
  if refused:
    listed = '; '.join(f'{k}: workdir has {o!r}, config has {n!r}' for k, (o, n) in refused.items())
    unsafe = [k for k in refused if not _is_safe(k)]
    hint = ('use a new --workdir or the original values' if unsafe else
            'set --config.allow_config_change=True to change them, or use the original values')
    raise ConfigError(f'{workdir} holds a run with a different config ({listed}); {hint}')
  return changes


def write_config(config: ml_collections.ConfigDict, workdir: str, replace: bool = False) -> None:
  """Stores the config (process 0) so sampling and resumption can read it back.

  Written on first start; with ``replace`` (an allowed config change) the old one is kept as
  ``config.<timestamp>.json`` and the new one replaces it, so ``config.json`` describes the latest checkpoints.
  """
  path = fileio.join(workdir, 'config.json')
  if jax.process_index() != 0 or (fileio.exists(path) and not replace):
    return
  fileio.makedirs(workdir)
  if fileio.exists(path):
    stamp = time.strftime('%Y%m%d-%H%M%S', time.gmtime())
    backup = fileio.join(workdir, f'config.{stamp}.json')
    n = 1
    while fileio.exists(backup):
      backup, n = fileio.join(workdir, f'config.{stamp}-{n}.json'), n + 1
    fileio.write_text_atomic(backup, fileio.read_text(path))
  fileio.write_text_atomic(path, config.to_json(indent=2))


def read_config(workdir: str) -> ml_collections.ConfigDict:
  path = fileio.join(workdir, 'config.json')
  if not fileio.exists(path):
    raise FileNotFoundError(f'{path} not found: is {workdir!r} a fsgan_jax training workdir?')
  try:
    return ml_collections.ConfigDict(json.loads(fileio.read_text(path)))
  except (json.JSONDecodeError, TypeError, AttributeError) as e:
    raise ConfigError(f'{path} is not a valid config file ({e}); restore it from config.<timestamp>.json or '
                      'use a new --workdir') from None


_NOT_SAVED = 'training stopped and the bad state was not saved (the last checkpoint is kept)'


def _check_finite(step: int, metrics: dict[str, float]) -> None:
  bad = [k for k, v in metrics.items() if not np.isfinite(v)]
  if bad:
    raise FloatingPointError(f'non-finite {", ".join(bad)} at step {step}; {_NOT_SAVED}')


_STATE_TREES = ('g_params', 'g_stats', 'd_params', 'd_stats', 'g_opt_state', 'd_opt_state', 'ema_params')


@jax.jit
def _trees_finite(state: train_state.TrainState) -> dict[str, jax.Array]:
  """One all-finite reduction per tree of the state (a few scalars to fetch)."""
  def finite(tree):
    leaves = [jnp.all(jnp.isfinite(x)) for x in jax.tree_util.tree_leaves(tree)
              if jnp.issubdtype(x.dtype, jnp.inexact)]
    return jnp.all(jnp.stack(leaves)) if leaves else jnp.asarray(True)
  return {name: finite(getattr(state, name)) for name in _STATE_TREES}


def check_state_finite(step: int, state: train_state.TrainState) -> None:
  """Raises FloatingPointError naming the first non-finite leaf (e.g. ``g_params/...``) of ``state``."""
  ok = jax.device_get(_trees_finite(state))
  for name in _STATE_TREES:
    if ok[name]:
      continue
    for path, leaf in jax.tree_util.tree_flatten_with_path(jax.device_get(getattr(state, name)))[0]:
      if np.issubdtype(np.asarray(leaf).dtype, np.inexact) and not np.all(np.isfinite(leaf)):
        where = f'{name}/{jax.tree_util.keystr(path, simple=True, separator="/")}'
        raise FloatingPointError(f'non-finite {where} at step {step}; {_NOT_SAVED}')
    raise FloatingPointError(f'non-finite {name} at step {step}; {_NOT_SAVED}')


class _Preemption:
  """SIGTERM on one process, or Orbax's / JAX's preemption sync point on several: stop after the current step.

  The handler is installed only while training (main thread, single process) and the previous one restored after.
  On multi-host runs JAX's preemption service owns SIGTERM and all hosts agree on the step
  (``CheckpointManager.reached_preemption``); a Python handler there would replace that service's handler.
  """

  def __init__(self, manager):
    self.manager = manager
    self.signalled = False

  def _handler(self, signum, frame):  # pylint: disable=unused-argument
    self.signalled = True
    logging.warning('received signal %d: stopping after the current step and saving a checkpoint', signum)

  @contextlib.contextmanager
  def installed(self) -> Iterator['_Preemption']:
    previous = None
    if jax.process_count() == 1 and threading.current_thread() is threading.main_thread():
      previous = signal.signal(signal.SIGTERM, self._handler)
    try:
      yield self
    finally:
      if previous is not None:
        signal.signal(signal.SIGTERM, previous)

  def reached(self, step: int) -> bool:
    if jax.process_count() == 1:
      return self.signalled
    return self.manager.reached_preemption(step)


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> dict[str, float]:
  """Trains (or resumes) a FastGAN in ``workdir``; returns the metrics of the last logged step."""
  validate_config(config, jax.device_count())
  workdir = fileio.abspath(workdir)  # a gs:// URL stays as it is
  changes = check_config_compatible(config, workdir)
  mesh = make_mesh()
  repl = NamedSharding(mesh, P())
  setup = build_setup(config)

  images_np = input_pipeline.load_config_data(config.data, config.model.resolution,
                                              mask_channels=mask_channels(config))
  logging.info('training images: %s from %s', images_np.shape, input_pipeline.describe_source(config.data))
  images = jax.device_put(images_np, repl)

  state = create_state(config, setup, mesh)
  manager = checkpointing.make_manager(workdir, config.keep_checkpoints, config.checkpoint_every)
  state, restored_step = checkpointing.restore(manager, state)
  source = None
  if _method(config):
    from fsgan_jax.transfer import source as source_lib  # pylint: disable=g-import-not-at-top
    try:
      _, source, source_step = source_lib.load_source(config, mesh)
    except source_lib.SourceError as e:
      raise ConfigError(str(e)) from None
    logging.info('transfer (%s) from %s at step %d', config.transfer.method, config.transfer.source_workdir,
                 source_step)
    if restored_step is None:
      state = source_lib.init_from_source(state, source, setup.g_tx, setup.d_tx)
  if restored_step is not None:
    logging.info('resumed from checkpoint at step %d', restored_step)
  consts = make_consts(config, setup, mesh, images_np.shape[0], source)
  del source
  if changes:
    logging.warning('config changes in %s: %s', workdir,
                    ', '.join(f'{k}: {o!r} -> {n!r}' for k, (o, n) in changes.items()))
  write_config(config, workdir, replace=bool(changes))
  initial_step = int(state.step)
  if initial_step >= config.num_steps:
    logging.warning('nothing to do: the checkpoint in %s is at step %d >= num_steps=%d', workdir, initial_step,
                    config.num_steps)

  writer = metric_writers.create_default_writer(workdir, just_logging=jax.process_index() > 0)
  if initial_step == 0:
    writer.write_hparams({k: v for k, v in config.to_dict().items() if not isinstance(v, dict)})
  train_step = make_train_step(config, setup, mesh)
  sampler = make_sampler(setup, config.sample_bn)
  sample_key = jax.random.PRNGKey(config.seed + 1)
  sample_z = jax.random.normal(sample_key, (config.num_sample_images, config.model.nz))
  report = periodic_actions.ReportProgress(num_train_steps=config.num_steps, writer=writer)
  samples_dir = fileio.join(workdir, 'samples')
  evaluator, best_manager = None, None
  if 'eval' in config and config.eval.every and initial_step < config.num_steps:
    from fsgan_jax import evaluate  # pylint: disable=g-import-not-at-top
    evaluator = evaluate.Evaluator(config, setup, mesh)
    if config.eval.best_metric:
      best_manager = checkpointing.make_best_manager(workdir, config.eval.best_metric)

  last: dict[str, float] = {}
  t0, t0_step = time.perf_counter(), initial_step
  preemption = _Preemption(manager)
  try:
    with preemption.installed():
      for step in range(initial_step + 1, config.num_steps + 1):
        state, metrics = train_step(state, images, consts)
        report(step)
        preempted = preemption.reached(step)
        is_last = step == config.num_steps or preempted
        if step % config.log_every == 0 or is_last:
          last = {k: float(v) for k, v in jax.device_get(metrics).items()}
          _check_finite(step, last)
          check_state_finite(step, state)
          dt = time.perf_counter() - t0
          last['steps_per_sec'] = (step - t0_step) / dt
          last['img_per_sec'] = last['steps_per_sec'] * config.batch_size
          writer.write_scalars(step, last)
          t0, t0_step = time.perf_counter(), step
        if step % config.sample_every == 0 or is_last:
          imgs = input_pipeline.to_uint8(masks.hard_labels(
              jax.device_get(sampler(state.ema_params, state.g_stats, sample_z, sample_key)), image_channels(config)))
          imgs = masks.display(imgs, image_channels(config))  # contrasts and labels side by side when paired
          grid = input_pipeline.make_grid(imgs, ncols=int(np.ceil(np.sqrt(len(imgs)))))
          writer.write_images(step, {'ema_samples': grid[None]})
          if jax.process_index() == 0:
            fileio.makedirs(samples_dir)
            input_pipeline.save_png(fileio.join(samples_dir, f'step_{step:07d}.png'), grid)
        if step % config.checkpoint_every == 0 or is_last:
          # Never save a bad state (both checks are cheap and cached when this is also a log step).
          _check_finite(step, {k: float(v) for k, v in jax.device_get(metrics).items()})
          check_state_finite(step, state)
          checkpointing.save(manager, step, state, force=is_last)
        if evaluator is not None and (step % config.eval.every == 0 or step == config.num_steps):
          _periodic_eval(config, workdir, step, state, evaluator, best_manager, writer)
        if preempted:
          logging.warning('preempted: saved a checkpoint at step %d in %s; run the same command to resume', step,
                          workdir)
          last['preempted_at_step'] = float(step)
          break
  finally:  # also on errors: finish pending saves (the last good checkpoint) and flush the writers
    manager.wait_until_finished()
    if best_manager is not None:
      best_manager.wait_until_finished()
    writer.flush()
  return last


def _periodic_eval(config: ml_collections.ConfigDict, workdir: str, step: int, state: train_state.TrainState,
                   evaluator, best_manager, writer) -> None:
  """FID/KID of the EMA generator during training; keeps the best checkpoint by ``config.eval.best_metric``."""
  from fsgan_jax import evaluate  # pylint: disable=g-import-not-at-top
  t0 = time.perf_counter()
  results, _ = evaluator.evaluate(state.ema_params, state.g_stats, config.eval.train_num_samples,
                                  config.eval.train_metrics, seed=config.seed, fid_method='eigh')
  scalars = evaluate.flat_scalars(results)
  writer.write_scalars(step, {f'eval/{k}': v for k, v in scalars.items()})
  evaluate.append_history(workdir, step, scalars, kind='train')
  logging.info('eval at step %d (%.1f s): %s', step, time.perf_counter() - t0,
               ', '.join(f'{k}={v:.4g}' for k, v in sorted(scalars.items())))
  metric = config.eval.best_metric
  if best_manager is not None:
    if metric not in scalars:
      logging.warning('config.eval.best_metric=%r was not computed (have %s); best checkpoint not updated', metric,
                      sorted(scalars))
    elif np.isfinite(scalars[metric]):
      checkpointing.save_best(best_manager, step, state, {metric: scalars[metric]})
