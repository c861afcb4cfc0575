"""Stationary Gaussian fields: a dataset whose law is known exactly (docs/method.md §7).

One channel of an H×W image is x = IDCT2(√v ⊙ z), z ~ N(0, I), with the orthonormal 2-D
DCT-II of `soft_diffusion.dct` and the 1/f²-like power spectrum

    v(k, l) = a / (1 + (k² + l²)/k0²),    k = 0 … H−1, l = 0 … W−1,

`a` chosen so that the mean of v over (k, l) is pixel_std² (so the mean pixel variance is
pixel_std²). Channels are independent and identically distributed. In the DCT basis the
coefficients are independent, N(0, v(k, l)); the blur and identity corruptions are diagonal
there too (blur multiplies coefficient (k, l) by c_t(k, l), docs/method.md §1.1), so x_t = C_t x_0 + s_t η
has independent DCT coefficients N(0, c² v + s²) and the posterior mean is exact:

    E[x̂_0(k, l) | x_t] = c v / (c² v + s²) · DCT2(x_t)(k, l).

* `spectrum(height, width, k0, pixel_std)`: v, float64 [H, W].
* `field_images(spectrum_sqrt, rngs)`: images from numpy generators (the data pipeline's
  per-element generator, `data/field_source.py`).
* `dct_multipliers(corruption, t, height, width)`: c_t(k, l) for blur or identity.
* `oracle_denoiser(corruption, v)`: the posterior mean as a `denoise_fn(x_t, t)` (jit-able), the
  floor a perfect network reaches with any sampler.
* `posterior(v, degradation, sigma_y, y)`: the exact p(x_0 | y) of a restoration problem
  y = A x_0 + σ_y n (A diagonal in the DCT or the pixel basis), float64: the reference the
  restoration methods are scored against (`evaluation/posterior.py`).

Pure: numpy and jax only.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from soft_diffusion import dct
from soft_diffusion.corruptions import BlurOperator, IdentityOperator

DEFAULT_K0 = 2.0
DEFAULT_PIXEL_STD = 0.3


def spectrum(height: int, width: int, k0: float = DEFAULT_K0, pixel_std: float = DEFAULT_PIXEL_STD) -> np.ndarray:
  """v(k, l) = a / (1 + (k² + l²)/k0²) with mean(v) = pixel_std²: float64 [height, width]."""
  if not (isinstance(height, int) and isinstance(width, int) and height >= 1 and width >= 1):
    raise ValueError(f"height and width must be ints >= 1, got {height!r}, {width!r}")
  if not k0 > 0:
    raise ValueError(f"k0 must be > 0, got {k0!r}")
  if not pixel_std > 0:
    raise ValueError(f"pixel_std must be > 0, got {pixel_std!r}")
  k = np.arange(height, dtype=np.float64)[:, None]
  l = np.arange(width, dtype=np.float64)[None, :]
  shape = 1.0 / (1.0 + (k**2 + l**2) / float(k0) ** 2)
  return shape * (float(pixel_std) ** 2 / shape.mean())


def field_images(spectrum_sqrt: np.ndarray, rngs: Sequence[np.random.Generator], channels: int = 3) -> np.ndarray:
  """One image per generator: IDCT2(√v ⊙ z) per channel, float32 [len(rngs), H, W, channels].

  `spectrum_sqrt` is √v [H, W]; z is drawn as `rng.standard_normal((H, W, channels))`, float64.
  """
  root = np.asarray(spectrum_sqrt, np.float64)
  height, width = root.shape
  z = np.stack([rng.standard_normal((height, width, channels)) for rng in rngs])
  return dct.idct2_host(z * root[None, :, :, None]).astype(np.float32)


def dct_multipliers(corruption: Any, t: jax.Array, height: int, width: int) -> jax.Array:
  """c_t(k, l), [B, H, W]: the DCT-diagonal C_t of a blur or identity corruption at times t [B].

  Raises ValueError for an operator that is not diagonal in the DCT basis (masking).
  """
  operator = getattr(corruption, "operator", None)
  t = jnp.atleast_1d(jnp.asarray(t, jnp.float32))
  if isinstance(operator, IdentityOperator):
    return jnp.ones((t.shape[0], height, width), jnp.float32)
  if isinstance(operator, BlurOperator):
    sigma = operator.sigma_schedule(t)
    return dct.blur_multipliers_1d(sigma, height)[:, :, None] * dct.blur_multipliers_1d(sigma, width)[:, None, :]
  raise ValueError(
    f"the Gaussian-field oracle needs a corruption diagonal in the DCT basis (blur or identity), "
    f"got operator {type(operator).__name__}"
  )


def oracle_denoiser(corruption: Any, v: np.ndarray) -> Callable[[jax.Array, jax.Array], jax.Array]:
  """denoise_fn(x_t, t) = E[x_0 | x_t] for Gaussian-field data of spectrum v [H, W] (or [H, W, C]).

  Exact for blur and identity corruptions: per DCT coefficient, c v / (c² v + s²) · DCT2(x_t),
  with c = c_t(k, l) and s = s_t (per example). float32; jit-able; any batch of times t [B].
  """
  v = np.asarray(v, np.float64)
  if v.ndim not in (2, 3) or np.any(v <= 0):
    raise ValueError(f"v must be a positive [H, W] or [H, W, C] spectrum, got shape {v.shape}")
  height, width = v.shape[:2]
  dct_multipliers(corruption, jnp.zeros(1), height, width)  # refuses masking before any tracing
  v_b = jnp.asarray(v if v.ndim == 3 else v[:, :, None], jnp.float32)[None]

  def denoise_fn(x_t: jax.Array, t: jax.Array) -> jax.Array:
    if x_t.shape[1:3] != (height, width):
      raise ValueError(f"x_t must be [B, {height}, {width}, C] for this spectrum, got {x_t.shape}")
    t = jnp.broadcast_to(jnp.asarray(t, jnp.float32), (x_t.shape[0],))
    c = dct_multipliers(corruption, t, height, width)[..., None]
    s2 = jnp.square(corruption.noise_std(t).astype(jnp.float32))[:, None, None, None]
    gain = c * v_b / (jnp.square(c) * v_b + s2)
    return dct.dct2(gain * dct.dct2(x_t.astype(jnp.float32)), inverse=True)

  return denoise_fn


class Posterior(NamedTuple):
  """p(x_0 | y) for Gaussian-field data: the same covariance for every observation and channel."""

  mean: np.ndarray  # [B, H, W, C] posterior means in pixels, float64
  cov: np.ndarray  # [H·W, H·W] covariance of one channel's DCT coefficients (row-major k, l), float64

  def pixel_std(self) -> np.ndarray:
    """Per-pixel posterior standard deviation, [H, W] (the same for every channel)."""
    height, width = self.mean.shape[1:3]
    d2 = np.kron(dct.dct_matrix(height), dct.dct_matrix(width))  # vec(DCT2 x) = d2 @ vec(x)
    return np.sqrt(np.maximum(np.einsum("ik,kl,il->i", d2.T, self.cov, d2.T), 0.0)).reshape(height, width)

  def mmse(self) -> float:
    """The MMSE per pixel, tr(cov)/(H·W): the expected squared error of the posterior mean."""
    return float(np.trace(self.cov) / self.cov.shape[0])


def posterior(v: np.ndarray, degradation: Any, sigma_y: float, y: np.ndarray) -> Posterior:
  """The exact p(x_0 | y) for y = A x_0 + σ_y n, x_0 a field of spectrum v [H, W] (per channel).

  `degradation`: a `restoration.Degradation` (A diagonal in the DCT or the pixel basis). In DCT
  coefficients x̂ ~ N(0, diag v) and ŷ = Â x̂ + σ_y n̂ (Â = diag a, or D diag(a) Dᵀ for a pixel
  operator, D the 2-D DCT as a matrix; n̂ is white as n is), so the posterior precision is
  diag(1/v) + ÂᵀÂ/σ_y² and the mean is cov Âᵀ ŷ/σ_y². Float64; needs σ_y > 0.
  """
  v = np.asarray(v, np.float64)
  if v.ndim != 2 or np.any(v <= 0):
    raise ValueError(f"v must be a positive [H, W] spectrum, got shape {v.shape}")
  if not sigma_y > 0:
    raise ValueError(f"the exact posterior needs sigma_y > 0, got {sigma_y!r}")
  if degradation.shape != v.shape:
    raise ValueError(f"the operator is {degradation.shape}, the spectrum {v.shape}")
  y = np.asarray(y, np.float64)
  if y.ndim != 4 or y.shape[1:3] != v.shape:
    raise ValueError(f"y must be [B, {v.shape[0]}, {v.shape[1]}, C], got shape {y.shape}")
  height, width = v.shape
  a = degradation.multipliers.reshape(-1)
  if degradation.basis == "dct":
    a_hat = np.diag(a)
  else:
    d2 = np.kron(dct.dct_matrix(height), dct.dct_matrix(width))
    a_hat = d2 @ np.diag(a) @ d2.T
  precision = np.diag(1.0 / v.reshape(-1)) + a_hat.T @ a_hat / sigma_y**2
  cov = np.linalg.inv(precision)
  cov = 0.5 * (cov + cov.T)
  y_hat = dct.dct2_host(y)  # [B, H, W, C]
  flat = np.moveaxis(y_hat, -1, 1).reshape(y.shape[0], y.shape[-1], -1)  # [B, C, H·W]
  mean_hat = np.einsum("ij,jk,bck->bci", cov, a_hat.T, flat) / sigma_y**2
  mean_hat = np.moveaxis(mean_hat.reshape(y.shape[0], y.shape[-1], height, width), 1, -1)
  return Posterior(dct.idct2_host(mean_hat), cov)
