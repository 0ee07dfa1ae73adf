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
"""lgg_kaggle3m and ixi builders, and ``input_pipeline.load_config_data``.

Fixtures: a tiny kaggle_3m-layout folder (3-channel TIFs written with PIL; one patient has two study folders) and
its compact form, and tiny IXI volumes (32x32x16, orientation P,S,R as the shared data) written with nibabel. The
shared ``lgg_kaggle3m`` and ``ixi_t1`` data are used when ``../shared/data`` is present.
"""

import csv
import pathlib
import types

import nibabel as nib
import numpy as np
import pytest
import tensorflow_datasets as tfds
from PIL import Image

from fsgan_jax import config_lib, input_pipeline
from fsgan_jax.datasets import DatasetError
from fsgan_jax.datasets import load_split
from fsgan_jax.datasets.ixi import ixi_dataset_builder as idb
from fsgan_jax.datasets.ixi import ixi_io
from fsgan_jax.datasets.lgg_kaggle3m import lgg_kaggle3m_dataset_builder as ldb
from fsgan_jax.datasets.lgg_kaggle3m import lgg_kaggle3m_io as lio

# Folders: patient TCGA_AA_0001 has two studies; 5 patients in all.
_FOLDERS = ('TCGA_AA_0001_20000101', 'TCGA_AA_0001_20010101', 'TCGA_BB_0002_20000101', 'TCGA_CC_0003_20000101',
            'TCGA_AA_0004_20000101', 'TCGA_BB_0005_20000101')
_AREAS = (0, 36, 400)  # Tumor pixels of slices 1, 2, 3 of every folder.
_LGG = dict(resolution=32, ks=(1, 2, 3), seeds=(0, 1), test_fraction=0.2, heldout_fraction=0.2)


def _slice_arrays(folder_i: int, n: int) -> tuple[np.ndarray, np.ndarray]:
  rng = np.random.default_rng(10 * folder_i + n)
  img = rng.integers(0, 256, (256, 256, 3), dtype=np.uint8)
  img[..., 1] = np.minimum(img[..., 1], 200)  # FLAIR differs from pre/post in range: checks the channel order.
  mask = np.zeros((256, 256), np.uint8)
  side = int(np.sqrt(_AREAS[n - 1]))
  mask[50:50 + side, 60:60 + side] = 255
  return img, mask


@pytest.fixture(scope='module')
def kaggle(tmp_path_factory) -> pathlib.Path:
  """Original layout: kaggle_3m/<folder>/<folder>_<n>.tif + _mask.tif, 3 slices per folder."""
  root = tmp_path_factory.mktemp('lgg') / 'kaggle_3m'
  for i, folder in enumerate(_FOLDERS):
    (root / folder).mkdir(parents=True)
    for n in (1, 2, 3):
      img, mask = _slice_arrays(i, n)
      Image.fromarray(img).save(root / folder / f'{folder}_{n}.tif')
      Image.fromarray(mask).save(root / folder / f'{folder}_{n}_mask.tif')
  return root.parent


@pytest.fixture(scope='module')
def compact(tmp_path_factory) -> pathlib.Path:
  """The same slices in the compact form (FLAIR PNGs, bit-packed masks.npz, metadata.csv)."""
  root = tmp_path_factory.mktemp('lgg_compact')
  rows, arrays = [], {}
  for i, folder in enumerate(_FOLDERS):
    (root / 'flair' / folder).mkdir(parents=True)
    masks = []
    for n in (1, 2, 3):
      img, mask = _slice_arrays(i, n)
      rel = f'flair/{folder}/{folder}_{n}.png'
      Image.fromarray(img[..., 1]).save(root / rel)
      masks.append(np.packbits(mask > 0, axis=-1))
      rows.append(dict(patient_id=folder[:12], folder=folder, institution=folder[5:7], slice_index=n, n_slices=3,
                       has_tumor=int(mask.any()), tumor_pixels=int((mask > 0).sum()), kept=1, file=rel))
    arrays[f'{folder}__slice_index'] = np.arange(1, 4, dtype=np.int32)
    arrays[f'{folder}__mask'] = np.stack(masks)
  np.savez(root / 'masks.npz', **arrays)
  with open(root / 'metadata.csv', 'w', newline='') as f:
    w = csv.DictWriter(f, fieldnames=list(rows[0]))
    w.writeheader()
    w.writerows(rows)
  return root


def _build(module, config, manual_dir, data_dir):
  tfds.disable_progress_bar()
  builder = module.Builder(config=config, data_dir=str(data_dir), file_format='array_record')
  builder.download_and_prepare(download_config=tfds.download.DownloadConfig(manual_dir=str(manual_dir)))
  return builder


