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
"""The generator shipped in ``pretrained/lgg_flair_128``: intact, loadable, deterministic, and trained."""

import hashlib
import json
import os
import pathlib

import numpy as np
from PIL import Image

from fsgan_jax import pretrained, sample, workdir as workdir_lib

SHIPPED = pathlib.Path(__file__).resolve().parents[1] / 'pretrained' / 'lgg_flair_128'


def test_shipped_generator_matches_its_manifest():
  manifest = json.loads((SHIPPED / pretrained.MANIFEST).read_text())
  for name in (pretrained.CONFIG, pretrained.GENERATOR):
    data = (SHIPPED / name).read_bytes()
    assert hashlib.sha256(data).hexdigest() == manifest['sha256'][name], name
  assert (SHIPPED / pretrained.GENERATOR).stat().st_size <= 20 * 2 ** 20  # the size limit
  for name in ('README.md', 'LICENSE'):
    assert (SHIPPED / name).is_file(), name  # license and citation next to the weights
  run = workdir_lib.load_run(str(SHIPPED))  # checks the checksums again, builds the generator
  assert run.step == manifest['step'] and run.config.model.resolution == 128


def test_shipped_generator_samples_deterministically_and_looks_like_a_slice(tmp_path):
  a = sample.sample_from_workdir(str(SHIPPED), num=8, seed=3, out=str(tmp_path / 'a'))
  b = sample.sample_from_workdir(str(SHIPPED), num=8, seed=3, out=str(tmp_path / 'b'))
  images = []
  for i in range(8):
    x = np.asarray(Image.open(os.path.join(a, f'img_{i:05d}.png')))
    np.testing.assert_array_equal(x, np.asarray(Image.open(os.path.join(b, f'img_{i:05d}.png'))))
    images.append(x.astype(np.float64))
  images = np.stack(images)
  assert images.shape == (8, 128, 128)
  # An axial FLAIR slice: dark air around the head, a bright head in the middle (an untrained generator gives
  # mid-gray noise everywhere), and different slices for different latents.
  corners = np.concatenate([images[:, :12, :12], images[:, :12, -12:], images[:, -12:, :12], images[:, -12:, -12:]],
                           axis=1)
  centre = images[:, 40:88, 40:88]
  assert corners.mean() < 15, corners.mean()
  assert centre.mean() > corners.mean() + 30, (centre.mean(), corners.mean())
  assert np.abs(images[0] - images[1]).mean() > 5
