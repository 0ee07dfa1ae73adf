r"""Paired FLAIR + tumor-mask FastGAN: every generated slice comes with its label.

G generates 2 channels (FLAIR, then the tumor mask in -1 / +1) and D judges both together, trained on the bundled
100-shot TCGA-LGG FLAIR slices and their masks (``fsgan_jax/data/lgg_flair_100_masks``); conventions in
``fsgan_jax/masks.py`` (after Akbar et al. 2023, who trained GANs on BraTS contrasts + mask as one image).
DiffAugment moves the mask with the image (translation, cutout) and leaves it out of colour jitter; sampling
binarises the mask at 0 and writes ``img_<i>_flair.png`` + ``img_<i>_mask.png`` (``--nifti``: also a BraTS-style
NIfTI case). Evaluation adds per-contrast FID/KID (here FID on the FLAIR channel), mask area / location statistics
vs the real masks, and label consistency (Dice between the generated mask and a U-Net's prediction on the generated
FLAIR, the U-Net trained on the real pairs).

Variants (``--config=configs/paired.py:<variant>``):

* default: the official recipe at 256 px (ngf = ndf = 64, LPIPS per channel group, 50k steps) for a GPU;
* ``cpu``: the demo budget of ``configs/demo.py`` (128 px, ngf = ndf = 16, MSE, 900 steps, EMA 0.99).

Other data: ``--config.data.dir=IMAGES --config.data.mask_dir=MASKS`` (same file names; mask pixel > 127 =
tumor), or a TFDS source (``data.tfds_name='lgg_kaggle3m'`` or ``'brats'``; BraTS sub-regions as 3 label
channels with ``--config.model.mask_channels=3``, several contrasts with ``data.channels`` and
``data.contrast_names``, e.g. ``'flair,t1ce'``).

Measured results (``:cpu``): RESULTS.md (paired generation).

Run::

  python -m fsgan_jax.main --config=configs/paired.py:cpu --workdir=/tmp/paired
  python -m fsgan_jax.main --mode=sample --workdir=/tmp/paired --num=64 --nifti
  python -m fsgan_jax.main --mode=eval --workdir=/tmp/paired --num=500
"""

from typing import Optional

from fsgan_jax import default_config


def get_config(variant: Optional[str] = None):
  """The paired config; ``variant='cpu'`` is the CPU demo budget."""
  if variant not in (None, '', 'cpu'):
    raise ValueError(f'configs/paired.py: unknown variant {variant!r} (use :cpu or nothing)')
  c = default_config.get_config()
  c.model.mask_channels = 1
  c.data.contrast_names = 'flair'
  c.eval.metrics = ('fid', 'kid', 'diversity', 'memorization', 'mask_stats', 'label_consistency')
  if variant == 'cpu':  # the demo budget of configs/demo.py
    default_config.shrink_for_cpu(c, num_steps=900)
    c.eval.num_samples = 500
  return c
