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
"""What an evaluation leaves in the workdir: ``eval/eval_<step>.json``, ``eval/history.jsonl`` (the metric curves)
and ``eval/step_<step>/report.html`` with its PNGs (sample grid, closest generated/training pairs, curves)."""

from __future__ import annotations

import html
import json
from typing import Any

import jax
import numpy as np

from fsgan_jax import fileio, input_pipeline


def eval_dir(workdir: str) -> str:
  return fileio.join(workdir, 'eval')


def append_history(workdir: str, step: int, scalars: dict[str, float], kind: str) -> None:
  """Appends one line to ``WORKDIR/eval/history.jsonl`` (process 0): the metric curves of the report."""
  if jax.process_index() != 0:
    return
  fileio.makedirs(eval_dir(workdir))
  fileio.append_line(fileio.join(eval_dir(workdir), 'history.jsonl'),
                     json.dumps({'step': int(step), 'kind': kind, **scalars}))


def read_history(workdir: str) -> list[dict[str, Any]]:
  path = fileio.join(eval_dir(workdir), 'history.jsonl')
  if not fileio.exists(path):
    return []
  rows = []
  for line in fileio.read_text(path).splitlines():
    line = line.strip()
    if line:
      try:
        rows.append(json.loads(line))
      except json.JSONDecodeError:  # a line cut by a crash: skip it, keep the rest
        continue
  return rows


def _write_json_atomic(path: str, obj: Any) -> None:
  fileio.write_text_atomic(path, json.dumps(obj, indent=2, sort_keys=True))


def _svg_plot(rows: list[dict[str, Any]], key: str, width: int = 360, height: int = 200) -> str:
  """A small inline SVG line plot of ``key`` over ``step`` (no plotting dependency)."""
  pts = sorted((r['step'], r[key]) for r in rows if key in r and np.isfinite(r[key]))
  if not pts:
    return ''
  xs, ys = np.array([p[0] for p in pts], float), np.array([p[1] for p in pts], float)
  x0, x1 = xs.min(), max(xs.max(), xs.min() + 1)
  y0, y1 = ys.min(), max(ys.max(), ys.min() + 1e-12)
  m = 30
  px = m + (xs - x0) / (x1 - x0) * (width - 2 * m)
  py = height - m - (ys - y0) / (y1 - y0) * (height - 2 * m)
  poly = ' '.join(f'{a:.1f},{b:.1f}' for a, b in zip(px, py))
  dots = ''.join(f'<circle cx="{a:.1f}" cy="{b:.1f}" r="2.5"/>' for a, b in zip(px, py))
  return (f'<figure><svg width="{width}" height="{height}" xmlns="http://www.w3.org/2000/svg" '
          f'style="border:1px solid #ccc"><polyline fill="none" stroke="steelblue" stroke-width="2" '
          f'points="{poly}"/>{dots}<text x="{m}" y="14" font-size="11">{html.escape(key)}: '
          f'{ys[-1]:.4g} at step {int(xs[-1])} (min {ys.min():.4g})</text>'
          f'<text x="{m}" y="{height - 8}" font-size="10">step {int(x0)}</text>'
          f'<text x="{width - m - 60}" y="{height - 8}" font-size="10">step {int(xs.max())}</text></svg>'
          f'</figure>')


def write_report(workdir: str, step: int, results: dict[str, Any], artifacts: dict[str, np.ndarray]) -> str:
  """Writes ``eval_<step>.json`` and ``step_<step>/report.html`` (+ PNGs); returns the report path."""
  out = fileio.join(eval_dir(workdir), f'step_{step}')
  fileio.makedirs(out)
  _write_json_atomic(fileio.join(eval_dir(workdir), f'eval_{step}.json'), results)
  for name, img in artifacts.items():
    input_pipeline.save_png(fileio.join(out, f'{name}.png'), img)
  rows = []
  for set_name, r in results.get('sets', {}).items():
    cells = ''.join(f'<td>{r[k]:.4g}</td>' if k in r else '<td>-</td>'
                    for k in ('fid', 'kid', 'kid_std', 'precision', 'recall'))
    rows.append(f'<tr><td>{html.escape(set_name)}</td><td>{r["n"]}</td>{cells}</tr>')
    for contrast, c in r.get('per_contrast', {}).items():
      cells = ''.join(f'<td>{c[k]:.4g}</td>' if k in c else '<td>-</td>'
                      for k in ('fid', 'kid', 'kid_std', 'precision', 'recall'))
      rows.append(f'<tr><td>{html.escape(set_name)}: {html.escape(contrast)} only</td><td>{r["n"]}</td>{cells}</tr>')
  table = ('<table border="1" cellpadding="4"><tr><th>real set</th><th>n real</th><th>FID</th><th>KID</th>'
           '<th>KID std</th><th>precision</th><th>recall</th></tr>' + ''.join(rows) + '</table>')
  div = results.get('diversity')
  div_html = ''
  if div:
    items = ''.join(f'<li>{html.escape(k)}: {v["mean"]:.4f} ± {v.get("std", float("nan")):.4f} '
                    f'({v.get("n_pairs", "?")} pairs)</li>' for k, v in div.items() if isinstance(v, dict))
    div_html = f'<h2>Diversity (MS-SSIM, lower = more diverse)</h2><ul>{items}</ul>'
  memo_html = ''
  for space, m in results.get('memorization', {}).items():
    if not isinstance(m, dict):
      continue
    summary = ', '.join(f'{k} {v:.3g}' for k, v in m.items() if isinstance(v, (int, float)))
    img = f'<img src="closest_{space}.png">' if f'closest_{space}' in artifacts else ''
    memo_html += (f'<h3>Nearest training image in {space} space</h3><p>{html.escape(summary)}</p>'
                  f'<p>Closest pairs (generated left, training right):</p>{img}')
  if memo_html:
    memo_html = ('<h2>Memorization</h2><p>ratio = distance of a generated image to its nearest training image / '
                 'median nearest-neighbour distance among training images; ratios well below 1 suggest copies.</p>'
                 + memo_html)
  for key in ('mask_stats', 'label_consistency'):
    if key in results:
      memo_html += (f'<h2>{key}</h2><pre>{html.escape(json.dumps(results[key], indent=1, sort_keys=True)[:4000])}'
                    '</pre>')
  history = read_history(workdir)
  keys = sorted({k for r in history for k in r if k not in ('step', 'kind')})
  plots = ''.join(_svg_plot(history, k) for k in keys)
  conv = ''.join(f'<li>{html.escape(k)}: {html.escape(str(v))}</li>'
                 for k, v in results.get('conventions', {}).items())
  page = (f'<!doctype html><html><head><meta charset="utf-8"><title>fsgan_jax eval step {step}</title></head>'
          f'<body style="font-family:sans-serif"><h1>Evaluation at step {step}</h1>'
          f'<p>{results["num_samples"]} generated images, seed {results["seed"]}, workdir '
          f'{html.escape(workdir)}</p>{table}<h3>Conventions</h3><ul>{conv}</ul>{div_html}'
          f'<h2>Samples</h2><img src="samples.png"><h2>Real training images (random, same count)</h2>'
          f'<img src="real.png">{memo_html}'
          f'<h2>Metrics over training steps</h2>{plots or "<p>(no history yet)</p>"}</body></html>')
  path = fileio.join(out, 'report.html')
  fileio.write_text_atomic(path, page)
  return path
