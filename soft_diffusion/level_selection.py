"""Corruption-level selection (SPEC §3): which K blur levels to train and sample on.

A pure host-side (numpy, float64) function of the data's power spectrum; no files, no configs.
The distance between levels a, b is the synchronous-coupling bound on the 2-Wasserstein distance,

    d(a, b)² = Σ_k (m_a(k) - m_b(k))² P(k) + n (s_a - s_b)²,

for operators that are diagonal in a known basis with multipliers m (DCT for blur, pixels for
masking), P the data's mean power in that basis and n the number of pixel values. Among the
candidates, edges i→j (i < j) exist when d(i, j) ≤ ε; ε is the smallest value for which the
fewest-hop path from the first to the last candidate has at most K-1 hops, and the returned
path has exactly K-1 hops under that ε (ties broken by the smallest sum of squared hops).

`select_blur_levels` pairs candidate i (of M, log-spaced in σ_B) with the noise level given
for it (`noise_stds[i]`); `--mode schedule` (select_levels.py) passes s_t at t = i/(M-1).
"""

from __future__ import annotations

import dataclasses

import numpy as np

from soft_diffusion import dct
from soft_diffusion.schedules import LogBlurSchedule, TableBlurSchedule


@dataclasses.dataclass(frozen=True)
class LevelSelection:
  """Result of `select_levels`: `indices` into the candidates (increasing, first and last
  included), the threshold `epsilon`, and the distance of each of the K-1 hops."""

  indices: np.ndarray
  epsilon: float
  hop_distances: np.ndarray


def level_distances(
  multipliers: np.ndarray,
  power: np.ndarray,
  noise_stds: np.ndarray | None = None,
  num_values: int | None = None,
) -> np.ndarray:
  """Pairwise d(i, j) (SPEC §3) between M candidate levels of a diagonal operator.

  Args:
    multipliers: [M, *S] diagonal of each candidate C in a fixed orthonormal basis.
    power: [*S] mean power E[X̂²] of the data per basis element, summed over channels.
    noise_stds: [M] s at each candidate, or None for the operator term alone.
    num_values: n, the number of pixel values (H·W·C) that the noise term counts; needed
      with noise_stds.
  Returns:
    [M, M] float64 symmetric distances with a zero diagonal.
  """
  multipliers = np.asarray(multipliers, np.float64)
  power = np.asarray(power, np.float64)
  if multipliers.ndim < 2 or multipliers.shape[1:] != power.shape:
    raise ValueError(f"multipliers must be [M, *S] with S = power.shape {power.shape}, got {multipliers.shape}")
  if np.any(power < 0) or not np.all(np.isfinite(power)):
    raise ValueError("power must be finite and >= 0 everywhere")
  m = multipliers.reshape(multipliers.shape[0], -1)
  p = power.reshape(-1)
  # Σ_k (m_a - m_b)² P = Σ m_a² P + Σ m_b² P - 2 Σ m_a m_b P, computed with one matmul.
  weighted = m * p
  gram = weighted @ m.T
  diag = np.diag(gram)
  sq = diag[:, None] + diag[None, :] - 2.0 * gram
  if noise_stds is not None:
    s = np.asarray(noise_stds, np.float64)
    if s.shape != (m.shape[0],):
      raise ValueError(f"noise_stds must have shape [M] = ({m.shape[0]},), got {s.shape}")
    if num_values is None or num_values < 1:
      raise ValueError(f"num_values must be a positive int when noise_stds is given, got {num_values}")
    sq = sq + num_values * np.square(s[:, None] - s[None, :])
  dist = np.sqrt(np.maximum(sq, 0.0))
  np.fill_diagonal(dist, 0.0)
  return dist


def fewest_hops(distances: np.ndarray, epsilon: float) -> float:
  """Fewest hops from candidate 0 to candidate M-1 over forward edges with d ≤ epsilon (inf if none)."""
  num = distances.shape[0]
  hops = np.full(num, np.inf)
  hops[0] = 0.0
  for j in range(1, num):
    reachable = distances[:j, j] <= epsilon
    if reachable.any():
      hops[j] = 1.0 + hops[:j][reachable].min()
  return hops[-1]


