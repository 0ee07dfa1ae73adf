"""Real images for training: an image-folder source and the bundled 100-shot TCGA-LGG FLAIR set.

Few-shot training sets are tiny (about 100 images), so the whole set is decoded once, resized to the training
resolution, converted to float32 NHWC in [-1, 1] and kept on the accelerator; batches are gathered inside the
jitted step (``steps.sample_real_batch``), which makes data order a pure function of (rng, step) and costs no
host work per step. Resizing is bilinear (PIL), as torchvision's ``Resize`` in the official code.
"""

from __future__ import annotations

import os
import pathlib
from typing import Optional

import numpy as np
from PIL import Image

IMAGE_EXTENSIONS = ('.png', '.jpg', '.jpeg', '.bmp', '.tif', '.tiff')
BUNDLED_DIR = pathlib.Path(__file__).resolve().parent / 'data' / 'lgg_flair_100'


class DataError(ValueError):
  """The configured data cannot be used (missing folder, no images, unreadable file)."""


def list_images(directory: str | os.PathLike) -> list[pathlib.Path]:
  """Image files directly in ``directory`` or its sub-folders, sorted by path."""
  root = pathlib.Path(directory).expanduser()
  if not root.is_dir():
    raise DataError(f'data.dir {str(root)!r} is not a directory')
  files = sorted(p for p in root.rglob('*') if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file())
  if not files:
    raise DataError(f'data.dir {str(root)!r} contains no images ({", ".join(IMAGE_EXTENSIONS)})')
  return files


def load_image(path: pathlib.Path, size: int, channels: int) -> np.ndarray:
  """One image as float32 (size, size, channels) in [-1, 1]."""
  try:
    with Image.open(path) as im:
      im = im.convert('L' if channels == 1 else 'RGB')
      if im.size != (size, size):
        im = im.resize((size, size), Image.BILINEAR)
      arr = np.asarray(im, np.float32)
  except (OSError, ValueError) as e:
    raise DataError(f'cannot read image {str(path)!r}: {e}') from e
  if arr.ndim == 2:
    arr = arr[..., None]
  return arr / 127.5 - 1.0


def load_images(directory: Optional[str], size: int, channels: int, limit: Optional[int] = None) -> np.ndarray:
  """Loads an image folder (``None`` = the bundled lgg_flair_100 set) as (N, size, size, channels) in [-1, 1].

  Args:
    directory: folder of PNG/JPG images (searched recursively) or None for the bundled set.
    size: training resolution.
    channels: 1 (grayscale, e.g. FLAIR) or 3 (RGB).
    limit: keep only the first ``limit`` images in sorted order (e.g. a 10-shot subset).
  """
  if channels not in (1, 3):
    raise DataError(f'data.channels must be 1 or 3, got {channels}')
  files = list_images(BUNDLED_DIR if directory is None else directory)
  if limit:
    files = files[:limit]
  return np.stack([load_image(p, size, channels) for p in files])


def to_uint8(x: np.ndarray) -> np.ndarray:
  """[-1, 1] floats -> uint8 (values outside are clipped)."""
  return np.clip(np.round((np.asarray(x, np.float32) + 1.0) * 127.5), 0, 255).astype(np.uint8)


def make_grid(images: np.ndarray, ncols: int = 8, pad: int = 2) -> np.ndarray:
  """Tiles NHWC uint8 images into one (H', W', C) image with ``pad`` black pixels between tiles."""
  n, h, w, c = images.shape
  ncols = min(ncols, n)
  nrows = -(-n // ncols)
  grid = np.zeros((nrows * (h + pad) + pad, ncols * (w + pad) + pad, c), images.dtype)
  for i in range(n):
    r, col = divmod(i, ncols)
    grid[pad + r * (h + pad):pad + r * (h + pad) + h, pad + col * (w + pad):pad + col * (w + pad) + w] = images[i]
  return grid


def save_png(path: str | os.PathLike, image: np.ndarray) -> None:
  """Writes an (H, W, 1|3) uint8 array as PNG."""
  arr = image[..., 0] if image.shape[-1] == 1 else image
  Image.fromarray(arr).save(path)
