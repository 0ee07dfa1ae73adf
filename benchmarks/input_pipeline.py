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
r"""Input-pipeline throughput: whole set on device (jitted index sampling) vs streaming from array_record.

  python benchmarks/input_pipeline.py                 # 256 px, batch 8; lgg_kaggle3m (shared data) or synthetic
  python benchmarks/input_pipeline.py --manual_dir=../shared/data/lgg_kaggle3m --batches=200
  python benchmarks/input_pipeline.py --quick --json=out.json   # tiny synthetic set (CI smoke run)

Builds an lgg_kaggle3m split (all patients in one ``fewshot_k{N}_seed0`` split) into a temporary folder, then times

* ``on_device``: the split as one float32 array on device; each batch = ``steps.sample_real_batch`` (epoch-wise
  permutations + flips from an rng, gathered inside one jitted call), as in training;
* ``streaming``: the split's array_record data source (``builder.as_data_source``, what ``tfds.data_source``
  returns), a background thread that samples indices with numpy, decodes the examples, stacks a batch and copies
  it to the device (``jax.device_put``), and a bounded queue (``--prefetch`` batches) the loop takes from.

Both loops block on every batch (as a training loop consuming it would); the first batches (compile, thread start)
are excluded. Prints batches/s of each and the ratio on_device / streaming.
"""

import json
import os
import pathlib
import queue
import sys
import tempfile
import threading
import time

os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '3')
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from absl import app  # pylint: disable=g-import-not-at-top
from absl import flags
import jax
import numpy as np
from PIL import Image

from fsgan_jax import steps

_SHARED = pathlib.Path(__file__).resolve().parents[1] / '..' / 'shared' / 'data' / 'lgg_kaggle3m'
flags.DEFINE_string('manual_dir', None, 'lgg_kaggle3m manual_dir (default: shared data if present, else synthetic).')
flags.DEFINE_integer('resolution', 256, 'Image size.')
flags.DEFINE_integer('batch', 8, 'Batch size.')
flags.DEFINE_integer('batches', 100, 'Timed batches per path (after warm-up).')
flags.DEFINE_integer('prefetch', 4, 'Streaming queue depth (batches).')
flags.DEFINE_bool('quick', False, 'Tiny synthetic set at 32 px, 10 batches: a smoke run for CI.')
flags.DEFINE_string('json', None, 'Also write the result as JSON to this path.')
FLAGS = flags.FLAGS


def write_synthetic(root: pathlib.Path, patients: int, slices: int) -> pathlib.Path:
  """A kaggle_3m-layout folder: ``patients`` x ``slices`` 3-channel 256x256 TIFs, every slice with a tumor."""
  rng = np.random.default_rng(0)
  for p in range(patients):
    folder = f'TCGA_XX_{p:04d}_20000101'
    (root / folder).mkdir(parents=True)
    for n in range(1, slices + 1):
      img = rng.integers(0, 256, (256, 256, 3), dtype=np.uint8)
      mask = np.zeros((256, 256), np.uint8)
      mask[100:140, 100:140] = 255
      Image.fromarray(img).save(root / folder / f'{folder}_{n}.tif')
      Image.fromarray(mask).save(root / folder / f'{folder}_{n}_mask.tif')
  return root


def build_split(manual_dir: pathlib.Path, data_dir: pathlib.Path, resolution: int):
  """Builds every patient's tumor slices (flair) into one split; returns (builder, split name)."""
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  from fsgan_jax.datasets.lgg_kaggle3m import lgg_kaggle3m_dataset_builder as ldb  # pylint: disable=g-import-not-at-top
  from fsgan_jax.datasets.lgg_kaggle3m import lgg_kaggle3m_io  # pylint: disable=g-import-not-at-top
  tfds.disable_progress_bar()
  _, slices = lgg_kaggle3m_io.find_slices(manual_dir)
  k = len({s.patient_id for s in slices})
  config = ldb.make_config('flair_256_tumor', resolution=resolution, ks=(k,), seeds=(0,), test_fraction=0.0,
                           heldout_fraction=0.0)
  builder = ldb.Builder(config=config, data_dir=str(data_dir), file_format='array_record')
  builder.download_and_prepare(download_config=tfds.download.DownloadConfig(manual_dir=str(manual_dir)))
  return builder, f'fewshot_k{k}_seed0'


