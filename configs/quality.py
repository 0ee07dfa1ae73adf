r"""The long CPU run of issue 18: the recipe screen's best arm (``configs/recipe.py:b16``) trained for longer.

The demo settings (128 px, ngf = ndf = 16, decoders at width 8, per-sample MSE reconstruction, EMA 0.99,
DiffAugment color+translation, lr 2e-4) with batch 16, which ranked first at an equal CPU budget in the recipe
screen (RESULTS.md, "Recipe screen"). The EMA decay stays at the screened 0.99. Every ``eval.every`` steps the EMA
generator is evaluated (``eval.train_num_samples`` images, FID and KID against the training set and the bundled
held-out patients) and the history is kept in ``WORKDIR/eval/history.jsonl``; the best checkpoint by held-out KID
is kept in ``checkpoints_best/``. The run is resumable: rerun the same command to continue. Plot the curve with
``python -m fsgan_jax.experiments.quality_curve --workdir=WORKDIR``.

``configs/quality.py:polish`` continues a finished run (``transfer.method='finetune'`` from its checkpoint: G, EMA
and D carried over, fresh Adam) with the learning rate halved and a longer EMA (0.999, a half-life of about 700
steps), the usual end-of-training settings once the held-out scores stop improving at lr 2e-4 / EMA 0.99.
``configs/quality.py:w32`` is the capacity side: the recipe's ``w32`` arm (ngf = ndf = 32, decoders at 16, batch 8)
with the same long-run bookkeeping.

Run::

  python -m fsgan_jax.main --config=configs/quality.py --workdir=/tmp/fsgan_quality
  python -m fsgan_jax.main --config=configs/quality.py:polish --workdir=/tmp/fsgan_quality_polish \
      --config.transfer.source_workdir=/tmp/fsgan_quality --config.transfer.source_step=4000
"""

from configs import recipe


def get_config(arg: str = ''):
  if arg not in ('', 'polish', 'w32'):
    raise ValueError(f'configs/quality.py: unknown variant {arg!r}; use "", "polish" or "w32"')
  c = recipe.get_config('w32' if arg == 'w32' else 'b16')
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
  if arg == 'polish':
    c.transfer.method = 'finetune'
    c.lr = c.lr / 2
    c.ema_decay = 0.999
    c.num_steps = 3000
    c.eval.every = 500
  return c
