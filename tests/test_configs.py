"""Every config file loads, validates, and builds the library objects it describes; a config
loads by path from any folder (schema.load_config, schema.sibling), with one-line errors."""

import importlib.util
import json
import pathlib
import shutil
import subprocess
import sys

import pytest
from support import cpu_env

from soft_diffusion import corruptions, errors, models, samplers
from soft_diffusion.run import schema
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
  (schema.apply_form). Nothing else differs between the forms."""
  blur, ve = (schema.sibling(str(CONFIG_DIR / "default.py"), name) for name in (blur, ve))
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
from jax._src import xla_bridge
from soft_diffusion.run import main, schema, settings
loaded = 0
for path in sorted(p for p in pathlib.Path({repo!r}, "configs").glob("*.py") if p.name != "__init__.py"):
  spec = importlib.util.spec_from_file_location("configs." + path.stem, path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  form = inspect.signature(module.get_config).parameters.get("form")
  forms = [None] if form is None else schema.VE_FORMS if form.default in schema.VE_FORMS else schema.BLUR_FORMS
  for name in forms:
    settings.load(schema.load_config(str(path) if name is None else f"{{path}}:{{name}}"))
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


def test_default_py_is_the_schema_default():
  """configs/default.py returns the schema's defaults (every field at its default)."""
  default = schema.sibling(str(CONFIG_DIR / "default.py"), "default")
  assert default.get_config().to_dict() == schema.default_config().to_dict()


def test_shipped_configs_import_only_the_package():
  """No config reaches its siblings through sys.path (`from configs import ...`)."""
  for path in CONFIG_FILES:
    text = path.read_text()
    assert "from configs" not in text and "import configs" not in text, path.name


def test_load_config_takes_a_form_after_a_colon():
  paper = schema.load_config(f"{CONFIG_DIR / 'digits.py'}:paper")
  assert (paper.model.precond, schema.load_config(str(CONFIG_DIR / "digits.py")).model.precond) == ("none", "spectral")
  with pytest.raises(errors.ConfigError, match=r"digits.py:edm: ValueError: the config's form .* got 'edm'"):
    schema.load_config(f"{CONFIG_DIR / 'digits.py'}:edm")


def one_line_error(call, kind):
  with pytest.raises(kind) as raised:
    call()
  message = str(raised.value)
  assert message and "\n" not in message, message
  return message


def test_load_config_and_sibling_errors_are_one_line(tmp_path):
  missing = tmp_path / "nope.py"
  message = one_line_error(lambda: schema.load_config(str(missing)), errors.MissingError)
  assert message == f"config {missing}: no such file"
  (tmp_path / "empty.py").write_text("X = 1\n")
  message = one_line_error(lambda: schema.load_config(str(tmp_path / "empty.py")), errors.ConfigError)
  assert message.endswith("empty.py: the file defines no get_config()"), message
  (tmp_path / "broken.py").write_text("def get_config(:\n  pass\n")
  message = one_line_error(lambda: schema.load_config(str(tmp_path / "broken.py")), errors.ConfigError)
  assert "broken.py: SyntaxError" in message, message
  child = "from soft_diffusion.run import schema\nbase = schema.sibling(__file__, 'base')\n"
  (tmp_path / "child.py").write_text(child + "def get_config():\n  return base.get_config()\n")
  message = one_line_error(lambda: schema.load_config(str(tmp_path / "child.py")), errors.MissingError)
  assert str(tmp_path / "base.py") in message and message.endswith("no such file"), message
  message = one_line_error(lambda: schema.sibling(str(tmp_path / "child.py"), "base"), errors.MissingError)
  assert message == f"config {tmp_path / 'child.py'} builds on {tmp_path / 'base.py'}: no such file"


def test_sibling_loads_once_by_path_and_leaves_sys_path_alone(tmp_path):
  (tmp_path / "base.py").write_text(
    "import ml_collections\nLOADS = []\nLOADS.append(1)\n"
    "def get_config():\n  c = ml_collections.ConfigDict()\n  c.x = 1\n  return c\n"
  )
  (tmp_path / "child.py").write_text(
    "from soft_diffusion.run import schema\nbase = schema.sibling(__file__, 'base')\n"
    "def get_config(x='2'):\n  c = base.get_config()\n  c.x = int(x)\n  return c\n"
  )
  path = list(sys.path)
  assert schema.load_config(str(tmp_path / "child.py")).x == 2
  assert schema.load_config(f"{tmp_path / 'child.py'}:5").x == 5
  assert sys.path == path and "base" not in sys.modules
  base = schema.sibling(str(tmp_path / "child.py"), "base")
  assert base.LOADS == [1] and base is schema.sibling(str(tmp_path / "base.py"), "base.py")


def test_a_config_copied_out_of_the_repository_runs(tmp_path, tfds_dir):
  """configs/digits.py alone in another folder, run from there: it needs nothing but the installed
  package (no configs/ on sys.path)."""
  folder = tmp_path / "elsewhere"
  folder.mkdir()
  shutil.copy(CONFIG_DIR / "digits.py", folder / "my_digits.py")
  command = [sys.executable, "-m", "soft_diffusion.main", "--mode", "levels", "--config", "my_digits.py"]
  command += ["--workdir", str(tmp_path / "run"), f"--config.data.path={tfds_dir}"]
  out = subprocess.run(command, cwd=folder, capture_output=True, text=True, timeout=600, env=cpu_env())
  assert out.returncode == 0, out.stderr[-3000:]
  levels = json.loads((tmp_path / "run" / "levels.json").read_text())
  assert len(levels["sigmas"]) == schema.load_config(str(folder / "my_digits.py")).levels.num_levels
