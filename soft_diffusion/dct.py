"""Orthonormal DCT-II matrices and the Gaussian-blur multipliers in that basis (docs/method.md §1.1).

The blur of docs/method.md §1.1 is diagonal in the orthonormal 2-D DCT-II basis: coefficient (k, l) of an
H×W image is multiplied by

    exp(-(π²/2) · σ² · (k²/H² + l²/W²))  =  m_H(σ)[k] · m_W(σ)[l],

so it separates into one factor per image axis. Everything here is a constant of the image
shape (built once with numpy in float64 at trace time) or an elementwise function of σ.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np


@functools.lru_cache(maxsize=64)
def dct_matrix(n: int) -> np.ndarray:
  """Orthonormal DCT-II matrix D of size n×n, float64: X̂ = D x, x = Dᵀ X̂.

  D[k, i] = sqrt(2/n) · c_k · cos(π (2i + 1) k / (2n)), c_0 = 1/√2, c_k = 1 otherwise;
  matches `scipy.fft.dct(x, type=2, norm='ortho')`. The returned array is read-only.
  """
  if n < 1:
    raise ValueError(f"dct_matrix: n must be >= 1, got {n}")
  k = np.arange(n)[:, None]
  i = np.arange(n)[None, :]
  d = np.sqrt(2.0 / n) * np.cos(np.pi * (2 * i + 1) * k / (2 * n))
  d[0] /= np.sqrt(2.0)
  d.setflags(write=False)
  return d


def dct2_host(x: np.ndarray) -> np.ndarray:
  """Orthonormal 2-D DCT-II of images [B, H, W, C] over H and W, in numpy float64."""
  x = np.asarray(x, np.float64)
  y = np.einsum("ki,bijc->bkjc", dct_matrix(x.shape[1]), x)
  return np.einsum("bkjc,lj->bklc", y, dct_matrix(x.shape[2]))


def idct2_host(coeffs: np.ndarray) -> np.ndarray:
  """Inverse of `dct2_host`: images [B, H, W, C] from their DCT coefficients, numpy float64."""
  coeffs = np.asarray(coeffs, np.float64)
  y = np.einsum("ki,bklc->bilc", dct_matrix(coeffs.shape[1]), coeffs)
  return np.einsum("bilc,lj->bijc", y, dct_matrix(coeffs.shape[2]))


def dct2(x: jax.Array, *, inverse: bool = False) -> jax.Array:
  """Orthonormal 2-D DCT-II of [B, H, W, C] over H and W (or its inverse), float32 in JAX at
  HIGHEST matmul precision; jit-able."""
  d_h = jnp.asarray(dct_matrix(x.shape[1]), jnp.float32)
  d_w = jnp.asarray(dct_matrix(x.shape[2]), jnp.float32)
  pattern = "ki,bklc,lj->bijc" if inverse else "ki,bijc,lj->bklc"
  return jnp.einsum(pattern, d_h, x, d_w, precision=jax.lax.Precision.HIGHEST)


def to_basis(x: jax.Array, basis: str) -> jax.Array:
  """Coefficients of images x [B, H, W, C] in an orthonormal `basis`: 'dct' (`dct2`) or 'pixel'
  (x itself), the two bases the corruptions are diagonal in (`Corruption.diagonal`)."""
  return dct2(x) if basis == "dct" else x


def from_basis(coeffs: jax.Array, basis: str) -> jax.Array:
  """Images from their coefficients in `basis` (inverse of `to_basis`)."""
  return dct2(coeffs, inverse=True) if basis == "dct" else coeffs


def frequency_exponent(n: int) -> np.ndarray:
  """(π²/2) · (k/n)² for k < n, float64: the per-axis exponent of the blur multiplier."""
  k = np.arange(n, dtype=np.float64)
  return 0.5 * np.pi**2 * (k / n) ** 2


def blur_multipliers_1d(sigma: jax.Array, n: int) -> jax.Array:
  """Per-axis DCT multipliers exp(-σ² (π²/2)(k/n)²): sigma [...] -> [..., n]."""
  sigma = jnp.asarray(sigma)
  dtype = jnp.promote_types(sigma.dtype, jnp.float32)
  exponent = jnp.asarray(frequency_exponent(n), dtype)
  return jnp.exp(-jnp.square(sigma.astype(dtype))[..., None] * exponent)


def blur_multipliers_2d(sigma: np.ndarray, height: int, width: int) -> np.ndarray:
  """Full H×W DCT multipliers for each σ, in numpy float64: sigma [M] -> [M, H, W].

  Host-side twin of `blur_multipliers_1d` for one-off computations such as level selection.
  """
  sigma = np.asarray(sigma, np.float64)
  exponent = frequency_exponent(height)[:, None] + frequency_exponent(width)[None, :]
  return np.exp(-np.square(sigma)[..., None, None] * exponent)
