"""Every config file loads, validates, and builds the library objects it describes."""

import importlib.util
import pathlib

import pytest

from soft_diffusion import corruptions, models, samplers
from soft_diffusion import settings as settings_lib
from soft_diffusion import state as state_lib

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
def test_config_validates_and_builds_its_parts(path):
  settings = settings_lib.load(load(path))  # the whole config validates
  if settings.corruption.blur_schedule != "selected":  # selected levels exist once a workdir has them
    corruptions.make(settings.corruption)
  samplers.get(settings.sample.sampler)
  state_lib.make_optimizer(settings.optim)
  models.make_network(settings.model)
