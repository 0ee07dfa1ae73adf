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
"""Real images for training: an image-folder source and the bundled 100-shot TCGA-LGG FLAIR set.

Few-shot training sets are tiny (about 100 images), so the whole set is decoded once, resized to the training
resolution, converted to float32 NHWC in [-1, 1] and kept on the accelerator; batches are gathered inside the
jitted step (``steps.sample_real_batch``), which makes data order a pure function of (rng, step) and costs no
host work per step. Resizing is bilinear (PIL), as torchvision's ``Resize`` in the official code.

``load_config_data(config.data, resolution)`` is the one entry point from a config: a prepared TFDS split
(``data.tfds_name``, built by ``python -m fsgan_jax.datasets.build``) or else the image folder / bundled set.
"""

from __future__ import annotations

import collections
import io
import os
import pathlib
from typing import Any, Optional

from absl import logging
from etils import epath
import numpy as np
from PIL import Image

from fsgan_jax import datasets, errors, image_file, masks  # datasets: TFDS is imported only when a split is read

IMAGE_EXTENSIONS = ('.png', '.jpg', '.jpeg', '.bmp', '.tif', '.tiff')
BUNDLED_DIR = pathlib.Path(__file__).resolve().parent / 'data' / 'lgg_flair_100'
BUNDLED_MASK_DIR = BUNDLED_DIR.parent / 'lgg_flair_100_masks'


DataError = errors.DataError


def list_images(directory: str | os.PathLike) -> list[pathlib.Path]:
  """Image files directly in ``directory`` or its sub-folders, sorted by path."""
  root = pathlib.Path(directory).expanduser()
  if not root.is_dir():
    raise DataError(f'data.dir {str(root)!r} is not a directory')
  files = sorted(p for p in root.rglob('*') if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file())
  if not files:
    raise DataError(f'data.dir {str(root)!r} contains no images ({", ".join(IMAGE_EXTENSIONS)})')
  return files


def image_notes(im: Image.Image, size: int, channels: int) -> list[str]:
  """What loading ``im`` at ``size`` with ``channels`` changes beyond a plain downscale (for ``report_notes``)."""
  notes = []
  w, h = im.size
  if min(w, h) < size:
    notes.append(f'smaller than model.resolution={size} (upscaled)')
  if w != h:
    notes.append(f'not square (stretched to {size}x{size})')
  mode = 'L' if channels == 1 else 'RGB'
  if im.mode in image_file.HIGH_DEPTH_MODES:
    if channels != 1:
      notes.append(f'{image_file.depth(im.mode)} gray repeated into RGB (data.channels={channels})')
  elif im.mode != mode:
    notes.append(f'converted from {im.mode} to {mode} (data.channels={channels})')
  return notes


def report_notes(notes: dict[str, list[tuple[str, str]]], total: int, strict: bool) -> None:
  """Logs each kind of note once (count and an example), or with ``strict`` raises DataError on the first kind.

  ``notes``: kind -> [(file, its size as WxH), ...].
  """
  modes = {k[len('mode:'):]: len(v) for k, v in notes.items() if k.startswith('mode:')}
  if modes:
    logging.info('data: %d images by mode: %s', total, ', '.join(
        f'{n} {m} ({image_file.depth(m) or "unsupported"})' for m, n in sorted(modes.items())))
  for kind, where in notes.items():
    if kind.startswith('mode:'):
      continue
    file, dims = where[0]
    text = f'{len(where)} of {total} images are {kind}, e.g. {file!r} ({dims})'
    if strict:
      raise DataError(f'data.strict=True: {text}')
    logging.warning('data: %s; set data.strict=True to refuse such images', text)


def load_image(path: pathlib.Path, size: int, channels: int,
               notes: Optional[dict[str, list[tuple[str, str]]]] = None, intensity: str = 'auto') -> np.ndarray:
  """One image as float32 (size, size, channels) in [-1, 1] at its native bit depth (``image_file.read``).

  ``notes`` collects what ``image_notes`` finds, and the image's mode under the key ``'mode:<mode>'``.
  """
  def note(im: Image.Image) -> None:
    for kind in image_notes(im, size, channels):
      notes[kind].append((str(path), f'{im.size[0]}x{im.size[1]} {im.mode}'))
    notes[f'mode:{im.mode}'].append((str(path), ''))

  return image_file.read(path, size, channels, intensity, on_open=None if notes is None else note)


