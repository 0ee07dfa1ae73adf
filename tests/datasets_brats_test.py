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
"""BraTS builder: layouts, labels, intensities, subject-disjoint nested splits, bad inputs, TF-free CLI.

Fixtures are tiny synthetic BraTS-2019/2020/2023-layout subjects (32x32x16, a tumor blob) written with nibabel into
tmp dirs; the shared BraTS-2015 example is used when ``../shared/data`` is present.
"""

import gzip
import pathlib
import subprocess
import sys
import textwrap

import nibabel as nib
import numpy as np
import pytest
import tensorflow_datasets as tfds

from fsgan_jax import config_lib
from fsgan_jax.datasets import DatasetError
from fsgan_jax.datasets import load_split
from fsgan_jax.datasets.brats import brats_dataset_builder as bdb
from fsgan_jax.datasets.brats import brats_io

_SHAPE = (32, 32, 16)
_REPO = pathlib.Path(__file__).resolve().parents[1]
# Tiny-fixture build parameters: 32 -> 16 px exercises the pad + downsample path.
_PARAMS = dict(resolution=16, min_tumor_area=5, min_brain_area=20, ks=(1, 2, 4), seeds=(0, 1),
               test_fraction=0.2, heldout_fraction=0.2)
_TOKENS = {'legacy': dict(t1='t1', t1ce='t1ce', t2='t2', flair='flair', seg='seg'),
           '2023': dict(t1='t1n', t1ce='t1c', t2='t2w', flair='t2f', seg='seg')}


def _save(path: pathlib.Path, data: np.ndarray) -> None:
  nib.save(nib.Nifti1Image(data, np.diag([-1.0, -1.0, 1.0, 1.0])), str(path))


def _write_subject(folder: pathlib.Path, scheme: str = 'legacy', sep: str = '_', seed: int = 0, ext: str = '.nii.gz',
                   seg_name: str | None = None, skip: tuple[str, ...] = ()) -> pathlib.Path:
  """One synthetic subject: ellipsoid 'brain' with noisy intensities, a cubic tumor (core, edema, enhancing)."""
  folder.mkdir(parents=True)
  rng = np.random.default_rng(seed)
  x, y, z = np.meshgrid(*[np.linspace(-1, 1, n) for n in _SHAPE], indexing='ij')
  brain = (x**2 + y**2) / 0.8 + z**2 / 1.2 < 1
  seg = np.zeros(_SHAPE, np.float32)
  seg[10:22, 10:22, 4:10] = 2  # edema
  seg[12:20, 12:20, 5:9] = 4 if scheme == 'legacy' else 3  # enhancing
  seg[14:18, 14:18, 6:8] = 1  # core
  seg[~brain] = 0
  for contrast, token in _TOKENS[scheme].items():
    if contrast in skip:
      continue
    if contrast == 'seg':
      _save(folder / (seg_name or f'{folder.name}{sep}{token}{ext}'), seg)
    else:
      vol = np.where(brain, rng.uniform(100, 1000, _SHAPE) + 300 * (seg > 0), 0).astype(np.float32)
      _save(folder / f'{folder.name}{sep}{token}{ext}', vol)
  return folder


def _make_mixed(root: pathlib.Path) -> pathlib.Path:
  """12 subjects: 2019 (HGG/LGG folders), 2020 (name_mapping.csv, subject 355 misnamed seg), 2023."""
  for i in range(2):
    _write_subject(root / 'HGG' / f'BraTS19_TCIA_{i:03d}_1', seed=i)
    _write_subject(root / 'LGG' / f'BraTS19_TMC_{i:03d}_1', seed=10 + i)
  ids20 = ['BraTS20_Training_001', 'BraTS20_Training_002', 'BraTS20_Training_003', 'BraTS20_Training_355']
  for i, sid in enumerate(ids20):
    seg_name = 'W39_1998.09.19_Segm.nii' if sid.endswith('355') else None
    _write_subject(root / 'MICCAI_BraTS2020_TrainingData' / sid, seed=20 + i, ext='.nii', seg_name=seg_name)
  (root / 'MICCAI_BraTS2020_TrainingData' / 'name_mapping.csv').write_text(
      'Grade,BraTS_2019_subject_ID,BraTS_2020_subject_ID\n' +
      ''.join(f'{g},x{i},{s}\n' for i, (g, s) in enumerate(zip(['HGG', 'LGG', 'HGG', 'LGG'], ids20))))
  for i in range(4):
    _write_subject(root / f'BraTS-GLI-{i:05d}-000', scheme='2023', sep='-', seed=30 + i)
  return root


