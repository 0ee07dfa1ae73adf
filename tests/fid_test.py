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
"""Tests of FID (statistics, Frechet distance, folder/npz CLI) and KID.

The parity tests need ``../shared/data`` (``lgg_flair_100``, the 100 "other"
FLAIR slices and the reference statistics made with the original TorchScript
model, see shared/data/README.md section 5) and the FID Inception weights,
fetched once like in inception_test.py; without them they skip.
"""

import csv
import os
import pathlib
import subprocess
import sys
import warnings

import numpy as np
import pytest
from PIL import Image

from fsgan_jax.evaluators import fid
from fsgan_jax.evaluators import inception
from fsgan_jax.evaluators import kid

REF_FID = 66.313676  # FID(lgg_flair_100, other_100), README section 5.
# The same FID with the other resize conventions, measured with the
# TorchScript model on inputs resized by the original code (torch
# F.interpolate as pytorch-fid; PIL as clean-fid): see
# tests/testdata/make_resize_golden.py --fid.
REF_FID_BY_RESIZE = {'tf1': REF_FID, 'pytorch_fid': 66.399178,
                     'clean': 66.149273}
REPO = pathlib.Path(__file__).resolve().parents[1]


@pytest.fixture(name='params', scope='session')
def fixture_params(shared_data):
  del shared_data  # No 81 MB download in clones without the shared data.
  try:
    path = inception.fetch(source=os.environ.get('FSGAN_JAX_FID_SOURCE'))
  except (subprocess.CalledProcessError, OSError) as e:
    pytest.skip(f'FID Inception weights unavailable (offline?): {e}')
  return inception.load_params(path)


@pytest.fixture(name='parity_images', scope='session')
def fixture_parity_images(shared_data):
  """lgg_flair_100 and the 100 other slices, uint8 [100, 256, 256, 3]."""
  flair = fid.load_folder(shared_data / 'lgg_flair_100')
  with open(shared_data / 'fid_inception' / 'fid_other_100.csv') as f:
    other = np.stack([
        fid.read_image(shared_data / row['file'])
        for row in csv.DictReader(f)])
  assert flair.shape == other.shape == (100, 256, 256, 3)
  return flair, other


@pytest.fixture(name='features_by_resize', scope='session')
def fixture_features_by_resize(params, parity_images):
  """resize -> our features of (lgg_flair_100, other_100), made once."""
  cache = {}

  def get(resize):
    if resize not in cache:
      cache[resize] = tuple(
          inception.features_from_images(params, x, 50, resize=resize)
          for x in parity_images)
    return cache[resize]

  return get


@pytest.fixture(name='parity_features', scope='session')
def fixture_parity_features(features_by_resize):
  """Our tf1 features of lgg_flair_100 and of the 100 other slices."""
  return features_by_resize('tf1')


def _write_pngs(folder: pathlib.Path, n: int, size=(40, 32), gray=False,
                seed=0) -> pathlib.Path:
  folder.mkdir(parents=True, exist_ok=True)
  rng = np.random.default_rng(seed)
  for i in range(n):
    shape = (size[0], size[1]) if gray else (size[0], size[1], 3)
    Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8)).save(
        folder / f'{i:03d}.png')
  return folder


# ---- Frechet distance. -----------------------------------------------------


def test_stats_float64_and_unbiased():
  f = np.random.default_rng(0).normal(size=(10, 3)).astype(np.float32)
  mu, sigma = fid.stats(f)
  assert mu.dtype == sigma.dtype == np.float64
  np.testing.assert_allclose(mu, f.astype(np.float64).mean(0))
  np.testing.assert_allclose(sigma, np.cov(f.astype(np.float64).T))
  with pytest.raises(fid.FIDInputError, match='at least 2'):
    fid.stats(f[:1])


def test_identical_stats_give_zero():
  f = np.random.default_rng(1).normal(size=(50, 8))
  mu, sigma = fid.stats(f)
  assert abs(fid.frechet_distance(mu, sigma, mu, sigma)) < 1e-8


@pytest.mark.parametrize('method', fid.FRECHET_METHODS)
def test_known_gaussians_closed_form(method):
  rng = np.random.default_rng(2)
  d = 6
  mu1, mu2 = rng.normal(size=d), rng.normal(size=d)
  a, b = rng.uniform(0.1, 3.0, d), rng.uniform(0.1, 3.0, d)
  want = np.sum((mu1 - mu2) ** 2) + np.sum((np.sqrt(a) - np.sqrt(b)) ** 2)
  got = fid.frechet_distance(mu1, np.diag(a), mu2, np.diag(b), method=method)
  np.testing.assert_allclose(got, want, rtol=1e-10)
  # Same eigenbasis (commuting covariances): the same closed form.
  q, _ = np.linalg.qr(rng.normal(size=(d, d)))
  got = fid.frechet_distance(mu1, q @ np.diag(a) @ q.T, mu2,
                             q @ np.diag(b) @ q.T, method=method)
  np.testing.assert_allclose(got, want, rtol=1e-8)
  # 1-D: (m1 - m2)^2 + (s1 - s2)^2.
  np.testing.assert_allclose(
      fid.frechet_distance([1.0], [[4.0]], [3.0], [[9.0]], method=method),
      4.0 + 1.0)