def time_loop(next_batch, n: int, warmup: int = 3) -> float:
  """Batches/s of ``next_batch`` over ``n`` calls after ``warmup`` calls, blocking on each batch."""
  for _ in range(warmup):
    jax.block_until_ready(next_batch())
  t = time.perf_counter()
  for _ in range(n):
    jax.block_until_ready(next_batch())
  return n / (time.perf_counter() - t)


class Prefetcher:
  """Background thread: random indices -> decoded examples -> stacked batch -> device; bounded queue."""

  def __init__(self, source, batch: int, depth: int, seed: int = 0):
    self._source, self._batch = source, batch
    self._queue: queue.Queue = queue.Queue(maxsize=depth)
    self._stop = threading.Event()
    self._rng = np.random.default_rng(seed)
    self._thread = threading.Thread(target=self._run, daemon=True)
    self._thread.start()

  def _run(self):
    n = len(self._source)
    while not self._stop.is_set():
      idx = self._rng.integers(0, n, self._batch)
      items = self._source.__getitems__(idx.tolist()) if hasattr(self._source, '__getitems__') else [
          self._source[int(i)] for i in idx]
      x = np.stack([it['image'] for it in items])
      flip = self._rng.random(self._batch) < 0.5
      x[flip] = x[flip, :, ::-1]
      x = jax.device_put(x)
      while not self._stop.is_set():
        try:
          self._queue.put(x, timeout=0.1)
          break
        except queue.Full:
          pass

  def __call__(self):
    return self._queue.get()

  def close(self):
    self._stop.set()
    self._thread.join()


def main(_):
  resolution, batch, n = FLAGS.resolution, FLAGS.batch, FLAGS.batches
  with tempfile.TemporaryDirectory() as tmp:
    tmp = pathlib.Path(tmp)
    manual = FLAGS.manual_dir
    if FLAGS.quick:
      resolution, n, manual = 32, 10, write_synthetic(tmp / 'raw', patients=3, slices=4)
    elif manual is None:
      manual = _SHARED if _SHARED.is_dir() else write_synthetic(tmp / 'raw', patients=20, slices=16)
    t = time.perf_counter()
    builder, split = build_split(pathlib.Path(manual), tmp / 'tfds', resolution)
    build_s = time.perf_counter() - t
    source = builder.as_data_source(split=split)

    # (a) On device: load once, gather inside a jitted function.
    t = time.perf_counter()
    images = jax.device_put(np.stack([source[i]['image'] for i in range(len(source))]))
    load_s = time.perf_counter() - t
    sample = jax.jit(steps.sample_real_batch, static_argnames=('batch', 'flip'))
    key, step = jax.random.key(0), [0]

    def on_device():
      step[0] += 1
      return sample(images, key, np.int32(step[0]), batch=batch)

    on_device_bps = time_loop(on_device, n)

    # (b) Streaming from array_record with a prefetching thread.
    prefetcher = Prefetcher(source, batch, FLAGS.prefetch)
    try:
      streaming_bps = time_loop(prefetcher, n)
    finally:
      prefetcher.close()

  result = {
      'device_kind': jax.devices()[0].device_kind, 'manual_dir': 'synthetic' if FLAGS.quick else str(manual),
      'examples': int(images.shape[0]), 'resolution': resolution, 'batch': batch, 'batches': n,
      'build_s': round(build_s, 2), 'load_to_device_s': round(load_s, 2),
      'on_device_batches_per_s': round(on_device_bps, 2), 'streaming_batches_per_s': round(streaming_bps, 2),
      'ratio_on_device_over_streaming': round(on_device_bps / streaming_bps, 2),
  }
  print(json.dumps(result, indent=1))
  if FLAGS.json:
    with open(FLAGS.json, 'w') as f:
      json.dump(result, f, indent=1)


if __name__ == '__main__':
  app.run(main)
