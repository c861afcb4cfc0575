"""The sampler's start distribution p_1 (SPEC §4): a Gaussian fitted to x_1 = C_1 x_0 + s_1 η
(`GaussianPrior`, the default), or the exact forward marginal over real images (`ForwardPrior`).

The fit lives in the orthonormal 2-D DCT basis (per channel). The `max_full` coefficients with
the largest variance get a full covariance; every other coefficient is independent with its
own variance. For blur, C_1 leaves only a few low-frequency coefficients, so those carry the
full covariance and the rest is essentially the noise s_1; for C_1 = 0 (fully masked) or large
s_1 (VE) the fit is essentially N(0, s_1² I). Fitting is host-side numpy (float64); sampling
is a pure JAX function.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from soft_diffusion import dct


class GaussianPrior(NamedTuple):
  """Gaussian in DCT coefficients; all arrays, so it is a pytree that jit can take."""

  mean: jax.Array  # [H, W, C] mean DCT coefficients
  full_index: jax.Array  # [K] flat indices of the coefficients with a full covariance
  full_chol: jax.Array  # [K, K] Cholesky factor of their covariance
  diag_std: jax.Array  # [H*W*C] std of the other coefficients (0 at full_index)


def fit_gaussian_prior(x1: np.ndarray, max_full: int = 512, jitter: float = 1e-8) -> GaussianPrior:
  """Fits p_1 to samples x1 [N, H, W, C] of C_1 x_0 + s_1 η (N ≥ 2)."""
  x1 = np.asarray(x1, np.float64)
  if x1.ndim != 4 or x1.shape[0] < 2:
    raise ValueError(f"x1 must be [N >= 2, H, W, C] samples, got shape {x1.shape}")
  if max_full < 0:
    raise ValueError(f"max_full must be >= 0, got {max_full}")
  coeffs = dct.dct2_host(x1).reshape(x1.shape[0], -1)
  mean = coeffs.mean(axis=0)
  var = coeffs.var(axis=0)
  full_index = np.sort(np.argsort(var)[::-1][: min(max_full, coeffs.shape[1])])
  centred = coeffs[:, full_index] - mean[full_index]
  cov = centred.T @ centred / (coeffs.shape[0] - 1) + jitter * np.eye(len(full_index))
  diag_std = np.sqrt(var)
  diag_std[full_index] = 0.0
  return GaussianPrior(
    mean=jnp.asarray(mean.reshape(x1.shape[1:]), jnp.float32),
    full_index=jnp.asarray(full_index, jnp.int32),
    full_chol=jnp.asarray(np.linalg.cholesky(cov), jnp.float32),
    diag_std=jnp.asarray(diag_std, jnp.float32),
  )


class ForwardPrior(NamedTuple):
  """The exact forward marginal p_1 = law of C_1 x_0 + s_1 η over a set of real images x_0."""

  images: jax.Array  # [N, H, W, C] training images in [-1, 1]


def sample_forward(prior: ForwardPrior, corruption, key: jax.Array, num: int) -> jax.Array:
  """`num` draws of C_1 x_0 + s_1 η with x_0 uniform over prior.images (with replacement)."""
  k_index, k_noise = jax.random.split(key)
  x0 = prior.images[jax.random.randint(k_index, (num,), 0, prior.images.shape[0])]
  return corruption.corrupt(x0, jnp.ones((num,), x0.dtype), jax.random.normal(k_noise, x0.shape, x0.dtype))


def sample_prior(prior: GaussianPrior, key: jax.Array, num: int) -> jax.Array:
  """`num` draws of p_1: [num, H, W, C] float32."""
  k_full, k_diag = jax.random.split(key)
  z_full = jax.random.normal(k_full, (num, prior.full_index.shape[0])) @ prior.full_chol.T
  coeffs = jax.random.normal(k_diag, (num, prior.diag_std.shape[0])) * prior.diag_std
  coeffs = coeffs.at[:, prior.full_index].add(z_full)
  coeffs = coeffs.reshape(num, *prior.mean.shape) + prior.mean
  return dct.dct2(coeffs, inverse=True)


def sample_p1(prior: GaussianPrior | ForwardPrior, corruption, key: jax.Array, num: int) -> jax.Array:
  """`num` draws of p_1 of either kind: [num, H, W, C] float32 (`corruption` is used by ForwardPrior)."""
  if isinstance(prior, ForwardPrior):
    return sample_forward(prior, corruption, key, num)
  return sample_prior(prior, key, num)
