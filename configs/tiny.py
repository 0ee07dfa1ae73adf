"""A tiny FastGAN for tests: 128 px, ngf = ndf = 4, MSE reconstruction, a handful of steps."""

from fsgan_jax import default_config


def get_config():
  c = default_config.get_config()
  c.model.resolution = 128
  c.model.ngf = 4
  c.model.ndf = 4
  c.model.nz = 16
  c.model.decoder_width = 4
  c.data.limit = 16
  c.batch_size = 8
  c.num_steps = 4
  c.recon_loss = 'mse'
  c.log_every = 2
  c.sample_every = 2
  c.checkpoint_every = 2
  c.keep_checkpoints = 2
  c.num_sample_images = 4
  c.eval.every = 0
  c.eval.num_samples = 16
  c.eval.train_num_samples = 16
  c.eval.batch_size = 8
  c.eval.fid_method = 'eigh'
  c.eval.keep_images = 16
  c.eval.diversity_pairs = 8
  c.eval.kid_subsets = 4
  c.eval.num_closest_pairs = 4
  return c
