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
