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
"""Export the EMA generator of a training workdir as a small, checksummed folder (see ``fsgan_jax.pretrained``).

  python -m fsgan_jax.export --workdir=W [--step=K] --out=pretrained/NAME [--dtype=bfloat16]
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Optional

from fsgan_jax import errors, pretrained, workdir as workdir_lib


def main(argv: Optional[list[str]] = None) -> int:
  parser = argparse.ArgumentParser(prog='python -m fsgan_jax.export',
                                   description='Export the EMA generator of a training workdir (see module doc).')
  parser.add_argument('--workdir', required=True)
  parser.add_argument('--out', required=True)
  parser.add_argument('--step', type=int, default=None)
  parser.add_argument('--dtype', default='float32', choices=pretrained.STORAGE_DTYPES)
  args = parser.parse_args(argv)
  try:
    run = workdir_lib.load_run(args.workdir, args.step)
    manifest = pretrained.export(run.config.to_json(indent=2), run.state.ema_params, run.state.g_stats, run.step,
                                 args.out, args.dtype, source=os.path.basename(os.path.normpath(args.workdir)))
  except (errors.FsganError, FileNotFoundError) as e:
    print(f'error: {e}', file=sys.stderr)
    return 2
  size_mib = manifest['bytes'][pretrained.GENERATOR] / 2**20
  print(f'wrote {args.out}: step {manifest["step"]}, {size_mib:.1f} MiB generator ({args.dtype})')
  return 0


if __name__ == '__main__':
  sys.exit(main())
