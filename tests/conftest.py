"""Shared test fixtures. Tests run on the host CPU with its single default device; the sharding
tests start their own subprocesses with 8 fake devices (tests/test_sharding.py)."""

import pathlib
import sys

import numpy as np
import pytest

REPO = pathlib.Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # configs/ is a top-level folder, not part of the package
  sys.path.insert(0, str(REPO))


@pytest.fixture
def rng():
  return np.random.default_rng(0)


@pytest.fixture(scope="session", autouse=True)
def compilation_cache(tmp_path_factory):
  """One persistent XLA cache per test session: identical programs compiled by separate
  train/sample calls (new jit closures) are compiled once."""
  import jax

  jax.config.update("jax_compilation_cache_dir", str(tmp_path_factory.mktemp("xla_cache")))
  jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
  jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
  yield
