"""Gaussian blur with reflecting boundaries, exact in the orthonormal DCT-II basis (docs/method.md §1.1).

Per channel, with X̂ = DCT2(x) (orthonormal, H×W),

    (C x)^[k, l] = exp(-(π²/2) · σ² · (k²/H² + l²/W²)) · X̂[k, l].

The multiplier factorises over the two axes, so C x = A_H x A_W with A_n = Dᵀ diag(m_n) D,
an n×n symmetric matrix per example: two small matmuls per image, which suits TPU/GPU matrix
units and allows a different σ for every example. σ = 0 gives the identity; C is symmetric;
C_a C_b = C_√(a²+b²); the DC coefficient (mean intensity) is preserved.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp

from soft_diffusion import dct
from soft_diffusion.corruptions import base


def blur_matrices(
  sigma: jax.Array, n: int, dtype: Any = jnp.float32, precision: Any = jax.lax.Precision.HIGHEST
) -> jax.Array:
  """A_n(σ) = Dᵀ diag(m_n(σ)) D for each σ: sigma [B] -> [B, n, n] (symmetric)."""
  d = jnp.asarray(dct.dct_matrix(n), dtype)
  multipliers = dct.blur_multipliers_1d(sigma, n).astype(dtype)
  return jnp.einsum("ki,bk,kj->bij", d, multipliers, d, precision=precision)


def gaussian_blur(x: jax.Array, sigma: jax.Array, *, precision: Any = jax.lax.Precision.HIGHEST) -> jax.Array:
  """Gaussian blur of standard deviation `sigma` pixels with reflecting boundaries.

  Args:
    x: [B, H, W, C] floating images (H and W may differ).
    sigma: [B] blur standard deviation per example, in pixels (a scalar is broadcast). The
      operator depends on σ² only.
    precision: matmul precision; HIGHEST keeps float32 accuracy on TPU/GPU matrix units.
  Returns:
    [B, H, W, C] blurred images, dtype of x (computed in at least float32).
  """
  x = base.check_images(x)
  sigma = base.check_batch_vector(sigma, x.shape[0], "sigma")
  _, height, width, _ = x.shape
  dtype = jnp.promote_types(x.dtype, jnp.float32)
  a_h = blur_matrices(sigma, height, dtype, precision)
  a_w = blur_matrices(sigma, width, dtype, precision)
  y = jnp.einsum("bij,bjwc->biwc", a_h, x.astype(dtype), precision=precision)
  y = jnp.einsum("blw,biwc->bilc", a_w, y, precision=precision)
  return y.astype(x.dtype)


@dataclasses.dataclass(frozen=True)
class BlurOperator:
  """C_t = Gaussian blur with σ_B(t) = `sigma_schedule(t)` pixels."""

  sigma_schedule: Any  # callable: t [B] -> σ_B(t) [B]

  basis = "dct"  # C_t is diagonal in the orthonormal 2-D DCT-II basis (soft_diffusion.dct)

  def apply(self, x: jax.Array, t: jax.Array) -> jax.Array:
    return gaussian_blur(x, self.sigma_schedule(t))

  def diagonal(self, t: jax.Array, height: int, width: int) -> jax.Array:
    """C_t's multipliers in the DCT basis, c_t(k, l) = m_H(σ)[k] m_W(σ)[l]: t [B] -> [B, H, W]."""
    sigma = self.sigma_schedule(jnp.atleast_1d(jnp.asarray(t)))
    return dct.blur_multipliers_1d(sigma, height)[:, :, None] * dct.blur_multipliers_1d(sigma, width)[:, None, :]
