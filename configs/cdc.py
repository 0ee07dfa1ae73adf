r"""Cross-domain correspondence (CDC; Ojha et al., CVPR 2021, "Few-shot Image Generation via Cross-domain
Correspondence") from a source GAN to the few-shot tumor set.

Distance consistency: for 4 shared latents, the softmax over pairwise cosine similarities of FastGAN's block
outputs (feat_8 ... se_128) of the frozen source G (its EMA) and the adapted G must agree (KL, weight 1000).
Anchor regions: as many anchor latents as training images; every 4th iteration the fakes come from
``anchor + N(0, 0.1^2)`` and D/G use image-level logits, otherwise only patch-level logits of a patch head added
to D (1x1 spectral-norm conv on D's ``se_4_32`` features; *assumption*: FastGAN's D has none). Details:
``fsgan_jax/transfer/cdc.py``.

Run::

  python -m fsgan_jax.main --config=configs/cdc.py --workdir=/tmp/cdc \
      --config.transfer.source_workdir=/tmp/source_ixi
  # CPU budget: configs/cdc.py:cpu with the :cpu source

Measured results of the ``:cpu`` variant (100- and 10-shot): RESULTS.md (few-shot methods table).
"""

from fsgan_jax import default_config


def get_config(arg: str = ''):
  if arg not in ('', 'cpu'):
    raise ValueError(f'configs/cdc.py: unknown variant {arg!r} (use :cpu or nothing)')
  c = default_config.get_config()
  if arg == 'cpu':
    default_config.shrink_for_cpu(c)
  c.transfer.method = 'cdc'
  return c