def test_eigh_method_matches_sqrtm_on_non_commuting_covariances():
  rng = np.random.default_rng(3)
  x = rng.normal(size=(300, 64)) @ rng.normal(size=(64, 64))
  y = rng.normal(size=(200, 64)) @ rng.normal(size=(64, 64)) + 0.3
  a, b = fid.stats(x), fid.stats(y)
  np.testing.assert_allclose(fid.frechet_distance(*a, *b, method='eigh'),
                             fid.frechet_distance(*a, *b), rtol=1e-9)
  with pytest.raises(ValueError, match='unknown Frechet method'):
    fid.frechet_distance(*a, *b, method='svd')


def test_eps_fallback_on_singular_product():
  # sqrtm([[0, 1], [0, 0]]) does not exist (scipy returns inf).
  s1, s2 = np.array([[0.0, 1.0], [0.0, 0.0]]), np.eye(2)
  mu = np.zeros(2)
  eps = 1e-6
  with pytest.warns(RuntimeWarning, match='adding'):
    got = fid.frechet_distance(mu, s1, mu, s2, eps=eps)
  # sqrtm((s1 + eps I)(1 + eps)) has trace 2 sqrt(eps (1 + eps)).
  want = 0.0 + 2.0 - 2.0 * 2.0 * np.sqrt(eps * (1.0 + eps))
  np.testing.assert_allclose(got, want, rtol=1e-6)
  # Singular but with a finite square root (N < D): no offset, no warning.
  f = np.random.default_rng(3).normal(size=(4, 10))
  mu1, sg1 = fid.stats(f)
  with warnings.catch_warnings():
    warnings.simplefilter('error')
    assert abs(fid.frechet_distance(mu1, sg1, mu1, sg1)) < 1e-6


def test_imaginary_component_rejected():
  with pytest.raises(ValueError, match='imaginary'):
    fid.frechet_distance(np.zeros(2), np.diag([-1.0, 1.0]), np.zeros(2),
                         np.eye(2))


@pytest.mark.parametrize('args,match', [
    ((np.zeros(3), np.eye(2), np.zeros(3), np.eye(3)), 'sigma must be'),
    ((np.zeros(3), np.eye(3), np.zeros(2), np.eye(2)), 'dimensions'),
    ((np.zeros((3, 1)), np.eye(3), np.zeros(3), np.eye(3)), '1-D'),
])
def test_shape_checks(args, match):
  with pytest.raises(ValueError, match=match):
    fid.frechet_distance(*args)


# ---- KID. ------------------------------------------------------------------


def test_kid_identical_near_zero_and_shift_larger():
  rng = np.random.default_rng(4)
  f = np.abs(rng.normal(size=(300, 32))) / 4  # Pool3-like: >= 0, ~0.2.
  mean0, std0 = kid.kernel_inception_distance(f, f, num_subsets=20,
                                              max_subset_size=200)
  shifted = f + 0.1
  mean1, std1 = kid.kernel_inception_distance(f, shifted, num_subsets=20,
                                              max_subset_size=200)
  # The same set twice is slightly negative (the cross term keeps k(x, x)).
  assert -0.05 * mean1 < mean0 <= 0.0 and std0 >= 0.0
  assert mean1 > 0.01 and std1 >= 0.0
  # Two independent samples of one distribution: about 0.
  g = np.abs(rng.normal(size=(300, 32))) / 4
  mean2, _ = kid.kernel_inception_distance(f, g, num_subsets=20,
                                           max_subset_size=200)
  assert abs(mean2) < 0.05 * mean1
  # Seeded: deterministic; another seed changes the subsets.
  assert kid.kernel_inception_distance(f, shifted, num_subsets=20,
                                       max_subset_size=200) == (mean1, std1)
  assert kid.kernel_inception_distance(
      f, f, num_subsets=20, max_subset_size=200, seed=1) != (mean0, std0)


