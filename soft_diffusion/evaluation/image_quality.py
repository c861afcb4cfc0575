"""PSNR and SSIM of restored images against the truth (NumPy, float64).

* `psnr(x, ref)`: 10 log10(range² / MSE) per image, range 2 for images in [-1, 1].
* `ssim(x, ref)`: Wang et al. (2004) with their constants K1 = 0.01, K2 = 0.03 and an 11-tap
  Gaussian window of σ = 1.5 px, applied with reflecting borders so that small images (16×16
  digits) keep every pixel; the SSIM map is averaged over pixels and channels, per image.
"""

from __future__ import annotations

from typing import Any

import numpy as np

DATA_RANGE = 2.0  # images in [-1, 1]


def _check(x: Any, ref: Any) -> tuple[np.ndarray, np.ndarray]:
  x, ref = np.asarray(x, np.float64), np.asarray(ref, np.float64)
  if x.shape != ref.shape or x.ndim != 4:
    raise ValueError(f"images and references must both be [N, H, W, C] of one shape, got {x.shape} and {ref.shape}")
  return x, ref


def psnr(x: Any, ref: Any, data_range: float = DATA_RANGE) -> np.ndarray:
  """PSNR in dB per image, [N]."""
  x, ref = _check(x, ref)
  mse = np.mean((x - ref) ** 2, axis=(1, 2, 3))
  return 10.0 * np.log10(data_range**2 / np.maximum(mse, 1e-20))


def _window(sigma: float = 1.5, taps: int = 11) -> np.ndarray:
  k = np.arange(taps) - (taps - 1) / 2
  w = np.exp(-0.5 * (k / sigma) ** 2)
  return w / w.sum()


def _filter(x: np.ndarray, w: np.ndarray) -> np.ndarray:
  """Separable filtering of [N, H, W, C] over H and W with reflecting borders."""
  r = len(w) // 2
  out = x
  for axis in (1, 2):
    pad = [(0, 0)] * 4
    pad[axis] = (r, r)
    p = np.pad(out, pad, mode="symmetric")
    n = out.shape[axis]
    out = sum(wi * np.take(p, np.arange(i, i + n), axis=axis) for i, wi in enumerate(w))
  return out


def ssim(x: Any, ref: Any, data_range: float = DATA_RANGE) -> np.ndarray:
  """Mean SSIM per image, [N]."""
  x, ref = _check(x, ref)
  w = _window()
  c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
  mu_x, mu_y = _filter(x, w), _filter(ref, w)
  var_x = _filter(x * x, w) - mu_x**2
  var_y = _filter(ref * ref, w) - mu_y**2
  cov = _filter(x * ref, w) - mu_x * mu_y
  index = ((2 * mu_x * mu_y + c1) * (2 * cov + c2)) / ((mu_x**2 + mu_y**2 + c1) * (var_x + var_y + c2))
  return index.mean(axis=(1, 2, 3))
