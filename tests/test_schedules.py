"""Noise and blur-level schedules (docs/method.md §1.1, §1.3)."""

import jax.numpy as jnp
import numpy as np
import pytest

from soft_diffusion import schedules


def test_clipped_geometric_noise_values():
  s = schedules.clipped_geometric_noise(0.01, 0.1, 0.25)
  got = np.asarray(s(jnp.array([0.0, 0.125, 0.25, 0.6, 1.0])))
  np.testing.assert_allclose(got, [0.01, 0.01 * np.sqrt(10.0), 0.1, 0.1, 0.1], rtol=1e-6)


def test_geometric_noise_is_ve_sde():
  s = schedules.geometric_noise(0.01, 90.0)
  t = np.linspace(0, 1, 11)
  np.testing.assert_allclose(s(jnp.asarray(t)), 0.01 * 9000.0**t, rtol=1e-5)


def test_constant_noise():
  np.testing.assert_allclose(schedules.constant_noise(0.05)(jnp.linspace(0, 1, 5)), 0.05, rtol=1e-6)


@pytest.mark.parametrize(
  "kwargs, match",
  [
    (dict(std_min=0.0, std_max=0.1), "std_min must be a finite number > 0"),
    (dict(std_min=-1.0, std_max=0.1), "std_min must be a finite number > 0"),
    (dict(std_min=0.1, std_max=0.01), "s_t may not decrease"),
    (dict(std_min=0.01, std_max=0.1, clip_t=0.0), r"clip_t must be in \(0, 1\]"),
  ],
)
def test_noise_schedule_rejects_bad_values(kwargs, match):
  with pytest.raises(ValueError, match=match):
    schedules.GeometricNoiseSchedule(**kwargs)


def test_log_and_table_blur_schedules():
  log = schedules.LogBlurSchedule(0.01, 23.0)
  np.testing.assert_allclose(log(jnp.array([0.0, 0.5, 1.0])), [0.01, np.sqrt(0.23), 23.0], rtol=1e-5)
  table = schedules.TableBlurSchedule((0.0, 1.0, 3.0))  # knots at t = 0, 0.5, 1
  np.testing.assert_allclose(table(jnp.array([0.0, 0.25, 0.5, 0.75, 1.0])), [0.0, 0.5, 1.0, 2.0, 3.0], rtol=1e-6)
  with pytest.raises(ValueError, match="at least 2 levels"):
    schedules.TableBlurSchedule((1.0,))
  with pytest.raises(ValueError, match="sigma_min must be a finite number > 0"):
    schedules.LogBlurSchedule(0.0, 1.0)
