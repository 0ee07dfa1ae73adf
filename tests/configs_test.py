"""Every config file and ``:variant`` in configs/ loads and passes its validation (before anything is compiled)."""

import importlib

import pytest

from fsgan_jax import config_lib
from fsgan_jax.experiments import classify, segment

# (module, variant or None): the variants each config's docstring documents.
TRAINING = [('fastgan', None), ('demo', None), ('tiny', None), ('paired', None), ('paired', 'cpu'),
            ('pretrain_source', ''), ('pretrain_source', 'cpu'), ('quality', ''), ('quality', 'polish'), ('quality', 'w32'),
            *[(m, v) for m in ('apa', 'gmm') for v in ('', 'cpu')],
            *[(m, v) for m in ('cdc', 'ewc', 'finetune', 'minegan') for v in ('', 'cpu')],
            *[('recipe', arm) for arm in ('base', 'base+b16', 'base+cutout', 'base+ema999', 'w32')]]


def _load(module: str, variant):
  get_config = importlib.import_module(f'configs.{module}').get_config
  return get_config() if variant is None else get_config(variant)


@pytest.mark.parametrize('module,variant', TRAINING, ids=[f'{m}:{v}' if v else m for m, v in TRAINING])
def test_training_config_validates(module, variant, tmp_path):
  config = _load(module, variant)
  if config.transfer.method:  # transfer configs name their source on the command line
    config.transfer.source_workdir = str(tmp_path)
  config_lib.validate(config, 1)


@pytest.mark.parametrize('variant', [None, 'cpu'])
def test_study_configs_validate(variant):
  for module, study in (('classify', classify), ('segment', segment)):
    config = _load(module, variant)
    assert config.variant == (variant or 'full')
    study.validate_config(config)


@pytest.mark.parametrize('module', ['apa', 'cdc', 'ewc', 'finetune', 'gmm', 'minegan', 'pretrain_source', 'quality',
                                    'recipe', 'classify', 'segment', 'paired'])
def test_unknown_variant_is_refused(module):
  with pytest.raises(ValueError, match=f'configs/{module}.py: unknown'):
    _load(module, 'nosuch')
