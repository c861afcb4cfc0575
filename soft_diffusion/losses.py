"""Soft Score Matching (docs/method.md §2) and plain denoising score matching for the C_t = I baseline.

With the clean-image estimate h_θ(x_t, t) = `denoise_fn(x_t, t)`, the model score is
s_θ = (C_t h_θ - x_t)/s_t², and matching it to the conditional score (C_t x_0 - x_t)/s_t²
gives the Soft Score Matching loss

    L = E_{t, x_0, η} [ w(t) · mean_pixels( (C_t (h_θ(x_t, t) - x_0))² ) ],

i.e. the estimate is compared with the clean image *after corruption*. w(t) = 1 by default;
"inverse_noise_var" uses w = 1/s_t², which is score_sde's σ²-weighted DSM in score units.
`reduction = "sum"` sums over the pixel values instead of averaging (score_sde's
`reduce_mean=False`): the same minimiser, a loss and gradient n = H·W·C times larger, which is
what a gradient clip at 1.0 was tuned for in score_sde.
The functions here only use `corruption.apply`, `.noise_std` and `.corrupt`.

`preconditioned_loss` is the loss of the per-coefficient preconditioning
(`soft_diffusion.preconditioning`, docs/method.md §2.4, an extension): the same minimiser
E[x_0 | x_t], with coefficient k of the estimate's error weighted by 1/c_out² instead of the
paper's c_t(k)².
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

from soft_diffusion.corruptions import base

DenoiseFn = Callable[[jax.Array, jax.Array], jax.Array]

WEIGHTINGS = ("uniform", "inverse_noise_var")
REDUCTIONS = ("mean", "sum")  # over the pixel values of one example


def loss_weight(noise_std: jax.Array, weighting: str) -> jax.Array:
  """w(t) from s_t [B] for `weighting` in WEIGHTINGS."""
  if weighting == "uniform":
    return jnp.ones_like(noise_std)
  if weighting == "inverse_noise_var":
    return 1.0 / jnp.square(noise_std)
  raise ValueError(f"weighting must be one of {WEIGHTINGS}, got {weighting!r}")


def _checked_inputs(x0: Any, t: Any, noise_std_fn: Callable[[jax.Array], jax.Array], weighting: str):
  """Validated (x0 [B,H,W,C], t [B], s_t [B] float32). s_t > 0 is checked whenever it is known
  at trace time (the theory needs full support); traced values cannot be checked here."""
  if weighting not in WEIGHTINGS:
    raise ValueError(f"weighting must be one of {WEIGHTINGS}, got {weighting!r}")
  x0 = base.check_images(x0, "x0")
  t = base.check_batch_vector(t, x0.shape[0], "t")
  noise_std = jnp.asarray(noise_std_fn(t), jnp.float32)
  if not isinstance(noise_std, jax.core.Tracer) and not bool(jnp.all(noise_std > 0)):
    raise ValueError(
      f"corruption.noise_std(t) must be > 0 for every t (full support), got min {float(jnp.min(noise_std))}"
    )
  return x0, t, noise_std


def soft_score_matching_per_example(
  denoise_fn: DenoiseFn,
  x0: jax.Array,
  t: jax.Array,
  noise: jax.Array,
  corruption: Any,
  *,
  weighting: str = "uniform",
  reduction: str = "mean",
  floor: float = 0.0,
  lag: float = 0.0,
) -> jax.Array:
  """Per-example Soft Score Matching loss, [B] float32 (see `soft_score_matching_loss`)."""
  if reduction not in REDUCTIONS:
    raise ValueError(f"reduction must be one of {REDUCTIONS}, got {reduction!r}")
  if not 0.0 <= floor < 1.0:
    raise ValueError(f"floor must be in [0, 1), got {floor!r}")
  if not 0.0 <= lag < 1.0:
    raise ValueError(f"lag must be in [0, 1), got {lag!r}")
  if floor and lag:
    raise ValueError(f"floor and lag are two alternatives; set one, got floor={floor!r}, lag={lag!r}")
  x0, t, noise_std = _checked_inputs(x0, t, corruption.noise_std, weighting)
  x_t = corruption.corrupt(x0, t, noise)
  x0_hat = denoise_fn(x_t, t)
  if x0_hat.shape != x0.shape:
    raise ValueError(f"denoise_fn must return the shape of x0 {x0.shape}, got {x0_hat.shape}")
  error = x0_hat.astype(jnp.float32) - x0.astype(jnp.float32)
  # A_t = C_t (the paper), C_{max(t - lag, 0)} (lag > 0), or (1 - floor) C_t + floor I (floor > 0)
  residual = corruption.apply(error, jnp.maximum(t - lag, 0.0) if lag else t)
  if floor:  # A_t = (1 - floor) C_t + floor I: the frequencies C_t removes still carry weight floor²
    residual = (1.0 - floor) * residual + floor * error
  reduce = jnp.mean if reduction == "mean" else jnp.sum
  per_example = reduce(jnp.square(residual.astype(jnp.float32)), axis=(1, 2, 3))
  return loss_weight(noise_std, weighting) * per_example


def soft_score_matching_loss(
  denoise_fn: DenoiseFn,
  x0: jax.Array,
  t: jax.Array,
  noise: jax.Array,
  corruption: Any,
  *,
  weighting: str = "uniform",
  reduction: str = "mean",
  floor: float = 0.0,
  lag: float = 0.0,
) -> jax.Array:
  """Soft Score Matching loss (docs/method.md §2), a float32 scalar.

  Args:
    denoise_fn: (x_t [B,H,W,C], t [B]) -> x̂_0 [B,H,W,C], the clean-image estimate h_θ.
    x0: [B, H, W, C] clean images.
    t: [B] corruption times in [0, 1].
    noise: [B, H, W, C] standard normal η.
    corruption: object with `apply`, `noise_std`, `corrupt` (e.g. `corruptions.make(cfg)`).
    weighting: "uniform" (w = 1, default) or "inverse_noise_var" (w = 1/s_t²).
    reduction: "mean" (default) or "sum" over the pixel values of each example.
    floor: in [0, 1); > 0 replaces C_t in the loss by A_t = (1 − floor) C_t + floor·I (an
      extension, not the paper's): the error of h_θ at frequencies C_t removes is weighted by at
      least floor² instead of ~0. A_t is invertible, so the minimiser is still E[x_0 | x_t].
    lag: in [0, 1); > 0 replaces C_t in the loss by A_t = C_{max(t − lag, 0)} (an extension, not
      the paper's): the error is weighted as the Momentum Sampler reads it one step later, whose
      deblurring move is (C_{t−Δt} − C_t) x̂_0; with lag ≥ Δt every frequency that move reads is
      weighted by at least c_{t−Δt}². For blur, C_s is invertible for every s, so the minimiser is
      unchanged. Set floor or lag, not both.
  Returns:
    Batch mean of w(t) · mean_pixels((C_t(denoise_fn(x_t, t) - x0))²), x_t = corrupt(x0, t, η)
    (sum_pixels with reduction = "sum").
  """
  per_example = soft_score_matching_per_example(
    denoise_fn, x0, t, noise, corruption, weighting=weighting, reduction=reduction, floor=floor, lag=lag
  )
  return jnp.mean(per_example)


def denoising_score_matching_loss(
  denoise_fn: DenoiseFn,
  x0: jax.Array,
  t: jax.Array,
  noise: jax.Array,
  noise_std_fn: Callable[[jax.Array], jax.Array],
  *,
  weighting: str = "uniform",
) -> jax.Array:
  """Plain denoising score matching for x_t = x_0 + s_t η (C_t = I), written in score units.

  The model score is s_θ = (h_θ(x_t) - x_t)/s_t² and the target -η/s_t. The score-space weight
  λ(t) = s_t⁴ ("uniform") or s_t² ("inverse_noise_var", score_sde's choice) puts the loss on
  the same scale as `soft_score_matching_loss` with C_t = I, which it must then equal.
  """
  x0, t, noise_std = _checked_inputs(x0, t, noise_std_fn, weighting)
  std = noise_std[:, None, None, None]
  x_t = x0 + std * noise
  score = (denoise_fn(x_t, t) - x_t) / jnp.square(std)
  target = -noise / std
  lam = jnp.square(noise_std) * jnp.square(noise_std) if weighting == "uniform" else jnp.square(noise_std)
  return jnp.mean(lam * jnp.mean(jnp.square(score - target), axis=(1, 2, 3)))


def preconditioned_loss_per_example(
  network_fn: Callable[[jax.Array, jax.Array], jax.Array],
  x0: jax.Array,
  t: jax.Array,
  noise: jax.Array,
  precond: Any,
  *,
  reduction: str = "mean",
) -> jax.Array:
  """Per-example loss of the preconditioned parameterisation, [B] float32 (see `preconditioned_loss`)."""
  if reduction not in REDUCTIONS:
    raise ValueError(f"reduction must be one of {REDUCTIONS}, got {reduction!r}")
  corruption = precond.corruption
  x0, t, _ = _checked_inputs(x0, t, corruption.noise_std, "uniform")
  x_t = corruption.corrupt(x0, t, noise)
  output = network_fn(precond.network_input(x_t, t), t)
  if output.shape != x0.shape:
    raise ValueError(f"network_fn must return the shape of x0 {x0.shape}, got {output.shape}")
  residual = output.astype(jnp.float32) - precond.target_from_noise(x0, noise, t)
  reduce = jnp.mean if reduction == "mean" else jnp.sum
  return reduce(jnp.square(residual), axis=(1, 2, 3))


def preconditioned_loss(
  network_fn: Callable[[jax.Array, jax.Array], jax.Array],
  x0: jax.Array,
  t: jax.Array,
  noise: jax.Array,
  precond: Any,
  *,
  reduction: str = "mean",
) -> jax.Array:
  """The loss of the per-coefficient preconditioning (docs/method.md §2.4), a float32 scalar.

  With x_t = corrupt(x0, t, η) and F = network_fn(c_in · x_t, t), the batch mean of
  mean_pixels((F - target)²), target = (B x0 - c_skip ⊙ B x_t)/c_out in pixels
  (`Preconditioner.target`). The basis B is orthonormal, so this is
  mean_k ((B x̂_0 - B x0)(k) / c_out(k))² with x̂_0 = `precond.denoised(x_t, t, F)`: the estimate's
  error weighted by 1/c_out² per coefficient. The target is computed from η
  (`Preconditioner.target_from_noise`), so no difference of nearly equal terms is divided by a
  small c_out.

  Args:
    network_fn: (network input [B,H,W,C], t [B]) -> F [B,H,W,C], the raw network.
    x0: [B, H, W, C] clean images; t: [B] times in [0, 1]; noise: [B, H, W, C] standard normal.
    precond: a `preconditioning.Preconditioner` (it holds the corruption).
    reduction: "mean" (default) or "sum" over the pixel values of each example.
  """
  return jnp.mean(preconditioned_loss_per_example(network_fn, x0, t, noise, precond, reduction=reduction))