def test_lgg_find_slices_and_exact_intensity(kaggle):
  form, slices = lio.find_slices(kaggle)
  assert form == 'original' and len(slices) == 18
  assert {s.patient_id for s in slices} == {f[:12] for f in _FOLDERS}
  assert {s.folder for s in slices if s.patient_id == 'TCGA_AA_0001'} == set(_FOLDERS[:2])
  assert {s.institution for s in slices} == {'AA', 'BB', 'CC'}
  ex = dict(lio.examples(slices[:3], ('pre', 'flair', 'post'), 256, lio.SlicePolicy('all')))
  img, mask = _slice_arrays(0, 3)
  got = ex['TCGA_AA_0001_20000101_003']
  np.testing.assert_array_equal(got['image'], img.astype(np.float32) / 127.5 - 1)
  np.testing.assert_array_equal(got['mask'], mask > 0)
  assert got['tumor_area'] == 400 and got['subject_id'] == 'TCGA_AA_0001'
  small = dict(lio.examples(slices[:3], ('flair',), 128, lio.SlicePolicy('tumor', 100)))
  assert list(small) == ['TCGA_AA_0001_20000101_003'] and small[list(small)[0]]['image'].shape == (128, 128, 1)


@pytest.fixture(scope='module')
def lgg_built(kaggle, tmp_path_factory):
  config = ldb.make_config('all_256_tumor', slice_policy='all', **_LGG)
  dirs = [tmp_path_factory.mktemp('lgg_out1'), tmp_path_factory.mktemp('lgg_out2')]
  return config, [_build(ldb, config, kaggle, d) for d in dirs], dirs


def test_lgg_splits_disjoint_nested_deterministic(lgg_built):
  config, (b1, _), (dir1, dir2) = lgg_built
  assert config.name.startswith('all_32_all_x')
  splits = sorted(b1.info.splits)
  assert splits == sorted(['heldout', 'test'] + [f'fewshot_k{k}_seed{s}' for k in (1, 2, 3) for s in (0, 1)])
  data = {s: load_split('lgg_kaggle3m', s, dir1, config=config.name) for s in splits}
  subj = {s: set(d['subject_id']) for s, d in data.items()}
  assert len(subj['test']) == 1 and len(subj['heldout']) == 1 and not subj['test'] & subj['heldout']
  for seed in (0, 1):
    ks = [subj[f'fewshot_k{k}_seed{seed}'] for k in (1, 2, 3)]
    assert [len(s) for s in ks] == [1, 2, 3] and ks[0] < ks[1] < ks[2]
    assert not ks[2] & (subj['test'] | subj['heldout'])
  for s, d in data.items():
    assert d['image'].dtype == np.float32 and d['image'].shape[1:] == (32, 32, 3)
    assert -1 <= d['image'].min() and d['image'].max() <= 1 and d['image'][..., 1].max() <= 200 / 127.5 - 1 + 1e-6
    n_folders = {sid: 2 if sid == 'TCGA_AA_0001' else 1 for sid in d['subject_id']}
    assert len(d['image']) == 3 * sum(n_folders.values())  # Policy 'all'; both folders of a patient together.
    assert set(np.unique(d['mask'])) <= {0, 1}
    other = load_split('lgg_kaggle3m', s, dir2, config=config.name)
    for k, v in d.items():
      np.testing.assert_array_equal(v, other[k])


def test_lgg_compact_form(compact, kaggle, tmp_path):
  with pytest.raises(DatasetError, match=r'compact lgg_kaggle3m form has the FLAIR channel only') as e:
    _build(ldb, ldb.make_config('all_256_tumor', **_LGG), compact, tmp_path / 'bad')
  assert '\n' not in str(e.value) and str(compact) in str(e.value)
  assert not list((tmp_path / 'bad').rglob('dataset_info.json'))
  config = ldb.make_config('flair_256_tumor', min_tumor_area=30, **_LGG)
  a = load_split('lgg_kaggle3m', 'test', _build(ldb, config, compact, tmp_path / 'c').data_dir.split(
      '/lgg_kaggle3m/')[0], config=config.name)
  b = load_split('lgg_kaggle3m', 'test', _build(ldb, config, kaggle, tmp_path / 'o').data_dir.split(
      '/lgg_kaggle3m/')[0], config=config.name)
  assert np.all(a['tumor_area'] >= 30) and len(a['image']) >= 2
  for k in a:  # Both forms give the same examples (FLAIR = channel 1 of the TIF).
    np.testing.assert_array_equal(a[k], b[k])


