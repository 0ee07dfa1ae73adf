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
"""Kernel Inception Distance (KID), the unbiased MMD^2 of Binkowski et al.

Same estimator as StyleGAN2-ADA ``metrics/kernel_inception_distance.py`` and
clean-fid ``kernel_distance``: cubic polynomial kernel
``k(x, y) = (x.y / d + 1)^3``, ``num_subsets`` random subsets (without
replacement) of ``m = min(n1, n2, max_subset_size)`` rows of each set, and
per subset

  ``(sum_{i!=j} k(x_i, x_j) + sum_{i!=j} k(y_i, y_j)) / (m (m - 1))
    - 2 sum_{i,j} k(x_i, y_j) / m^2``.

The result is the mean (and the standard deviation) over the subsets. Being
unbiased, it can be slightly negative for sets from the same distribution;
the same set passed twice gives a small negative value because the cross
term keeps the ``k(x, x)`` pairs.
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ['kernel_inception_distance', 'polynomial_kernel']


def polynomial_kernel(x: np.ndarray, y: np.ndarray) -> np.ndarray:
  """``(x @ y.T / d + 1) ** 3`` in float64."""
  d = x.shape[1]
  return (x @ y.T / d + 1.0) ** 3


def kernel_inception_distance(features1: Any, features2: Any,
                              num_subsets: int = 100,
                              max_subset_size: int = 1000,
                              seed: int = 0) -> tuple[float, float]:
  """Unbiased KID between two feature sets.

  Args:
    features1: [N1, D] features (e.g. Inception pool3) of the first set.
    features2: [N2, D] features of the second set.
    num_subsets: Number of random subsets.
    max_subset_size: Subset size cap; the size is min(N1, N2, this).
    seed: Seed of the subset sampling (numpy ``default_rng``).

  Returns:
    (mean, std) of the per-subset MMD^2 estimates, Python floats (std is the
    population standard deviation over the subsets; 0 for one subset).

  Raises:
    ValueError: Shapes are inconsistent or a set has fewer than 2 rows.
  """
  f1 = np.asarray(features1, dtype=np.float64)
  f2 = np.asarray(features2, dtype=np.float64)
  if f1.ndim != 2 or f2.ndim != 2 or f1.shape[1] != f2.shape[1]:
    raise ValueError(f'features must be [N1, D] and [N2, D], got {f1.shape} '
                     f'and {f2.shape}')
  m = min(f1.shape[0], f2.shape[0], max_subset_size)
  if m < 2:
    raise ValueError(f'KID needs at least 2 rows per set, got {f1.shape[0]} '
                     f'and {f2.shape[0]} (max_subset_size {max_subset_size})')
  if num_subsets < 1:
    raise ValueError(f'num_subsets must be >= 1, got {num_subsets}')
  rng = np.random.default_rng(seed)
  values = np.empty(num_subsets, np.float64)
  for i in range(num_subsets):
    x = f2[rng.choice(f2.shape[0], m, replace=False)]
    y = f1[rng.choice(f1.shape[0], m, replace=False)]
    a = polynomial_kernel(x, x) + polynomial_kernel(y, y)
    b = polynomial_kernel(x, y)
    values[i] = ((a.sum() - np.trace(a)) / (m - 1) - b.sum() * 2 / m) / m
  return float(values.mean()), float(values.std())
