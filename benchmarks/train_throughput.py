r"""Training throughput of the FastGAN step: compile seconds, step ms (median), img/s, peak memory.

  python benchmarks/train_throughput.py                        # official setting: 256 px, batch 8, ngf=ndf=64
  python benchmarks/train_throughput.py --quick                # tiny sizes (CI smoke run; numbers meaningless)
  python benchmarks/train_throughput.py --resolution=1024 --batch=32 --steps=20 --json=out.json

Runs the real jitted training step (DiffAugment color+translation, LPIPS-VGG reconstruction, Adam, EMA) on
synthetic images on all local devices; the timing excludes the first (compiling) call and blocks on the result.
"""

import json
import os
import resource
import statistics
import sys
import time

os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '3')
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from absl import app  # pylint: disable=g-import-not-at-top
from absl import flags
import jax
import numpy as np
from jax.sharding import NamedSharding, PartitionSpec as P

from fsgan_jax import default_config
from fsgan_jax import losses, train

flags.DEFINE_integer('resolution', 256, 'Image size.')
flags.DEFINE_integer('batch', 8, 'Global batch size.')
flags.DEFINE_integer('ngf', 64, 'Generator width.')
flags.DEFINE_integer('ndf', 64, 'Discriminator width.')
flags.DEFINE_integer('channels', 3, 'Image channels (3 as the official benchmark setting).')
flags.DEFINE_enum('recon', 'lpips', ['lpips', 'mse'], 'Reconstruction loss.')
flags.DEFINE_enum('dtype', 'float32', ['float32', 'bfloat16'], 'Compute dtype.')
flags.DEFINE_integer('steps', 5, 'Timed steps (after one warm-up step).')
flags.DEFINE_bool('quick', False, 'Tiny model and 2 steps: a smoke run for CI.')
flags.DEFINE_string('json', None, 'Also write the result as JSON to this path.')
FLAGS = flags.FLAGS


def main(_):
  config = default_config.get_config()
  config.model.resolution, config.batch_size = FLAGS.resolution, FLAGS.batch
  config.model.ngf, config.model.ndf, config.data.channels = FLAGS.ngf, FLAGS.ndf, FLAGS.channels
  config.recon_loss, config.model.dtype = FLAGS.recon, FLAGS.dtype
  steps = FLAGS.steps
  if FLAGS.quick:
    config.model.resolution, config.model.ngf, config.model.ndf, config.model.nz = 128, 4, 4, 16
    config.model.decoder_width, config.recon_loss, config.batch_size, steps = 4, 'mse', 8, 2
  train.validate_config(config, jax.device_count())
  mesh = train.make_mesh()
  repl = NamedSharding(mesh, P())
  setup = train.build_setup(config)
  state = train.create_state(config, setup, mesh)
  r = config.model.resolution
  images = jax.device_put(np.random.default_rng(0).uniform(-1, 1, (64, r, r, config.data.channels))
                          .astype(np.float32), repl)
  lpips = jax.device_put(losses.load_lpips_params() if config.recon_loss == 'lpips' else {}, repl)
  step_fn = train.make_train_step(config, setup, mesh)

  t = time.perf_counter()
  compiled = step_fn.lower(state, images, lpips).compile()
  compile_s = time.perf_counter() - t
  flops = None
  try:
    cost = compiled.cost_analysis()
    cost = cost[0] if isinstance(cost, (list, tuple)) else cost
    flops = float(cost.get('flops', 0.0)) or None
  except Exception:  # pylint: disable=broad-except
    pass
  state, m = compiled(state, images, lpips)
  jax.block_until_ready(m)
  times = []
  for _ in range(steps):
    t = time.perf_counter()
    state, m = compiled(state, images, lpips)
    jax.block_until_ready(m)
    times.append(time.perf_counter() - t)
  step_s = statistics.median(times)
  mem = None
  stats = jax.local_devices()[0].memory_stats() if hasattr(jax.local_devices()[0], 'memory_stats') else None
  if stats:
    mem = stats.get('peak_bytes_in_use')
  result = {
      'device_kind': jax.devices()[0].device_kind, 'device_count': jax.device_count(),
      'resolution': r, 'batch': config.batch_size, 'ngf': config.model.ngf, 'ndf': config.model.ndf,
      'channels': config.data.channels, 'recon': config.recon_loss, 'dtype': config.model.dtype,
      'compile_s': round(compile_s, 2), 'step_ms_median': round(1000 * step_s, 1),
      'step_ms_all': [round(1000 * x, 1) for x in times], 'img_per_s': round(config.batch_size / step_s, 3),
      'flops_per_step': flops, 'achieved_tflops': round(flops / step_s / 1e12, 4) if flops else None,
      'peak_device_bytes': mem, 'host_max_rss_mb': resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024,
  }
  print(json.dumps(result, indent=1))
  if FLAGS.json:
    with open(FLAGS.json, 'w') as f:
      json.dump(result, f, indent=1)


if __name__ == '__main__':
  app.run(main)
