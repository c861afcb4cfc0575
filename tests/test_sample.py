"""--mode sample: deterministic images, the figures, either prior, and 8 devices = 1 device."""

import numpy as np
from support import TRAINED_STEPS, cli

from soft_diffusion import sample
from soft_diffusion import settings as settings_lib


def test_sampling_twice_gives_identical_images(tiny_config, trained_run):
  first = np.load(sample.write_samples(settings_lib.load(tiny_config, trained_run), trained_run))["images"]
  second = np.load(sample.write_samples(settings_lib.load(tiny_config, trained_run), trained_run))["images"]
  size = tiny_config.data.image_size
  assert first.shape == (tiny_config.sample.num_images, size, size, 1) and first.dtype == np.uint8
  np.testing.assert_array_equal(first, second)


def test_sample_writes_images_and_figures_with_the_forward_prior(tiny_config, trained_run):
  tiny_config.sample.prior = "forward"
  path = sample.write_samples(settings_lib.load(tiny_config, trained_run), trained_run, step=TRAINED_STEPS)
  assert np.load(path)["images"].shape[0] == tiny_config.sample.num_images
  for name, least in (("samples.png", 200), ("trajectory.png", 5_000), ("forward.png", 5_000)):
    assert (trained_run / "samples" / name).stat().st_size > least, name


def test_sampling_split_over_8_devices_gives_the_images_of_one(tiny_config, tiny_flags, trained_run):
  proc = cli(trained_run, *tiny_flags, "--mode=sample", env={"XLA_FLAGS": "--xla_force_host_platform_device_count=8"})
  assert proc.returncode == 0, proc.stderr[-2000:]
  assert "devices: 8 (cpu)" in proc.stderr
  eight = np.load(trained_run / "samples" / "samples.npz")["images"]
  one = np.load(sample.write_samples(settings_lib.load(tiny_config, trained_run), trained_run))["images"]
  np.testing.assert_array_equal(eight, one)
