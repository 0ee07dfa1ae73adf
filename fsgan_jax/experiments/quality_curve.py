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
r"""The quality curve of a long run: KID and FID of the periodic evaluations vs training steps and CPU minutes.

  python -m fsgan_jax.experiments.quality_curve --workdir=/tmp/fsgan_quality --step_ms=770 \
      [--out=results/quality_curve]

Reads ``WORKDIR/eval/history.jsonl`` (the rows the training loop appends every ``config.eval.every`` steps) and
writes ``OUT.json`` (one row per evaluation: step, CPU minutes, every FID/KID scalar) and ``OUT.png`` (KID and FID
against the training set and the held-out set, over steps, with the CPU-minute axis under it). CPU minutes are
``step * step_ms / 60000``: training compute only, with ``--step_ms`` measured on a quiet machine (e.g. by
``benchmarks/train_throughput.py`` or the recipe study's ``step_times.json``); the periodic evaluations themselves
are not counted.
"""

from __future__ import annotations

import json
import math
import os
from typing import Any, Sequence

from absl import app
from absl import flags
from PIL import Image, ImageDraw, ImageFont

from fsgan_jax import errors, fileio, report

FLAGS = flags.FLAGS

PANELS = (('kid', 'KID (lower is better)'), ('fid', 'FID (lower is better)'))
SETS = (('train', (31, 119, 180)), ('heldout', (214, 39, 40)))


def curve_rows(history: Sequence[dict[str, Any]], step_ms: float, kind: str = 'train') -> list[dict[str, Any]]:
  """The periodic-evaluation rows of ``history`` (one per step, the last one written wins), with CPU minutes."""
  if not step_ms > 0:
    raise errors.ConfigError(f'--step_ms={step_ms}: the quiet step time must be positive')
  by_step = {}
  for r in history:
    if r.get('kind') == kind:
      by_step[int(r['step'])] = {k: v for k, v in r.items() if k.split('_')[0] in ('fid', 'kid')}
  return [{'step': s, 'cpu_min': round(s * step_ms / 60000, 2), **by_step[s]} for s in sorted(by_step)]


def _nice_max(v: float) -> float:
  """The smallest 1/2/5 x 10^k at or above ``v``."""
  e = 10 ** math.floor(math.log10(v))
  return next(m * e for m in (1, 2, 5, 10) if m * e >= v)


def plot(rows: Sequence[dict[str, Any]], path: str, title: str) -> None:
  """Two panels (KID, FID): train and held-out curves over steps, CPU minutes on a second axis row."""
  pw, ph, ml, mr, mt, mb = 420, 300, 56, 14, 34, 58
  img = Image.new('RGB', (2 * pw + 20, ph + 46), 'white')
  draw = ImageDraw.Draw(img)
  font = ImageFont.load_default()
  draw.text((10, 4), title, fill='black', font=font)
  max_step = max(r['step'] for r in rows)
  for p, (metric, label) in enumerate(PANELS):
    x0 = 10 + p * pw
    left, right, top, bottom = x0 + ml, x0 + pw - mr, mt, ph - mb
    vals = [r[f'{metric}_{s}'] for r in rows for s, _ in SETS if f'{metric}_{s}' in r]
    if not vals:
      continue
    ymax = _nice_max(max(vals) * 1.05)
    xpos = lambda s: left + s / max_step * (right - left)
    ypos = lambda v: bottom - v / ymax * (bottom - top)
    for j in range(6):
      v = ymax * j / 5
      draw.line([left + 1, ypos(v), right - 1, ypos(v)], fill=(230, 230, 230))
      draw.text((left - 48, ypos(v) - 6), f'{v:.3g}', fill='black', font=font)
    for r in rows:
      x = xpos(r['step'])
      draw.line([x, bottom, x, bottom + 4], fill='black')
      draw.text((x - 14, bottom + 6), f"{r['step']}", fill='black', font=font)
      draw.text((x - 14, bottom + 20), f"{r['cpu_min']:.0f}", fill=(90, 90, 90), font=font)
    draw.text((left, bottom + 34), 'training steps / CPU minutes (grey)', fill='black', font=font)
    draw.rectangle([left, top, right, bottom], outline='black')
    draw.text((left, top - 14), label, fill='black', font=font)
    for s, color in SETS:
      pts = [(xpos(r['step']), ypos(r[f'{metric}_{s}'])) for r in rows if f'{metric}_{s}' in r]
      if len(pts) > 1:
        draw.line(pts, fill=color, width=2)
      for x, y in pts:
        draw.ellipse([x - 3, y - 3, x + 3, y + 3], fill=color)
  for i, (s, color) in enumerate(SETS):
    x = 20 + i * 160
    draw.rectangle([x, ph + 24, x + 14, ph + 34], fill=color)
    draw.text((x + 20, ph + 22), f'vs {s} set', fill='black', font=font)
  img.save(path)


def write(workdir: str, step_ms: float, out: str) -> dict[str, Any]:
  """``OUT.json`` and ``OUT.png`` from ``workdir``'s periodic evaluations; returns the JSON object."""
  rows = curve_rows(report.read_history(workdir), step_ms)
  if not rows:
    raise errors.EvalError(f'{workdir}: no periodic evaluations in eval/history.jsonl (config.eval.every = 0?)')
  result = {'workdir': workdir, 'step_ms_quiet': step_ms,
            'protocol': 'EMA generator, config.eval.train_num_samples images, tf1 resize, eigh FID, KID subsets; '
                        'cpu_min = step * step_ms_quiet (training only)',
            'rows': rows}
  os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
  with open(out + '.json', 'w') as f:
    json.dump(result, f, indent=1)
  plot(rows, out + '.png', f'{os.path.basename(os.path.normpath(workdir))}: periodic evaluation of the EMA generator')
  return result


def define_flags() -> None:
  flags.DEFINE_string('workdir', None, 'Training workdir with eval/history.jsonl.', required=True)
  flags.DEFINE_float('step_ms', None, 'Quiet-machine step time in ms (CPU minutes = step * step_ms).', required=True)
  flags.DEFINE_string('out', 'results/quality_curve', 'Output prefix (.json, .png).')


def main(argv: Sequence[str]) -> None:
  del argv
  try:
    result = write(fileio.abspath(FLAGS.workdir), FLAGS.step_ms, FLAGS.out)
  except errors.FsganError as e:
    raise SystemExit(f'error: {e}') from None
  print(f"wrote {FLAGS.out}.json and {FLAGS.out}.png ({len(result['rows'])} evaluations)")


if __name__ == '__main__':
  define_flags()
  app.run(main)
