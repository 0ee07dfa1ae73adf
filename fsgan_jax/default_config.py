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
  # A prepared TFDS dataset instead of a folder (python -m fsgan_jax.datasets.build ...; see README):
  c.data.tfds_name = ml_collections.config_dict.placeholder(str)  # e.g. 'brats', 'lgg_kaggle3m', 'ixi'; None = dir
  c.data.tfds_config = ml_collections.config_dict.placeholder(str)  # builder config name; None = builder default
  c.data.tfds_split = ml_collections.config_dict.placeholder(str)  # e.g. 'fewshot_k10_seed0', 'train'
  c.data.tfds_data_dir = ml_collections.config_dict.placeholder(str)  # None = $TFDS_DATA_DIR or ~/tensorflow_datasets

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
  # Resuming a workdir with a config that differs from its config.json: num_steps may always change; with True the
  # bookkeeping fields (log/sample/checkpoint intervals, keep_checkpoints, num_sample_images, sample_bn, eval.*,
  # data.dir, data.tfds_data_dir) may change too (the old config.json is kept as config.<timestamp>.json). Model,
  # loss, augmentation, optimizer, seed and batch fields never change within a workdir.
  c.allow_config_change = False

  # Evaluation (fsgan_jax/evaluate.py): the evaluators to run, big_vision style, and their settings.
  c.eval = ml_collections.ConfigDict()
  c.eval.metrics = ('fid', 'kid', 'precision_recall', 'diversity', 'memorization')  # --mode=eval
  c.eval.num_samples = 5000  # generated images for --mode=eval (FastGAN's protocol: 5k vs all training images)
  c.eval.every = 5000  # evaluate the EMA generator every N training steps (0 = never during training)
  c.eval.train_metrics = ('fid', 'kid')  # the periodic evaluation during training
  c.eval.train_num_samples = 2000  # generated images per periodic evaluation
  c.eval.best_metric = 'fid_train'  # keep the best checkpoint by this (lower is better) in checkpoints_best/
  c.eval.fid_method = 'sqrtm'  # --mode=eval: scipy sqrtm as pytorch-fid; periodic evals use 'eigh' (6x faster)
  c.eval.resize = 'tf1'  # resize to 299 for Inception: 'tf1' | 'pytorch_fid' | 'clean' (report it with the number)
  # Held-out real set: a folder; None = the 'heldout' split of a TFDS source, or the bundled held-out patients.
  c.eval.heldout_dir = ml_collections.config_dict.placeholder(str)
  c.eval.batch_size = 64  # generation + Inception batch (a multiple of the device count)
  c.eval.keep_images = 1000  # generated images kept in memory for MS-SSIM and pixel-space memorization
  c.eval.diversity_pairs = 1000  # random pairs for MS-SSIM diversity
  c.eval.kid_subsets = 100
  c.eval.num_closest_pairs = 16  # closest generated/training pairs shown in the report
  return c
