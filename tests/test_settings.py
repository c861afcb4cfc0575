"""Settings: one default per field (configs/default.py = the typed blocks), one-line errors naming
the field, unknown keys refused."""

import dataclasses

import pytest

from soft_diffusion import errors, models
from soft_diffusion.run import settings as settings_lib


def default_config():
  from configs import default

  return default.get_config()


@pytest.mark.parametrize("block", sorted(settings_lib.BLOCKS))
def test_default_config_is_the_typed_defaults(block):
  """Every field of every block is declared once: configs/default.py holds exactly the fields of
  the block's dataclass, with its default values."""
  cls = settings_lib.BLOCKS[block]
  written = default_config()[block]
  assert set(written.keys()) == {f.name for f in dataclasses.fields(cls)}, block
  typed = settings_lib.load(default_config())
  assert getattr(typed, block) == cls(), f"configs/default.py's {block} block differs from {cls.__name__}()"


@pytest.mark.parametrize("name", sorted(models.NETWORKS))
def test_default_model_block_holds_every_network_with_its_defaults(name):
  """The model block has the fields of every network; each network's dataclass defaults are the
  values written there (the network model.name picks reads its own, the others keep theirs)."""
  cls = models.NETWORKS[name][0]
  written = default_config().model
  fields = {f.name: f.default for f in dataclasses.fields(cls)}
  assert set(fields) <= set(written.keys())
  assert {k: (tuple(v) if isinstance(v, list) else v) for k, v in written.items() if k in fields and k != "name"} == {
    k: v for k, v in fields.items() if k != "name"
  }
  assert settings_lib.load(default_config()).model == models.NETWORKS[written.name][0]()


@pytest.mark.parametrize(
  "block, key, value, match",
  [
    ("model", "dtype", "float16", "config.model.dtype must be 'auto', 'float32' or 'bfloat16'"),
    ("model", "channel_mult", (1, 0), "config.model.channel_mult must be a non-empty tuple"),
    ("train", "batch_size", 0, "config.train.batch_size must be an int >= 1"),
    ("optim", "lr", -1.0, "config.optim.lr must be > 0"),
    ("sample", "sampler", "ddim", "config.sample.sampler must be one of"),
    ("sample", "time_grid", "cosine", r"config.sample.time_grid must be one of \('auto', 'uniform', 'logsnr'"),
    ("sample", "order", 4, r"config.sample.order must be one of \(1, 2, 3\)"),
    ("sample", "rho", 0.0, "config.sample.rho must be a number > 0"),
    ("data", "image_size", 18, r"config.data.image_size must be divisible by 2\^"),
    ("data", "path", " ", r"config.data.path must be a folder \(local or gs://\), or None"),
    ("corruption", "noise_std_min", 0.0, "config.corruption: noise std_min must be a finite number > 0"),
    ("eval", "num_steps", (), "config.eval.num_steps must be a non-empty tuple"),
    ("loss", "weighting", "snr", "config.loss.weighting must be one of"),
    ("model", "name", "resnet", "config.model.name must be one of"),
    ("model", "num_heads", 4, "config.model.num_heads must be left at 1: model.name = 'ncsnpp' does not use it"),
    ("loss", "floor", 1.0, r"config.loss.floor must be in \[0, 1\)"),
    ("train", "grad_accum_steps", 3, "config.train.grad_accum_steps must be a divisor of train.batch_size = 128"),
    ("train", "profile_steps", -1, "config.train.profile_steps must be an int >= 0"),
    ("checkpoint", "keep_every_steps", 7500, r"config.checkpoint.keep_every_steps must be 0 \(off\) or a multiple"),
  ],
)
def test_bad_values_fail_with_the_field_name(block, key, value, match):
  config = default_config()
  config[block][key] = value
  with pytest.raises(errors.ConfigError, match=match):
    settings_lib.load(config)


def test_a_non_bool_remat_is_refused():  # a ConfigDict refuses it itself; a plain mapping reaches the check
  with pytest.raises(errors.ConfigError, match="config.model.remat must be True or False, got 1"):
    models.network_config({"name": "unet", "remat": 1})


def test_unknown_blocks_and_keys_are_refused():
  config = default_config().to_dict()
  config["model"]["chanels"] = 8
  with pytest.raises(errors.ConfigError, match=r"config.model has unknown field\(s\) \['chanels'\]"):
    settings_lib.load(config)
  config = default_config().to_dict()
  config["extra"] = {}
  with pytest.raises(errors.ConfigError, match=r"unknown block\(s\) \['extra'\]"):
    settings_lib.load(config)


def test_loaded_settings_load_again_unchanged():
  settings = settings_lib.load(default_config())
  assert settings_lib.load(settings) == settings
