"""Corruption-level selection (docs/method.md §3) on a power spectrum: `soft_diffusion.level_selection`."""

import numpy as np
import pytest
import scipy.sparse.csgraph

from soft_diffusion import dct, level_selection


def synthetic_spectrum(height=16, width=16, channels=3, alpha=2.0):
  k = np.arange(height)[:, None]
  l = np.arange(width)[None, :]
  power = 1.0 / (1.0 + k**2 + l**2) ** (alpha / 2)
  return np.repeat(power[..., None], channels, axis=-1)


NUM_LEVELS = 12


@pytest.fixture(scope="module")
def selected():
  power = synthetic_spectrum()
  noise = np.geomspace(0.01, 0.1, NUM_LEVELS)  # s(t_k) of each selected level
  return (
    level_selection.select_blur_levels(
      power, sigma_min=0.01, sigma_max=6.0, num_candidates=128, num_levels=NUM_LEVELS, level_noise_stds=noise
    ),
    power,
    noise,
  )


def test_selection_returns_requested_monotone_levels(selected):
  levels, _, _ = selected
  assert levels.sigmas.shape == (NUM_LEVELS,)
  assert np.all(np.diff(levels.sigmas) > 0)
  assert levels.sigmas[0] == pytest.approx(0.01) and levels.sigmas[-1] == pytest.approx(6.0)
  assert np.all(levels.selection.hop_distances <= levels.selection.epsilon)


def test_each_hop_uses_the_noise_of_its_own_levels(selected):
  levels, power, noise = selected
  n = 16 * 16 * 3
  for hop in (0, 3, NUM_LEVELS - 2):
    i, j = levels.selection.indices[hop], levels.selection.indices[hop + 1]
    m = dct.blur_multipliers_2d(levels.candidate_sigmas[[i, j]], 16, 16)
    want = np.sqrt(np.sum((m[0] - m[1]) ** 2 * power.sum(-1)) + n * (noise[hop + 1] - noise[hop]) ** 2)
    assert levels.selection.hop_distances[hop] == pytest.approx(want, rel=1e-9)


def test_joint_selection_is_the_best_path_by_exhaustive_search(rng):
  """On 10 candidates and 4 levels, every path is tried: ε is the smallest largest hop, and the
  path returned has the smallest sum of squared hops among the paths within ε."""
  import itertools

  x = np.sort(rng.uniform(0, 1, 10))
  x[0], x[-1] = 0.0, 1.0
  dist = np.abs(x[:, None] - x[None, :])
  hop_noise = np.array([0.09, 0.0, 0.01])
  sel = level_selection.select_levels(dist, 4, hop_noise=hop_noise)

  def hops(path):
    return np.sqrt(dist[list(path[:-1]), list(path[1:])] ** 2 + hop_noise)

  paths = [(0, *mid, 9) for mid in itertools.combinations(range(1, 9), 2)]
  best = min(hops(p).max() for p in paths)
  assert sel.epsilon == pytest.approx(best, rel=1e-12)
  within = [p for p in paths if hops(p).max() <= sel.epsilon * (1 + 1e-12)]
  assert tuple(sel.indices) == min(within, key=lambda p: np.sum(hops(p) ** 2))
  np.testing.assert_allclose(sel.hop_distances, hops(tuple(sel.indices)), rtol=1e-12)


def test_min_blur_share_is_the_best_path_with_enough_blur_by_exhaustive_search(rng):
  """'joint_min_blur': a hop is allowed only when the candidates' own distance is at least the
  share of its length; on 10 candidates and 4 levels every path is tried, and the noise-heavy
  first hop must move the blur (the plain joint path may not)."""
  import itertools

  x = np.sort(rng.uniform(0, 1, 10))
  x[0], x[-1] = 0.0, 1.0
  dist = np.abs(x[:, None] - x[None, :])
  hop_noise = np.array([0.09, 0.0, 0.01])
  share = 0.6
  sel = level_selection.select_levels(dist, 4, hop_noise=hop_noise, min_blur_share=share)

  def hops(path):
    return np.sqrt(dist[list(path[:-1]), list(path[1:])] ** 2 + hop_noise)

  def enough_blur(path):
    return np.all(dist[list(path[:-1]), list(path[1:])] >= share * hops(path))

  paths = [(0, *mid, 9) for mid in itertools.combinations(range(1, 9), 2) if enough_blur((0, *mid, 9))]
  best = min(hops(p).max() for p in paths)
  assert sel.epsilon == pytest.approx(best, rel=1e-12)
  within = [p for p in paths if hops(p).max() <= sel.epsilon * (1 + 1e-12)]
  assert tuple(sel.indices) == min(within, key=lambda p: np.sum(hops(p) ** 2))
  assert enough_blur(tuple(sel.indices))


