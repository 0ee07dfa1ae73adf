"""Image folders at full bit depth: each mode's loaded values equal its documented normalisation (image_file.py)."""

import logging

import numpy as np
import pytest
from PIL import Image

from fsgan_jax import errors, image_file, input_pipeline


def _percentile_map(x: np.ndarray) -> np.ndarray:
  """The documented 'auto' mapping of a high-depth image, computed independently of the library."""
  nonzero = x[x != 0].astype(np.float64)
  lo, hi = np.percentile(nonzero, 0.5), np.percentile(nonzero, 99.5)
  return np.where(x != 0, (np.clip(x.astype(np.float64), lo, hi) - lo) / (hi - lo) * 2 - 1, -1.0)


def _slice(rng, size=32, peak=4000):
  """A synthetic MR-like slice: zero background, a disc of tissue around ``peak``, a brighter spot."""
  yy, xx = np.mgrid[:size, :size]
  disc = (yy - size / 2) ** 2 + (xx - size / 2) ** 2 < (size / 2.5) ** 2
  x = np.where(disc, rng.normal(peak, peak / 8, (size, size)), 0.0)
  x[size // 2 - 2:size // 2 + 2, size // 2 - 2:size // 2 + 2] = peak * 3
  return np.clip(x, 0, None)


def test_eight_bit_is_unchanged(tmp_path):
  x = np.random.default_rng(0).integers(0, 256, (32, 32), dtype=np.uint8)
  Image.fromarray(x).save(tmp_path / 'a.png')
  y = image_file.read(tmp_path / 'a.png', 32, 1)
  np.testing.assert_array_equal(y[..., 0], x.astype(np.float32) / 127.5 - 1.0)
  rgb = image_file.read(tmp_path / 'a.png', 32, 3)
  assert rgb.shape == (32, 32, 3) and np.array_equal(rgb[..., 0], y[..., 0])


def test_sixteen_bit_png_keeps_its_range(tmp_path):
  """Was: 16-bit PNGs saturated to nearly white by the 8-bit conversion."""
  x = _slice(np.random.default_rng(0)).astype(np.uint16)
  Image.fromarray(x).save(tmp_path / 'a.png')
  assert Image.open(tmp_path / 'a.png').mode == 'I;16'
  y = image_file.read(tmp_path / 'a.png', 32, 1)
  np.testing.assert_allclose(y[..., 0], _percentile_map(x), atol=1e-5)
  assert y.min() == -1.0 and y.max() == 1.0 and np.all(y[x == 0] == -1.0)
  rng_mapped = image_file.read(tmp_path / 'a.png', 32, 1, intensity='range')
  np.testing.assert_allclose(rng_mapped[..., 0], x / 32767.5 - 1.0, atol=1e-6)
  big_endian = x.astype('>u2')
  Image.frombuffer('I;16B', (32, 32), big_endian.tobytes(), 'raw', 'I;16B', 0, 1).save(tmp_path / 'b.tif')
  np.testing.assert_allclose(image_file.read(tmp_path / 'b.tif', 32, 1), y, atol=1e-6)


def test_float_tiff(tmp_path):
  """Was: float TIFFs in [0, 1] came out as a constant -1."""
  x = (_slice(np.random.default_rng(1)) / 12000.0).astype(np.float32)
  Image.fromarray(x, 'F').save(tmp_path / 'a.tif')
  y = image_file.read(tmp_path / 'a.tif', 32, 1)
  np.testing.assert_allclose(y[..., 0], _percentile_map(x), atol=1e-5)
  np.testing.assert_allclose(image_file.read(tmp_path / 'a.tif', 32, 1, intensity='range')[..., 0], 2 * x - 1,
                             atol=1e-6)
  Image.fromarray(x * 5 - 1, 'F').save(tmp_path / 'z.tif')  # e.g. z-scored: no fixed range
  with pytest.raises(errors.DataError, match=r"z.tif' is a float image with values in \[-1, 4[.0-9]*\]; "
                                             r"data.intensity='range' needs \[0, 1\]"):
    image_file.read(tmp_path / 'z.tif', 32, 1, intensity='range')


def test_resized_high_depth_is_scaled_at_full_resolution(tmp_path):
  x = _slice(np.random.default_rng(2), size=64).astype(np.uint16)
  Image.fromarray(x).save(tmp_path / 'a.png')
  y = image_file.read(tmp_path / 'a.png', 32, 1)[..., 0]
  scaled = _percentile_map(x).astype(np.float32)  # scaled first, then resized
  resized = np.asarray(Image.fromarray(scaled, 'F').resize((32, 32), Image.BILINEAR))
  np.testing.assert_allclose(y, resized, atol=1e-5)


def test_int32_and_bad_pixels(tmp_path):
  x = (_slice(np.random.default_rng(3)) * 100).astype(np.int32)
  Image.fromarray(x, 'I').save(tmp_path / 'i.tif')
  np.testing.assert_allclose(image_file.read(tmp_path / 'i.tif', 32, 1)[..., 0], _percentile_map(x), atol=1e-5)
  with pytest.raises(errors.DataError, match=r"i.tif' is a 32-bit integer image, which has no fixed range"):
    image_file.read(tmp_path / 'i.tif', 32, 1, intensity='range')
  nan = np.full((8, 8), np.nan, np.float32)
  Image.fromarray(nan, 'F').save(tmp_path / 'nan.tif')
  with pytest.raises(errors.DataError, match=r"nan.tif' has non-finite pixel values"):
    image_file.read(tmp_path / 'nan.tif', 8, 1)
  Image.fromarray(np.full((8, 8), 7, np.uint16)).save(tmp_path / 'const.png')
  with pytest.raises(errors.DataError, match=r"const.png: constant intensity inside the brain \(7\)"):
    image_file.read(tmp_path / 'const.png', 8, 1)


def test_unsupported_mode_is_refused(tmp_path):
  Image.new('LAB', (8, 8)).save(tmp_path / 'lab.tif')
  with pytest.raises(errors.DataError, match=r"lab.tif' has mode 'LAB', which is not supported"):
    image_file.read(tmp_path / 'lab.tif', 8, 1)


def test_folder_reports_modes_and_conversions(tmp_path, caplog):
  x = _slice(np.random.default_rng(4)).astype(np.uint16)
  Image.fromarray(x).save(tmp_path / 'a.png')
  Image.fromarray(np.zeros((32, 32, 4), np.uint8), 'RGBA').save(tmp_path / 'b.png')
  with caplog.at_level(logging.INFO):
    images = input_pipeline.load_images(str(tmp_path), 32, 1)
  assert images.shape == (2, 32, 32, 1)
  np.testing.assert_allclose(images[0, ..., 0], _percentile_map(x), atol=1e-5)
  assert 'data: 2 images by mode: 1 I;16 (16-bit), 1 RGBA (8-bit)' in caplog.text
  assert 'data: 1 of 2 images are converted from RGBA to L (data.channels=1)' in caplog.text
