r"""Downstream study: do a few-shot GAN's synthetic image + mask pairs help a tumor segmenter trained on k patients?

The segmentation counterpart of ``configs/classify.py`` on TCGA-LGG kaggle_3m FLAIR slices
(``fsgan_jax/datasets/lgg_kaggle3m``). Training pairs come from the tumor slices (area >= ``data.min_tumor_area``)
of the k patients of ``fewshot_k{k}_seed{S}``; validation (model selection on Dice) = the ``heldout`` patients'
tumor slices, test = the ``test`` patients' tumor slices, never seen by the GAN or the U-Net. For each (k, seed)
one FastGAN is trained on the k patients' tumor slices WITH their masks (``model.mask_channels = 1``: image and
mask as channels) and shared by all synthetic arms of that cell. Arms (``arms``):

* ``real``: real pairs only;  ``real_aug``: + classic augmentation (flip, shift, rotation moving image and mask
  together; brightness / contrast jitter on the image only);
* ``syn0.5x``, ``syn1x``, ``syn2x``: real + synthetic pairs, ratio x the real pair count;
* ``syn_only``: synthetic pairs only (as many as real ones), a sanity arm.

Metric: Dice of the U-Net's mask (sigmoid > 0.5, upsampled to the dataset resolution) against the ground truth on
the test tumor slices, per patient (all of a patient's slices pooled) and per slice, with patient (and seed)
bootstrap CIs and paired differences against ``real``.

Full grid (for a GPU; k in {5, 10, 25}, 5 seeds, FastGAN 128 px ngf = ndf = 16, 3000 steps, batch 8; U-Net at
128 px, widths 16-128, 1500 steps; not run yet, no accelerator was lent)::

  python -m fsgan_jax.experiments.segment --config=configs/segment.py --workdir=/tmp/segment_full \
      --config.data.manual_dir=/path/to/kaggle_3m

CPU-small variant (75 cells: arms without ``syn_only``; tiny FastGANs as ``classify.py:cpu``: ngf = ndf = 8, nz 64,
batch 4, 100 steps, the training set tiled to 2048 pairs so all 15 GANs share one compilation; U-Net at 32 px,
widths 8-16-32, 100 steps, batch 16; Dice still at 128 px)::

  python -m fsgan_jax.experiments.segment --config=configs/segment.py:cpu --workdir=/tmp/segment_cpu \
      --config.data.manual_dir=/path/to/kaggle_3m

Both build the dataset into ``WORKDIR/tfds`` on first use (about 2 minutes; it is the classifier study's build,
so ``--config.data.tfds_data_dir=/tmp/classify_cpu/tfds`` reuses one), are resumable (finished cells, GANs and
samples are reused; rerunning only rewrites the results) and write ``results_prefix`` + ``.json`` / ``.md`` /
``.png``. Override tuples with Python syntax, e.g. ``--config.ks='(5,)' --config.arms="('real','syn1x')"``.
Measured wall time and results of the CPU-small grid: RESULTS.md and results/segment.md.
"""

from __future__ import annotations

from typing import Optional

import ml_collections


