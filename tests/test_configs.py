"""Every config file loads, validates, and builds the library objects it describes."""

import importlib
import importlib.util
import pathlib

import pytest

from soft_diffusion import corruptions, models, samplers
from soft_diffusion.run import settings as settings_lib
from soft_diffusion.run import state as state_lib

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


@pytest.mark.parametrize(
  "blur, ve", [("gaussian_field", "gaussian_field_ve"), ("digits", "digits_ve"), ("celeba64", "celeba64_ve")]
)
def test_the_forms_are_one_switch_away(blur, ve):
  """Each blur config is preconditioned by default (with the denoised end) and ':paper' is the
  paper's form and end; each VE twin is EDM's recipe by default and ':score_sde' is score_sde's
  (configs/default.py apply_form). Nothing else differs between the forms."""
  blur, ve = importlib.import_module(f"configs.{blur}"), importlib.import_module(f"configs.{ve}")
  default_form = settings_lib.load(blur.get_config())
  paper = settings_lib.load(blur.get_config("paper"))
  assert (default_form.model.precond, default_form.sample.final) == ("spectral", "denoise")
  assert (paper.model.precond, paper.sample.final, paper.loss.weighting) == ("none", "auto", "uniform")
  for block in ("data", "corruption", "train", "optim", "loss", "eval", "checkpoint"):
    assert getattr(default_form, block) == getattr(paper, block), block
  score_sde = settings_lib.load(ve.get_config("score_sde"))
  edm = settings_lib.load(ve.get_config())
  assert (score_sde.loss.weighting, score_sde.model.output_scale, score_sde.model.precond) == (
    "inverse_noise_var",
    "noise_std",
    "none",
  )
  assert (edm.loss.weighting, edm.model.output_scale, edm.model.precond, edm.train.t_density) == (
    "uniform",
    "none",
    "spectral",
    "lognormal",
  )
  assert (score_sde.sample.final, edm.sample.final) == ("auto", "denoise")
  with pytest.raises(ValueError, match="must be one of \\('edm', 'score_sde'\\), got 'paper'"):
    ve.get_config("paper")


LOAD_WITHOUT_BACKEND = """
import importlib.util, inspect, pathlib, sys
sys.path.insert(0, {repo!r})
from jax._src import xla_bridge
from configs import default
from soft_diffusion import main, settings
loaded = 0
for path in sorted(p for p in pathlib.Path({repo!r}, "configs").glob("*.py") if p.name != "__init__.py"):
  spec = importlib.util.spec_from_file_location("configs." + path.stem, path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  form = inspect.signature(module.get_config).parameters.get("form")
  forms = [None] if form is None else default.VE_FORMS if form.default in default.VE_FORMS else default.BLUR_FORMS
  for name in forms:
    settings.load(module.get_config() if name is None else module.get_config(name))
    loaded += 1
main.parse(["main", "--workdir", "/nonexistent/run", "--config.seed=3", "--config", "configs/celeba64.py:paper"])
assert not xla_bridge.backends_are_initialized(), "loading a config initialised a JAX backend"
print(loaded)
"""


def test_loading_every_config_touches_no_backend():
  """`main` validates the settings before `jax.distributed.initialize()`, which must come before
  any backend is initialised: a validator that asks JAX for its devices would break every pod.
  Every config in every form, and the command line's parse, in a fresh interpreter."""
  import subprocess
  import sys

  repo = str(CONFIG_DIR.parent)
  out = subprocess.run(
    [sys.executable, "-c", LOAD_WITHOUT_BACKEND.format(repo=repo)], cwd=repo, capture_output=True, text=True
  )
  assert out.returncode == 0, out.stderr[-3000:]
  assert int(out.stdout.split()[-1]) >= len(CONFIG_FILES), out.stdout
