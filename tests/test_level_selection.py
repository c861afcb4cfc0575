"""Corruption-level selection (SPEC §3) on a power spectrum: `soft_diffusion.level_selection`."""

import numpy as np
import pytest
import scipy.sparse.csgraph

from soft_diffusion import dct, level_selection


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
    level_selection.select_blur_levels(
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
  dist = level_selection.level_distances(mult, power.sum(-1), noise, num_values=16 * 16 * 3)
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
  sel = level_selection.select_levels(np.abs(x[:, None] - x[None, :]), num_levels=4)
  np.testing.assert_array_equal(sel.indices, [0, 10, 20, 30])
  assert sel.epsilon == 10.0


def test_select_levels_rejects_bad_input():
  d = np.abs(np.arange(5.0)[:, None] - np.arange(5.0)[None, :])
  with pytest.raises(ValueError, match=r"num_levels must be an int in \[2, M = 5\]"):
    level_selection.select_levels(d, 6)
  with pytest.raises(ValueError, match="square"):
    level_selection.select_levels(d[:3], 2)
  with pytest.raises(ValueError, match=r"power_spectrum must have shape \[H, W, C\]"):
    level_selection.select_blur_levels(np.ones((4, 4)))
