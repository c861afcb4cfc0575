"""Corruption-level selection (docs/method.md §3): which K blur levels to train and sample on.

A pure host-side (numpy, float64) function of the data's power spectrum; no files, no configs.
The distance between levels a, b is the synchronous-coupling bound on the 2-Wasserstein distance,

    d(a, b)² = Σ_k (m_a(k) - m_b(k))² P(k) + n (s_a - s_b)²,

for operators that are diagonal in a known basis with multipliers m (DCT for blur, pixels for
masking), P the data's mean power in that basis and n the number of pixel values. Among the
candidates, edges i→j (i < j) exist when d(i, j) ≤ ε; ε is the smallest value for which a path
of K-1 hops leads from the first to the last candidate (so no path with fewer hops exists under
a smaller ε), and of those paths the one with the smallest sum of squared hops is returned.

Noise pairing (docs/method.md §3): selected level k sits at t_k = k/(K-1) and is trained and sampled with
s(t_k). How the noise enters the selection is `select_blur_levels`' `pairing` (PAIRINGS):

* 'joint': the (σ_B, s) pairs are selected jointly: the blur part of a hop depends on the two
  candidates, its noise part n (s(t_k) - s(t_{k-1}))² on the hop's position only, and every whole
  hop stays within ε (`select_levels` with `hop_noise`). Where the noise ramps fast, a hop can
  be spent on noise alone (Gaussian fields: hops 1-7 moved σ_B from 0.010 to 0.012 px) or the
  blur can jump where the noise hop is cheap (digits: 0.01 -> 0.35 px in one hop).
* 'joint_min_blur': 'joint', and every hop also carries at least `min_blur_share` of its length
  in blur (d_blur ≥ share · hop length), so no hop is degenerate (noise alone).
* 'candidate': candidate i (of M, log-spaced in σ_B) carries s(i/(M-1)), the noise of its own
  index, and the distances include n (s_i - s_j)² (the selection before the joint one: the
  digits' first levels 0.01, 0.024, 0.035, 0.045, then 0.36 px).
* 'blur': the blur term alone (noise as configured, not part of the distance): every hop moves
  the blur by the same W2 bound.

`--mode levels` (levels.py) passes the configured noise schedule and `levels.pairing`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

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
  """Pairwise d(i, j) (docs/method.md §3) between M candidate levels of a diagonal operator.

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


def _hop_lengths(squared: np.ndarray, extra: np.ndarray) -> np.ndarray:
  """[K-1, M, M]: hop k from candidate i to j costs sqrt(d(i, j)² + extra[k]); backward hops inf."""
  forward = np.triu(np.ones(squared.shape, bool), k=1)
  return np.where(forward, np.sqrt(squared[None] + extra[:, None, None]), np.inf)


def _reaches_the_end(hops: np.ndarray, epsilon: float) -> bool:
  """Whether some path 0 -> M-1 of exactly len(hops) hops keeps hop k within epsilon."""
  reach = np.zeros(hops.shape[1], bool)
  reach[0] = True
  for hop in hops:
    reach = (reach[:, None] & (hop <= epsilon)).any(axis=0)
  return bool(reach[-1])


def select_levels(
  distances: np.ndarray,
  num_levels: int,
  *,
  hop_noise: np.ndarray | None = None,
  min_blur_share: float = 0.0,
) -> LevelSelection:
  """Chooses `num_levels` of M candidates (ordered from least to most corrupted), docs/method.md §3.

  The K levels are candidates i_0 = 0 < i_1 < ... < i_{K-1} = M-1, and hop k (from i_{k-1} to
  i_k) has length sqrt(d(i_{k-1}, i_k)² + hop_noise[k-1]). ε is the smallest hop length for which
  such a path exists with every hop within ε; of those paths, the one with the smallest sum of
  squared hops is returned (it spreads the slack over all hops instead of leaving it at one end).
  Without `hop_noise` this is the fewest-hop path of docs/method.md §3 with ε tuned to K levels.

  Args:
    distances: [M, M] symmetric distances between candidates, e.g. from `level_distances`.
    num_levels: K, the number of levels to keep (2 ≤ K ≤ M).
    hop_noise: optional [K-1] squared distance added to each hop whatever its candidates: the
      noise term n (s_k - s_{k-1})² when level k carries the noise s_k of its own position.
    min_blur_share: in [0, 1); > 0 allows a hop only when d(i, j) ≥ min_blur_share × its
      length, i.e. the candidates' own distance is at least that share of the hop.
  Returns:
    LevelSelection with K increasing indices from 0 to M-1 and the K-1 hop lengths.
  """
  distances = np.asarray(distances, np.float64)
  if distances.ndim != 2 or distances.shape[0] != distances.shape[1]:
    raise ValueError(f"distances must be a square [M, M] matrix, got shape {distances.shape}")
  num = distances.shape[0]
  if not isinstance(num_levels, (int, np.integer)) or not 2 <= num_levels <= num:
    raise ValueError(f"num_levels must be an int in [2, M = {num}], got {num_levels!r}")
  if not np.all(np.isfinite(distances)) or np.any(distances < 0):
    raise ValueError("distances must be finite and >= 0")
  extra = np.zeros(num_levels - 1) if hop_noise is None else np.asarray(hop_noise, np.float64)
  if extra.shape != (num_levels - 1,) or not np.all(np.isfinite(extra)) or np.any(extra < 0):
    raise ValueError(f"hop_noise must be [K-1] = ({num_levels - 1},) finite values >= 0, got shape {extra.shape}")
  if not 0.0 <= min_blur_share < 1.0:
    raise ValueError(f"min_blur_share must be in [0, 1), got {min_blur_share!r}")
  hops = _hop_lengths(np.square(distances), extra)
  if min_blur_share > 0:
    hops = np.where(distances[None] >= min_blur_share * hops, hops, np.inf)

  # Every hop length is a possible ε; whether a path exists only grows with ε, so bisect.
  candidates = np.unique(hops[np.isfinite(hops)])
  lo, hi = 0, len(candidates) - 1
  if not len(candidates) or not _reaches_the_end(hops, candidates[hi]):
    raise ValueError(
      f"no path with exactly {num_levels - 1} hops: need at least num_levels candidates"
      + (f" (and hops that carry a blur share of {min_blur_share})" if min_blur_share > 0 else "")
    )
  while lo < hi:
    mid = (lo + hi) // 2
    if _reaches_the_end(hops, candidates[mid]):
      hi = mid
    else:
      lo = mid + 1
  epsilon = float(candidates[lo])

  cost = np.full(num, np.inf)
  cost[0] = 0.0
  parents = []
  for hop in hops:
    total = cost[:, None] + np.where(hop <= epsilon, np.square(hop), np.inf)
    parents.append(np.argmin(total, axis=0))
    cost = np.min(total, axis=0)
  path = [num - 1]
  for parent in reversed(parents):
    path.append(int(parent[path[-1]]))
  indices = np.asarray(path[::-1])
  hop_distances = hops[np.arange(num_levels - 1), indices[:-1], indices[1:]]
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


