"""Shared fixtures. Tests run on the host CPU with its single default device; the sharding tests
start their own subprocesses with 8 fake devices (test_sharding.py, test_multidevice.py,
test_sample.py).

Every test that trains or samples uses one config, configs/tiny.py (`tiny_config`), on one
prepared copy of the digits (`tfds_dir`); `trained_run` is a 2-step run of it that tests may
sample from and evaluate, but not change.
"""

import pathlib

import numpy as np
import pytest
from support import TRAINED_STEPS

from soft_diffusion.run import schema
from soft_diffusion.run.workdir import Workdir

REPO = pathlib.Path(__file__).resolve().parents[1]
TINY = str(REPO / "configs" / "tiny.py")  # loaded by path: configs/ need not be on sys.path


# Test files by measured time, longest first (the --durations of a full run on 2 cores): with two
# xdist workers taking a file at a time, a long file that starts last leaves one worker idle while
# it runs; longest-first keeps the two busy to the end. Files not listed take seconds and run last.
LONGEST_FIRST = (
  "test_quality.py",
  "test_preemption.py",
  "test_train.py",
  "test_multidevice.py",
  "test_evaluate.py",
  "test_models.py",
  "test_sample.py",
  "test_bucket.py",
  "test_evaluation.py",
  "test_data.py",
  "test_main.py",
  "test_sharding.py",
  "test_samplers.py",
  "test_gaussian_field.py",
  "test_checkpoints.py",
  "test_restoration.py",
)


def pytest_collection_modifyitems(config, items):
  del config
  rank = {name: i for i, name in enumerate(LONGEST_FIRST)}
  items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # stable: file order kept otherwise


@pytest.fixture
def rng():
  return np.random.default_rng(0)


@pytest.fixture(scope="session", autouse=True)
def compilation_cache(tmp_path_factory):
  """One persistent XLA cache per test session, shared by the xdist workers: identical programs
  compiled by separate train/sample calls (new jit closures), by the command-line runs the tests
  start as subprocesses (they inherit the environment) and by the other worker are compiled once
  (JAX writes an entry in place; a half-written one read by the other worker is a warning and a
  compile, not an error)."""
  import os

  import jax

  if os.environ.get("PYTEST_XDIST_WORKER"):  # one cache for the workers of the run (their base folders' parent)
    cache = tmp_path_factory.getbasetemp().parent / "xla_cache"
    cache.mkdir(exist_ok=True)
    cache = str(cache)
  else:
    cache = str(tmp_path_factory.mktemp("xla_cache"))
  jax.config.update("jax_compilation_cache_dir", cache)
  jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
  jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
  os.environ.update(
    JAX_COMPILATION_CACHE_DIR=cache,
    JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0",
    JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES="0",
  )
  yield


@pytest.fixture(scope="session")
def tfds_dir(tmp_path_factory):
  """A TFDS data_dir for the session: the digits are prepared into it on first use."""
  return str(tmp_path_factory.mktemp("tfds"))


@pytest.fixture
def tiny_config(tfds_dir):
  """A fresh copy of configs/tiny.py reading the session's digits."""
  config = schema.load_config(TINY)
  config.data.path = tfds_dir
  return config


@pytest.fixture
def tiny_flags(tfds_dir):
  """The command-line flags that make `support.cli` read the session's digits."""
  return [f"--config.data.path={tfds_dir}"]


@pytest.fixture(scope="session")
def trained_run(tfds_dir, tmp_path_factory):
  """The workdir of configs/tiny.py trained for TRAINED_STEPS steps (one checkpoint, step 2);
  sample from it with `tiny_config`."""
  from soft_diffusion.run.modes import train

  config = schema.load_config(TINY)
  config.data.path = tfds_dir
  config.train.total_steps = TRAINED_STEPS
  workdir = tmp_path_factory.mktemp("trained")
  train.run_training(Workdir.of(str(workdir)).settings(config, resolve_levels=False), str(workdir))
  return workdir
