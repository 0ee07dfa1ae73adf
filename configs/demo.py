r"""FastGAN demo sized for a 2-core CPU: the official recipe at 128 px with narrower networks.

Same losses, augmentation, optimiser, EMA and data (bundled 100-shot TCGA-LGG FLAIR) as ``fastgan.py``; changed:
resolution 128 (this project's own FastGAN variant), ngf = ndf = 16, fewer steps. Meant to finish in about
15 minutes on 2 CPU cores and show brain outlines in ``WORKDIR/samples/``.

Run::

  python -m fsgan_jax.main --config=configs/demo.py --workdir=/tmp/fsgan_demo
"""

from configs import fastgan


def get_config():
  c = fastgan.get_config()
  c.model.resolution = 128
  c.model.ngf = 16
  c.model.ndf = 16
  c.num_steps = 1500
  c.log_every = 50
  c.sample_every = 250
  c.checkpoint_every = 250
  return c