def test_lgg_corrupt_tif(kaggle, tmp_path):
  root = tmp_path / 'raw'
  for folder in _FOLDERS[2:4]:
    (root / folder).mkdir(parents=True)
    for f in (kaggle / 'kaggle_3m' / folder).iterdir():
      (root / folder / f.name).write_bytes(f.read_bytes())
  bad = root / _FOLDERS[3] / f'{_FOLDERS[3]}_2.tif'
  bad.write_bytes(bad.read_bytes()[:300])
  config = ldb.make_config('flair_256_tumor', resolution=32, ks=(2,), seeds=(0,), test_fraction=0.0,
                           heldout_fraction=0.0, min_tumor_area=1)
  with pytest.raises(DatasetError, match=rf'^{bad}: unreadable image') as e:
    _build(ldb, config, root, tmp_path / 'out')
  assert '\n' not in str(e.value)
  assert not list((tmp_path / 'out').rglob('dataset_info.json'))
  (root / _FOLDERS[2] / f'{_FOLDERS[2]}_1_mask.tif').unlink()
  with pytest.raises(DatasetError, match=rf'{_FOLDERS[2]}_1.tif: no mask file'):
    lio.find_slices(root)


# ---------------------------------------------------------------------------------------------------- IXI
_IXI_IDS = ('IXI002-Guys-0828', 'IXI012-HH-1211', 'IXI013-HH-1212', 'IXI014-HH-1236', 'IXI015-HH-1258')
# Voxel axes P, S, R (as shared/data/ixi_t1), 2 mm: column j of the affine = the direction of voxel axis j.
_PSR = np.array([[0, 0, 2, -16], [-2, 0, 0, 32], [0, 2, 0, -32], [0, 0, 0, 1]], np.float64)


@pytest.fixture(scope='module')
def ixi(tmp_path_factory) -> pathlib.Path:
  """5 volumes 32x32x16 (P, S, R): an ellipsoid head, brighter in its anterior half; demographics for 2."""
  root = tmp_path_factory.mktemp('ixi')
  (root / 't1').mkdir()
  p, s, r = np.meshgrid(*[np.linspace(-1, 1, n) for n in (32, 32, 16)], indexing='ij')
  head = p**2 + s**2 + r**2 < 0.9
  for i, sid in enumerate(_IXI_IDS):
    rng = np.random.default_rng(i)
    vol = np.where(head, rng.uniform(200, 400, head.shape) + 400 * (p < 0), 0).astype(np.float32)  # p<0 anterior
    sep = '-' if i == 0 else '_'
    nib.save(nib.Nifti1Image(vol, _PSR), str(root / 't1' / f'{sid}{sep}T1.nii.gz'))
  (root / 'participants.csv').write_text('MRID,Age,Sex,file\nIXI012-HH-1211,38.78,M,x\nIXI013-HH-1212,46.7,F,y\n')
  (root / 'IXI.csv').write_text('IXI_ID,SEX_ID,AGE\n2,2,35.8\n')  # IXI.xls export: 2 = female.
  return root


_IXI = dict(resolution=16, fov_mm=64.0, min_brain_area_mm2=40.0, z_range=(0.0, 1.0), test_fraction=0.4)


@pytest.fixture(scope='module')
def ixi_built(ixi, tmp_path_factory):
  config = idb.make_config('t1_256', **_IXI)
  return config, [_build(idb, config, ixi, tmp_path_factory.mktemp(f'ixi_out{i}')).data_dir for i in (1, 2)]


def test_ixi_orientation_and_demographics(ixi):
  vol, zooms = ixi_io.read_lps(ixi / 't1' / 'IXI012-HH-1211_T1.nii.gz')
  assert vol.shape == (16, 32, 32) and zooms == (2.0, 2.0, 2.0)
  assert vol[:, :16].mean() > vol[:, 16:].mean()  # Axis 1 runs to posterior: anterior (bright) half first.
  subjects = {s.subject_id: s for s in ixi_io.find_subjects(ixi)}
  assert sorted(subjects) == sorted(_IXI_IDS)
  assert (subjects['IXI012-HH-1211'].age, subjects['IXI012-HH-1211'].sex) == (38.78, 'M')
  assert (subjects['IXI002-Guys-0828'].age, subjects['IXI002-Guys-0828'].sex) == (35.8, 'F')
  assert (subjects['IXI014-HH-1236'].age, subjects['IXI014-HH-1236'].sex) == (-1.0, 'unknown')
  np.testing.assert_array_equal(ixi_io.select_slices(np.array([0, 5, 9, 9, 9, 9, 5, 0.]), 5, (0.5, 1.0)),
                                [4, 5, 6])  # Span 1..6; 1 + 0.5 * 5 = 3.5.


