r"""FastGAN with a learnable Gaussian-mixture latent (dynamic GMM latent in the spirit of DFSGAN, Yang et al. 2023).

*Assumption* (DFSGAN's code is not public): the mixture follows DeLiGAN (Gurumurthy et al., CVPR 2017). G's input
``z ~ N(0, I)`` is mapped to ``mu_k + sigma_k * z`` with a component k chosen uniformly per sample; the K = 10
means (init U(-1, 1)) and diagonal log-sigmas (init log 0.2) are G parameters, trained with G by the
reparameterisation, averaged by the EMA and stored in checkpoints (``g_params['latent']``), so sampling anywhere
(``--mode=sample``, ``--mode=eval``, the classifier study) draws from the learned mixture. DeLiGAN's regulariser
``sigma_reg * mean((1 - sigma)^2)`` (0.01) keeps the sigmas from collapsing. Implementation:
``fsgan_jax/latents.py``.

Run::

  python -m fsgan_jax.main --config=configs/gmm.py --workdir=/tmp/gmm_lgg100
  python -m fsgan_jax.main --config=configs/gmm.py:cpu --workdir=/tmp/gmm_cpu

Measured results of the ``:cpu`` variant (100- and 10-shot): RESULTS.md (few-shot methods table).
"""

from fsgan_jax import default_config


def get_config(arg: str = ''):
  if arg not in ('', 'cpu'):
    raise ValueError(f'configs/gmm.py: unknown variant {arg!r} (use :cpu or nothing)')
  c = default_config.get_config()
  if arg == 'cpu':
    default_config.shrink_for_cpu(c)
  c.latent = 'gmm'
  return c
