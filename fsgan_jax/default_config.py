"""Default FastGAN config (the official recipe); ``configs/fastgan.py`` is the user-facing copy of it.

Kept inside the package so library code (checkpoint conversion, benchmarks) does not depend on the repository's
``configs/`` folder. Every field is documented inline; see ``configs/fastgan.py`` for the command.
"""

import ml_collections


def get_config() -> ml_collections.ConfigDict:
  """The full official FastGAN recipe."""
  c = ml_collections.ConfigDict()
  c.seed = 0

  c.model = ml_collections.ConfigDict()
  c.model.resolution = 256  # 128 (project's own), 256, 512, 1024
  c.model.ngf = 64
  c.model.ndf = 64
  c.model.nz = 256
  c.model.decoder_width = 32  # D's reconstruction decoders (official: 32, fixed)
  c.model.tanh = ml_collections.config_dict.placeholder(bool)  # None = official (tanh only at 1024)
  c.model.dtype = 'float32'  # or 'bfloat16' (params, optimizer and statistics stay float32)

  c.data = ml_collections.ConfigDict()
  c.data.dir = ml_collections.config_dict.placeholder(str)  # None = bundled lgg_flair_100
  c.data.channels = 1  # 1 = grayscale (FLAIR), 3 = RGB
  c.data.limit = 0  # use only the first N images (0 = all), e.g. 10 for a 10-shot run
  c.data.flip = True  # random horizontal flip, as the official transform

  c.batch_size = 8  # global batch, split over all devices
  c.num_steps = 50_000
  c.lr = 2e-4
  c.beta1 = 0.5
  c.beta2 = 0.999
  c.ema_decay = 0.999
  c.diffaug_policy = 'color,translation'
  c.recon_loss = 'lpips'  # 'lpips' (official, LPIPS-VGG) or 'mse'
  c.sample_bn = 'batch'  # BN when sampling: 'batch' statistics (official eval.py) or 'running'

  c.log_every = 100
  c.sample_every = 1000
  c.checkpoint_every = 1000
  c.keep_checkpoints = 3
  c.num_sample_images = 16  # EMA sample grid written to TensorBoard and workdir/samples/
  return c
