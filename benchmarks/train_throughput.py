r"""Training throughput of the FastGAN step: compile s, step ms (median), img/s, FLOPs, TFLOP/s, peak memory.

  python benchmarks/train_throughput.py                        # official setting: 256 px, batch 8, ngf=ndf=64
  python benchmarks/train_throughput.py --quick                # tiny sizes (CI smoke run; numbers meaningless)
  python benchmarks/train_throughput.py --resolution=1024 --batch=32 --steps=20 --json=out.json
  python benchmarks/train_throughput.py --sweep --json=sweep.json      # 256/512/1024 px x global batch 8/32/128
  python benchmarks/train_throughput.py --resolution=128 --ngf=16 --ndf=16 --decoder_width=8 --channels=1 \
      --recon=mse --steps=10 --ynn_compare                     # CPU: XLA default vs ours vs no YNNPACK, interleaved

Runs the real jitted training step (DiffAugment color+translation, LPIPS-VGG or MSE reconstruction, Adam, EMA) on
synthetic images on all devices; the timing excludes compilation and one warm-up step and blocks on the result of
every step. FLOPs are XLA's cost analysis of the compiled step (one device's partition, times the device count); achieved TFLOP/s = FLOPs /
median step time. Peak memory is the device allocator's peak (accelerators; absent on CPU) and the host's max RSS.
"""

import gc
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

from fsgan_jax import compiler, config_lib, default_config, gan

flags.DEFINE_integer('resolution', 256, 'Image size.')
flags.DEFINE_integer('batch', 8, 'Global batch size (over all devices).')
flags.DEFINE_integer('ngf', 64, 'Generator width.')
flags.DEFINE_integer('ndf', 64, 'Discriminator width.')
flags.DEFINE_integer('decoder_width', None, "D's reconstruction decoder width (default: the config's).")
flags.DEFINE_integer('channels', 3, 'Image channels (3 as the official benchmark setting).')
flags.DEFINE_enum('recon', 'lpips', ['lpips', 'mse'], 'Reconstruction loss.')
flags.DEFINE_enum('dtype', 'float32', ['float32', 'bfloat16'], 'Compute dtype.')
flags.DEFINE_integer('steps', 20, 'Timed steps (after one warm-up step); the median is reported.')
flags.DEFINE_bool('quick', False, 'Tiny model and 2 steps: a smoke run for CI.')
flags.DEFINE_bool('sweep', False, 'Resolution 256/512/1024 x global batch 8/32/128 (out-of-memory runs reported).')
flags.DEFINE_enum('xla_options', 'package', ['package', 'default', 'no_ynn'],
                  "XLA:CPU compile options of the step: 'package' = fsgan_jax.compiler.options() (what training "
                  "uses: convolutions on Eigen, not YNNPACK), 'default' = XLA's defaults, 'no_ynn' = every YNNPACK "
                  "fusion off.")
flags.DEFINE_bool('ynn_compare', False, "CPU: time 'default', 'package' and 'no_ynn' side by side (interleaved).")
flags.DEFINE_string('json', None, 'Also write the result as JSON to this path.')
FLAGS = flags.FLAGS

# XLA:CPU option sets by name (jaxlib 0.10's default YNNPACK fusion set spelled out, so that it overrides the jit's).
XLA_OPTIONS = {
    'default': {compiler.YNN_FUSION_OPTION: 'LIBRARY_FUSION_TYPE_INDIVIDUAL_DOT,LIBRARY_FUSION_TYPE_REDUCE,'
                                            'LIBRARY_FUSION_TYPE_INDIVIDUAL_CONVOLUTION'},
    'package': compiler.CPU_OPTIONS,
    'no_ynn': {compiler.YNN_FUSION_OPTION: ''},
}
SWEEP_RESOLUTIONS = (256, 512, 1024)
SWEEP_BATCHES = (8, 32, 128)


def _config(resolution: int, batch: int):
  config = default_config.get_config()
  config.model.resolution, config.batch_size = resolution, batch
  config.model.ngf, config.model.ndf, config.data.channels = FLAGS.ngf, FLAGS.ndf, FLAGS.channels
  if FLAGS.decoder_width is not None:
    config.model.decoder_width = FLAGS.decoder_width
  config.recon_loss, config.model.dtype = FLAGS.recon, FLAGS.dtype
  if FLAGS.quick:
    config.model.resolution, config.model.ngf, config.model.ndf, config.model.nz = 128, 4, 4, 16
    config.model.decoder_width, config.recon_loss, config.batch_size = 4, 'mse', 8
  return config


def _flops(compiled) -> float | None:
  """FLOPs of one step on all devices: XLA counts the SPMD-partitioned program, i.e. one device's share."""
  try:
    cost = compiled.cost_analysis()
    cost = cost[0] if isinstance(cost, (list, tuple)) else cost
    return float(cost.get('flops', 0.0)) * jax.device_count() or None
  except Exception:  # pylint: disable=broad-except
    return None


def _peak_device_bytes() -> int | None:
  peaks = []
  for d in jax.local_devices():
    stats = d.memory_stats() if hasattr(d, 'memory_stats') else None
    if stats and 'peak_bytes_in_use' in stats:
      peaks.append(stats['peak_bytes_in_use'])
  return max(peaks) if peaks else None


