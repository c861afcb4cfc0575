"""Every config file loads and its blocks build the library objects they describe."""

import dataclasses
import importlib.util
import pathlib

import pytest

from soft_diffusion import corruptions, data, losses, samplers

CONFIG_DIR = pathlib.Path(__file__).resolve().parents[1] / "configs"
CONFIG_FILES = sorted(CONFIG_DIR.glob("*.py"))


def load(path: pathlib.Path):
  spec = importlib.util.spec_from_file_location(path.stem, path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config()


def test_there_are_configs():
  assert CONFIG_FILES, f"no config files in {CONFIG_DIR}"


@pytest.mark.parametrize("path", CONFIG_FILES, ids=lambda p: p.name)
def test_config_builds_corruption_loss_and_sampler(path):
  config = load(path)
  corruptions.make(config.corruption)
  data.DataConfig.from_any(config.data)
  assert config.loss.weighting in losses.WEIGHTINGS
  samplers.get(config.sample.sampler)


def test_default_config_corruption_block_matches_the_typed_schema():
  fields = {f.name for f in dataclasses.fields(corruptions.CorruptionConfig)}
  assert set(load(CONFIG_DIR / "default.py").corruption.keys()) == fields


def test_default_config_uses_the_library_defaults():
  assert (
    corruptions.CorruptionConfig.from_any(load(CONFIG_DIR / "default.py").corruption) == corruptions.CorruptionConfig()
  )


def test_default_config_data_block_matches_the_typed_schema():
  config = load(CONFIG_DIR / "default.py")
  assert set(config.data.keys()) == {f.name for f in dataclasses.fields(data.DataConfig)}
  assert data.DataConfig.from_any(config.data) == data.DataConfig()
