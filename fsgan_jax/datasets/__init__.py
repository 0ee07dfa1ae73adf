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
"""Dataset builders (TFDS, array_record, TensorFlow-free) and readers.

Build with ``python -m fsgan_jax.datasets.build <name> --manual_dir=DIR --data_dir=OUT``; read a whole split with
``load_split(name, split, data_dir, config)``. Builders live in ``<name>/<name>_dataset_builder.py`` (new-style
TFDS layout, so ``tfds build fsgan_jax/datasets/<name>`` finds them too) and are imported only when used.
"""

from fsgan_jax.datasets.common import BUILDERS
from fsgan_jax.datasets.common import DatasetError
from fsgan_jax.datasets.common import load_split

__all__ = ['BUILDERS', 'DatasetError', 'load_split']