def run(resolution: int, batch: int, steps: int, variants: dict[str, dict | None]) -> dict:
  """Compiles the train step once per variant (name -> XLA compiler options) and times them interleaved."""
  config = _config(resolution, batch)
  config_lib.validate(config, jax.device_count())
  mesh = gan.make_mesh()
  repl = NamedSharding(mesh, P())
  setup = gan.build_setup(config)
  r = config.model.resolution
  # --quick: 16 images, as configs/tiny.py trains on, so the smoke run's program is the tests' tiny train step (one
  # compilation shared through the persistent cache).
  n_images = 16 if FLAGS.quick else max(64, config.batch_size)
  images = jax.device_put(np.random.default_rng(0).uniform(-1, 1, (n_images, r, r,
                                                                    config.data.channels)).astype(np.float32), repl)
  lpips = gan.make_consts(config, setup, mesh, images.shape[0])  # LPIPS weights (plain FastGAN: no other consts)
  step_fn = gan.make_train_step(config, setup, mesh)
  runs = {}
  for name, options in variants.items():
    state = gan.create_state(config, setup, mesh)
    t = time.perf_counter()
    lowered = step_fn.lower(state, images, lpips)
    # The package's options are the step's own (gan.make_train_step): compile exactly as training does, which also
    # shares the persistent compilation cache with it; other variants override them.
    compiled = lowered.compile() if options == compiler.options() else lowered.compile(compiler_options=options)
    compile_s = time.perf_counter() - t
    state, m = compiled(state, images, lpips)  # warm-up
    jax.block_until_ready(m)
    runs[name] = {'compiled': compiled, 'state': state, 'compile_s': compile_s, 'times': []}
  for _ in range(steps):
    for v in runs.values():
      t = time.perf_counter()
      v['state'], m = v['compiled'](v['state'], images, lpips)
      jax.block_until_ready(m)
      v['times'].append(time.perf_counter() - t)
  result = {
      'device_kind': jax.devices()[0].device_kind, 'device_count': jax.device_count(),
      'process_count': jax.process_count(), 'resolution': r, 'batch': config.batch_size, 'ngf': config.model.ngf,
      'ndf': config.model.ndf, 'decoder_width': config.model.decoder_width, 'channels': config.data.channels,
      'recon': config.recon_loss, 'dtype': config.model.dtype, 'steps': steps,
  }
  for name, v in runs.items():
    step_s = statistics.median(v['times'])
    flops = _flops(v['compiled'])
    prefix = '' if len(runs) == 1 else f'{name}_'
    result.update({
        f'{prefix}compile_s': round(v['compile_s'], 2), f'{prefix}step_ms_median': round(1000 * step_s, 1),
        f'{prefix}step_ms_all': [round(1000 * x, 1) for x in v['times']],
        f'{prefix}img_per_s': round(config.batch_size / step_s, 3), f'{prefix}flops_per_step': flops,
        f'{prefix}achieved_tflops': round(flops / step_s / 1e12, 4) if flops else None,
    })
  if len(runs) == 1:
    result['xla_compiler_options'] = next(iter(variants.values()))
  else:
    for name in runs:
      if name != 'default' and 'default' in runs:
        result[f'speedup_{name}_over_default'] = round(result['default_step_ms_median'] /
                                                       result[f'{name}_step_ms_median'], 3)
  result['peak_device_bytes'] = _peak_device_bytes()
  result['host_max_rss_mb'] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024
  return result


def _is_oom(e: Exception) -> bool:
  text = f'{type(e).__name__}: {e}'
  return any(s in text for s in ('RESOURCE_EXHAUSTED', 'Out of memory', 'out of memory', 'OOM'))


def main(_):
  steps = 2 if FLAGS.quick else FLAGS.steps
  cpu = jax.default_backend() == 'cpu'
  if FLAGS.ynn_compare:
    variants = {name: XLA_OPTIONS[name] for name in ('default', 'package', 'no_ynn')}
  else:
    variants = {FLAGS.xla_options: XLA_OPTIONS[FLAGS.xla_options] if cpu else None}
  if (FLAGS.ynn_compare or FLAGS.xla_options != 'package') and not cpu:
    raise app.UsageError('--xla_options / --ynn_compare are XLA:CPU options; this backend is '
                         f'{jax.default_backend()}')
  if not FLAGS.sweep:
    result = run(FLAGS.resolution, FLAGS.batch, steps, variants)
  else:
    rows = []
    for resolution in SWEEP_RESOLUTIONS:
      for batch in SWEEP_BATCHES:
        if batch % jax.device_count():
          rows.append({'resolution': resolution, 'batch': batch, 'skipped': 'batch not a multiple of devices'})
          continue
        try:
          row = run(resolution, batch, steps, variants)
        except Exception as e:  # pylint: disable=broad-except
          if not _is_oom(e):
            raise
          row = {'resolution': resolution, 'batch': batch, 'oom': str(e).splitlines()[0][:300]}
        print(json.dumps(row), flush=True)
        rows.append(row)
        jax.clear_caches()
        gc.collect()
    result = {'device_kind': jax.devices()[0].device_kind, 'device_count': jax.device_count(), 'sweep': rows}
  print(json.dumps(result, indent=1))
  if FLAGS.json:
    with open(FLAGS.json, 'w') as f:
      json.dump(result, f, indent=1)


if __name__ == '__main__':
  app.run(main)