def select_levels(distances: np.ndarray, num_levels: int) -> LevelSelection:
  """Chooses `num_levels` of M candidates (ordered from least to most corrupted), SPEC §3.

  Args:
    distances: [M, M] symmetric distances between candidates, e.g. from `level_distances`.
    num_levels: K, the number of levels to keep (2 ≤ K ≤ M).
  Returns:
    LevelSelection with K increasing indices from 0 to M-1.
  """
  distances = np.asarray(distances, np.float64)
  if distances.ndim != 2 or distances.shape[0] != distances.shape[1]:
    raise ValueError(f"distances must be a square [M, M] matrix, got shape {distances.shape}")
  num = distances.shape[0]
  if not isinstance(num_levels, (int, np.integer)) or not 2 <= num_levels <= num:
    raise ValueError(f"num_levels must be an int in [2, M = {num}], got {num_levels!r}")
  if not np.all(np.isfinite(distances)) or np.any(distances < 0):
    raise ValueError("distances must be finite and >= 0")
  max_hops = num_levels - 1

  # Smallest ε (among the forward-edge distances) whose fewest-hop path has <= K-1 hops;
  # the hop count never increases with ε, so bisect over the sorted candidates.
  candidates = np.unique(distances[np.triu_indices(num, k=1)])
  lo, hi = 0, len(candidates) - 1
  while lo < hi:
    mid = (lo + hi) // 2
    if fewest_hops(distances, candidates[mid]) <= max_hops:
      hi = mid
    else:
      lo = mid + 1
  epsilon = float(candidates[lo])

  # Among paths with exactly K-1 hops under ε, keep the one with the smallest Σ d²: it spreads
  # the slack over all hops instead of leaving it at one end.
  allowed = np.triu(distances <= epsilon, k=1)
  step_cost = np.where(allowed, np.square(distances), np.inf)
  cost = np.full(num, np.inf)
  cost[0] = 0.0
  parents = []
  for _ in range(max_hops):
    total = cost[:, None] + step_cost
    parents.append(np.argmin(total, axis=0))
    cost = np.min(total, axis=0)
  if not np.isfinite(cost[-1]):
    raise ValueError(
      f"no path with exactly {max_hops} hops within epsilon = {epsilon:.4g}; distances must grow "
      "with the gap between candidates (monotone corruption levels)"
    )
  path = [num - 1]
  for parent in reversed(parents):
    path.append(int(parent[path[-1]]))
  indices = np.asarray(path[::-1])
  hop_distances = distances[indices[:-1], indices[1:]]
  return LevelSelection(indices=indices, epsilon=epsilon, hop_distances=hop_distances)


@dataclasses.dataclass(frozen=True)
class BlurLevels:
  """Selected blur levels: `sigmas` [K] at t_k = k/(K-1), plus the selection details."""

  sigmas: np.ndarray
  selection: LevelSelection
  candidate_sigmas: np.ndarray

  def schedule(self) -> TableBlurSchedule:
    """The piecewise-linear σ_B(t) through the selected levels."""
    return TableBlurSchedule(tuple(float(s) for s in self.sigmas))


def select_blur_levels(
  power_spectrum: np.ndarray,
  *,
  sigma_min: float = 0.01,
  sigma_max: float = 23.0,
  num_candidates: int = 256,
  num_levels: int = 32,
  noise_stds: np.ndarray | None = None,
) -> BlurLevels:
  """Blur levels for a dataset with mean DCT power spectrum `power_spectrum`, SPEC §3.

  Args:
    power_spectrum: [H, W, C] mean of DCT2(x_0)² per coefficient and channel (orthonormal DCT).
    sigma_min, sigma_max: range of the log-spaced candidate blur levels, in pixels.
    num_candidates: M candidate levels.
    num_levels: K levels to keep.
    noise_stds: optional [M] noise level s at each candidate (adds the n (s_a - s_b)² term).
  Returns:
    BlurLevels; `.schedule()` gives the σ_B(t) table for training and sampling.
  """
  power_spectrum = np.asarray(power_spectrum, np.float64)
  if power_spectrum.ndim != 3:
    raise ValueError(f"power_spectrum must have shape [H, W, C], got {power_spectrum.shape}")
  LogBlurSchedule(sigma_min, sigma_max)  # validates the range
  if not isinstance(num_candidates, (int, np.integer)) or num_candidates < 2:
    raise ValueError(f"num_candidates must be an int >= 2, got {num_candidates!r}")
  height, width, channels = power_spectrum.shape
  candidate_sigmas = np.geomspace(sigma_min, sigma_max, num_candidates)
  multipliers = dct.blur_multipliers_2d(candidate_sigmas, height, width)
  distances = level_distances(
    multipliers, power_spectrum.sum(axis=-1), noise_stds, num_values=height * width * channels
  )
  selection = select_levels(distances, num_levels)
  return BlurLevels(sigmas=candidate_sigmas[selection.indices], selection=selection, candidate_sigmas=candidate_sigmas)
