r"""FastGAN, the official recipe (Liu et al., ICLR 2021), on the bundled 100-shot TCGA-LGG FLAIR set.

256 px, ngf = ndf = 64, nz = 256, batch 8, 50k iterations, Adam(2e-4, 0.5, 0.999), EMA 0.999, DiffAugment
'color,translation', hinge loss with random margin, LPIPS-VGG reconstruction of D's three decoders. Outputs at
256 px have no tanh, as in the official code (``model.tanh = None``).

Run (an accelerator is needed; CPU step times are in BENCHMARKS.md)::

  python -m fsgan_jax.main --config=configs/fastgan.py --workdir=/tmp/fastgan_lgg100

Override any field on the command line, e.g. ``--config.data.dir=/path/to/pngs --config.data.channels=3``.
Expected result: recognisable tumor FLAIR slices after a few thousand steps. Every ``eval.every`` = 5000 steps
FID/KID of 2000 EMA samples against the training set (and the bundled held-out patients) go to TensorBoard
(``eval/...``) and the best checkpoint by FID is kept in ``WORKDIR/checkpoints_best``; the full evaluation (5000
samples, all metrics, HTML report) is ``python -m fsgan_jax.main --mode=eval --workdir=...``.
"""

from fsgan_jax import default_config


def get_config():
  """The full official FastGAN recipe (fields and comments: fsgan_jax/default_config.py)."""
  return default_config.get_config()
