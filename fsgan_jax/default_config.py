# Copyright 2026 The fsgan_jax Authors.
#
# Licensed under the Apache License, Version 2.0 (the "License");
# you may not use this file except in compliance with the License.
# You may obtain a copy of the License at
#
#     http://www.apache.org/licenses/LICENSE-2.0
#
# Unless required by applicable law or agreed to in writing, software
# distributed under the License is distributed on an "AS IS" BASIS,
# WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
# See the License for the specific language governing permissions and
# limitations under the License.
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
  # Channels G generates and D sees: `channels` contrasts (None = data.channels) followed by `mask_channels` label
  # channels (0 = images only; 1 = binary tumor mask; 3 = BraTS sub-regions), see fsgan_jax/masks.py.
  c.model.channels = ml_collections.config_dict.placeholder(int)
  c.model.mask_channels = 0

  c.data = ml_collections.ConfigDict()
  c.data.dir = ml_collections.config_dict.placeholder(str)  # None = bundled lgg_flair_100
  c.data.channels = 1  # contrasts: folders 1 = grayscale (FLAIR) or 3 = RGB; TFDS: the builder's contrast count
  # Label channels (model.mask_channels > 0) of a folder source: a folder of masks with the same relative file
  # names as the images (pixel > 127 = tumor); None = the bundled masks when data.dir is None (bundled set).
  c.data.mask_dir = ml_collections.config_dict.placeholder(str)
  c.data.contrast_names = ''  # e.g. 'flair' or 'flair,t1ce': names of the contrast channels in sample files
  c.data.limit = 0  # use only the first N images (0 = all), e.g. 10 for a 10-shot run
  c.data.intensity = 'auto'  # image folders: 'auto' | 'percentile' | 'range' (fsgan_jax/image_file.py)
  c.data.strict = False  # True: images smaller than the resolution, non-square or channel-converted are errors
  c.data.flip = True  # random horizontal flip, as the official transform
  # A prepared TFDS dataset instead of a folder (python -m fsgan_jax.datasets.build ...; see README):
  c.data.tfds_name = ml_collections.config_dict.placeholder(str)  # e.g. 'brats', 'lgg_kaggle3m', 'ixi'; None = dir
  c.data.tfds_config = ml_collections.config_dict.placeholder(str)  # builder config name; None = builder default
  c.data.tfds_split = ml_collections.config_dict.placeholder(str)  # e.g. 'fewshot_k10_seed0', 'train'
  c.data.tfds_data_dir = ml_collections.config_dict.placeholder(str)  # None = $TFDS_DATA_DIR or ~/tensorflow_datasets

  # Few-shot methods (each off by default = plain FastGAN; configs/<method>.py switch them on).
  c.augment = ml_collections.ConfigDict()
  c.augment.apa = False  # adaptive pseudo augmentation (Deceive-D), combinable with diffaug_policy
  c.augment.apa_target = 0.6  # target of lambda_r = E[sign(D(real))]
  c.augment.apa_interval = 4  # adjust p every N iterations
  c.augment.apa_kimg = 500.0  # p can go 0 -> 1 in this many thousand images
  c.latent = 'gaussian'  # 'gaussian' (official), 'gmm' (learnable Gaussian mixture), 'miner' (MineGAN)
  c.gmm = ml_collections.ConfigDict()
  c.gmm.components = 10  # K mixture components (assumption; see configs/gmm.py)
  c.gmm.sigma_reg = 0.01  # weight of DeLiGAN's mean((1 - sigma)^2) regulariser
  c.transfer = ml_collections.ConfigDict()
  c.transfer.method = ml_collections.config_dict.placeholder(str)  # None | 'finetune' | 'cdc' | 'ewc' | 'minegan'
  c.transfer.source_workdir = ml_collections.config_dict.placeholder(str)  # trained with configs/pretrain_source.py
  c.transfer.source_step = ml_collections.config_dict.placeholder(int)  # None = the source's latest checkpoint
  c.transfer.cdc_weight = 1000.0  # distance-consistency weight (CDC's kl_wt)
  c.transfer.cdc_batch = 4  # shared latents per distance-consistency batch
  c.transfer.cdc_anchor_every = 4  # every N iterations: anchor latents + image-level D; else patch-level D
  c.transfer.cdc_anchor_std = 0.1
  c.transfer.cdc_num_anchors = 0  # 0 = the number of training images (CDC's n_train)
  c.transfer.ewc_weight = 5e8  # lambda of the EWC penalty (Li et al. 2020)
  c.transfer.ewc_fisher_batches = 32  # batches of generated images for the Fisher estimate
  c.transfer.minegan_stage1_steps = 0  # MineGAN: steps with G frozen (miner only) before joint training

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
  # Resume from this checkpoint step instead of the latest (e.g. when the latest is damaged); later checkpoints are
  # moved to WORKDIR/checkpoints_set_aside/, never deleted.
  c.restore_step = ml_collections.config_dict.placeholder(int)

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
  # label_consistency (paired generators): the U-Net segmenter trained on the real pairs (evaluators/label_consistency)
  c.eval.segmenter_steps = 300
  c.eval.segmenter_size = 128  # U-Net input size (<= model.resolution, divides it)
  return c


def shrink_for_cpu(c: ml_collections.ConfigDict, num_steps: int = 200) -> ml_collections.ConfigDict:
  """The small budget used for the CPU rows of RESULTS.md (the ``:cpu`` variant of the method configs).

  As ``configs/demo.py`` (128 px, ngf = ndf = 16, decoders at width 8, MSE reconstruction, EMA 0.99) with
  ``num_steps`` steps and no periodic evaluation. Every method gets the same budget.
  """
  c.model.resolution = 128
  c.model.ngf = 16
  c.model.ndf = 16
  c.model.decoder_width = 8
  c.recon_loss = 'mse'
  c.ema_decay = 0.99
  c.num_steps = num_steps
  c.log_every = 50
  c.sample_every = 100
  c.checkpoint_every = 100
  c.eval.every = 0
  c.eval.num_samples = 300
  return c