def _build(manual_dir, data_dir, **params):
  config = bdb.make_config('flair_256_tumor', **{**_PARAMS, **params})
  builder = bdb.Builder(config=config, data_dir=str(data_dir), file_format='array_record')
  builder.download_and_prepare(download_config=tfds.download.DownloadConfig(manual_dir=str(manual_dir)))
  return builder


@pytest.fixture(scope='module')
def mixed(tmp_path_factory):
  return _make_mixed(tmp_path_factory.mktemp('brats_mixed'))


@pytest.fixture(scope='module')
def built(mixed, tmp_path_factory):
  """The mixed fixture built twice (t1ce + flair) into two folders, for split and determinism checks."""
  tfds.disable_progress_bar()
  dirs = [tmp_path_factory.mktemp('out1'), tmp_path_factory.mktemp('out2')]
  builders = []
  for d in dirs:
    with pytest.warns(UserWarning, match='W39_1998.09.19_Segm.nii'):
      builders.append(_build(mixed, d, contrasts=('t1ce', 'flair')))
  return builders[0], dirs[0], dirs[1]


def test_find_subjects_layouts_grades_schemes(mixed):
  with pytest.warns(UserWarning, match=r'W39_1998\.09\.19_Segm\.nii: misnamed segmentation'):
    subjects = {s.subject_id: s for s in brats_io.find_subjects(mixed)}
  assert len(subjects) == 12
  assert subjects['BraTS19_TCIA_000_1'].grade == 'HGG' and subjects['BraTS19_TMC_001_1'].grade == 'LGG'
  assert subjects['BraTS20_Training_002'].grade == 'LGG' and subjects['BraTS20_Training_355'].grade == 'LGG'
  assert subjects['BraTS20_Training_355'].files['seg'].name == 'W39_1998.09.19_Segm.nii'
  gli = subjects['BraTS-GLI-00002-000']
  assert gli.grade == 'unknown' and gli.label_scheme == '2023' and set(gli.files) == {'t1', 't1ce', 't2', 'flair',
                                                                                       'seg'}
  assert subjects['BraTS19_TMC_000_1'].label_scheme == 'legacy'


def test_label_normalisation_and_intensity_unit():
  legacy = brats_io.normalise_labels(np.array([0, 1, 2, 3, 4.0]), 'legacy', pathlib.Path('s.nii'))
  np.testing.assert_array_equal(legacy, [0, 1, 2, 1, 3])  # 2015 non-enhancing (3) joins the core.
  np.testing.assert_array_equal(brats_io.normalise_labels(np.array([0, 1, 2, 3.0]), '2023', pathlib.Path('s')),
                                [0, 1, 2, 3])
  with pytest.raises(DatasetError, match=r'^s\.nii: unknown label values \[4\]'):
    brats_io.normalise_labels(np.array([0, 4.0]), '2023', pathlib.Path('s.nii'))
  vol = np.concatenate([np.zeros(10), np.linspace(5, 100, 1000)]).astype(np.float32)
  out = brats_io.scale_intensity(vol, vol != 0, pathlib.Path('v'))
  assert out.min() == -1 and out.max() == 1 and np.all(out[:10] == -1)
  img = brats_io.resize_plane(np.ones((240, 240, 1), np.float32), 256, -1.0)
  assert img.shape == (256, 256, 1) and img[0, 0, 0] == -1 and img[8, 8, 0] == 1 and img[248, 248, 0] == -1
  assert brats_io.resize_plane(np.ones((240, 240), np.uint8), 128, 0, labels=True).shape == (128, 128)


