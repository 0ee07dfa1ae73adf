r"""Arms of the quality-per-CPU-hour study (issue 18): FastGAN at 128 px on the bundled 100-shot set.

Every arm starts from the CPU demo settings (``configs/demo.py``: 128 px, ngf = ndf = 16, decoders at width 8,
per-sample MSE reconstruction, EMA 0.99, batch 8, lr 2e-4, DiffAugment color+translation) and changes one or two
things a FastGAN user would tune. The study (``python -m fsgan_jax.experiments.recipe``) gives each arm the same
CPU budget: its step count is the budget divided by the arm's step time measured on a quiet machine, passed as
``--config.num_steps``. One arm by hand::

  python -m fsgan_jax.main --config=configs/recipe.py:w32 --workdir=/tmp/recipe/w32 --config.num_steps=2000

Arms (the variant after ``:``; combine with ``+``, e.g. ``w32+ema999``):
  base: the demo settings.            w32 / w64: ngf = ndf = 32 / 64 (decoders at half the width).
  ema999: EMA decay 0.999.            cutout: DiffAugment color+translation+cutout.
  lpips: LPIPS-VGG reconstruction.    b16: batch 16.            lr1e4: lr 1e-4 for both nets.
"""

from fsgan_jax import default_config


def _width(c, w: int) -> None:
  c.model.ngf = c.model.ndf = w
  c.model.decoder_width = max(8, w // 2)


ARMS = {
    'base': lambda c: None,
    'w32': lambda c: _width(c, 32),
    'w64': lambda c: _width(c, 64),
    'ema999': lambda c: setattr(c, 'ema_decay', 0.999),
    'cutout': lambda c: setattr(c, 'diffaug_policy', 'color,translation,cutout'),
    'lpips': lambda c: setattr(c, 'recon_loss', 'lpips'),
    'b16': lambda c: setattr(c, 'batch_size', 16),
    'lr1e4': lambda c: setattr(c, 'lr', 1e-4),
}


def get_config(arm: str = 'base'):
  c = default_config.get_config()
  default_config.shrink_for_cpu(c, num_steps=1000)
  c.sample_every = 500
  c.checkpoint_every = 500
  c.keep_checkpoints = 2
  c.eval.metrics = ('fid', 'kid', 'memorization')
  c.eval.num_samples = 1000
  for name in (arm or 'base').split('+'):
    if name not in ARMS:
      raise ValueError(f'configs/recipe.py: unknown arm {name!r}; choose from {sorted(ARMS)} (join with +)')
    ARMS[name](c)
  return c