def test_kid_matches_direct_unbiased_formula():
  rng = np.random.default_rng(5)
  x, y = rng.normal(size=(7, 5)), rng.normal(size=(7, 5)) + 0.3
  # Subsets of all rows: every subset is the whole (permuted) set.
  mean, std = kid.kernel_inception_distance(x, y, num_subsets=3)
  k = lambda a, b: (a @ b.T / 5 + 1) ** 3
  m = 7
  kxx, kyy, kxy = k(x, x), k(y, y), k(x, y)
  want = ((kxx.sum() - np.trace(kxx)) / (m * (m - 1)) +
          (kyy.sum() - np.trace(kyy)) / (m * (m - 1)) - 2 * kxy.mean())
  np.testing.assert_allclose(mean, want, rtol=1e-10)
  assert std < 1e-10
  with pytest.raises(ValueError):
    kid.kernel_inception_distance(x[:1], y)


# ---- Parity with the TorchScript reference. --------------------------------


def test_fid_parity_lgg_flair_100_vs_other_100(parity_features,
                                               shared_data):
  ours_flair, ours_other = parity_features
  mu1, s1 = fid.stats(ours_flair)
  ref = np.load(shared_data / 'fid_inception' / 'ref_stats_lgg_flair_100.npz')
  ref_mu, ref_sigma = fid.stats(ref['features_float64'])
  np.testing.assert_allclose(ref_mu, ref['mu'], rtol=0, atol=1e-12)
  np.testing.assert_allclose(mu1, ref_mu, rtol=0, atol=1e-4)
  np.testing.assert_allclose(s1, ref_sigma, rtol=0, atol=1e-4)
  # sigma_trace of ../shared/data/fid_inception/reference_values.json (pytorch-fid's Inception on the same images).
  np.testing.assert_allclose(np.trace(s1), 95.337460, rtol=1e-5)
  other = np.load(shared_data / 'fid_inception' / 'features_fid_other_100.npz')
  np.testing.assert_allclose(ours_other, other['features_float64'], rtol=0,
                             atol=1e-3)
  value = fid.frechet_distance(mu1, s1, *fid.stats(ours_other))
  print(f'FID(lgg_flair_100, other_100): ours {value:.6f}, reference '
        f'{REF_FID}')
  assert abs(value - REF_FID) < 0.01
  # The fast eigendecomposition form used during training agrees closely.
  fast = fid.frechet_distance(mu1, s1, *fid.stats(ours_other), method='eigh')
  assert abs(fast - value) < 1e-3


@pytest.mark.parametrize('resize', ['pytorch_fid', 'clean'])
def test_fid_other_resize_conventions(features_by_resize, resize):
  flair, other = features_by_resize(resize)
  # 'eigh' (1.5e-5 from sqrtm here, checked in the tf1 parity test) keeps this test 2x faster.
  value = fid.frechet_distance(*fid.stats(flair), *fid.stats(other),
                               method='eigh')
  want = REF_FID_BY_RESIZE[resize]
  print(f'FID(lgg_flair_100, other_100), resize={resize}: ours {value:.6f}, '
        f'reference {want}')
  assert abs(value - want) < 0.01
  # Not the tf1 value: the convention matters (and must be reported).
  assert abs(value - REF_FID) > 0.05


def test_folder_or_npz_stats_resize(params, tmp_path):
  a = _write_pngs(tmp_path / 'a', 3, size=(24, 20), seed=3)
  got = {r: fid.folder_or_npz_stats(a, params, batch_size=4, resize=r)
         for r in fid.RESIZE_MODES}
  images = fid.load_folder(a)
  for r, (mu, _) in got.items():
    want = inception.features_from_images(params, images, 4, resize=r)
    np.testing.assert_allclose(mu, want.astype(np.float64).mean(0),
                               atol=1e-5)
  assert not np.allclose(got['tf1'][0], got['clean'][0], atol=1e-4)
  with pytest.raises(ValueError, match="'bogus'"):
    fid.folder_or_npz_stats(a, params, resize='bogus')


# ---- Command line. ---------------------------------------------------------


