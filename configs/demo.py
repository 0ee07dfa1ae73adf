r"""FastGAN demo sized for a 2-core CPU: the official recipe at 128 px with narrower networks.

Same architecture family, hinge loss, DiffAugment, optimiser, EMA and data (bundled 100-shot TCGA-LGG FLAIR) as
``fastgan.py``; changed to fit about 15 minutes on 2 CPU cores: resolution 128 (this project's own FastGAN
variant), ngf = ndf = 16, D's reconstruction decoders at width 8 instead of 32, per-sample MSE instead of
LPIPS-VGG for the reconstruction loss (LPIPS alone would triple the step time), 800 steps, and EMA decay 0.99
(with 0.999 the EMA after 800 steps is still 45% the random initialisation: 0.999**800 = 0.45).
Measured on the 2-core CPU here: 0.8-1.0 s per step, 700 steps took 11.5 min in all. Expected result: ``WORKDIR/samples/step_0000800.png`` shows
blurry axial brain slices with a clear skull/brain outline (not yet tumor detail).

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
  c.num_steps = 800
  c.log_every = 50
  c.sample_every = 100
  c.checkpoint_every = 100
  return c