def test_ixi_splits_range_deterministic(ixi_built):
  config, (dir1, dir2) = ixi_built
  root1, root2 = (d.split('/ixi/')[0] for d in (dir1, dir2))
  train, test = (load_split('ixi', s, root1, config=config.name) for s in ('train', 'test'))
  assert len(set(test['subject_id'])) == 2 and len(set(train['subject_id'])) == 3
  assert not set(train['subject_id']) & set(test['subject_id'])
  for d in (train, test):
    x = d['image']
    assert x.shape[1:] == (16, 16, 1) and x.dtype == np.float32 and x.min() == -1 and x.max() <= 1
    assert x.max() > 0.5  # 1 before the 2x downsampling (averages).
    assert x[:, :8, :, 0].mean() > x[:, 8:, :, 0].mean()  # Anterior (bright) is up.
    np.testing.assert_array_equal(x[:, :, :4], -1)  # L-R extent 32 mm = 8 px of 16: padded with -1.
  other = load_split('ixi', 'train', root2, config=config.name)
  for k, v in train.items():
    np.testing.assert_array_equal(v, other[k])
  ages = dict(zip(np.concatenate([train['subject_id'], test['subject_id']]),
                  np.concatenate([train['age'], test['age']])))
  assert ages['IXI012-HH-1211'] == pytest.approx(38.78) and ages['IXI015-HH-1258'] == -1


def test_ixi_corrupt_volume(ixi, tmp_path):
  root = tmp_path / 'raw'
  (root / 't1').mkdir(parents=True)
  for sid in _IXI_IDS[1:3]:
    (root / 't1' / f'{sid}_T1.nii.gz').write_bytes((ixi / 't1' / f'{sid}_T1.nii.gz').read_bytes())
  bad = root / 't1' / f'{_IXI_IDS[2]}_T1.nii.gz'
  bad.write_bytes(bad.read_bytes()[:200])
  with pytest.raises(DatasetError, match=rf'^{bad}: unreadable NIfTI') as e:
    _build(idb, idb.make_config('t1_256', **{**_IXI, 'test_fraction': 0.5}), root, tmp_path / 'out')
  assert '\n' not in str(e.value)


# --------------------------------------------------------------------------------------------- load_config_data
def test_load_config_data(ixi_built, tmp_path):
  config, (dir1, _) = ixi_built
  root = dir1.split('/ixi/')[0]
  data = types.SimpleNamespace(dir=None, channels=1, limit=0, tfds_name='ixi', tfds_config=config.name,
                               tfds_split='train', tfds_data_dir=root)
  x = input_pipeline.load_config_data(data, 16)
  np.testing.assert_array_equal(x, load_split('ixi', 'train', root, config=config.name)['image'])
  data.limit = 3
  assert input_pipeline.load_config_data(data, 16).shape == (3, 16, 16, 1)
  with pytest.raises(input_pipeline.DataError, match=r"^data.tfds_config='t1_16_x\w+': images are 16x16 but "
                     r'model.resolution=32$'):
    input_pipeline.load_config_data(data, 32)
  data.channels = 3
  with pytest.raises(input_pipeline.DataError, match=r'^data.channels=3: the TFDS images'):
    input_pipeline.load_config_data(data, 16)
  data.tfds_split = 'nope'
  with pytest.raises(input_pipeline.DataError, match=r"^data.tfds_name='ixi' .*data.tfds_split='nope'"):
    input_pipeline.load_config_data(data, 16)
  folder = tmp_path / 'imgs'
  folder.mkdir()
  for i in range(3):
    Image.fromarray(np.full((20, 30, 3), 60 * i, np.uint8)).save(folder / f'{i}.png')
  old = types.SimpleNamespace(dir=str(folder), channels=3, limit=0)  # A config without the tfds fields.
  y = input_pipeline.load_config_data(old, 8)
  np.testing.assert_array_equal(y, input_pipeline.load_images(str(folder), 8, 3))
  assert y.shape == (3, 8, 8, 3)


