"""--mode levels on the digits, and 'selected' levels read back through settings.load."""

import json

import numpy as np
import pytest
from support import REPO

from soft_diffusion import corruptions, data, errors
from soft_diffusion.run import schema
from soft_diffusion.run import settings as settings_lib
from soft_diffusion.run.modes import levels
from soft_diffusion.run.workdir import Workdir


def test_levels_mode_reproduces_the_digits_table(tfds_dir, tmp_path):
  digits = schema.sibling(str(REPO / "configs" / "digits.py"), "digits")  # the module: its tables

  config = digits.get_config()
  config.data.path = tfds_dir
  settings = settings_lib.load(config)
  path = levels.write_levels(settings, tmp_path)
  record = json.loads(path.read_text())
  num_train = len(data.make_source(settings.data, settings.data.train_split))
  assert record["num_images"] == num_train and len(record["sigmas"]) == settings.levels.num_levels
  # configs/digits.py embeds the levels this procedure selected (rounded to 4 decimals).
  np.testing.assert_allclose(record["sigmas"], digits.DIGITS_BLUR_LEVELS, atol=5e-5)
  assert max(record["hop_distances"]) <= record["epsilon"] * (1 + 1e-12)
  assert (tmp_path / "levels.png").stat().st_size > 10_000


def test_joint_pairing_reproduces_the_earlier_digits_table(tfds_dir, tmp_path):
  """levels.pairing = 'joint' is the selection the digits config used from 4ce04ed until the quality study
  (its table is in configs/digits.py as DIGITS_BLUR_LEVELS_JOINT)."""
  digits = schema.sibling(str(REPO / "configs" / "digits.py"), "digits")  # the module: its tables

  config = digits.get_config()
  config.data.path = tfds_dir
  config.levels.pairing = "joint"
  record = json.loads(levels.write_levels(settings_lib.load(config), tmp_path).read_text())
  np.testing.assert_allclose(record["sigmas"], digits.DIGITS_BLUR_LEVELS_JOINT, atol=5e-5)
  assert record["fingerprint"]["noise_pairing"] == "level k carries s(t_k)"


def test_selected_levels_are_read_and_must_match_the_settings(tiny_config, tmp_path):
  tiny_config.corruption.blur_schedule = "selected"
  settings_lib.load(tiny_config)  # without a workdir: the candidate range is checked, nothing read
  with pytest.raises(errors.MissingError, match="levels.json does not exist; run: .*--mode levels"):
    Workdir.of(tmp_path).settings(tiny_config)
  levels.write_levels(settings_lib.load(tiny_config), tmp_path)
  chosen = Workdir.of(tmp_path).settings(tiny_config)
  assert len(chosen.corruption.blur_sigma_table) == tiny_config.levels.num_levels
  assert corruptions.make(chosen.corruption).operator.sigma_schedule.sigmas == chosen.corruption.blur_sigma_table
  tiny_config.data.image_size = 16
  with pytest.raises(errors.ConfigError, match=r"selected for other settings \(differ: image_size\)"):
    Workdir.of(tmp_path).settings(tiny_config)
  (tmp_path / "levels.json").write_text("{not json")
  with pytest.raises(errors.ConfigError, match="is not a levels file written by --mode levels"):
    Workdir.of(tmp_path).settings(tiny_config)


def test_a_levels_file_under_its_old_name_is_not_read(tiny_config, tmp_path):
  """schedule.json was levels.json's name before 0.1.0; only levels.json is read now."""
  tiny_config.corruption.blur_schedule = "selected"
  path = levels.write_levels(settings_lib.load(tiny_config), tmp_path)
  path.rename(tmp_path / "schedule.json")
  with pytest.raises(errors.MissingError, match="levels.json does not exist; run: .*--mode levels"):
    Workdir.of(tmp_path).settings(tiny_config)


def test_levels_mode_is_for_blur_only(tiny_config, tmp_path):
  tiny_config.corruption.name = "mask"
  with pytest.raises(errors.ConfigError, match="config.corruption.name must be 'blur' for --mode levels"):
    levels.write_levels(settings_lib.load(tiny_config), tmp_path)
  assert not any(tmp_path.iterdir())


def test_training_selects_missing_levels_first(tiny_config, tmp_path):
  tiny_config.corruption.blur_schedule = "selected"
  settings = Workdir.of(tmp_path).settings(tiny_config, resolve_levels=False)
  chosen = levels.select_missing_levels(settings, tmp_path)
  record = json.loads((tmp_path / "levels.json").read_text())
  assert chosen.corruption.blur_sigma_table == tuple(record["sigmas"])
  assert len(record["sigmas"]) == tiny_config.levels.num_levels
  assert levels.select_missing_levels(settings, tmp_path) == chosen  # present: read back, not selected again
  assert Workdir.of(tmp_path).settings(settings).corruption == chosen.corruption
