r"""FastGAN + adaptive pseudo augmentation (APA; Jiang et al., NeurIPS 2021, "Deceive D: Adaptive Pseudo
Augmentation for GAN Training with Limited Data").

The official FastGAN recipe (``configs/fastgan.py``) with ``augment.apa = True``: with probability p each real
image in D's batch is replaced by a detached generated one; p adapts every 4 iterations toward
``E[sign(D(real))] = 0.6`` (p can go 0 -> 1 in 500k images) and is logged as ``apa_p``. DiffAugment stays on.

Run::

  python -m fsgan_jax.main --config=configs/apa.py --workdir=/tmp/apa_lgg100
  python -m fsgan_jax.main --config=configs/apa.py:cpu --workdir=/tmp/apa_cpu      # the CPU budget of RESULTS.md

Measured results of the ``:cpu`` variant (100- and 10-shot): RESULTS.md (few-shot methods table).
"""

from fsgan_jax import default_config


def get_config(arg: str = ''):
  if arg not in ('', 'cpu'):
    raise ValueError(f'configs/apa.py: unknown variant {arg!r} (use :cpu or nothing)')
  c = default_config.get_config()
  if arg == 'cpu':
    default_config.shrink_for_cpu(c)
  c.augment.apa = True
  return c