PAIRINGS = ("joint", "joint_min_blur", "candidate", "blur")


def select_blur_levels(
  power_spectrum: np.ndarray,
  *,
  sigma_min: float = 0.01,
  sigma_max: float = 23.0,
  num_candidates: int = 256,
  num_levels: int = 32,
  level_noise_stds: np.ndarray | None = None,
  noise_schedule: Callable[[np.ndarray], np.ndarray] | None = None,
  pairing: str = "joint",
  min_blur_share: float = 0.5,
) -> BlurLevels:
  """Blur levels for a dataset with mean DCT power spectrum `power_spectrum`, docs/method.md §3.

  Level k sits at t_k = k/(K-1) and is trained and sampled with the noise s(t_k). How the noise
  enters the selection is `pairing` (module docstring); the noise comes from `noise_schedule`
  (t -> s_t on numpy arrays) or, for 'joint' and 'joint_min_blur' only, from `level_noise_stds`
  = [s(t_0), ..., s(t_{K-1})]. Without either, every pairing is 'blur'.

  Args:
    power_spectrum: [H, W, C] mean of DCT2(x_0)² per coefficient and channel (orthonormal DCT).
    sigma_min, sigma_max: range of the log-spaced candidate blur levels, in pixels.
    num_candidates: M candidate levels.
    num_levels: K levels to keep.
    level_noise_stds: optional [K] noise level of each selected level, s(t_k).
    noise_schedule: optional s_t as a function of t (numpy in, numpy out).
    pairing: one of PAIRINGS.
    min_blur_share: the share of each hop that must be blur, for 'joint_min_blur'.
  Returns:
    BlurLevels; `.schedule()` gives the σ_B(t) table for training and sampling.
  """
  power_spectrum = np.asarray(power_spectrum, np.float64)
  if power_spectrum.ndim != 3:
    raise ValueError(f"power_spectrum must have shape [H, W, C], got {power_spectrum.shape}")
  LogBlurSchedule(sigma_min, sigma_max)  # validates the range
  if not isinstance(num_candidates, (int, np.integer)) or num_candidates < 2:
    raise ValueError(f"num_candidates must be an int >= 2, got {num_candidates!r}")
  if pairing not in PAIRINGS:
    raise ValueError(f"pairing must be one of {PAIRINGS}, got {pairing!r}")
  if pairing == "candidate" and level_noise_stds is not None and noise_schedule is None:
    raise ValueError("pairing 'candidate' needs noise_schedule (the noise of each candidate's own t)")
  height, width, channels = power_spectrum.shape
  num_values = height * width * channels
  if level_noise_stds is None and noise_schedule is not None:
    level_noise_stds = np.asarray(noise_schedule(np.linspace(0.0, 1.0, num_levels)), np.float64)
  hop_noise = None
  if level_noise_stds is not None and pairing in ("joint", "joint_min_blur"):
    s = np.asarray(level_noise_stds, np.float64)
    if s.shape != (num_levels,):
      raise ValueError(f"level_noise_stds must have shape [K] = ({num_levels},), got {s.shape}")
    hop_noise = num_values * np.square(np.diff(s))
  candidate_sigmas = np.geomspace(sigma_min, sigma_max, num_candidates)
  multipliers = dct.blur_multipliers_2d(candidate_sigmas, height, width)
  candidate_noise = None
  if pairing == "candidate" and noise_schedule is not None:
    candidate_noise = np.asarray(noise_schedule(np.linspace(0.0, 1.0, num_candidates)), np.float64)
  distances = level_distances(multipliers, power_spectrum.sum(axis=-1), candidate_noise, num_values)
  share = min_blur_share if (pairing == "joint_min_blur" and hop_noise is not None) else 0.0
  selection = select_levels(distances, num_levels, hop_noise=hop_noise, min_blur_share=share)
  return BlurLevels(sigmas=candidate_sigmas[selection.indices], selection=selection, candidate_sigmas=candidate_sigmas)