# ------------------------------------------------------------------------------------------------ shared data
def test_shared_lgg_compact(shared_data, tmp_path):
  manual = shared_data / 'lgg_kaggle3m'
  if not manual.is_dir():
    pytest.skip('lgg_kaggle3m not present')
  with pytest.raises(DatasetError, match='FLAIR channel only'):
    _build(ldb, ldb.make_config('all_128_tumor', ks=(2,), seeds=(0,)), manual, tmp_path / 'bad')
  config = ldb.make_config('flair_128_tumor', ks=(2, 4), seeds=(0,), test_fraction=0.03, heldout_fraction=0.02)
  _build(ldb, config, manual, tmp_path)
  data = {s: load_split('lgg_kaggle3m', s, tmp_path, config=config.name)
          for s in ('fewshot_k2_seed0', 'fewshot_k4_seed0', 'heldout', 'test')}
  subj = {s: set(d['subject_id']) for s, d in data.items()}
  assert [len(subj[s]) for s in data] == [2, 4, 3, 4]
  assert subj['fewshot_k2_seed0'] < subj['fewshot_k4_seed0'] and not subj['fewshot_k4_seed0'] & subj['test']
  assert not subj['test'] & subj['heldout'] and not subj['heldout'] & subj['fewshot_k4_seed0']
  for d in data.values():
    assert d['image'].shape[1:] == (128, 128, 1) and d['image'].min() == -1 and d['image'].max() <= 1
    assert np.all(d['tumor_area'] >= 100) and set(d['institution']) <= {'CS', 'DU', 'EZ', 'FG', 'HT'}


def test_shared_ixi(shared_data, tmp_path):
  manual = shared_data / 'ixi_t1'
  if not manual.is_dir():
    pytest.skip('ixi_t1 not present')
  config = idb.make_config('t1_128', test_fraction=0.9)  # 4 training subjects keep the test fast.
  _build(idb, config, manual, tmp_path)
  train = load_split('ixi', 'train', tmp_path, config=config.name)
  assert len(set(train['subject_id'])) == 4 and train['image'].shape[1:] == (128, 128, 1)
  assert train['image'].min() == -1 and train['image'].max() == 1
  assert np.all(train['age'] > 0) and set(train['sex'].tolist()) <= {1, 2}


def test_eval_real_sets_from_tfds(lgg_built):
  """With a TFDS source, evaluation compares with the training split and the dataset's own 'heldout' split."""
  from configs import tiny  # pylint: disable=g-import-not-at-top
  from fsgan_jax import evaluate  # pylint: disable=g-import-not-at-top
  built, _, (dir1, _) = lgg_built
  config = tiny.get_config()
  config.model.resolution = 32
  config.data.channels = 3
  config.data.tfds_name = 'lgg_kaggle3m'
  config.data.tfds_config = built.name
  config.data.tfds_split = 'fewshot_k2_seed0'
  config.data.tfds_data_dir = str(dir1)
  config.data.limit = 0
  sets = evaluate.default_real_sets(config)
  assert [s.name for s in sets] == ['train', 'heldout']
  train_split = load_split('lgg_kaggle3m', 'fewshot_k2_seed0', dir1, config=built.name)
  np.testing.assert_array_equal(sets[0].images, input_pipeline.to_uint8(train_split['image']))
  assert sets[0].groups == [str(s) for s in train_split['subject_id']]
  assert sets[1].images.shape[1:] == (32, 32, 3) and sets[1].images.dtype == np.uint8
  assert not set(sets[0].groups) & set(sets[1].groups)
  assert 'fewshot_k2_seed0' in sets[0].source and 'heldout' in sets[1].source


def test_lgg_rgb_pairs_and_per_contrast_real_sets(lgg_built):
  """TCGA-LGG pre/FLAIR/post + the binary mask: 4 channels through the training pipeline and the eval real sets."""
  from configs import tiny  # pylint: disable=g-import-not-at-top
  from fsgan_jax import evaluate  # pylint: disable=g-import-not-at-top
  built, _, (dir1, _) = lgg_built
  config = tiny.get_config()
  config.model.resolution = 32
  config.model.mask_channels = 1
  config.data.update(channels=3, contrast_names='pre,flair,post', tfds_name='lgg_kaggle3m', tfds_config=built.name,
                     tfds_split='fewshot_k2_seed0', tfds_data_dir=str(dir1), limit=0)
  assert config_lib.channel_names(config) == ['pre', 'flair', 'post', 'mask']
  raw = load_split('lgg_kaggle3m', 'fewshot_k2_seed0', dir1, config=built.name)
  x = input_pipeline.load_config_data(config.data, 32, mask_channels=1)
  np.testing.assert_array_equal(x[..., :3], raw['image'])
  np.testing.assert_array_equal(x[..., 3] > 0, raw['mask'] > 0)
  sets = evaluate.default_real_sets(config)
  assert [s.images.shape[-1] for s in sets] == [4, 4]  # training and held-out sets both carry their masks
  np.testing.assert_array_equal(sets[0].images[..., 3] == 255, raw['mask'] > 0)
  with pytest.raises(input_pipeline.DataError, match='needs data.tfds_name=brats'):
    input_pipeline.load_config_data(config.data, 32, mask_channels=3)
