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
"""One image file as float32 in [-1, 1] at its native bit depth, with one documented intensity normalisation.

MR slices are usually exported as 16-bit PNG/TIFF or float TIFF; converting them to 8-bit first saturates or
zeroes them. The modes and what ``data.intensity`` does with them:

* **8-bit** (PIL modes ``1 L P LA PA RGB RGBA RGBX CMYK YCbCr``): converted to gray ``L`` (``data.channels=1``) or
  ``RGB`` (3) by PIL, resized bilinearly, then ``'auto'`` / ``'range'``: ``x / 127.5 - 1`` (the fixed 8-bit range,
  as torchvision's ``ToTensor`` + ``Normalize(0.5, 0.5)`` in the official code); ``'percentile'``: as below.
* **16-bit and 32-bit integer, 32-bit float gray** (``I;16 I;16L I;16B I;16N I F``): read as float32 without
  rounding; ``'auto'`` / ``'percentile'``: the volume builders' ``datasets/brats/brats_io.scale_intensity`` with
  the nonzero pixels as the foreground (clipped to their (0.5, 99.5) percentiles, mapped linearly to [-1, 1], zero
  background -1), at the file's resolution; ``'range'``: 16-bit ``x / 32767.5 - 1``; float images must already lie
  in [0, 1] (``2x - 1``; anything outside is refused); 32-bit integers have no fixed range and are refused. Then
  resized bilinearly in float.
  With ``data.channels=3`` the gray values are repeated into three channels.

Any other mode is refused with one line naming the file.
"""

from __future__ import annotations

import pathlib
from typing import Callable, Optional

import numpy as np
from PIL import Image

from fsgan_jax import errors
from fsgan_jax.datasets.brats import brats_io

INTENSITIES = ('auto', 'percentile', 'range')
EIGHT_BIT_MODES = ('1', 'L', 'P', 'LA', 'PA', 'RGB', 'RGBA', 'RGBX', 'CMYK', 'YCbCr')
HIGH_DEPTH_MODES = ('I;16', 'I;16L', 'I;16B', 'I;16N', 'I', 'F')


def depth(mode: str) -> str:
  """'8-bit', '16-bit', '32-bit integer' or 'float' for a supported PIL mode, else ''."""
  if mode in EIGHT_BIT_MODES:
    return '8-bit'
  if mode.startswith('I;16'):
    return '16-bit'
  return {'I': '32-bit integer', 'F': 'float'}.get(mode, '')


def _to_unit(x: np.ndarray, lo: float, hi: float) -> np.ndarray:
  """``[lo, hi]`` -> [-1, 1], clipped (the 8-bit and fixed-range mappings)."""
  return ((np.clip(x, lo, hi) - lo) * (2.0 / (hi - lo)) - 1.0).astype(np.float32)


def read(path: pathlib.Path, size: int, channels: int, intensity: str = 'auto',
         on_open: Optional[Callable[[Image.Image], None]] = None) -> np.ndarray:
  """The image at ``path`` as float32 (size, size, channels) in [-1, 1] (see the module docstring).

  ``on_open(image)`` is called with the opened file before any conversion (e.g. to note its mode and size).

  Raises:
    errors.DataError: unreadable file, unsupported mode, or values the chosen ``intensity`` cannot map (one line
      naming the file).
  """
  if intensity not in INTENSITIES:
    raise errors.DataError(f'data.intensity={intensity!r}; choose one of {INTENSITIES}')
  try:
    with Image.open(path) as im:
      if on_open is not None:
        on_open(im)
      mode = im.mode
      if mode in EIGHT_BIT_MODES:
        im = im.convert('L' if channels == 1 else 'RGB')
        if im.size != (size, size):
          im = im.resize((size, size), Image.BILINEAR)
        arr = np.asarray(im, np.float32)
        arr = arr[..., None] if arr.ndim == 2 else arr
        if intensity == 'percentile':
          return _foreground_scale(arr, path)
        return arr / 127.5 - 1.0
      if mode not in HIGH_DEPTH_MODES:
        raise errors.DataError(f'image {str(path)!r} has mode {mode!r}, which is not supported (8-bit: '
                               f'{" ".join(EIGHT_BIT_MODES)}; gray 16-bit, 32-bit integer or float: '
                               f'{" ".join(HIGH_DEPTH_MODES)})')
      raw = np.asarray(im).astype(np.float32)  # exact for 16-bit; 32-bit integers keep 24 bits of precision
  except (OSError, ValueError) as e:
    if isinstance(e, errors.FsganError):
      raise
    raise errors.DataError(f'cannot read image {str(path)!r}: {e}') from e
  if not np.all(np.isfinite(raw)):
    raise errors.DataError(f'image {str(path)!r} has non-finite pixel values (NaN or Inf)')
  if intensity == 'range':
    if mode == 'I':
      raise errors.DataError(f"image {str(path)!r} is a 32-bit integer image, which has no fixed range: use "
                             "data.intensity='percentile' (or 'auto')")
    if mode == 'F' and (raw.min() < 0.0 or raw.max() > 1.0):
      raise errors.DataError(f"image {str(path)!r} is a float image with values in [{raw.min():g}, {raw.max():g}]; "
                             "data.intensity='range' needs [0, 1]: use 'percentile' (or 'auto')")
    arr = _to_unit(raw, 0.0, 1.0 if mode == 'F' else 65535.0)
  else:
    arr = _foreground_scale(raw, path)
  if arr.shape != (size, size):
    arr = np.clip(np.asarray(Image.fromarray(arr, 'F').resize((size, size), Image.BILINEAR), np.float32), -1, 1)
  arr = arr[..., None]
  return np.repeat(arr, channels, axis=-1) if channels > 1 else arr


def _foreground_scale(x: np.ndarray, path: pathlib.Path) -> np.ndarray:
  """The builders' percentile scaling with the nonzero pixels (of every channel) as the foreground."""
  try:
    return brats_io.scale_intensity(x, x != 0, path)
  except errors.FsganError as e:  # all-zero or constant image
    raise errors.DataError(f'image {e}') from None
