"""Time grids for the samplers: the N+1 levels t_0 = t_start > t_1 > … > t_N = 0 that N network
evaluations visit.

A sampler with `num_steps = N` evaluates the denoiser at t_0 … t_{N-1} and steps from t_i to
t_{i+1}. Every sampler takes the grid as its `time_grid` argument: a family name below, or an
explicit sequence of N+1 strictly decreasing times in [0, 1] (t_0 in (0, 1], t_N = 0).

* 'uniform': t_i = t_start (1 - i/N), equal steps in t. With the selected blur levels (a table
  placed at t_k = k/(K-1)) this is uniform in the level index, so the name covers both.
* 'logsnr': equal steps in the whole image's log-SNR λ(t) = log c_ref(t) - log s_t, where
  c_ref(t) = (mean_k c_t(k)²)^½ is the root mean square of C_t's multipliers in its diagonal
  basis (for C_t = I it is 1, and λ = -log s_t). Each coefficient of x_t = C_t x_0 + s_t η is a
  scalar diffusion with its own log-SNR; the clock is their mean SNR, in which no coefficient
  is left out. (Earlier versions took their median, floored at 1e-6: on blur the median
  coefficient is blurred away long before t = 1, the clock stood still there, and the first step
  stayed 1 -> ~0.78 whatever N: those grids did not converge.)
* 'edm': EDM's ρ-spacing (Karras et al., 2022) in σ_ref(t) = exp(-λ(t)) = s_t / c_ref(t):
  σ_i = (σ_max^(1/ρ) + i/N (σ_min^(1/ρ) - σ_max^(1/ρ)))^ρ between σ_ref(t_start) and
  σ_ref(0), ρ = `rho` (7 in EDM). For C_t = I with geometric s_t it is EDM's grid.

'logsnr' and 'edm' need a corruption diagonal in a basis (`Corruption.diagonal`: blur, masks,
identity). Their clock is u(t) = 0.8 λ̄(t) + 0.2 (1 - t/t_start), λ̄ the log-SNR rescaled to
run from 0 at t_start to 1 at t = 0: 'logsnr' takes equal steps in u, 'edm' puts u at the share
of λ's range of EDM's ρ-spaced σ_ref. The share of t (`T_SHARE`) makes the grids converge: a
step that moves the clock by Δu moves t by at most t_start Δu / 0.2 (1/(0.2 N) of t_start on
'logsnr'), so the largest step shrinks as N grows on every corruption (tested on blur, masks
and identity) even where λ is flat (c and s both constant, e.g. noise clipped at its maximum)
or falls to -∞ (a mask that removes every pixel at t = 1; c_ref is floored at 1e-6). Where λ
is affine in t (C_t = I, geometric s_t) u is affine too, and the grids are exactly the
uniform one and EDM's. λ(t) is inverted numerically on a dense grid of 4,097 points (float64
on the host, at trace time).

`Trace` is what every sampler returns with `trace=True`: the sample, and the time, input and
estimate of each network call (so a figure shows the grid the sampler used). `table` gives a
grid as their loops take it: an array of times, or for 'uniform' the rule `Uniform`, which
computes each time where it is used (the arithmetic the samplers always used).

Pure: numpy and jax only.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

FAMILIES = ("uniform", "logsnr", "edm")
DENSE_POINTS = 4097
C_REF_FLOOR = 1e-6
T_SHARE = 0.2  # the share of t in the 'logsnr' / 'edm' clock (module docstring)


def check_num_steps(num_steps: Any) -> None:
  if isinstance(num_steps, bool) or not isinstance(num_steps, int) or num_steps < 1:
    raise ValueError(f"num_steps must be a Python int >= 1, got {num_steps!r}")


def reference_log_snr(corruption: Any, t: np.ndarray, height: int, width: int) -> np.ndarray:
  """λ(t) = log max(rms c_t, 1e-6) - log s_t for times t [M] (host, float64) -> [M]."""
  t = np.asarray(t, np.float64)
  with jax.ensure_compile_time_eval():
    _, multipliers = corruption.diagonal(jnp.asarray(t, jnp.float32), height, width)
    noise = corruption.noise_std(jnp.asarray(t, jnp.float32))
    multipliers, noise = np.asarray(multipliers, np.float64), np.asarray(noise, np.float64)
  c_ref = np.sqrt(np.mean(np.square(multipliers.reshape(len(t), -1)), axis=1))
  return np.log(np.maximum(c_ref, C_REF_FLOOR)) - np.log(noise)


def _invert(corruption: Any, fractions_of_range, t_start: float, height: int, width: int) -> np.ndarray:
  """t_i with u(t_i) = fractions[i]: u the clock (module docstring), on a dense grid; `fractions_of_range`
  maps (λ(t_start), λ(0)) of the monotone λ to the N+1 fractions 0 … 1 of the family."""
  dense = np.linspace(0.0, t_start, DENSE_POINTS)
  lam = np.minimum.accumulate(reference_log_snr(corruption, dense, height, width))  # non-increasing in t
  span = lam[0] - lam[-1]
  if not np.isfinite(span):
    raise ValueError("time_grid: the reference log-SNR is not finite on [0, t_start]")
  lam_share = (lam - lam[-1]) / span if span > 0 else np.zeros_like(lam)
  clock = (1.0 - T_SHARE) * lam_share + T_SHARE * (1.0 - dense / t_start)  # 1 at t = 0, 0 at t_start, increasing
  fractions = np.asarray(fractions_of_range(lam[-1], lam[0]), np.float64)
  times = np.interp(fractions, clock[::-1], dense[::-1])
  times[0], times[-1] = t_start, 0.0
  return times


def make(
  family: str, corruption: Any, num_steps: int, height: int, width: int, *, t_start: float = 1.0, rho: float = 7.0
) -> np.ndarray:
  """The grid `family` (one of FAMILIES): [num_steps + 1] float64, t_start … 0, strictly decreasing."""
  check_num_steps(num_steps)
  steps = np.arange(num_steps + 1) / num_steps
  if family == "uniform":
    return t_start * (1.0 - steps)
  if family == "logsnr":
    return _invert(corruption, lambda lo, hi: steps, t_start, height, width)
  if family == "edm":
    if not (isinstance(rho, (int, float)) and rho > 0):
      raise ValueError(f"rho must be a number > 0, got {rho!r}")

    def edm_fractions(lo, hi):  # EDM's ρ-spaced σ_ref = exp(-λ), as fractions of λ's range
      sig_max, sig_min = np.exp(-lo), np.exp(-hi)
      sig = (sig_max ** (1 / rho) + steps * (sig_min ** (1 / rho) - sig_max ** (1 / rho))) ** rho
      return (-np.log(sig) - lo) / (hi - lo) if hi > lo else steps

    return _invert(corruption, edm_fractions, t_start, height, width)
  raise ValueError(f"time_grid must be one of {FAMILIES} or a sequence of num_steps + 1 times, got {family!r}")


def resolve(
  time_grid: str | Sequence[float] | np.ndarray,
  corruption: Any,
  num_steps: int,
  height: int,
  width: int,
  *,
  t_start: float = 1.0,
  rho: float = 7.0,
) -> np.ndarray:
  """`time_grid` as [num_steps + 1] float64 times: a family name (`make`) or an explicit grid,
  checked (strictly decreasing, t_0 in (0, 1], t_N = 0, and t_0 = t_start when t_start < 1)."""
  check_num_steps(num_steps)
  if not 0 < t_start <= 1:
    raise ValueError(f"t_start must be in (0, 1], got {t_start!r}")
  if isinstance(time_grid, str):
    return make(time_grid, corruption, num_steps, height, width, t_start=t_start, rho=rho)
  times = np.asarray(time_grid, np.float64)
  if times.shape != (num_steps + 1,):
    raise ValueError(f"time_grid must have num_steps + 1 = {num_steps + 1} times, got shape {times.shape}")
  if not (np.all(np.diff(times) < 0) and 0 < times[0] <= 1 and times[-1] == 0):
    raise ValueError(f"time_grid must decrease strictly from a t_0 in (0, 1] to exactly 0, got {times.tolist()}")
  if t_start != 1.0 and times[0] != t_start:
    raise ValueError(f"time_grid starts at {times[0]}, but t_start = {t_start}")
  return times


@dataclasses.dataclass(frozen=True)
class Uniform:
  """The uniform grid t_i = t_start (N - i)/N as a rule: indexing it (`grid[i]`, also with a traced
  i inside a loop) computes t_i where it is used. The samplers have always computed it this way,
  and XLA fuses that arithmetic into what uses it, so a precomputed table, though equal in value,
  would move their results in the last bits. `array(dtype)` is the whole grid (for a `Trace`)."""

  num_steps: int
  t_start: float = 1.0

  def __len__(self) -> int:
    return self.num_steps + 1

  def __getitem__(self, i: Any) -> Any:
    frac = (self.num_steps - i) / self.num_steps
    return frac if self.t_start == 1 else self.t_start * frac

  def array(self, dtype: Any = jnp.float32) -> jax.Array:
    return jnp.asarray(self[jnp.arange(self.num_steps + 1)], dtype)


def table(
  time_grid: str | Sequence[float] | np.ndarray,
  corruption: Any,
  num_steps: int,
  height: int,
  width: int,
  *,
  t_start: float = 1.0,
  rho: float = 7.0,
  dtype: Any = jnp.float32,
) -> jax.Array | Uniform:
  """The resolved grid a sampler's loop takes ([num_steps + 1] times): `resolve`'s times as a jax
  array in `dtype`, or for 'uniform' the rule `Uniform` (indexable the same way)."""
  if isinstance(time_grid, str) and time_grid == "uniform":
    check_num_steps(num_steps)
    if not 0 < t_start <= 1:
      raise ValueError(f"t_start must be in (0, 1], got {t_start!r}")
    return Uniform(num_steps, t_start)
  return jnp.asarray(resolve(time_grid, corruption, num_steps, height, width, t_start=t_start, rho=rho), dtype)


class Trace(NamedTuple):
  """What every sampler returns with `trace=True` (the one trajectory form).

  x0: [B, H, W, C], the sample (what the sampler returns without `trace`).
  x0_hat: [B, H, W, C], the last network estimate.
  times: [M], the time of each network call, in call order (M = num_steps): the grid the sampler
    used (for 'pc' each level's time twice, corrector then predictor).
  x_t: [M, B, H, W, C], each call's input.
  x0_hats: [M, B, H, W, C], each call's output h(x_t, t).
  """

  x0: jax.Array
  x0_hat: jax.Array
  times: jax.Array
  x_t: jax.Array
  x0_hats: jax.Array