def get_config(variant: Optional[str] = None) -> ml_collections.ConfigDict:
  """The study config; ``variant='cpu'`` (``--config=configs/segment.py:cpu``) is the CPU-small grid."""
  if variant not in (None, '', 'full', 'cpu'):
    raise ValueError(f'configs/segment.py: unknown variant {variant!r} (use :cpu or nothing)')
  c = ml_collections.ConfigDict()
  c.variant = variant or 'full'
  c.ks = (5, 10, 25)
  c.seeds = (0, 1, 2, 3, 4)
  c.arms = ('real', 'real_aug', 'syn0.5x', 'syn1x', 'syn2x', 'syn_only')
  c.results_prefix = 'results/segment'  # writes <prefix>.json, .md, .png (relative to the current directory)

  c.data = ml_collections.ConfigDict()
  c.data.name = 'lgg_kaggle3m'
  # Raw TCGA-LGG kaggle_3m folder (Kaggle "lgg-mri-segmentation", or the project's compact form); only read when
  # the dataset must be built. Required on first use: --config.data.manual_dir=/path/to/kaggle_3m.
  c.data.manual_dir = ml_collections.config_dict.placeholder(str)
  c.data.tfds_data_dir = ml_collections.config_dict.placeholder(str)  # None = WORKDIR/tfds
  c.data.base_config = 'flair_256_all'  # named builder config; resolution / ks / seeds are overridden
  c.data.slice_policy = 'all'  # all slices are built (the empty ones serve train_empty_slices)
  c.data.resolution = 128  # dataset (and GAN) resolution; Dice is computed at this resolution
  c.data.min_tumor_area = 100  # tumor slice = mask area >= this (pixels at 256); smaller non-empty ones are unused
  # Few-shot sizes built besides ks: the classifier study's negative pool, so one dataset build serves both.
  c.data.extra_ks = (50,)
  # False: the U-Net trains on the k patients' tumor slices only, the same slices the GAN sees (synthetic pairs
  # are tumor slices too, so the arms differ only in the tumor pairs). True: + those patients' empty-mask slices.
  c.data.train_empty_slices = False

  c.unet = ml_collections.ConfigDict()
  c.unet.image_size = 128  # slices and masks are block-downsampled to this (masks: majority, ties -> background)
  c.unet.widths = (16, 32, 64, 128)
  c.unet.groups = 8
  c.unet.activation = 'relu'  # or 'silu'
  c.unet.batch_size = 32  # global, a multiple of the device count
  c.unet.num_steps = 1500
  c.unet.eval_every = 100  # model selection: the step with the best validation per-patient Dice
  c.unet.lr = 1e-3
  c.unet.weight_decay = 1e-4
  c.unet.dice_weight = 1.0  # loss = BCE + dice_weight * (1 - soft Dice), per image
  c.unet.eval_batch_size = 128

  c.augment = ml_collections.ConfigDict()  # the real_aug arm only
  c.augment.hflip = True
  c.augment.max_shift = 0.08  # fraction of the size
  c.augment.max_rotate_deg = 10.0
  c.augment.brightness = 0.1  # additive, in [-1, 1] units (image only)
  c.augment.contrast = 0.1  # multiplicative 1 +- this (image only)

  c.gan = ml_collections.ConfigDict()
  # A trained image + mask generator to use instead of training one: a workdir path, may contain {k} and {seed}.
  # It must have model.mask_channels = 1 and have been trained on the k patients' tumor slices only.
  c.gan.workdir = ml_collections.config_dict.placeholder(str)
  c.gan.ngf = 16
  c.gan.ndf = 16
  c.gan.nz = 256
  c.gan.decoder_width = 8
  c.gan.batch_size = 8
  c.gan.num_steps = 3000
  c.gan.ema_decay = 0.999
  c.gan.recon_loss = 'mse'
  c.gan.sample_batch = 32
  # >0: the GAN's training set is tiled to exactly this many pairs (see classify.gan_training_set); 0: each once.
  c.gan.train_size = 0

  c.metrics = ml_collections.ConfigDict()
  c.metrics.n_boot = 2000
  c.metrics.level = 0.95
  c.metrics.resample_seeds = True  # bootstrap over test patients and, in each replicate, over the seeds too

  if c.variant == 'cpu':
    c.arms = ('real', 'real_aug', 'syn0.5x', 'syn1x', 'syn2x')  # syn_only left out for time
    c.unet.image_size = 32
    c.unet.widths = (8, 16, 32)
    c.unet.batch_size = 16
    c.unet.num_steps = 100
    c.unet.eval_every = 50
    c.unet.eval_batch_size = 128
    c.gan.ngf = 8
    c.gan.ndf = 8
    c.gan.nz = 64
    c.gan.decoder_width = 4
    c.gan.batch_size = 4
    c.gan.num_steps = 100
    c.gan.ema_decay = 0.95
    c.gan.sample_batch = 32
    c.gan.train_size = 2048  # k=25 has up to ~300 tumor slices: copy counts 6 or 7 (k=5: ~40 or 41)
    c.metrics.n_boot = 1000
  return c
