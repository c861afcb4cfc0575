"""Cheap sample-quality measures against real images, for datasets without a known law (digits).

Two measures that need no Inception network and cost milliseconds on a CPU, so a test can afford
them (the quality guard of tests/test_quality.py) and a study can compute them at every point:

* DCT ring variances. Per orthonormal 2-D DCT coefficient (k, l) and channel, the variance over
  the images, averaged over each ring r = k + l: `ring_variances`. `ring_report` compares samples
  with real images: the ratio per ring, the ratio over the `high` band (the rings from 0.75 H to
  1.25 H: fine detail the data has), and `top_excess_std`, the standard deviation in excess of
  the data's over the `top` band (rings ≥ 1.25 H, where images upsampled 2× carry almost no
  power): noise a sampler leaves, which a coarse feature space does not see.
* Pixel-space KID (`pixel_kid`): the unbiased MMD² with the cubic polynomial kernel of `kid`,
  on the flattened pixel values in [-1, 1] (D = H·W·C). For small grey images (16×16 digits) the
  pixels are a complete description, so this KID sees shape and noise alike; it is not
  comparable with Inception KID.

Pure NumPy (float64); images are [N, H, W, C] in [-1, 1] (float) or uint8 in [0, 255].
"""

from __future__ import annotations

from typing import Any

import numpy as np

from soft_diffusion import dct
from soft_diffusion.evaluation.distances import kid

HIGH_BAND = (0.75, 1.25)  # the `high` band: rings r with 0.75 H <= r < 1.25 H
TOP_BAND_START = 1.25  # the `top` band: rings r >= 1.25 H


def as_float(images: Any) -> np.ndarray:
  """[N, H, W, C] float64 in [-1, 1]: uint8 images are mapped from [0, 255]."""
  images = np.asarray(images)
  if images.ndim != 4:
    raise ValueError(f"images must be [N, H, W, C], got shape {images.shape}")
  if images.dtype == np.uint8:
    return images.astype(np.float64) / 127.5 - 1.0
  return images.astype(np.float64)


def coefficient_variances(images: Any) -> np.ndarray:
  """Variance over the images of each DCT coefficient, averaged over channels: [H, W]."""
  x = as_float(images)
  if x.shape[0] < 2:
    raise ValueError(f"need at least 2 images, got {x.shape[0]}")
  return dct.dct2_host(x).var(axis=0, ddof=1).mean(axis=-1)


def rings(height: int, width: int) -> np.ndarray:
  """Ring index r = k + l of each DCT coefficient: int [H, W]."""
  return np.add.outer(np.arange(height), np.arange(width))


def ring_variances(images: Any) -> np.ndarray:
  """Mean coefficient variance over each ring r = k + l: float64 [H + W − 1]."""
  var = coefficient_variances(images)
  ring = rings(*var.shape).ravel()
  return np.bincount(ring, var.ravel()) / np.bincount(ring)


def band_masks(height: int, width: int) -> dict[str, np.ndarray]:
  """Boolean [H, W] masks of the `high` and `top` bands (module docstring)."""
  r = rings(height, width)
  lo, hi = HIGH_BAND
  return {"high": (r >= lo * height) & (r < hi * height), "top": r >= TOP_BAND_START * height}


def ring_report(samples: Any, reference: Any) -> dict[str, Any]:
  """Samples against real images (both [N, H, W, C]), JSON-ready:

  `ring_ratios` (sample / reference variance per ring), `ratio_high` (summed variance over the
  high band, sample / reference) and `top_excess_std` (√max(mean sample variance − mean
  reference variance, 0) over the top band, in [-1, 1] units).
  """
  vs, vr = coefficient_variances(samples), coefficient_variances(reference)
  if vs.shape != vr.shape:
    raise ValueError(f"samples and reference must have the same image size, got {vs.shape} and {vr.shape}")
  masks = band_masks(*vs.shape)
  ring = rings(*vs.shape).ravel()
  ring_s = np.bincount(ring, vs.ravel()) / np.bincount(ring)
  ring_r = np.bincount(ring, vr.ravel()) / np.bincount(ring)
  top = masks["top"]
  return {
    "ring_ratios": [float(a / b) if b > 0 else float("nan") for a, b in zip(ring_s, ring_r, strict=True)],
    "ratio_high": float(vs[masks["high"]].sum() / vr[masks["high"]].sum()),
    "top_excess_std": float(np.sqrt(max(vs[top].mean() - vr[top].mean(), 0.0))) if top.any() else 0.0,
    "top_std": float(np.sqrt(vs[top].mean())) if top.any() else 0.0,
  }


def pixel_kid(samples: Any, reference: Any, *, num_subsets: int = 100, subset_size: int = 1000, seed: int = 0):
  """KID on pixel values (module docstring): (mean, std) over subsets, as `evaluation.kid`."""

  a, b = as_float(samples), as_float(reference)
  if a.shape[1:] != b.shape[1:]:
    raise ValueError(f"samples and reference must have the same image shape, got {a.shape[1:]} and {b.shape[1:]}")
  return kid(a.reshape(len(a), -1), b.reshape(len(b), -1), num_subsets=num_subsets, subset_size=subset_size, seed=seed)
