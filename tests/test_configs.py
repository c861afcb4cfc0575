"""Every config file loads and its blocks build the library objects they describe."""

import dataclasses
import importlib.util
import pathlib

import pytest

from soft_diffusion import corruptions, data, losses, samplers, train

CONFIG_DIR = pathlib.Path(__file__).resolve().parents[1] / "configs"
CONFIG_FILES = sorted(p for p in CONFIG_DIR.glob("*.py") if p.name != "__init__.py")


def load(path: pathlib.Path):
  spec = importlib.util.spec_from_file_location(f"configs.{path.stem}", path)
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
  train.settings_from_config(config)  # the whole config validates
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


@pytest.mark.parametrize(
  "override, match",
  [
    (("model", "dtype", "float16"), "config.model.dtype must be 'float32' or 'bfloat16'"),
    (("train", "batch_size", 0), "config.train.batch_size must be an int >= 1"),
    (("optim", "lr", -1.0), "config.optim.lr must be > 0"),
    (("sample", "sampler", "ddim"), "config.sample.sampler must be one of"),
    (("data", "image_size", 18), r"config.data.image_size must be divisible by 2\^"),
    (("corruption", "noise_std_min", 0.0), "std_min must be a finite number > 0"),
  ],
)
def test_bad_values_fail_with_the_field_name(override, match):
  config = load(CONFIG_DIR / "digits.py")
  block, key, value = override
  config[block][key] = value
  with pytest.raises(ValueError, match=match):
    train.settings_from_config(config)
