"""Scores of restoration samples against the exact posterior (the Gaussian-field testbed).

For y = A x_0 + σ_y n with Gaussian-field x_0 the posterior p(x_0 | y) = N(μ(y), Σ) is known
(`gaussian_field.posterior`), so a method's K samples per observation can be scored exactly:

* `estimate_mse_ratio`: E‖x̄_K − x_0‖² / (D · MMSE), x̄_K the mean of the K samples. 1 is the
  optimum; exact posterior samples give 1 + 1/K (the mean of K draws keeps Σ/K).
* `sample_mse_ratio`: E‖x^(i) − x_0‖² / (2 D · MMSE): 1 for exact posterior samples (a draw
  and the truth are two independent draws around μ(y)).
* `coverage`: the exact posterior mass of each pixel's central interval (the 5 % and 95 %
  empirical quantiles of the K samples for the default 0.90), averaged over pixels: 0.90 is
  calibrated, less is over-confident. Exact samples give slightly less than 0.90 for finite K
  (about (K-1)/(K+1) · 0.90 with interpolated quantiles).
* `residual_fd`: the Fréchet distance between N(m̂, Ŝ), fitted to the residuals x^(i) − μ(y) in
  DCT coefficients (every sample, observation and channel pooled), and N(0, Σ). Finite-sample
  bias: `exact_samples` with the same counts gives the floor.

Pure NumPy, float64.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from soft_diffusion import dct

_erf = np.vectorize(math.erf, otypes=[np.float64])


def _normal_cdf(z: np.ndarray) -> np.ndarray:
  return 0.5 * (1.0 + _erf(z / math.sqrt(2.0)))


def exact_samples(post: Any, num: int, rng: np.random.Generator) -> np.ndarray:
  """`num` draws of p(x_0 | y) for each observation: [num, B, H, W, C], float64."""
  batch, height, width, channels = post.mean.shape
  chol = np.linalg.cholesky(post.cov + 1e-15 * np.eye(post.cov.shape[0]))
  z = rng.standard_normal((num, batch, channels, height * width))
  coeffs = np.einsum("ij,nbcj->nbci", chol, z).reshape(num * batch, channels, height, width)
  pixels = dct.idct2_host(np.moveaxis(coeffs, 1, -1)).reshape(num, batch, height, width, channels)
  return post.mean[None] + pixels


def residual_fd(samples: np.ndarray, post: Any) -> float:
  """Fréchet distance of the residuals' Gaussian fit to N(0, Σ), in DCT coefficients."""
  num, batch, height, width, channels = samples.shape
  residual = dct.dct2_host((samples - post.mean[None]).reshape(num * batch, height, width, channels))
  r = np.moveaxis(residual, -1, 1).reshape(-1, height * width)  # every (sample, image, channel)
  m = r.mean(axis=0)
  s_hat = np.cov(r, rowvar=False)
  w, u = np.linalg.eigh(post.cov)
  root = (u * np.sqrt(np.maximum(w, 0.0))) @ u.T
  cross = np.linalg.eigvalsh(root @ s_hat @ root)
  return float(m @ m + np.trace(s_hat) + np.trace(post.cov) - 2.0 * np.sqrt(np.maximum(cross, 0.0)).sum())


def restoration_metrics(samples: Any, truth: Any, post: Any, *, interval: float = 0.9) -> dict[str, float]:
  """All four scores (module docstring) of samples [K, B, H, W, C] of p(x_0 | y_b) for truths
  x_0 [B, H, W, C] with exact posteriors `post` (`gaussian_field.Posterior`)."""
  samples = np.asarray(samples, np.float64)
  truth = np.asarray(truth, np.float64)
  if samples.ndim != 5 or samples.shape[0] < 2 or samples.shape[1:] != truth.shape:
    raise ValueError(f"samples must be [K >= 2, *truth.shape] = [K, {truth.shape}], got {samples.shape}")
  if post.mean.shape != truth.shape:
    raise ValueError(f"the posterior is for {post.mean.shape} observations, the truth is {truth.shape}")
  mmse = post.mmse()
  estimate = samples.mean(axis=0)
  lo, hi = np.quantile(samples, [(1 - interval) / 2, (1 + interval) / 2], axis=0)
  std = post.pixel_std()[None, :, :, None]
  mass = _normal_cdf((hi - post.mean) / std) - _normal_cdf((lo - post.mean) / std)
  return {
    "estimate_mse_ratio": float(np.mean((estimate - truth) ** 2) / mmse),
    "sample_mse_ratio": float(np.mean((samples - truth[None]) ** 2) / (2 * mmse)),
    "coverage": float(mass.mean()),
    "residual_fd": residual_fd(samples, post),
    "mmse": mmse,
    "num_samples": int(samples.shape[0]),
    "num_observations": int(truth.shape[0]),
  }
