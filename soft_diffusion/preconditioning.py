"""Preconditioning per coefficient of the corruption's diagonal basis (docs/method.md §2.4): EDM's
design (Karras et al., 2022) generalised from x_t = x_0 + σ η to x_t = C_t x_0 + s_t η.

Where C_t is diagonal in an orthonormal basis B (`Corruption.diagonal`: the DCT for blur and the
identity, pixels for masks), every coefficient k of x_t is c_t(k) x_0(k) + s_t η(k). With v(k)
the data's mean power in that coefficient, E[x_0(k)²] (the power spectrum for the DCT), the
clean-image estimate is

    B x̂_0 = c_skip ⊙ B x_t + c_out ⊙ B F_θ(c_in · x_t, t),

    c_skip = c v / (c² v + s²)           the linear MMSE (Wiener) gain,
    c_out  = √(v s² / (c² v + s²))       the Wiener posterior standard deviation,
    c_in   = 1/√(mean_k (c² v + s²))     ('scalar': the input's total power, EDM's form), or
             1/√(c² v + s²) per k        ('coefficient': x_t whitened in the basis),

and the loss weighs coefficient k by 1/c_out², i.e. it is the plain mean squared error of F_θ
against its target (B x_0 - c_skip ⊙ B x_t)/c_out (back in pixels), which has unit second moment
at every coefficient and time when v is the data's (exactly unit variance for Gaussian data).
For C_t = I and a flat v = σ_data² every line is EDM's (tests/test_preconditioning.py); the network
is conditioned on t rather than EDM's c_noise = ln(σ)/4 (for the VE schedule the same
information). For Gaussian data with spectrum v, c_skip ⊙ B x_t is the exact posterior mean, so
F = 0 is optimal.

`Preconditioner(corruption, power, c_in)` is a hashable, jit-able object; `spectrum_for` builds
the v it uses ('data', or the deliberately wrong 'flat' and 'tilted' of the study). Pure: numpy
and jax only.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy import special

from soft_diffusion import dct

C_IN_FORMS = ("scalar", "coefficient")
SPECTRA = ("data", "flat", "tilted")  # what v the preconditioning uses (see `spectrum_for`)
RELATIVE_FLOOR = 1e-6  # v is floored at this share of its mean: no coefficient has c_out = 0

NetworkFn = Callable[[jax.Array, jax.Array], jax.Array]  # (network input [B,H,W,C], t [B]) -> F [B,H,W,C]


def spectrum_for(power: np.ndarray, kind: str = "data") -> np.ndarray:
  """The v [H, W, C] the preconditioning uses, from the data's mean power per coefficient `power`
  ([H, W] or [H, W, C], float), floored at RELATIVE_FLOOR × its mean.

  kind: 'data' (the power itself); 'flat' (its mean at every coefficient: EDM's σ_data² for all);
  'tilted' (the power × r/r̄ with r = max(√(k² + l²), 1) the DCT frequency radius: ×2 per
  octave, r̄ chosen so the mean power is unchanged). 'flat' and 'tilted' are deliberately wrong
  spectra for the Gaussian-field study (docs/results.md), where the right one makes F = 0 optimal.
  """
  if kind not in SPECTRA:
    raise ValueError(f"spectrum kind must be one of {SPECTRA}, got {kind!r}")
  v = np.asarray(power, np.float64)
  if v.ndim == 2:
    v = v[:, :, None]
  if v.ndim != 3 or not np.all(np.isfinite(v)) or np.any(v < 0) or not v.mean() > 0:
    raise ValueError(f"power must be a finite non-negative [H, W] or [H, W, C] array, mean > 0; got shape {v.shape}")
  mean = v.mean()
  if kind == "flat":
    v = np.full_like(v, mean)
  elif kind == "tilted":
    k = np.arange(v.shape[0], dtype=np.float64)[:, None]
    l = np.arange(v.shape[1], dtype=np.float64)[None, :]
    radius = np.maximum(np.sqrt(k**2 + l**2), 1.0)[:, :, None]
    v = v * radius
    v = v * (mean / v.mean())
  return np.maximum(v, RELATIVE_FLOOR * mean)


@dataclasses.dataclass(frozen=True, eq=False)
class Preconditioner:
  """c_skip, c_out, c_in of the module docstring for `corruption` (diagonal in a basis) and the
  power v [H, W, C] (or [H, W], shared by the channels) of the data in that basis.

  Hashable by identity and registered as a static pytree: close over it or pass it to `jax.jit`.
  """

  corruption: Any
  power: np.ndarray
  c_in: str = "scalar"

  def __post_init__(self):
    if self.c_in not in C_IN_FORMS:
      raise ValueError(f"c_in must be one of {C_IN_FORMS}, got {self.c_in!r}")
    v = np.asarray(self.power, np.float64)
    v = v[:, :, None] if v.ndim == 2 else v
    if v.ndim != 3 or not np.all(v > 0):
      raise ValueError(f"power must be a positive [H, W] or [H, W, C] array, got shape {v.shape}")
    object.__setattr__(self, "power", v)
    self.corruption.diagonal(jnp.zeros(1), v.shape[0], v.shape[1])  # refuses a non-diagonal C_t early

  def coefficients(self, t: jax.Array, shape: tuple[int, ...]) -> tuple[str, jax.Array, jax.Array, jax.Array]:
    """(basis, c_skip, c_out [B, H, W, C'], c_in [B, 1, 1, 1] or [B, H, W, C']) at times t [B]
    for images of `shape` [B, H, W, C] (C' = 1 or C: broadcasts against them), float32."""
    batch, height, width, channels = shape
    if (height, width) != self.power.shape[:2] or self.power.shape[2] not in (1, channels):
      raise ValueError(f"images {shape} do not match the preconditioning's power {self.power.shape}")
    t = jnp.broadcast_to(jnp.asarray(t, jnp.float32), (batch,))
    basis, c = self.corruption.diagonal(t, height, width)
    c = c.astype(jnp.float32)[..., None]
    s2 = jnp.square(self.corruption.noise_std(t).astype(jnp.float32))[:, None, None, None]
    v = jnp.asarray(self.power, jnp.float32)[None]
    total = jnp.square(c) * v + s2  # E[x_t(k)²]
    c_skip = c * v / total
    c_out = jnp.sqrt(v * s2 / total)
    if self.c_in == "scalar":
      mean_total = jnp.mean(jnp.broadcast_to(total, (batch, height, width, channels)), axis=(1, 2, 3), keepdims=True)
      c_in = jax.lax.rsqrt(mean_total)
    else:
      c_in = jax.lax.rsqrt(total)
    return basis, c_skip, c_out, c_in

  def network_input(self, x_t: jax.Array, t: jax.Array) -> jax.Array:
    """c_in · x_t, in pixels (the network's input)."""
    basis, _, _, c_in = self.coefficients(t, x_t.shape)
    return self._scale_input(x_t, basis, c_in)

  def denoised(self, x_t: jax.Array, t: jax.Array, output: jax.Array) -> jax.Array:
    """x̂_0 from x_t and the network's output F (pixels), float32."""
    basis, c_skip, c_out, _ = self.coefficients(t, x_t.shape)
    return self._combine(x_t, output, basis, c_skip, c_out)

  def _scale_input(self, x_t, basis, c_in):
    x_t = x_t.astype(jnp.float32)
    if self.c_in == "scalar":
      return c_in * x_t
    return dct.from_basis(c_in * dct.to_basis(x_t, basis), basis)

  @staticmethod
  def _combine(x_t, output, basis, c_skip, c_out):
    to_b = lambda a: dct.to_basis(a.astype(jnp.float32), basis)  # noqa: E731
    return dct.from_basis(c_skip * to_b(x_t) + c_out * to_b(output), basis)

  def target(self, x0: jax.Array, x_t: jax.Array, t: jax.Array) -> jax.Array:
    """F's regression target (B x_0 - c_skip ⊙ B x_t)/c_out, back in pixels, float32."""
    basis, c_skip, c_out, _ = self.coefficients(t, x_t.shape)
    to_b = lambda a: dct.to_basis(a.astype(jnp.float32), basis)  # noqa: E731
    return dct.from_basis((to_b(x0) - c_skip * to_b(x_t)) / c_out, basis)

  def target_from_noise(self, x0: jax.Array, noise: jax.Array, t: jax.Array) -> jax.Array:
    """`target` for x_t = C_t x_0 + s_t η written with η: per coefficient
    (s x_0 - c v η)/√(v (c² v + s²)), the same value without the cancellation of
    x_0 - c_skip x_t where c_out is small (what the loss uses), float32."""
    batch, height, width, channels = x0.shape
    t = jnp.broadcast_to(jnp.asarray(t, jnp.float32), (batch,))
    basis, c = self.corruption.diagonal(t, height, width)
    c = c.astype(jnp.float32)[..., None]
    s = self.corruption.noise_std(t).astype(jnp.float32)[:, None, None, None]
    v = jnp.asarray(self.power, jnp.float32)[None]
    to_b = lambda a: dct.to_basis(a.astype(jnp.float32), basis)  # noqa: E731
    coeffs = (s * to_b(x0) - c * v * to_b(noise)) * jax.lax.rsqrt(v * (jnp.square(c) * v + jnp.square(s)))
    return dct.from_basis(coeffs, basis)

  def denoise_fn(self, network_fn: NetworkFn) -> Callable[[jax.Array, jax.Array], jax.Array]:
    """denoise_fn(x_t, t) = x̂_0 with F = network_fn(c_in · x_t, t): what the samplers take."""

    def denoise_fn(x_t: jax.Array, t: jax.Array) -> jax.Array:
      t = jnp.broadcast_to(jnp.asarray(t, jnp.float32), (x_t.shape[0],))
      basis, c_skip, c_out, c_in = self.coefficients(t, x_t.shape)  # once per call
      output = network_fn(self._scale_input(x_t, basis, c_in), t)
      return self._combine(x_t, output, basis, c_skip, c_out)

    return denoise_fn


jax.tree_util.register_static(Preconditioner)


# ----------------------------------------------------------------------------------------------
# The training-time density (docs/method.md §2.5): EDM samples ln σ ~ N(P_mean, P_std²); here the
# noise-to-signal ratio of x_t takes σ's place.

TIME_TABLE_SIZE = 1025  # times at which the ratio is tabulated (inverted by interpolation)


def noise_to_signal(corruption: Any, power: np.ndarray, t: np.ndarray) -> np.ndarray:
  """r(t) = s_t / √(mean_k c_t(k)² v(k)) over the coefficients k but the first (the DCT's DC
  term, which carries the data's mean rather than its variation): for C_t = I and centred data
  of pixel std σ_data, σ/σ_data (EDM's σ up to its σ_data). float64 [len(t)]."""
  v = spectrum_for(power, "data").mean(axis=-1)  # [H, W]: the channels' mean
  t = np.asarray(t, np.float32)
  _, c = corruption.diagonal(jnp.asarray(t), v.shape[0], v.shape[1])
  c2v = np.square(np.asarray(c, np.float64)) * v[None]  # [T, H, W]
  signal = c2v.reshape(len(t), -1)[:, 1:].mean(axis=1)
  return np.asarray(corruption.noise_std(jnp.asarray(t)), np.float64) / np.sqrt(np.maximum(signal, 1e-30))


def lognormal_time_sampler(
  corruption: Any, power: np.ndarray, *, mean: float, std: float, t_min: float = 0.0
) -> Callable[[jax.Array, int], jax.Array]:
  """(key, batch) -> t [batch] with ln r(t) ~ N(mean, std²) truncated to [r(t_min), r(1)]
  (r: `noise_to_signal`), drawn by the inverse CDF and mapped back to t by interpolation in a
  table of TIME_TABLE_SIZE times; jit-able. EDM's density is mean = -1.2 - ln 0.5 ≈ -0.5 and
  std = 1.2 for σ/σ_data with σ_data = 0.5. r must increase with t (it does when s_t does not
  fall and C_t does not amplify); a flat stretch is nudged by float32 rounding only.

  The CDF bounds are computed in float64; when the interval lies in the normal's upper tail the
  draw is made in the mirrored lower tail, where float32 resolves small probabilities. Raises
  ValueError when the truncated law has (almost) no mass: `mean` far outside [ln r(t_min), ln r(1)].
  """
  if not std > 0:
    raise ValueError(f"std must be > 0, got {std!r}")
  times = np.linspace(t_min, 1.0, TIME_TABLE_SIZE)
  log_r = np.log(noise_to_signal(corruption, power, times))
  log_r = np.maximum.accumulate(log_r + 1e-9 * np.arange(len(times)))  # strictly increasing
  a, b = (log_r[0] - mean) / std, (log_r[-1] - mean) / std  # standardised bounds, a < b
  sign = -1.0 if a + b > 0 else 1.0  # mirror an upper-tail interval into the lower tail
  lo_z, hi_z = sorted((sign * a, sign * b))
  cdf = lambda z: 0.5 * math.erfc(-z / math.sqrt(2.0))  # noqa: E731  float64
  lo, hi = cdf(lo_z), cdf(hi_z)
  if not hi - lo > 1e-12 or hi <= 0.0:
    raise ValueError(
      f"the log-normal density has no mass on the ratios t covers: ln r in [{log_r[0]:.2f}, {log_r[-1]:.2f}], "
      f"mean {mean!r}, std {std!r}"
    )
  table_r, table_t = jnp.asarray(log_r, jnp.float32), jnp.asarray(times, jnp.float32)

  def sample(key: jax.Array, batch: int) -> jax.Array:
    u = jax.random.uniform(key, (batch,), jnp.float32, minval=lo, maxval=hi)
    z = special.ndtri(jnp.clip(u, max(lo, 1e-38), min(hi, 1.0 - 2**-24)))
    log_ratio = mean + std * sign * z
    return jnp.clip(jnp.interp(log_ratio, table_r, table_t), t_min, 1.0)

  return sample