def find_mask(image: pathlib.Path, image_root: pathlib.Path, mask_dir: pathlib.Path) -> pathlib.Path:
  """The mask file of ``image``: the same relative path under ``mask_dir``, with any image extension, or with a
  ``_mask`` suffix (the kaggle_3m convention ``x.tif`` / ``x_mask.tif``)."""
  rel = image.relative_to(image_root)
  for stem in (rel.stem, rel.stem + '_mask'):
    for ext in (rel.suffix,) + IMAGE_EXTENSIONS:
      candidate = mask_dir / rel.parent / (stem + ext)
      if candidate.is_file():
        return candidate
  raise DataError(f'data.mask_dir {str(mask_dir)!r} has no mask for image {str(image)!r} (expected '
                  f'{str(mask_dir / rel)!r} or {rel.stem}_mask{rel.suffix})')


def load_mask(path: pathlib.Path, size: int) -> np.ndarray:
  """One mask as bool (size, size): pixel > 127 is tumor; resized nearest-neighbour so labels stay binary."""
  try:
    with Image.open(path) as im:
      im = im.convert('L')
      if im.size != (size, size):
        im = im.resize((size, size), Image.NEAREST)
      return np.asarray(im) > 127
  except (OSError, ValueError) as e:
    raise DataError(f'cannot read mask {str(path)!r}: {e}') from e


def load_images(directory: Optional[str], size: int, channels: int, limit: Optional[int] = None,
                mask_dir: Optional[str] = None, mask_channels: int = 0, strict: bool = False,
                intensity: str = 'auto') -> np.ndarray:
  """Loads an image folder (``None`` = the bundled lgg_flair_100 set) as (N, size, size, channels) in [-1, 1].

  Args:
    directory: folder of PNG/JPG images (searched recursively) or None for the bundled set.
    size: training resolution.
    channels: 1 (grayscale, e.g. FLAIR) or 3 (RGB).
    limit: keep only the first ``limit`` images in sorted order (e.g. a 10-shot subset).
    mask_dir: with ``mask_channels = 1``, the folder of the images' masks (see :func:`find_mask`); None = the
      bundled masks (only with the bundled images).
    mask_channels: 0 (images only) or 1: append the binary mask as a last channel in -1 / +1.
    strict: refuse (DataError) images smaller than ``size``, non-square or channel-converted ones; by default
      each kind is logged once with its count and an example file.
    intensity: ``data.intensity`` (``fsgan_jax.image_file``): how pixel values map to [-1, 1].
  """
  if channels not in (1, 3):
    raise DataError(f'data.channels must be 1 or 3, got {channels}')
  if mask_channels not in (0, 1):
    raise DataError(f'model.mask_channels={mask_channels}: an image folder has binary masks only (use 1), the BraTS '
                    'sub-regions (3) need data.tfds_name=brats')
  root = pathlib.Path(BUNDLED_DIR if directory is None else directory).expanduser()
  files = list_images(root)
  if limit:
    files = files[:limit]
  notes: dict[str, list[tuple[str, str]]] = collections.defaultdict(list)
  images = np.stack([load_image(p, size, channels, notes, intensity) for p in files])
  report_notes(notes, len(files), strict)
  if not mask_channels:
    return images
  if mask_dir is None and directory is not None:
    raise DataError(f'model.mask_channels={mask_channels} with data.dir={directory!r}: set data.mask_dir to the '
                    'folder of its masks')
  mroot = pathlib.Path(BUNDLED_MASK_DIR if mask_dir is None else mask_dir).expanduser()
  if not mroot.is_dir():
    raise DataError(f'data.mask_dir {str(mroot)!r} is not a directory')
  labels = np.stack([load_mask(find_mask(p, root, mroot), size) for p in files])
  return np.concatenate([images, masks.to_signed(labels)[..., None]], axis=-1)


