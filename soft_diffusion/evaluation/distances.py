"""FID, KID and streaming feature statistics: pure NumPy in float64 (re-exported by
`soft_diffusion.evaluation`; also used by `spectral.pixel_kid`)."""

from __future__ import annotations

import dataclasses

import numpy as np


@dataclasses.dataclass
class FeatureStats:
  """Running count, sum and sum of outer products of feature vectors (float64)."""

  dim: int
  count: int = 0
  total: np.ndarray | None = None
  outer: np.ndarray | None = None

  def __post_init__(self):
    if self.total is None:
      self.total = np.zeros(self.dim)
    if self.outer is None:
      self.outer = np.zeros((self.dim, self.dim))

  def update(self, feats) -> FeatureStats:
    x = np.asarray(feats, np.float64)
    if x.ndim != 2 or x.shape[1] != self.dim:
      raise ValueError(f"features must be [N, {self.dim}], got {x.shape}")
    self.count += x.shape[0]
    self.total += x.sum(axis=0)
    self.outer += x.T @ x
    return self

  @classmethod
  def from_moments(cls, mean, cov, count: int) -> FeatureStats:
    """Statistics with a given mean, (unbiased) covariance and count, e.g. read from a file."""
    mean, cov = np.asarray(mean, np.float64), np.asarray(cov, np.float64)
    outer = cov * (count - 1) + count * np.outer(mean, mean)
    return cls(mean.shape[0], int(count), mean * count, outer)

  @classmethod
  def of(cls, feats) -> FeatureStats:
    x = np.asarray(feats)
    return cls(x.shape[1]).update(x)

  @property
  def mean(self) -> np.ndarray:
    return self.total / self.count

  @property
  def cov(self) -> np.ndarray:
    """Unbiased sample covariance (divides by N − 1, as numpy.cov)."""
    if self.count < 2:
      raise ValueError(f"a covariance needs at least 2 feature vectors, got {self.count}")
    mu = self.mean
    return (self.outer - self.count * np.outer(mu, mu)) / (self.count - 1)


def _stats(x) -> FeatureStats:
  return x if isinstance(x, FeatureStats) else FeatureStats.of(x)


def _psd_sqrt(m: np.ndarray) -> np.ndarray:
  w, v = np.linalg.eigh((m + m.T) / 2)
  return (v * np.sqrt(np.clip(w, 0.0, None))) @ v.T


def fid(a, b) -> float:
  """Fréchet distance of Gaussians fitted to feature sets `a` and `b` ([N, d] arrays or FeatureStats)."""
  sa, sb = _stats(a), _stats(b)
  if sa.dim != sb.dim:
    raise ValueError(f"feature dimensions differ: {sa.dim} vs {sb.dim}")
  mu_a, mu_b, cov_a, cov_b = sa.mean, sb.mean, sa.cov, sb.cov
  root_a = _psd_sqrt(cov_a)
  inner = np.linalg.eigvalsh(root_a @ cov_b @ root_a)
  trace_term = np.sqrt(np.clip(inner, 0.0, None)).sum()
  value = float(np.sum((mu_a - mu_b) ** 2) + np.trace(cov_a) + np.trace(cov_b) - 2.0 * trace_term)
  return max(value, 0.0)


def kid(a, b, *, num_subsets: int = 100, subset_size: int = 1000, seed: int = 0) -> tuple[float, float]:
  """(mean, std) over `num_subsets` random subsets of the unbiased MMD² with kernel
  (x·y/d + 1)³. Subsets are drawn without replacement within a subset; `subset_size` is capped
  at the smaller set's size."""
  x, y = np.asarray(a, np.float64), np.asarray(b, np.float64)
  if x.ndim != 2 or y.ndim != 2 or x.shape[1] != y.shape[1]:
    raise ValueError(f"features must be [N, d] and [M, d] with the same d, got {x.shape} and {y.shape}")
  m = min(subset_size, len(x), len(y))
  if m < 2:
    raise ValueError(f"KID needs at least 2 feature vectors per set, got {len(x)} and {len(y)}")
  if num_subsets < 1:
    raise ValueError(f"num_subsets must be >= 1, got {num_subsets}")
  d = x.shape[1]
  rng = np.random.default_rng(seed)
  values = []
  for _ in range(num_subsets):
    xs = x[rng.choice(len(x), m, replace=False)]
    ys = y[rng.choice(len(y), m, replace=False)]
    kxx = (xs @ xs.T / d + 1.0) ** 3
    kyy = (ys @ ys.T / d + 1.0) ** 3
    kxy = (xs @ ys.T / d + 1.0) ** 3
    off = m * (m - 1)
    values.append((kxx.sum() - np.trace(kxx)) / off + (kyy.sum() - np.trace(kyy)) / off - 2.0 * kxy.sum() / (m * m))
  return float(np.mean(values)), float(np.std(values))
