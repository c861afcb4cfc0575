"""Noise and blur-level schedules (SPEC §1.3) and corruption-level selection (SPEC §3)."""

import jax.numpy as jnp
import numpy as np
import pytest
import scipy.sparse.csgraph

from soft_diffusion import dct, schedules


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


# ---- level selection -----------------------------------------------------------------------


def synthetic_spectrum(height=16, width=16, channels=3, alpha=2.0):
  k = np.arange(height)[:, None]
  l = np.arange(width)[None, :]
  power = 1.0 / (1.0 + k**2 + l**2) ** (alpha / 2)
  return np.repeat(power[..., None], channels, axis=-1)


@pytest.fixture(scope="module")
def selected():
  power = synthetic_spectrum()
  noise = np.geomspace(0.01, 0.1, 128)
  return (
    schedules.select_blur_levels(
      power, sigma_min=0.01, sigma_max=6.0, num_candidates=128, num_levels=12, noise_stds=noise
    ),
    power,
    noise,
  )


def test_selection_returns_requested_monotone_levels(selected):
  levels, _, _ = selected
  assert levels.sigmas.shape == (12,)
  assert np.all(np.diff(levels.sigmas) > 0)
  assert levels.sigmas[0] == pytest.approx(0.01) and levels.sigmas[-1] == pytest.approx(6.0)
  assert np.all(levels.selection.hop_distances <= levels.selection.epsilon)


def test_selection_hop_distances_match_the_closed_form(selected):
  levels, power, noise = selected
  i, j = levels.selection.indices[3], levels.selection.indices[4]
  m = dct.blur_multipliers_2d(levels.candidate_sigmas[[i, j]], 16, 16)
  want = np.sqrt(np.sum((m[0] - m[1]) ** 2 * power.sum(-1)) + 16 * 16 * 3 * (noise[i] - noise[j]) ** 2)
  assert levels.selection.hop_distances[3] == pytest.approx(want, rel=1e-9)


def test_no_shorter_path_exists_and_epsilon_is_the_smallest(selected):
  levels, power, noise = selected
  mult = dct.blur_multipliers_2d(levels.candidate_sigmas, 16, 16)
  dist = schedules.level_distances(mult, power.sum(-1), noise, num_values=16 * 16 * 3)
  eps = levels.selection.epsilon

  def hops(threshold):
    graph = np.triu(dist <= threshold, k=1).astype(float)  # forward edges, weight 1
    return scipy.sparse.csgraph.shortest_path(graph, method="D", directed=True, unweighted=True, indices=0)[-1]

  assert hops(eps) == 11, "a path with fewer hops exists under the returned epsilon"
  smaller = np.max(dist[dist < eps])
  assert hops(smaller) > 11, "a smaller epsilon also allows 11 hops: epsilon was not tuned"


def test_select_levels_on_a_line():
  # Points on a line: d(i, j) = |x_i - x_j|. With evenly spaced x, K levels are evenly spaced.
  x = np.arange(31, dtype=float)
  sel = schedules.select_levels(np.abs(x[:, None] - x[None, :]), num_levels=4)
  np.testing.assert_array_equal(sel.indices, [0, 10, 20, 30])
  assert sel.epsilon == 10.0


def test_select_levels_rejects_bad_input():
  d = np.abs(np.arange(5.0)[:, None] - np.arange(5.0)[None, :])
  with pytest.raises(ValueError, match=r"num_levels must be an int in \[2, M = 5\]"):
    schedules.select_levels(d, 6)
  with pytest.raises(ValueError, match="square"):
    schedules.select_levels(d[:3], 2)
  with pytest.raises(ValueError, match=r"power_spectrum must have shape \[H, W, C\]"):
    schedules.select_blur_levels(np.ones((4, 4)))
