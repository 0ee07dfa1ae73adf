r"""Elastic weight consolidation (EWC; Li et al., NeurIPS 2020, "Few-shot Image Generation with Elastic Weight
Consolidation") from a source GAN to the few-shot tumor set.

The Fisher information of the source G's parameters is estimated once at start (32 batches of generated images,
squared gradients of ``-mean(D(G(z)))`` through the source D) and the G loss gains
``ewc_weight * sum F (theta - theta_S)^2`` with ``ewc_weight = 5e8`` (the paper's lambda). The penalty is logged as
``g_ewc`` so its scale against the adversarial loss can be checked. Details: ``fsgan_jax/transfer/ewc.py``.

Run::

  python -m fsgan_jax.main --config=configs/ewc.py --workdir=/tmp/ewc \
      --config.transfer.source_workdir=/tmp/source_ixi
  # CPU budget: configs/ewc.py:cpu with the :cpu source

Measured results of the ``:cpu`` variant (100- and 10-shot): RESULTS.md (few-shot methods table).
"""

from fsgan_jax import default_config


def get_config(arg: str = ''):
  if arg not in ('', 'cpu'):
    raise ValueError(f'configs/ewc.py: unknown variant {arg!r} (use :cpu or nothing)')
  c = default_config.get_config()
  if arg == 'cpu':
    default_config.shrink_for_cpu(c)
  c.transfer.method = 'ewc'
  return c
