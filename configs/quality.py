r"""The long CPU run of issue 18: the recipe screen's best arm (``configs/recipe.py:b16``) trained for longer.

The demo settings (128 px, ngf = ndf = 16, decoders at width 8, per-sample MSE reconstruction, EMA 0.99,
DiffAugment color+translation, lr 2e-4) with batch 16, which ranked first at an equal CPU budget in the recipe
screen (RESULTS.md, "Recipe screen"). The EMA decay stays at the screened 0.99. Every ``eval.every`` steps the EMA
generator is evaluated (``eval.train_num_samples`` images, FID and KID against the training set and the bundled
held-out patients) and the history is kept in ``WORKDIR/eval/history.jsonl``; the best checkpoint by held-out KID
is kept in ``checkpoints_best/``. The run is resumable: rerun the same command to continue. Plot the curve with
``python -m fsgan_jax.experiments.quality_curve --workdir=WORKDIR``.

Run::

  python -m fsgan_jax.main --config=configs/quality.py --workdir=/tmp/fsgan_quality
"""

from configs import recipe


def get_config():
  c = recipe.get_config('b16')
  c.num_steps = 8000
  c.log_every = 100
  c.sample_every = 500
  c.checkpoint_every = 250
  c.keep_checkpoints = 2
  c.eval.every = 1000
  c.eval.train_metrics = ('fid', 'kid')
  c.eval.train_num_samples = 1000
  c.eval.best_metric = 'kid_heldout'
  c.eval.metrics = ('fid', 'kid', 'precision_recall', 'diversity', 'memorization')
  c.eval.num_samples = 2000
  return c
