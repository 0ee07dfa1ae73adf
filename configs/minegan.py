r"""MineGAN (Wang et al., CVPR 2020, "MineGAN: Effective Knowledge Transfer from GANs to Target Domains with Few
Images") from a source GAN to the few-shot tumor set.

A miner MLP in front of G maps the input noise to the source latent space (``latent = 'miner'``; residual and
initialised to the identity, an *assumption*, so training starts at the source distribution). Stage 1
(``minegan_stage1_steps``) trains only the miner with G frozen (D trains): a fixed 1000 steps as the official
StyleGAN2 MineGAN code (``styleGANv2/train.py``), and 100 steps in the ``:cpu`` variant (the count of the original
MineGAN code, a half of the CPU budget) rather than a fraction of the budget; stage 2
trains miner and G jointly, with G's Adam state starting fresh. Samples come from G's EMA with the raw miner
(the official code samples ``g_ema(miner(z))``; the miner is not averaged). Details: ``fsgan_jax/latents.py``,
``fsgan_jax/steps.py``.

Run::

  python -m fsgan_jax.main --config=configs/minegan.py --workdir=/tmp/minegan \
      --config.transfer.source_workdir=/tmp/source_ixi
  # CPU budget: configs/minegan.py:cpu with the :cpu source

Measured results of the ``:cpu`` variant (100- and 10-shot): RESULTS.md (few-shot methods table).
"""

from fsgan_jax import default_config


def get_config(arg: str = ''):
  if arg not in ('', 'cpu'):
    raise ValueError(f'configs/minegan.py: unknown variant {arg!r} (use :cpu or nothing)')
  c = default_config.get_config()
  if arg == 'cpu':
    default_config.shrink_for_cpu(c)
  c.transfer.method = 'minegan'
  c.latent = 'miner'
  c.transfer.minegan_stage1_steps = 100 if arg == 'cpu' else 1000
  return c