def describe_source(config_data: Any, split: Optional[str] = None) -> str:
  """A short description of the data a config names (for logs and eval reports)."""
  name = getattr(config_data, 'tfds_name', None)
  if name:
    return (f'tfds {name}/{getattr(config_data, "tfds_config", None) or "default"}:'
            f'{split or getattr(config_data, "tfds_split", None)}')
  return str(getattr(config_data, 'dir', None) or BUNDLED_DIR)


def load_config_data(config_data: Any, resolution: int, split: Optional[str] = None,
                     return_subjects: bool = False, mask_channels: int = 0) -> Any:
  """The training images a config's ``data`` section names, as float32 (N, R, R, C) in [-1, 1].

  With ``mask_channels`` (``config.model.mask_channels``) the label channels follow the contrasts (conventions in
  ``fsgan_jax.masks``): a folder's masks from ``data.mask_dir``, a TFDS source's ``mask`` feature.

  ``split`` replaces ``data.tfds_split`` (e.g. ``'heldout'`` for evaluation); with ``return_subjects`` the result
  is ``(images, subject ids or None)`` (TFDS sources only have them; for folders use an ``index.csv``).

  With ``data.tfds_name`` set, reads split ``data.tfds_split`` of config ``data.tfds_config`` from
  ``data.tfds_data_dir`` (default ``$TFDS_DATA_DIR`` or ``~/tensorflow_datasets``) with
  ``fsgan_jax.datasets.load_split`` and takes its ``image`` feature (sorted by subject and slice); its size must
  equal ``resolution`` and its channels ``data.channels`` (the prepared dataset is never resized, so a wrong config
  fails loudly instead of silently training on a different domain). Otherwise ``load_images(data.dir, ...)`` as
  before. ``data.limit`` keeps the first N images in both cases. Fields missing from an older config count as unset.

  Raises:
    DataError: one line naming the config field at fault.
  """
  def field(name: str, default: Any = None) -> Any:
    return getattr(config_data, name, default)

  channels, limit = field('channels', 1), field('limit', 0) or None
  name = field('tfds_name')
  if not name:
    images = load_images(field('dir'), resolution, channels, limit, field('mask_dir'), mask_channels,
                         bool(field('strict', False)), field('intensity', 'auto'))
    return (images, None) if return_subjects else images
  split = split or field('tfds_split')
  if not split:
    raise DataError(f'data.tfds_split must be set when data.tfds_name={name!r} (e.g. fewshot_k10_seed0, train)')
  data_dir = field('tfds_data_dir') or os.environ.get('TFDS_DATA_DIR') or '~/tensorflow_datasets'
  try:
    data = datasets.load_split(name, split, pathlib.Path(data_dir).expanduser(), field('tfds_config'))
    images = data['image']
  except (ValueError, KeyError, OSError) as e:  # DatasetError is a ValueError; TFDS raises these for bad names.
    msg = ' '.join(str(e).split())[:300]
    raise DataError(f'data.tfds_name={name!r} data.tfds_config={field("tfds_config")!r} '
                    f'data.tfds_split={split!r} data.tfds_data_dir={str(data_dir)!r}: {msg}') from e
  if images.shape[1:3] != (resolution, resolution):
    raise DataError(f'data.tfds_config={field("tfds_config")!r}: images are {images.shape[1]}x{images.shape[2]} '
                    f'but model.resolution={resolution}')
  if images.shape[3] != channels:
    raise DataError(f'data.channels={channels}: the TFDS images of {name!r} have {images.shape[3]} channel(s)')
  images = np.asarray(images[:limit], np.float32)
  if mask_channels:
    if mask_channels == 3 and name != 'brats':
      raise DataError(f'model.mask_channels=3 (BraTS sub-regions) needs data.tfds_name=brats, not {name!r}')
    images = np.concatenate([images, masks.label_channels(data['mask'][:limit], mask_channels)], axis=-1)
  if return_subjects:
    subjects = data.get('subject_id')
    return images, (None if subjects is None else [str(x) for x in subjects[:limit]])
  return images


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
  """Writes an (H, W, 1|3) uint8 array as PNG to a local path or a ``gs://`` URL (through ``etils.epath``)."""
  arr = image[..., 0] if image.shape[-1] == 1 else image
  buf = io.BytesIO()
  Image.fromarray(arr).save(buf, format='PNG')
  epath.Path(path).write_bytes(buf.getvalue())
