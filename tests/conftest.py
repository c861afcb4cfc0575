"""Shared test fixtures. Tests run on the host CPU with its single default device; the sharding
tests start their own subprocess with 8 fake devices (tests/test_sharding.py)."""

import numpy as np
import pytest


@pytest.fixture
def rng():
  return np.random.default_rng(0)
