"""Test setup: 8 fake CPU devices (every data-parallel path runs sharded) and the shared-data location."""

import os
import pathlib

os.environ['XLA_FLAGS'] = (os.environ.get('XLA_FLAGS', '') + ' --xla_force_host_platform_device_count=8').strip()
os.environ.setdefault('JAX_PLATFORMS', 'cpu')
os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '3')

import jax  # pylint: disable=g-import-not-at-top
import pytest  # pylint: disable=g-import-not-at-top

# The same tiny programs are compiled by several tests (and by CLI subprocesses): share compilations.
_CACHE = os.environ.setdefault('JAX_COMPILATION_CACHE_DIR', os.path.join(os.path.expanduser('~'), '.cache',
                                                                         'fsgan_jax_test_xla'))
jax.config.update('jax_compilation_cache_dir', _CACHE)
jax.config.update('jax_persistent_cache_min_compile_time_secs', 1.0)

SHARED_DATA = pathlib.Path(__file__).resolve().parents[1] / '..' / 'shared' / 'data'


@pytest.fixture(scope='session')
def shared_data() -> pathlib.Path:
  """``../shared/data``; tests that need it skip cleanly when it is absent (a user's clone), but fail where the
  ``CI`` environment variable is set: CI has the data, so its absence there is a broken setup, not a user's clone
  (about 60 tests, all numerical parity tests included, would otherwise pass by skipping)."""
  if not SHARED_DATA.is_dir():
    if os.environ.get('CI'):
      pytest.fail(f'{SHARED_DATA} is missing but CI={os.environ["CI"]!r} is set: the parity tests need it')
    pytest.skip('../shared/data is not present')
  return SHARED_DATA.resolve()


# FSGAN_TEST_COMPILE_LOG=FILE: one JSON line per XLA compilation (or persistent-cache load) with the test that
# caused it, to find which tests pay for which programs (cache hits take well under a second).
_COMPILE_LOG = os.environ.get('FSGAN_TEST_COMPILE_LOG')
if _COMPILE_LOG:
  import json  # pylint: disable=g-import-not-at-top
  from jax import monitoring  # pylint: disable=g-import-not-at-top

  def _log_compile(event: str, duration: float, **kwargs) -> None:
    if event == '/jax/core/compile/backend_compile_duration':
      with open(_COMPILE_LOG, 'a') as f:
        f.write(json.dumps({'test': os.environ.get('PYTEST_CURRENT_TEST', ''), 'fun': kwargs.get('fun_name'),
                            'seconds': round(duration, 2), 'pid': os.getpid()}) + '\n')

  monitoring.register_event_duration_secs_listener(_log_compile)
