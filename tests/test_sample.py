"""--mode sample: deterministic images, the figures, either prior, and 8 devices = 1 device."""

import dataclasses

import numpy as np
from support import TRAINED_STEPS, cli

from soft_diffusion.run import settings as settings_lib
from soft_diffusion.run.modes import sample
from soft_diffusion.run.workdir import Workdir


def test_sampling_twice_gives_identical_images(tiny_config, trained_run):
  first = np.load(sample.write_samples(Workdir.of(trained_run).settings(tiny_config), trained_run))["images"]
  second = np.load(sample.write_samples(Workdir.of(trained_run).settings(tiny_config), trained_run))["images"]
  size = tiny_config.data.image_size
  assert first.shape == (tiny_config.sample.num_images, size, size, 1) and first.dtype == np.uint8
  np.testing.assert_array_equal(first, second)


def test_sample_writes_images_and_figures_with_the_forward_prior(tiny_config, trained_run):
  tiny_config.sample.prior = "forward"
  path = sample.write_samples(Workdir.of(trained_run).settings(tiny_config), trained_run, step=TRAINED_STEPS)
  assert np.load(path)["images"].shape[0] == tiny_config.sample.num_images
  assert path.parent == trained_run / "samples" / f"momentum_3_forward_noise_step{TRAINED_STEPS}"
  for name, least in (("samples.png", 200), ("trajectory.png", 5_000), ("forward.png", 5_000)):
    assert (path.parent / name).stat().length > least, name


def test_sampling_split_over_8_devices_gives_the_images_of_one(tiny_config, tiny_flags, trained_run):
  proc = cli(trained_run, *tiny_flags, "--mode=sample", env={"XLA_FLAGS": "--xla_force_host_platform_device_count=8"})
  assert proc.returncode == 0, proc.stderr[-2000:]
  assert "devices: 8 (cpu)" in proc.stderr
  eight = np.load(proc.stdout.strip().splitlines()[-1])["images"]  # main prints the .npz it wrote
  one = np.load(sample.write_samples(Workdir.of(trained_run).settings(tiny_config), trained_run))["images"]
  np.testing.assert_array_equal(eight, one)


def test_draws_with_other_settings_go_to_folders_of_their_own(tiny_config):
  """A second `--mode sample` with another sampler, NFE, end or seed does not overwrite the first."""
  cfg = settings_lib.load(tiny_config).sample
  names = {
    sample.draw_name(cfg, 4),
    sample.draw_name(cfg, 2),
    sample.draw_name(dataclasses.replace(cfg, sampler="multistep_sde", num_steps=20), 4),
    sample.draw_name(dataclasses.replace(cfg, final="denoise"), 4),
    sample.draw_name(dataclasses.replace(cfg, seed=1), 4),
    sample.draw_name(dataclasses.replace(cfg, sampler="multistep", order=3, rho=5.0), 4),
  }
  assert len(names) == 6, names
  assert sample.draw_name(cfg, 4) == "momentum_3_forward_noise_step4"
  assert sample.draw_name(dataclasses.replace(cfg, sampler="multistep", order=3, rho=5.0), 4) == (
    "multistep_3_forward_noise_rho-5_order-3_step4"
  )


def test_tune_grid_writes_a_grid_that_sampling_uses(tiny_config, trained_run, tmp_path):
  import json
  import shutil

  import pytest

  from soft_diffusion import errors
  from soft_diffusion.run.modes import tune_grid

  workdir = tmp_path / "run"
  shutil.copytree(trained_run, workdir)
  tiny_config.sample.sampler = "multistep"
  tiny_config.tune.num_steps = (3,)
  tiny_config.tune.num_images = 4
  tiny_config.tune.reference_steps = 8
  tiny_config.tune.iterations = 3
  settings = Workdir.of(workdir).settings(tiny_config, resolve_grid=False)
  path = tune_grid.tune_grid(settings, workdir)
  record = json.loads(path.read_text())
  assert sorted(record["grids"]) == ["order2/exact/final_noise/N3"]
  grid = record["grids"]["order2/exact/final_noise/N3"]
  times = np.asarray(grid["times"])
  assert len(times) == 4 and times[0] == 1.0 and times[-1] == 0.0 and np.all(np.diff(times) < 0)
  assert grid["objective"] <= grid["start_objective"] and len(grid["losses"]) == 4
  assert (workdir / "time_grid.png").stat().st_size > 5_000

  tiny_config.sample.time_grid = "tuned"
  settings = Workdir.of(workdir).settings(tiny_config)
  assert sample.sampler_of(settings.sample).keywords["time_grid"] == tuple(
    record["grids"]["order2/exact/final_noise/N3"]["times"]
  )
  images = np.load(sample.write_samples(settings, workdir))["images"]
  assert images.shape[0] == tiny_config.sample.num_images
  with pytest.raises(errors.ConfigError, match="no grid for sample.num_steps = 5 \\(tuned: 3\\)"):
    sample.sampler_of(dataclasses.replace(settings.sample, num_steps=5))
  tiny_config.sample.order = 3
  with pytest.raises(errors.ConfigError, match="holds no grid for order3/exact/final_noise/N\\*"):
    Workdir.of(workdir).settings(tiny_config)