def test_pairings_on_a_field_spectrum():
  """A 1/f² spectrum (the Gaussian fields' shape) with the clipped noise ramp 0.01 -> 0.1 over
  the first quarter: 'joint' and 'candidate' spend their first hops on the noise alone (σ_B
  barely moves), 'joint_min_blur' and 'blur' do not; 'joint_min_blur' keeps every hop at least
  half blur."""
  power = synthetic_spectrum(alpha=2.0)
  t = np.linspace(0, 1, NUM_LEVELS)
  noise = lambda t: 0.01 * 10.0 ** np.minimum(np.asarray(t) / 0.25, 1.0)
  kwargs = dict(sigma_min=0.01, sigma_max=6.0, num_candidates=128, num_levels=NUM_LEVELS, noise_schedule=noise)
  out = {p: level_selection.select_blur_levels(power, pairing=p, **kwargs) for p in level_selection.PAIRINGS}
  for pairing in ("joint", "candidate"):
    assert out[pairing].sigmas[1] < 0.03, (pairing, out[pairing].sigmas[:4])
  for pairing in ("joint_min_blur", "blur"):
    assert out[pairing].sigmas[1] > 0.05, (pairing, out[pairing].sigmas[:4])
  levels = out["joint_min_blur"]
  mult = dct.blur_multipliers_2d(levels.candidate_sigmas[levels.selection.indices], 16, 16)
  blur = np.sqrt(np.sum(np.diff(mult, axis=0) ** 2 * power.sum(-1), axis=(1, 2)))
  assert np.all(blur >= 0.5 * levels.selection.hop_distances * (1 - 1e-9))
  n = power.size
  np.testing.assert_allclose(levels.selection.hop_distances, np.sqrt(blur**2 + n * np.diff(noise(t)) ** 2))
  blur_only = level_selection.select_blur_levels(
    power, sigma_min=0.01, sigma_max=6.0, num_candidates=128, num_levels=NUM_LEVELS
  )
  np.testing.assert_array_equal(out["blur"].sigmas, blur_only.sigmas)


def test_without_noise_no_shorter_path_exists_and_epsilon_is_the_smallest():
  power = synthetic_spectrum()
  levels = level_selection.select_blur_levels(
    power, sigma_min=0.01, sigma_max=6.0, num_candidates=128, num_levels=NUM_LEVELS
  )
  mult = dct.blur_multipliers_2d(levels.candidate_sigmas, 16, 16)
  dist = level_selection.level_distances(mult, power.sum(-1))
  eps = levels.selection.epsilon

  def hops(threshold):
    graph = np.triu(dist <= threshold, k=1).astype(float)  # forward edges, weight 1
    return scipy.sparse.csgraph.shortest_path(graph, method="D", directed=True, unweighted=True, indices=0)[-1]

  assert hops(eps) == NUM_LEVELS - 1, "a path with fewer hops exists under the returned epsilon"
  smaller = np.max(dist[dist < eps])
  assert hops(smaller) > NUM_LEVELS - 1, "a smaller epsilon also allows K - 1 hops: epsilon was not tuned"


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
  with pytest.raises(ValueError, match="pairing must be one of"):
    level_selection.select_blur_levels(np.ones((4, 4, 1)), pairing="nearest")
  with pytest.raises(ValueError, match=r"min_blur_share must be in \[0, 1\)"):
    level_selection.select_levels(d, 3, min_blur_share=1.0)
  with pytest.raises(ValueError, match=r"hop_noise must be \[K-1\]"):
    level_selection.select_levels(d, 3, hop_noise=np.ones(3))
