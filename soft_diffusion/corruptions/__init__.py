"""Corruption operators C_t and the `Corruption` object x_t = C_t x_0 + s_t η (docs/method.md §1).

    from soft_diffusion import corruptions
    y = corruptions.gaussian_blur(x, sigma)            # x [B,H,W,C], sigma [B] px
    corruption = corruptions.make(cfg)                 # cfg: dataclass, dict or ConfigDict
    x_t = corruption.corrupt(x0, t, noise)             # C_t x0 + s_t noise

A new corruption family is one file here with an operator class (`apply(x, t)`) and a
`from_config` builder, one entry in `REGISTRY`, and its fields in `CorruptionConfig`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

from soft_diffusion import schedules, typed_config
from soft_diffusion.corruptions.base import Corruption, LinearOperator
from soft_diffusion.corruptions.blur import BlurOperator, blur_matrices, gaussian_blur
from soft_diffusion.corruptions.identity import IdentityOperator
from soft_diffusion.corruptions.masking import MASK_ORDERS, MaskOperator, mask_values, removal_order, soft_mask

__all__ = [
  "REGISTRY",
  "BlurOperator",
  "Corruption",
  "CorruptionConfig",
  "IdentityOperator",
  "LinearOperator",
  "MASK_ORDERS",
  "MaskOperator",
  "blur_matrices",
  "gaussian_blur",
  "make",
  "mask_values",
  "removal_order",
  "soft_mask",
]


@dataclasses.dataclass(frozen=True)
class CorruptionConfig:
  """The `corruption` block: x_t = C_t x_0 + s_t η (docs/method.md §1).

  The config schema: each field's comment is its documentation (`python -m soft_diffusion.run.schema`
  lists every field, docs/config.md shows them).
  """

  name: str = "blur"  # C_t: 'blur' (Gaussian, DCT-exact) | 'mask' (soft mask) | 'identity' (VE SDE)
  noise_schedule: str = "clipped_geometric"  # s_t: 'clipped_geometric' | 'geometric' (VE) | 'constant'
  noise_std_min: float = 0.01  # s_0 (> 0); images are in [-1, 1]
  noise_std_max: float = 0.1  # s_t for t >= noise_clip_t (VE baseline: up to 90)
  noise_clip_t: float = 0.25  # t_c of the clipped geometric schedule, in (0, 1]
  # σ_B(t): 'log' (log-spaced) | 'table' (piecewise linear) | 'selected' (WORKDIR/levels.json, --mode levels)
  blur_schedule: str = "log"
  blur_sigma_min: float = 0.01  # σ_B(0), pixels (log schedule)
  blur_sigma_max: float = 23.0  # σ_B(1), pixels (log schedule); paper range on 64×64: [0.01, 23]
  blur_sigma_table: tuple[float, ...] | None = None  # K levels at t_k = k/(K-1); 'table' only
  mask_order: str = "center"  # pixel removal order: 'center' (growing central square) | 'random'
  mask_ramp_width: float = 0.25  # width in t over which a pixel fades out, in (0, 1]
  mask_fraction: float = 1.0  # share of pixels fully masked by t = 1, in (0, 1]
  mask_seed: int = 0  # permutation seed for mask_order = 'random'

  @classmethod
  def from_any(cls, cfg: Any) -> CorruptionConfig:
    """From a CorruptionConfig, dataclass, Mapping or ConfigDict; unknown keys are an error."""
    return typed_config.from_block(cls, cfg, "corruption")


# corruption.blur_schedule: a schedules.BLUR_SCHEDULES name, or 'selected': a table of levels that
# the drivers select on the data and fill in (settings.load) before the corruption is built.
BLUR_SCHEDULES = (*schedules.BLUR_SCHEDULES, "selected")


def _blur(cfg: CorruptionConfig) -> BlurOperator:
  if cfg.blur_schedule not in BLUR_SCHEDULES:
    raise ValueError(f"blur_schedule must be one of {BLUR_SCHEDULES}, got {cfg.blur_schedule!r}")
  if cfg.blur_schedule == "selected" and cfg.blur_sigma_table is None:
    raise ValueError(
      "blur_schedule = 'selected' needs its levels in blur_sigma_table: Workdir.settings(config) reads them"
      " from WORKDIR/levels.json (written by --mode levels)"
    )
  return BlurOperator(
    schedules.make_blur_schedule(
      "table" if cfg.blur_schedule == "selected" else cfg.blur_schedule,
      sigma_min=cfg.blur_sigma_min,
      sigma_max=cfg.blur_sigma_max,
      sigma_table=cfg.blur_sigma_table,
    )
  )


def _mask(cfg: CorruptionConfig) -> MaskOperator:
  return MaskOperator(cfg.mask_order, cfg.mask_ramp_width, cfg.mask_fraction, cfg.mask_seed)


def _identity(cfg: CorruptionConfig) -> IdentityOperator:
  del cfg
  return IdentityOperator()


# name -> builder of the operator C_t from a CorruptionConfig.
REGISTRY: dict[str, Callable[[CorruptionConfig], LinearOperator]] = {
  "blur": _blur,
  "mask": _mask,
  "identity": _identity,
}


def make(cfg: Any) -> Corruption:
  """Builds the `Corruption` described by a config block (see CorruptionConfig)."""
  cfg = CorruptionConfig.from_any(cfg)
  if cfg.name not in REGISTRY:
    raise ValueError(f"corruption name must be one of {sorted(REGISTRY)}, got {cfg.name!r}")
  noise = schedules.make_noise_schedule(
    cfg.noise_schedule, std_min=cfg.noise_std_min, std_max=cfg.noise_std_max, clip_t=cfg.noise_clip_t
  )
  return Corruption(operator=REGISTRY[cfg.name](cfg), noise_schedule=noise)