def test_cli_folders_resize_and_saved_stats(params, tmp_path, capsys):
  """One CLI run (a 2048 x 2048 Frechet distance costs seconds on CPU): folders of gray and RGB PNGs of an odd size,
  a non-default resize convention (every convention's features are checked against ``features_from_images`` in
  test_folder_or_npz_stats_resize), --save-stats, and the printed FID equal to the library's on the same inputs."""
  a = _write_pngs(tmp_path / 'a', 3, size=(24, 20), gray=True, seed=4)
  b = _write_pngs(tmp_path / 'b', 3, size=(24, 20), seed=5)
  out_npz = tmp_path / 'a_stats.npz'
  rc = fid.main([str(a), str(b), '--batch-size', '4', '--resize', 'clean', '--method', 'eigh', '--save-stats',
                 str(out_npz)])
  captured = capsys.readouterr()
  out = captured.out.strip().splitlines()
  assert rc == 0, captured.err
  assert 'resize convention: clean' in captured.err
  mu, sigma = fid.load_npz_stats(out_npz)
  assert mu.shape == (2048,) and sigma.shape == (2048, 2048)
  np.testing.assert_allclose(mu, fid.folder_or_npz_stats(a, params, 4, resize='clean')[0], atol=1e-6)
  want = fid.frechet_distance(mu, sigma, *fid.folder_or_npz_stats(b, params, 4, resize='clean'), method='eigh')
  assert out[-1] == f'FID: {want:.6f}' and np.isfinite(want) and want > 0


def test_cli_npz_inputs(tmp_path, capsys):
  rng = np.random.default_rng(6)
  fa, fb = rng.normal(size=(20, 4)), rng.normal(size=(30, 4)) + 1.0
  np.savez(tmp_path / 'a.npz', mu=fa.mean(0), sigma=np.cov(fa.T))
  np.savez(tmp_path / 'b.npz', features=fb)  # sigma from the features.
  rc = fid.main([str(tmp_path / 'a.npz'), str(tmp_path / 'b.npz')])
  out = capsys.readouterr().out.strip().splitlines()
  assert rc == 0
  want = fid.frechet_distance(*fid.stats(fa), *fid.stats(fb))
  assert out[-1] == f'FID: {want:.6f}'


def _bad_inputs(tmp: pathlib.Path) -> dict[str, list[str]]:
  ok = _write_pngs(tmp / 'ok', 2)
  (tmp / 'empty').mkdir()
  junk = _write_pngs(tmp / 'junk', 2)
  (junk / '001.png').write_bytes(b'not a png')
  one = _write_pngs(tmp / 'one', 1)
  np.savez(tmp / 's3.npz', mu=np.zeros(3), sigma=np.eye(3))
  np.savez(tmp / 's4.npz', mu=np.zeros(4), sigma=np.eye(4))
  np.savez(tmp / 'nokeys.npz', x=np.zeros(3))
  return {
      'does not exist': [str(tmp / 'missing'), str(ok)],
      'no images': [str(ok), str(tmp / 'empty')],
      'cannot read image': [str(junk), str(ok)],
      'at least 2 images': [str(one), str(ok)],
      'different dimensions': [str(tmp / 's3.npz'), str(tmp / 's4.npz')],
      'sigma': [str(tmp / 'nokeys.npz'), str(tmp / 's3.npz')],
      'available: tf1, pytorch_fid, clean': [str(ok), str(ok), '--resize',
                                             'pil_bicubic'],
      "unknown --method 'svd'; available: sqrtm, eigh": [
          str(ok), str(ok), '--method', 'svd'],
  }


def test_cli_bad_inputs_exit_2_with_one_line(tmp_path, capsys):
  for match, argv in _bad_inputs(tmp_path).items():
    rc = fid.main(argv)
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert rc == 2, (match, captured.err)
    assert len(lines) == 1 and match in lines[0], (match, captured.err)
    assert 'error' in lines[0] and not captured.out


def test_cli_subprocess_exit_code(tmp_path):
  env = dict(os.environ, PYTHONPATH=str(REPO), JAX_PLATFORMS='cpu')
  proc = subprocess.run(
      [sys.executable, '-m', 'fsgan_jax.evaluators.fid',
       str(tmp_path / 'missing'), str(tmp_path)],
      capture_output=True, text=True, env=env, cwd=REPO, timeout=120,
      check=False)
  assert proc.returncode == 2
  lines = proc.stderr.strip().splitlines()
  assert len(lines) == 1 and 'does not exist' in lines[0], proc.stderr


def test_load_folder_gray_rgb_and_sizes(tmp_path):
  gray = fid.load_folder(_write_pngs(tmp_path / 'g', 2, size=(9, 7),
                                     gray=True))
  assert gray.shape == (2, 9, 7, 3) and gray.dtype == np.uint8
  np.testing.assert_array_equal(gray[..., 0], gray[..., 2])
  rgb = fid.load_folder(_write_pngs(tmp_path / 'c', 3, size=(5, 6)))
  assert rgb.shape == (3, 5, 6, 3)
  mixed = _write_pngs(tmp_path / 'm', 1, size=(5, 6))
  Image.fromarray(np.zeros((4, 4), np.uint8)).save(mixed / 'z.png')
  with pytest.raises(fid.FIDInputError, match='different sizes'):
    fid.load_folder(mixed)
