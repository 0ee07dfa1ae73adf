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
"""The results files of a downstream study: ``<results_prefix>.json`` (everything), ``.md`` (the study's renderer
built from the shared paragraphs and tables here) and ``.png`` (one panel per metric: mean vs k per arm with CI
bars, drawn with Pillow).

``finish_run`` adds the run record (devices, compute, every invocation) and the config to a study's summary and
writes the three files; ``result_tables`` / ``verdicts`` / ``compute_lines`` / ``gan_settings`` are the markdown
pieces both studies share.
"""

from __future__ import annotations

import json
import math
import os
from typing import Any, Callable, Sequence

import jax
import ml_collections
import numpy as np

from fsgan_jax.downstream import cells as cells_lib

Renderer = Callable[[dict[str, Any]], str]


def finish_run(summary: dict[str, Any], config: ml_collections.ConfigDict, workdir: str, computed: int,
               wall_seconds: float, cells: dict[Any, dict[str, Any]], render: Renderer, metrics: Sequence[str],
               titles: dict[str, str]) -> dict[str, Any]:
  """Adds the run record and the config to ``summary``, logs the invocation and writes the results (process 0)
  (``render`` / ``metrics`` / ``titles``: see :func:`write_results`)."""
  summary['run'] = {'workdir': workdir, 'variant': config.get('variant', ''), 'devices': str(jax.devices()[0].platform)
                    + f' x{jax.device_count()}', 'cells_computed_now': computed,
                    'wall_seconds_this_invocation': wall_seconds,
                    'cell_seconds_total': sum(c['seconds'] for c in cells.values())}
  summary['config'] = json.loads(config.to_json())
  if jax.process_index() == 0:
    summary['run']['invocations'] = cells_lib.record_invocation(workdir, summary['run'])
    write_results(summary, config.results_prefix, render, metrics, titles)
  return summary


def gan_settings(cfg: dict[str, Any]) -> str:
  """The GAN part of a results file's settings line, from the saved config dict."""
  g = cfg['gan']
  return (f'FastGAN {cfg["data"]["resolution"]} px, ngf {g["ngf"]}, ndf {g["ndf"]}, nz {g["nz"]}, '
          f'batch {g["batch_size"]}, {g["num_steps"]} steps'
          f'{" (given generator: " + str(g["workdir"]) + ")" if g.get("workdir") else ""}')


def compute_lines(run_info: dict[str, Any]) -> list[str]:
  """The compute paragraph of a results file: summed cell time and every invocation's wall time."""
  if not run_info:
    return []
  calls = '; '.join(f'{i["wall_seconds"] / 60:.1f} min wall, {i["cells_computed"]} cells ({i["finished_utc"]})'
                    for i in run_info.get('invocations', []))
  return [f'Compute: {run_info["cell_seconds_total"] / 60:.1f} min summed over cells (GAN training and sampling '
          f'included). Invocations of the grid command (data loading and results included): {calls}.', '']


def result_tables(summary: dict[str, Any], metrics: Sequence[str], titles: dict[str, str]) -> list[str]:
  """Markdown lines: per metric an arm x k table of mean [CI], then the paired differences against ``real``
  (``summary`` has ``metrics``, ``paired_vs_real``, ``arms``, ``ks``, ``level``)."""
  level = int(round(100 * summary['level']))
  ks, lines = summary['ks'], []
  for n in metrics:
    lines += [f'### {titles[n]}', '', '| arm | ' + ' | '.join(f'k={k}' for k in ks) + ' |',
              '|---|' + '---|' * len(ks)]
    for a in summary['arms']:
      row = summary['metrics'][a]
      lines.append(f'| {a} | ' + ' | '.join(
          f'{row[str(k)][n]["mean"]:.3f} [{row[str(k)][n]["lo"]:.3f}, {row[str(k)][n]["hi"]:.3f}]' for k in ks) + ' |')
    lines.append('')
  if summary['paired_vs_real']:
    lines += ['### Paired difference vs `real` (same seeds and test resamples)', '',
              f'mean difference [{level}% CI] (wins/ties/losses over seeds, exact sign-test p)', '']
    for n in metrics:
      lines += [f'**{titles[n]}**', '', '| arm | ' + ' | '.join(f'k={k}' for k in ks) + ' |',
                '|---|' + '---|' * len(ks)]
      for a, row in summary['paired_vs_real'].items():
        lines.append(f'| {a} | ' + ' | '.join(
            f'{row[str(k)][n]["mean_diff"]:+.3f} [{row[str(k)][n]["lo"]:+.3f}, {row[str(k)][n]["hi"]:+.3f}] '
            f'({row[str(k)][n]["wins"]}/{row[str(k)][n]["ties"]}/{row[str(k)][n]["losses"]}, '
            f'p={row[str(k)][n]["p_sign"]:.2f})' for k in ks) + ' |')
      lines.append('')
  return lines


