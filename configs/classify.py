r"""Downstream study: do synthetic tumor slices help a tumor-vs-no-tumor classifier trained on k patients?

Rare-disease setting on TCGA-LGG kaggle_3m FLAIR slices (``fsgan_jax/datasets/lgg_kaggle3m``): tumor slices come
from only the k patients of ``fewshot_k{k}_seed{S}``; non-tumor slices are plentiful (those of the
``data.negative_patients`` first pool patients of the same seed, a superset of the k); validation = the ``heldout``
patients, test = the ``test`` patients, never seen by the GAN or the classifier. For each (k, seed) one FastGAN is
trained on the k patients' tumor slices only and shared by all synthetic arms of that cell. Arms (``arms``):

* ``real``: real slices only;  ``real_aug``: + classic augmentation (flip, shift, rotation, intensity jitter);
* ``syn0.5x``, ``syn1x``, ``syn2x``: real + synthetic tumor slices, ratio x the real tumor-slice count;
* ``syn_only``: the tumor class is synthetic only (as many as real tumor slices), a sanity arm.

Full grid (for a GPU; k in {5, 10, 25}, 5 seeds, FastGAN 128 px ngf = ndf = 16, 3000 steps, batch 8; classifier
at 128 px, widths 16-128, 1500 steps; not run yet, no accelerator was lent)::

  python -m fsgan_jax.experiments.classify --config=configs/classify.py --workdir=/tmp/classify_full

CPU-small variant (the same 90 cells with tiny FastGANs: ngf = ndf = 8, nz 64, batch 4, 100 steps, their training
set tiled to 2048 images so all 15 GANs share one compilation; classifier at 64 px, widths 8-32, stem stride 2,
120 steps)::

  python -m fsgan_jax.experiments.classify --config=configs/classify.py:cpu --workdir=/tmp/classify_cpu \
      --config.data.manual_dir=/path/to/kaggle_3m

Both build the dataset into ``WORKDIR/tfds`` on first use (about 2 minutes; ``--config.data.tfds_data_dir`` reuses
a built one), are resumable (finished cells, GANs and samples are reused; rerunning only rewrites the results) and
write ``results_prefix`` + ``.json`` / ``.md`` / ``.png``. Override tuples with Python syntax, e.g.
``--config.ks='(5,)' --config.arms="('real','syn1x')"``.
Measured wall time and results of the CPU-small grid: RESULTS.md and results/classify.md.
"""

from __future__ import annotations

from typing import Optional

import ml_collections


def get_config(variant: Optional[str] = None) -> ml_collections.ConfigDict:
  """The study config; ``variant='cpu'`` (``--config=configs/classify.py:cpu``) is the CPU-small grid."""
  if variant not in (None, '', 'full', 'cpu'):
    raise ValueError(f'configs/classify.py: unknown variant {variant!r} (use :cpu or nothing)')
  c = ml_collections.ConfigDict()
  c.variant = variant or 'full'
  c.ks = (5, 10, 25)
  c.seeds = (0, 1, 2, 3, 4)
  c.arms = ('real', 'real_aug', 'syn0.5x', 'syn1x', 'syn2x', 'syn_only')
  c.results_prefix = 'results/classify'  # writes <prefix>.json, .md, .png (relative to the current directory)

  c.data = ml_collections.ConfigDict()
  c.data.name = 'lgg_kaggle3m'
  # Raw TCGA-LGG kaggle_3m folder (Kaggle "lgg-mri-segmentation", or the project's compact form); only read when
  # the dataset must be built. Required on first use: --config.data.manual_dir=/path/to/kaggle_3m.
  c.data.manual_dir = ml_collections.config_dict.placeholder(str)
  c.data.tfds_data_dir = ml_collections.config_dict.placeholder(str)  # None = WORKDIR/tfds
  c.data.base_config = 'flair_256_all'  # named builder config; resolution / ks / seeds are overridden
  c.data.slice_policy = 'all'  # tumor and non-tumor slices
  c.data.resolution = 128  # dataset (and GAN) resolution
  c.data.min_tumor_area = 100  # positive = tumor area >= this (pixels at 256); negative = area 0; others unused
  c.data.negative_patients = 50  # non-tumor slices come from fewshot_k{this}_seed{S} (contains the k patients)

  c.classifier = ml_collections.ConfigDict()
  c.classifier.image_size = 128  # slices are block-mean downsampled to this
  c.classifier.widths = (16, 32, 64, 128)
  c.classifier.blocks_per_stage = 1
  c.classifier.groups = 8
  c.classifier.stem_stride = 1
  c.classifier.batch_size = 64  # global, a multiple of the device count
  c.classifier.pos_fraction = 0.5  # class balance: each batch is half tumor (oversampled), half non-tumor
  c.classifier.num_steps = 1500
  c.classifier.eval_every = 100  # model selection: the step with the best validation AUROC
  c.classifier.lr = 1e-3
  c.classifier.weight_decay = 1e-4
  c.classifier.eval_batch_size = 256

  c.augment = ml_collections.ConfigDict()  # the real_aug arm only
  c.augment.hflip = True
  c.augment.max_shift = 0.08  # fraction of the size
  c.augment.max_rotate_deg = 10.0
  c.augment.brightness = 0.1  # additive, in [-1, 1] units
  c.augment.contrast = 0.1  # multiplicative 1 +- this

  c.gan = ml_collections.ConfigDict()
  # A trained generator to use instead of training one: a workdir path, may contain {k} and {seed}, e.g.
  # '/ckpt/gan_k{k}_seed{seed}'. It must have been trained on the k patients' tumor slices only (your responsibility).
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
  # >0: the GAN's training set is tiled to exactly this many images (every tumor slice size // n or one more
  # times) so that all GANs share one XLA compilation; 0: every slice once (exactly uniform).
  c.gan.train_size = 0

  c.metrics = ml_collections.ConfigDict()
  c.metrics.specificity = 0.9  # sensitivity at this specificity
  c.metrics.threshold = 'youden'  # balanced-accuracy threshold, chosen on validation: 'youden' or 'fixed' (0.5)
  c.metrics.n_boot = 2000
  c.metrics.level = 0.95
  c.metrics.resample_seeds = True  # bootstrap over test patients and, in each replicate, over the seeds too

  if c.variant == 'cpu':
    c.classifier.image_size = 64
    c.classifier.widths = (8, 16, 32)
    c.classifier.stem_stride = 2
    c.classifier.batch_size = 32
    c.classifier.num_steps = 120
    c.classifier.eval_every = 40
    c.classifier.eval_batch_size = 256
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
