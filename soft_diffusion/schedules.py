"""Noise schedules s_t and blur-level schedules σ_B(t).

* Noise schedules (docs/method.md §1.3): the clipped geometric default
  `s_t = s_min · (s_max/s_min)^min(t/t_c, 1)`, the plain geometric VE schedule (t_c = 1) and a
  constant level (s_min = s_max). Each is a small frozen dataclass, callable on t.
* Blur-level schedules (docs/method.md §1.1, §3): log-spaced `σ_B(t) = σ_min (σ_max/σ_min)^t`, or a
  piecewise-linear table of K levels placed at t_k = k/(K-1) (the output of level selection,
  `level_selection.py`).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import jax
import jax.numpy as jnp

# ----------------------------------------------------------------------------------------------
# Noise schedules s_t.


@dataclasses.dataclass(frozen=True)
class GeometricNoiseSchedule:
  """s_t = std_min · (std_max/std_min)^min(t/clip_t, 1); clip_t = 1 is the plain VE schedule.

  s_t must be positive (the Soft Score Matching theory needs full support) and never decrease.
  """

  std_min: float
  std_max: float
  clip_t: float = 1.0

  def __post_init__(self):
    if not (math.isfinite(self.std_min) and self.std_min > 0):
      raise ValueError(f"noise std_min must be a finite number > 0 (s_t > 0 is required), got {self.std_min}")
    if not (math.isfinite(self.std_max) and self.std_max >= self.std_min):
      raise ValueError(
        f"noise std_max must be finite and >= std_min = {self.std_min} (s_t may not decrease), got {self.std_max}"
      )
    if not 0 < self.clip_t <= 1:
      raise ValueError(f"noise clip_t must be in (0, 1], got {self.clip_t}")

  def __call__(self, t: jax.Array) -> jax.Array:
    """Args: t [...] in [0, 1]. Returns s_t with the shape of t, float32 or wider."""
    t = jnp.asarray(t)
    t = t.astype(jnp.promote_types(t.dtype, jnp.float32))
    progress = jnp.clip(t / self.clip_t, 0.0, 1.0)
    return self.std_min * (self.std_max / self.std_min) ** progress


def clipped_geometric_noise(
  std_min: float = 0.01, std_max: float = 0.1, clip_t: float = 0.25
) -> GeometricNoiseSchedule:
  """The default s_t of docs/method.md §1.3 [choice]: geometric from std_min to std_max over [0, clip_t]."""
  return GeometricNoiseSchedule(std_min, std_max, clip_t)


def geometric_noise(std_min: float = 0.01, std_max: float = 90.0) -> GeometricNoiseSchedule:
  """Plain geometric (VE SDE) schedule over the whole of [0, 1]."""
  return GeometricNoiseSchedule(std_min, std_max, 1.0)


def constant_noise(std: float) -> GeometricNoiseSchedule:
  """s_t = std for every t."""
  return GeometricNoiseSchedule(std, std, 1.0)


NOISE_SCHEDULES = ("clipped_geometric", "geometric", "constant")


def make_noise_schedule(name: str, *, std_min: float, std_max: float, clip_t: float) -> GeometricNoiseSchedule:
  """Builds the noise schedule `name` (one of NOISE_SCHEDULES); `constant` uses std_min."""
  if name == "clipped_geometric":
    return clipped_geometric_noise(std_min, std_max, clip_t)
  if name == "geometric":
    return geometric_noise(std_min, std_max)
  if name == "constant":
    return constant_noise(std_min)
  raise ValueError(f"noise_schedule must be one of {NOISE_SCHEDULES}, got {name!r}")


# ----------------------------------------------------------------------------------------------
# Blur-level schedules σ_B(t).


@dataclasses.dataclass(frozen=True)
class LogBlurSchedule:
  """σ_B(t) = sigma_min · (sigma_max/sigma_min)^t, in pixels."""

  sigma_min: float = 0.01
  sigma_max: float = 23.0

  def __post_init__(self):
    if not (math.isfinite(self.sigma_min) and self.sigma_min > 0):
      raise ValueError(f"blur sigma_min must be a finite number > 0 for a log schedule, got {self.sigma_min}")
    if not (math.isfinite(self.sigma_max) and self.sigma_max >= self.sigma_min):
      raise ValueError(f"blur sigma_max must be finite and >= sigma_min = {self.sigma_min}, got {self.sigma_max}")

  def __call__(self, t: jax.Array) -> jax.Array:
    t = jnp.asarray(t)
    t = t.astype(jnp.promote_types(t.dtype, jnp.float32))
    return self.sigma_min * (self.sigma_max / self.sigma_min) ** jnp.clip(t, 0.0, 1.0)


@dataclasses.dataclass(frozen=True)
class TableBlurSchedule:
  """Piecewise-linear σ_B(t) through K levels placed at t_k = k/(K-1) (docs/method.md §3)."""

  sigmas: tuple[float, ...]

  def __post_init__(self):
    sigmas = tuple(float(s) for s in self.sigmas)
    object.__setattr__(self, "sigmas", sigmas)
    if len(sigmas) < 2:
      raise ValueError(f"blur sigma table needs at least 2 levels, got {len(sigmas)}")
    if not all(math.isfinite(s) and s >= 0 for s in sigmas):
      raise ValueError(f"blur sigma table must hold finite values >= 0, got {sigmas}")
    if any(b < a for a, b in zip(sigmas[:-1], sigmas[1:], strict=True)):
      raise ValueError(f"blur sigma table must be non-decreasing in t, got {sigmas}")

  def __call__(self, t: jax.Array) -> jax.Array:
    t = jnp.asarray(t)
    t = t.astype(jnp.promote_types(t.dtype, jnp.float32))
    knots = jnp.linspace(0.0, 1.0, len(self.sigmas), dtype=t.dtype)
    return jnp.interp(t, knots, jnp.asarray(self.sigmas, t.dtype))


BLUR_SCHEDULES = ("log", "table")


def make_blur_schedule(
  name: str, *, sigma_min: float, sigma_max: float, sigma_table: Any = None
) -> LogBlurSchedule | TableBlurSchedule:
  """Builds the blur-level schedule `name` (one of BLUR_SCHEDULES)."""
  if name == "log":
    return LogBlurSchedule(sigma_min, sigma_max)
  if name == "table":
    if sigma_table is None:
      raise ValueError(f"blur_sigma_table must be a sequence of >= 2 levels when blur_schedule={name!r}, got None")
    return TableBlurSchedule(tuple(sigma_table))
  raise ValueError(f"blur_schedule must be one of {BLUR_SCHEDULES}, got {name!r}")