def test_partition_nested_and_independent_of_ks():
  ids = [f's{i:02d}' for i in range(30)]
  a = brats_io.partition(ids, partition_seed=0, test_fraction=0.2, heldout_fraction=0.1, ks=(5, 10), seeds=(0, 1))
  b = brats_io.partition(ids, partition_seed=0, test_fraction=0.2, heldout_fraction=0.1, ks=(3,), seeds=(1,))
  assert (len(a.test), len(a.heldout), len(a.pool)) == (6, 3, 21)
  assert set(a.fewshot(5, 0)) < set(a.fewshot(10, 0)) and a.fewshot(5, 0) != a.fewshot(5, 1)
  assert b.fewshot(3, 1) == a.fewshot(5, 1)[:3]
  with pytest.raises(DatasetError, match=r'^where: k=22 is larger than the few-shot pool of 21 subjects'):
    brats_io.partition(ids, partition_seed=0, test_fraction=0.2, heldout_fraction=0.1, ks=(22,), seeds=(0,),
                       where='where')


def test_splits_disjoint_nested_deterministic(built):
  b1, dir1, dir2 = built
  assert b1.builder_config.name.startswith('t1ce-flair_16_tumor_x')
  splits = sorted(b1.info.splits)
  assert splits == sorted(['heldout', 'test'] + [f'fewshot_k{k}_seed{s}' for k in (1, 2, 4) for s in (0, 1)])
  data = {s: load_split('brats', s, dir1, config=b1.builder_config.name)
          for s in splits}
  subj = {s: set(d['subject_id']) for s, d in data.items()}
  assert (len(subj['test']), len(subj['heldout'])) == (3, 3)
  for seed in (0, 1):
    ks = [subj[f'fewshot_k{k}_seed{seed}'] for k in (1, 2, 4)]
    assert [len(s) for s in ks] == [1, 2, 4] and ks[0] < ks[1] < ks[2]
    for a, b in [(ks[2], subj['test']), (ks[2], subj['heldout']), (subj['test'], subj['heldout'])]:
      assert not a & b
  for s, d in data.items():
    assert d['image'].dtype == np.float32 and d['image'].shape[1:] == (16, 16, 2)
    assert d['image'].min() >= -1 and d['image'].max() <= 1 and d['image'].min() == -1
    assert d['mask'].dtype == np.uint8 and set(np.unique(d['mask'])) <= {0, 1, 2, 3}
    assert np.all(d['tumor_area'] >= 5)
  every = {k: np.concatenate([d[k] for d in data.values()]) for k in ('subject_id', 'grade', 'mask')}
  expected = {'BraTS19_TCIA': 1, 'BraTS19_TMC_': 2, 'BraTS-GLI-0': 0, 'BraTS20_Training_001': 1,
              'BraTS20_Training_002': 2, 'BraTS20_Training_003': 1, 'BraTS20_Training_355': 2}  # 1 HGG, 2 LGG.
  for sid, grade in zip(every['subject_id'], every['grade']):
    assert grade == next(v for k, v in expected.items() if sid.startswith(k)), sid
  assert 3 in every['mask'] and 1 in every['mask']  # 2019/2020 label 4 -> 3 and 2023 label 3 -> 3.
  for s in splits:  # Determinism: a second build of the same config gives the same arrays.
    other = load_split('brats', s, dir2, config=b1.builder_config.name)
    for k, v in data[s].items():
      np.testing.assert_array_equal(v, other[k])


def test_k_larger_than_pool(mixed, tmp_path):
  with pytest.warns(UserWarning), pytest.raises(DatasetError) as e:
    _build(mixed, tmp_path, ks=(2, 7))
  msg = str(e.value)
  assert '\n' not in msg and 'k=7 is larger than the few-shot pool of 6 subjects' in msg
  assert not list(tmp_path.rglob('dataset_info.json'))