def verdicts(summary: dict[str, Any], metrics: Sequence[str], titles: dict[str, str]) -> list[str]:
  """One line per metric and arm: at which k the paired CI against ``real`` is above 0, below 0, or includes 0."""
  out = ['Paired verdicts against `real` (95% CI of the mean difference above 0 = higher, below 0 = lower, else '
         'not resolved):', '']
  for n in metrics:
    for a, row in summary['paired_vs_real'].items():
      groups: dict[str, list[str]] = {}
      for k in summary['ks']:
        d = row[str(k)][n]
        word = 'higher' if d['lo'] > 0 else 'lower' if d['hi'] < 0 else 'not resolved'
        groups.setdefault(word, []).append(str(k))
      out.append(f'- {titles[n]}, {a}: ' + '; '.join(f'{w} at k={",".join(ks)}' for w, ks in groups.items()))
  return out


_COLORS = [(31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189), (140, 86, 75),
           (227, 119, 194), (127, 127, 127), (188, 189, 34), (23, 190, 207)]


def plot(summary: dict[str, Any], path: str, metrics: Sequence[str], titles: dict[str, str]) -> None:
  """One panel per metric (values in [0, 1]): mean vs k (categorical axis) per arm with CI bars, drawn with Pillow."""
  from PIL import Image, ImageDraw, ImageFont  # pylint: disable=g-import-not-at-top
  arms, ks = summary['arms'], summary['ks']
  pw, ph, ml, mt, mb = 360, 300, 50, 30, 40
  width, height = max(pw * len(metrics) + 20, 760), ph + 40 + 18 * ((len(arms) + 2) // 3)
  img = Image.new('RGB', (width, height), 'white')
  draw = ImageDraw.Draw(img)
  font = ImageFont.load_default()
  for p, n in enumerate(metrics):
    x0 = 10 + p * pw
    vals = [summary['metrics'][a][str(k)][n][f] for a in arms for k in ks for f in ('lo', 'hi')]
    vals = [v for v in vals if np.isfinite(v)] or [0.0, 1.0]
    ymin = max(0.0, math.floor(min(vals) * 10) / 10)
    ymax = min(1.0, math.ceil(max(vals) * 10) / 10)
    if ymax - ymin < 0.1:
      ymax = min(1.0, ymin + 0.1)
      ymin = ymax - 0.1
    left, right, top, bottom = x0 + ml, x0 + pw - 10, mt, ph - mb
    ypos = lambda v: bottom - (v - ymin) / (ymax - ymin) * (bottom - top)
    step = 0.1 if ymax - ymin > 0.35 else 0.05
    for t in np.arange(ymin, ymax + 1e-9, step):
      y = ypos(t)
      draw.line([left - 4, y, left, y], fill='black')
      draw.line([left + 1, y, right - 1, y], fill=(230, 230, 230))
      draw.text((left - 34, y - 6), f'{t:.2f}', fill='black', font=font)
    draw.rectangle([left, top, right, bottom], outline='black')
    xs = {k: left + (j + 0.5) / len(ks) * (right - left) for j, k in enumerate(ks)}
    for k, x in xs.items():
      draw.line([x, bottom, x, bottom + 4], fill='black')
      draw.text((x - 12, bottom + 8), f'k={k}', fill='black', font=font)
    title = titles[n] + (f' @ {summary["specificity"]:.0%} spec.' if n == 'sens_at_spec' else '')
    draw.text((left, 10), title, fill='black', font=font)
    for i, a in enumerate(arms):
      color = _COLORS[i % len(_COLORS)]
      off = (i - (len(arms) - 1) / 2) * 8
      pts = []
      for k in ks:
        c = summary['metrics'][a][str(k)][n]
        if not np.isfinite(c['mean']):
          continue
        x = xs[k] + off
        if np.isfinite(c['lo']) and np.isfinite(c['hi']):
          draw.line([x, ypos(c['lo']), x, ypos(c['hi'])], fill=color, width=2)
          for v in (c['lo'], c['hi']):
            draw.line([x - 3, ypos(v), x + 3, ypos(v)], fill=color, width=1)
        pts.append((x, ypos(c['mean'])))
      if len(pts) > 1:
        draw.line(pts, fill=color, width=1)
      for x, y in pts:
        draw.ellipse([x - 3, y - 3, x + 3, y + 3], fill=color)
  for i, a in enumerate(arms):
    x, y = 20 + (i % 3) * 200, ph + 10 + 18 * (i // 3)
    color = _COLORS[i % len(_COLORS)]
    draw.rectangle([x, y + 2, x + 14, y + 12], fill=color)
    draw.text((x + 20, y), a, fill='black', font=font)
  draw.text((620, ph + 10), f'bars: {int(round(100 * summary["level"]))}% bootstrap CI', fill='black', font=font)
  img.save(path)


def write_results(summary: dict[str, Any], prefix: str, render: Renderer, metrics: Sequence[str],
                  titles: dict[str, str]) -> None:
  """``<prefix>.json`` (everything), ``<prefix>.md`` (``render(summary)``, the study's markdown) and
  ``<prefix>.png`` (plot of ``metrics``, labelled with ``titles``)."""
  folder = os.path.dirname(os.path.abspath(prefix))
  os.makedirs(folder, exist_ok=True)
  cells_lib.write_json(prefix + '.json', summary)
  with open(prefix + '.md.tmp', 'w') as f:
    f.write(render(summary) + '\n')
  os.replace(prefix + '.md.tmp', prefix + '.md')
  plot(summary, prefix + '.png', metrics, titles)
