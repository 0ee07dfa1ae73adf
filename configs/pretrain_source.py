r"""Source GAN for transfer: FastGAN trained on a large healthy-brain domain (IXI T1 axial slices).

The transfer configs (``finetune.py``, ``cdc.py``, ``ewc.py``, ``minegan.py``) start from this run's checkpoint
(``--config.transfer.source_workdir=WORKDIR``); the target must use the same architecture (resolution, widths, nz,
channels), so train the source with the same variant (full or ``:cpu``) as the target. Resumable like every run.

Data: IXI T1 volumes (CC BY-SA 3.0, brain-development.org/ixi-dataset), sliced axially by the project's TFDS
builder; build it once::

  python -m fsgan_jax.datasets.build ixi --manual_dir=/path/to/IXI-T1 --data_dir=~/tensorflow_datasets \
      --config=t1_256          # t1_128 for the :cpu variant

Alternatives: TCGA-LGG non-tumor FLAIR slices (``--config.data.tfds_name=lgg_kaggle3m`` with a ``nontumor``
builder config) or any folder of PNGs (``--config.data.tfds_name=None --config.data.dir=...``). Keep the source
subject-disjoint from the target's held-out evaluation patients (IXI subjects are healthy volunteers, so it is).

Run::

  python -m fsgan_jax.main --config=configs/pretrain_source.py --workdir=/tmp/source_ixi
  python -m fsgan_jax.main --config=configs/pretrain_source.py:cpu --workdir=/tmp/source_ixi_cpu

The transfer rows of RESULTS.md use the ``:cpu`` source (300 steps on IXI t1_128).
"""

from fsgan_jax import default_config


def get_config(arg: str = ''):
  if arg not in ('', 'cpu'):
    raise ValueError(f'configs/pretrain_source.py: unknown variant {arg!r} (use :cpu or nothing)')
  c = default_config.get_config()
  c.num_steps = 40_000
  if arg == 'cpu':
    default_config.shrink_for_cpu(c, num_steps=300)
  c.data.tfds_name = 'ixi'
  c.data.tfds_config = f't1_{c.model.resolution}'
  c.data.tfds_split = 'train'
  c.eval.train_metrics = ('fid', 'kid')
  return c
