r"""FastGAN demo sized for a 2-core CPU: the official recipe at 128 px with narrower networks.

Same architecture family, hinge loss, DiffAugment, optimiser, EMA and data (bundled 100-shot TCGA-LGG FLAIR) as
``fastgan.py``; changed to fit about 15 minutes on 2 CPU cores: resolution 128 (this project's own FastGAN
variant), ngf = ndf = 16, D's reconstruction decoders at width 8 instead of 32, per-sample MSE instead of
LPIPS-VGG for the reconstruction loss (LPIPS alone would triple the step time), 900 steps, and EMA decay 0.99
(with 0.999 the EMA after 900 steps is still 41% the random initialisation: 0.999**900 = 0.41).
Its step time and the Quick start's wall time on a 2-core CPU are in BENCHMARKS.md, its images' KID/FID in
RESULTS.md.

Run::

  python -m fsgan_jax.main --config=configs/demo.py --workdir=/tmp/fsgan_demo
"""

from fsgan_jax import default_config


def get_config():
  c = default_config.get_config()
  c.model.resolution = 128
  c.model.ngf = 16
  c.model.ndf = 16
  c.model.decoder_width = 8
  c.recon_loss = 'mse'
  c.ema_decay = 0.99
  c.num_steps = 900
  c.log_every = 50
  c.sample_every = 100
  c.checkpoint_every = 100
  c.eval.every = 0  # no periodic FID (Inception on 2 CPU cores would double the demo); use --mode=eval after
  c.eval.num_samples = 500
  return c
