r"""Plain fine-tuning baseline: the FastGAN recipe started from a source GAN's checkpoint (no regulariser).

G, its EMA and D start from ``configs/pretrain_source.py``'s run; optimisers start fresh. The baseline the
transfer methods (CDC, EWC, MineGAN) must beat.

Run::

  python -m fsgan_jax.main --config=configs/finetune.py --workdir=/tmp/finetune \
      --config.transfer.source_workdir=/tmp/source_ixi
  # CPU budget: configs/finetune.py:cpu with the :cpu source

Measured results of the ``:cpu`` variant (100- and 10-shot): RESULTS.md (few-shot methods table).
"""

from fsgan_jax import default_config


def get_config(arg: str = ''):
  if arg not in ('', 'cpu'):
    raise ValueError(f'configs/finetune.py: unknown variant {arg!r} (use :cpu or nothing)')
  c = default_config.get_config()
  if arg == 'cpu':
    default_config.shrink_for_cpu(c)
  c.transfer.method = 'finetune'
  return c
