"""The sampler's start distribution p_1 (docs/method.md §4): a Gaussian fitted to x_1 = C_1 x_0 + s_1 η
(`GaussianPrior`, the default), or the exact forward marginal over real images (`ForwardPrior`).

The fit lives in the orthonormal 2-D DCT basis (per channel) and has two parts:

* the signal C_1 x_0, fitted from noise-free corrupted training images: the `max_full`
  coefficients with the largest variance get a full covariance, every other coefficient is
  independent with its own variance;
* the noise s_1 η, added exactly: s_1² on the diagonal, so every direction that C_1 removes has
  variance s_1², the law the network was trained on.

Fitting a sample covariance to noisy draws of C_1 x_0 + s_1 η instead (what this module did
before) spreads the noise-only eigenvalues over about (1 ± √(d/N))² s_1² (Marchenko–Pastur;
0.38–2× s_1² for the digits' 256 coefficients and 1,617 draws): coloured noise the network
never saw, which the Momentum and deterministic steps carry while s_t stays constant.
For blur, C_1 leaves only a few low-frequency coefficients, so those carry the full covariance;
for C_1 = 0 (fully masked) or large s_1 (VE) the fit is essentially N(0, s_1² I). Fitting is
host-side numpy (float64); sampling is a pure JAX function.
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
  full_chol: jax.Array  # [K, K] Cholesky factor of their covariance (signal + s_1² I)
  diag_std: jax.Array  # [H*W*C] std of the other coefficients, √(signal var + s_1²) (0 at full_index)
  noise_std: jax.Array  # [] s_1, the exact noise part included in full_chol and diag_std


def fit_gaussian_prior(
  signal: np.ndarray, noise_std: float, max_full: int = 512, jitter: float = 1e-8, reduce=None
) -> GaussianPrior:
  """Fits p_1 = law of C_1 x_0 + s_1 η from noise-free samples of the signal.

  Args:
    signal: [N >= 2, H, W, C] samples of C_1 x_0 (training images corrupted without noise).
    noise_std: s_1 >= 0; s_1² I is added to the fitted signal covariance exactly.
    max_full: coefficients (by signal variance) with a full covariance; the rest are independent.
    jitter: added to the full covariance's diagonal so its Cholesky factor exists when s_1 = 0.
    reduce: for a fit split over several workers (each holding a share of the samples, possibly
      none): a function that sums a float64 array over the workers and returns the sum to each.
      The fit takes three such sums (count and total; centred squares; centred outer products),
      so every worker gets the prior of all the samples. None: `signal` is all of them.
  Returns:
    GaussianPrior.
  """
  signal = np.asarray(signal, np.float64)
  if signal.ndim != 4 or (signal.shape[0] < 2 and reduce is None):
    raise ValueError(f"signal must be [N >= 2, H, W, C] samples of C_1 x_0, got shape {signal.shape}")
  if not (np.isfinite(noise_std) and noise_std >= 0):
    raise ValueError(f"noise_std must be a finite s_1 >= 0, got {noise_std!r}")
  if max_full < 0:
    raise ValueError(f"max_full must be >= 0, got {max_full}")
  reduce = reduce or (lambda x: x)
  noise_var = float(noise_std) ** 2
  coeffs = dct.dct2_host(signal).reshape(signal.shape[0], int(np.prod(signal.shape[1:])))
  sums = reduce(np.concatenate([[coeffs.shape[0]], coeffs.sum(axis=0)]))
  count = int(round(sums[0]))
  if count < 2:
    raise ValueError(f"signal must hold N >= 2 samples of C_1 x_0 in all, got {count}")
  mean = sums[1:] / count
  var = reduce(np.square(coeffs - mean).sum(axis=0)) / (count - 1)
  full_index = np.sort(np.argsort(var, kind="stable")[::-1][: min(max_full, coeffs.shape[1])])
  centred = coeffs[:, full_index] - mean[full_index]
  cov = reduce(centred.T @ centred) / (count - 1) + (noise_var + jitter) * np.eye(len(full_index))
  diag_std = np.sqrt(var + noise_var)
  diag_std[full_index] = 0.0
  return GaussianPrior(
    mean=jnp.asarray(mean.reshape(signal.shape[1:]), jnp.float32),
    full_index=jnp.asarray(full_index, jnp.int32),
    full_chol=jnp.asarray(np.linalg.cholesky(cov), jnp.float32),
    diag_std=jnp.asarray(diag_std, jnp.float32),
    noise_std=jnp.asarray(noise_std, jnp.float32),
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
