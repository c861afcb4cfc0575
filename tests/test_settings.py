"""Settings: one default per field (the typed blocks' dataclasses, schema.default_config), one-line
errors naming the field, unknown keys refused."""

import dataclasses

import pytest

from soft_diffusion import errors, models
from soft_diffusion.run import schema
from soft_diffusion.run import settings as settings_lib

default_config = schema.default_config


@pytest.mark.parametrize("block", sorted(settings_lib.BLOCKS))
def test_default_config_is_the_typed_defaults(block):
  """Every field of every block is declared once, in its dataclass: the default config holds
  exactly the fields of the block's dataclass, with its default values."""
  cls = settings_lib.BLOCKS[block]
  written = default_config()[block]
  assert set(written.keys()) == {f.name for f in dataclasses.fields(cls)}, block
  typed = settings_lib.load(default_config())
  assert getattr(typed, block) == cls(), f"the default {block} block differs from {cls.__name__}()"


def test_every_field_has_a_comment_and_a_place_in_the_default_config():
  """The schema's reference (`python -m soft_diffusion.run.schema`, docs/config.md) documents
  every field: each has a non-empty comment in its dataclass, and the fields are the config's."""
  fields = schema.fields()
  undocumented = [f.key for f in fields if not f.comment.strip()]
  assert not undocumented, f"fields without a comment in their dataclass: {undocumented}"
  config = default_config()
  keys = {f"{b}.{k}" for b, block in config.items() if b != "seed" for k in block}
  assert {f.key for f in fields} == {"seed", *keys}
  for field in fields:
    value = config[field.name] if not field.block else config[field.block][field.name]
    assert value == field.default, field.key
  assert config.model.name == models.network_config({}).name == "ncsnpp"  # the default network


def test_comments_are_read_from_above_and_beside_a_field():
  loss = {f.name: f for f in schema.fields() if f.block == "loss"}
  assert loss["weighting"].comment == "w(t): 'uniform' (1) | 'inverse_noise_var' (1/s_t²)"  # beside
  assert loss["lag"].comment.startswith("> 0 (extension, not the paper): C_t in the loss becomes C_{max(t - lag, 0)}")
  assert loss["lag"].comment.endswith("0 with loss.floor > 0")  # three lines above, joined
  assert (loss["lag"].type, loss["lag"].default) == ("float", 0.0)
  data = {f.name: f for f in schema.fields() if f.block == "data"}
  assert data["crop_size"].type == "int | None" and data["crop_size"].default is None


def test_none_defaults_are_typed_placeholders():
  """`--config.data.crop_size=140` must parse as an int: a None default is a placeholder of its type."""
  config = default_config()
  assert config.data.get_ref("crop_size").get_type() is int
  assert config.data.get_ref("path").get_type() is str
  assert config.corruption.get_ref("blur_sigma_table").get_type() is tuple
  assert isinstance(config.model.channel_mult, tuple) and isinstance(config.eval.samplers, tuple)


def test_the_schema_prints_every_field():
  text = schema.text()
  assert text.splitlines()[0].startswith("seed = 0  # one seed for everything")
  assert "model.fir_kernel = (1, 3, 3, 1)  # FIR resampling filter" in text
  assert len(text.splitlines()) == len(schema.fields())


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