def _bad(root: pathlib.Path, kind: str) -> tuple[pathlib.Path, str]:
  """A manual_dir with one problem; returns (dir, regex the one-line error must match)."""
  good = _write_subject(root / 'BraTS19_ok_1')
  _write_subject(root / 'BraTS19_ok_2', seed=1)
  if kind == 'truncated':
    bad = _write_subject(root / 'BraTS19_bad_1', seed=2) / 'BraTS19_bad_1_flair.nii.gz'
    raw = gzip.decompress(bad.read_bytes())
    bad.write_bytes(gzip.compress(raw)[:len(gzip.compress(raw)) // 2])
    return root, rf'{bad}: unreadable NIfTI'
  if kind == 'shape':
    bad = root / 'BraTS19_ok_2' / 'BraTS19_ok_2_t1ce.nii.gz'
    _save(bad, np.ones((32, 30, 16), np.float32))
    return root, rf'{bad}: shape \(32, 30, 16\) differs'
  if kind == 'missing_seg':
    folder = _write_subject(root / 'BraTS19_noseg_1', skip=('seg',))
    return root, rf'{folder}: missing segmentation'
  if kind == 'labels':
    seg = good / 'BraTS19_ok_1_seg.nii.gz'
    data = np.asarray(nib.load(seg).dataobj).copy()
    data[0, 0, 0] = 5
    _save(seg, data)
    return root, rf'{seg}: unknown label values \[5\]'
  raise ValueError(kind)


@pytest.mark.parametrize('kind', ['truncated', 'shape', 'missing_seg', 'labels', 'empty'])
def test_bad_input_one_line_error_and_nothing_half_written(kind, tmp_path):
  if kind == 'empty':
    root = tmp_path / 'in'
    pattern = rf'^{root}: no BraTS subject folders'
    root.mkdir()
    (root / 'notes.txt').write_text('no NIfTI here')  # Not empty for TFDS, but no subjects.
  else:
    root, pattern = _bad(tmp_path / 'in', kind)
  out = tmp_path / 'out'
  with pytest.raises(DatasetError, match=pattern) as e:
    n = max(1, len([p for p in root.iterdir() if p.is_dir()]))  # Every subject in the one split.
    _build(root, out, contrasts=('t1ce', 'flair'), ks=(n,), seeds=(0,), test_fraction=0.0, heldout_fraction=0.0)
  assert '\n' not in str(e.value)
  assert not list(out.rglob('dataset_info.json')) and not list(out.rglob('*.array_record*'))
  if kind == 'empty':
    (tmp_path / 'empty').mkdir()
    for missing in (tmp_path / 'absent', tmp_path / 'empty'):
      with pytest.raises(DatasetError, match=rf'^{missing}: manual_dir is missing or empty'):
        _build(missing, out, ks=(1,))


_NO_TF = textwrap.dedent("""\
    import importlib.machinery as m, runpy, sys
    class HideTF:  # TensorFlow looks not installed: find_spec -> None.
      @staticmethod
      def find_spec(name, path=None, target=None):
        if name == 'tensorflow' or name.startswith('tensorflow.'):
          return None
        return m.PathFinder.find_spec(name, path, target)
      @staticmethod
      def invalidate_caches():
        m.PathFinder.invalidate_caches()
    sys.meta_path[sys.meta_path.index(m.PathFinder)] = HideTF
    sys.argv = ['build'] + sys.argv[1:]
    try:
      runpy.run_module('fsgan_jax.datasets.build', run_name='__main__')
    except SystemExit as e:
      assert not e.code, e.code
    assert 'tensorflow' not in sys.modules and 'apache_beam' not in sys.modules
    from fsgan_jax.datasets import load_split
    d = load_split('brats', 'fewshot_k1_seed0', DATA_DIR, config=CONFIG)
    assert 'tensorflow' not in sys.modules
    print('TF-FREE OK', d['image'].shape)
""")


def _run_cli(manual_dir, data_dir, config_name, *flags):
  code = _NO_TF.replace('CONFIG', repr(config_name)).replace('DATA_DIR', repr(str(data_dir)))
  cmd = [sys.executable, '-c', code, 'brats', f'--manual_dir={manual_dir}', f'--data_dir={data_dir}', *flags]
  return subprocess.run(cmd, cwd=_REPO, capture_output=True, text=True, timeout=120, check=False)


def test_cli_without_tensorflow(mixed, tmp_path):
  flags = ['--config=flair_256_tumor', '--resolution=16', '--min_tumor_area=5', '--min_brain_area=20', '--ks=1,2',
           '--seeds=0', '--test_fraction=0.2', '--heldout_fraction=0.2']
  name = bdb.make_config('flair_256_tumor', resolution=16, min_tumor_area=5, min_brain_area=20, ks=(1, 2),
                         seeds=(0,), test_fraction=0.2, heldout_fraction=0.2).name
  r = _run_cli(mixed, tmp_path, name, *flags)
  assert r.returncode == 0, r.stderr[-3000:]
  assert 'TF-FREE OK' in r.stdout and f'brats/{name} 1.0.0' in r.stdout
  assert 'fewshot_k2_seed0:' in r.stdout and 'W39_1998.09.19_Segm.nii: misnamed segmentation' in r.stderr
  bad = _run_cli(mixed, tmp_path / 'o2', name, '--resolution=16', '--ks=50', '--seeds=0')
  assert bad.returncode != 0 and 'error: ' in bad.stderr and 'k=50 is larger than the few-shot pool' in bad.stderr


def test_shared_brats_examples(shared_data, tmp_path):
  manual = shared_data / 'brats_examples'
  if not manual.is_dir():
    pytest.skip('brats_examples not present')
  config = bdb.make_config('flair_128_tumor', contrasts=('t1ce', 'flair'), ks=(1,), seeds=(0,))
  builder = bdb.Builder(config=config, data_dir=str(tmp_path), file_format='array_record')
  builder.download_and_prepare(download_config=tfds.download.DownloadConfig(manual_dir=str(manual)))
  counts = {s: i.num_examples for s, i in builder.info.splits.items()}
  assert set(counts) == {'fewshot_k1_seed0', 'heldout', 'test'} and min(counts.values()) > 30
  subjects = set()
  for split in counts:
    d = load_split('brats', split, tmp_path, config=config)
    assert len(set(d['subject_id'])) == 1 and not set(d['subject_id']) & subjects
    subjects |= set(d['subject_id'])
    assert d['image'].shape[1:] == (128, 128, 2) and d['image'].min() == -1 and d['image'].max() <= 1
    assert set(np.unique(d['mask'])) <= {0, 1, 2, 3} and np.all(d['tumor_area'] >= 100)
  assert subjects == {'brats_2013_pat0003_1', 'brats_2013_pat0004_1', 'brats_2013_pat0005_1'}


def test_pairs_from_brats_contrasts_and_subregions(built):
  """Two contrasts (T1ce, FLAIR) + the mask as 1 binary or 3 sub-region channels, through the training entry point."""
  from fsgan_jax import input_pipeline  # pylint: disable=g-import-not-at-top
  from configs import paired  # pylint: disable=g-import-not-at-top
  builder, data_dir, _ = built
  c = paired.get_config('cpu')
  c.data.update(tfds_name='brats', tfds_config=builder.builder_config.name, tfds_split='fewshot_k2_seed0',
                tfds_data_dir=str(data_dir), channels=2, contrast_names='t1ce,flair')
  raw = load_split('brats', 'fewshot_k2_seed0', data_dir, config=builder.builder_config.name)
  for m in (1, 3):
    c.model.mask_channels = m
    config_lib.validate(c, 8)
    assert config_lib.channel_names(c) == ['t1ce', 'flair'] + (['mask'] if m == 1 else ['ncr', 'ed', 'et'])
    x = input_pipeline.load_config_data(c.data, 16, mask_channels=m)
    assert x.shape == raw['image'].shape[:3] + (2 + m,)
    np.testing.assert_array_equal(x[..., :2], raw['image'])
    if m == 1:
      np.testing.assert_array_equal(x[..., 2] > 0, raw['mask'] > 0)
    else:
      for i, label in enumerate((1, 2, 3)):
        np.testing.assert_array_equal(x[..., 2 + i] > 0, raw['mask'] == label)
      assert set(np.unique(x[..., 2:])) == {-1.0, 1.0}
