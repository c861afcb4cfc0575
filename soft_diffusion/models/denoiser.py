"""The denoiser wrapper: h_θ(x_t, t) = S_t x_t + c(t) · φ_θ(x_t, t), the clean-image estimate
(the Soft Score Matching parameterisation, losses.py).

`make_denoise_fn(model, params, noise_std=..., skip=...)` returns the `denoise_fn(x_t, t)` that the
loss and the samplers take; the skip and the output scale live here, so the raw network knows
nothing about diffusion. The output scale c(t) is the model config's `output_scale`:

* 'none': c = 1, h = S_t x_t + φ (the default);
* 'noise_std': c = s_t, h = S_t x_t + s_t · φ. With C_t = I and S_t = I this is score_sde's
  `scale_by_sigma`: the score estimate (h - x_t)/s_t² = φ/s_t, so the network predicts the
  unit-variance noise direction and its output stays O(1) even where s_t is large (the VE SDE's
  s_1 of 180).

The skip S_t is the model config's `skip`:

* 'identity': S_t = I, the paper's residual form h = x_t + φ (the default). Where the loss gives
  the network no signal (frequencies C_t removes), h falls back to x_t, noise included.
* 'wiener' (an extension, not the paper's): S_t is the linear MMSE estimate of x_0 from x_t for
  data of mean DCT power v, per DCT coefficient c_t v / (c_t² v + s_t²) (`wiener_skip`, for
  corruptions diagonal in the DCT basis: blur and identity). The network learns the correction
  to that estimate; a frequency it has not learned falls back to the Wiener estimate (≈ 0 where
  the data has no power) instead of to x_t's noise. For Gaussian data with spectrum v, S_t x_t
  is already the exact posterior mean (φ = 0 is optimal).

With `model.precond = 'spectral'` (an extension: docs/method.md §2.4) the residual form is
replaced by the per-coefficient preconditioning of `soft_diffusion.preconditioning`:
h = B⁻¹(c_skip ⊙ B x_t + c_out ⊙ B φ(c_in · x_t, t)), with its own loss
(`losses.preconditioned_loss`); pass the `Preconditioner` as `precond`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import flax.linen as nn
import jax
import numpy as np

SkipFn = Callable[[jax.Array, jax.Array], jax.Array]


def wiener_skip(corruption: Any, power: np.ndarray) -> SkipFn:
  """S_t x_t for model.skip = 'wiener': per DCT coefficient c_t v / (c_t² v + s_t²) · DCT2(x_t).

  Args:
    corruption: a blur or identity corruption (diagonal in the DCT basis).
    power: v, the data's mean DCT power E[DCT2(x_0)²] per coefficient, [H, W] or [H, W, C].
  Returns:
    skip(x_t [B,H,W,C], t [B]) -> [B,H,W,C] float32; jit-able.
  """
  from soft_diffusion import gaussian_field  # the same formula as the Gaussian-field posterior mean

  power = np.asarray(power, np.float64)
  return gaussian_field.oracle_denoiser(corruption, np.maximum(power, 1e-12 * max(power.max(), 1e-30)))


def make_denoise_fn(
  model: nn.Module,
  params: Any,
  *,
  noise_std: Callable[[jax.Array], jax.Array] | None = None,
  skip: SkipFn | None = None,
  precond: Any = None,
  train: bool = False,
  dropout_key: jax.Array | None = None,
) -> Callable[[jax.Array, jax.Array], jax.Array]:
  """denoise_fn(x_t [B,H,W,C], t [B]) = S_t x_t + c(t) · model(x_t, t), float32 (or, with
  model.precond = 'spectral', `precond.denoise_fn` over the network).

  Args:
    model: a network whose `config.output_scale` (if any) chooses c ('none' or 'noise_std') and
      whose `config.skip` (if any) chooses S_t ('identity' or 'wiener').
    params: its parameters.
    noise_std: t [B] -> s_t [B] (e.g. `corruption.noise_std`); needed for 'noise_std'.
    skip: (x_t, t) -> S_t x_t; needed for 'wiener' (e.g. `wiener_skip(corruption, power)`).
    precond: a `preconditioning.Preconditioner`; needed for model.precond = 'spectral'.
    train: dropout on (needs `dropout_key`).
  """
  network_fn = make_network_fn(model, params, train=train, dropout_key=dropout_key)
  config = getattr(model, "config", None)
  if getattr(config, "precond", "none") != "none":
    if precond is None:
      raise ValueError("model.precond = 'spectral' needs precond (a preconditioning.Preconditioner)")
    return precond.denoise_fn(network_fn)
  if precond is not None:
    raise ValueError("precond is given but model.precond is 'none'; set model.precond = 'spectral'")
  scaled = getattr(config, "output_scale", "none") == "noise_std"
  if scaled and noise_std is None:
    raise ValueError("model.output_scale = 'noise_std' needs noise_std (e.g. corruption.noise_std)")
  wiener = getattr(config, "skip", "identity") == "wiener"
  if wiener and skip is None:
    raise ValueError("model.skip = 'wiener' needs skip (models.wiener_skip(corruption, power))")
  if not wiener and skip is not None:
    raise ValueError("skip is given but model.skip is 'identity'; set model.skip = 'wiener'")

  def denoise_fn(x_t: jax.Array, t: jax.Array) -> jax.Array:
    phi = network_fn(x_t, t)
    if scaled:
      phi = phi * noise_std(t).astype(phi.dtype)[:, None, None, None]
    base = skip(x_t, t) if wiener else x_t
    return phi + base.astype(phi.dtype)

  return denoise_fn


def make_network_fn(
  model: nn.Module, params: Any, *, train: bool = False, dropout_key: jax.Array | None = None
) -> Callable[[jax.Array, jax.Array], jax.Array]:
  """The raw network as a function (input [B,H,W,C], t [B]) -> φ [B,H,W,C] (dropout on with `train`)."""
  rngs = {"dropout": dropout_key} if dropout_key is not None else None
  if train and rngs is None:
    raise ValueError("dropout_key is required when train=True")

  def network_fn(x: jax.Array, t: jax.Array) -> jax.Array:
    return model.apply({"params": params}, x, t, train=train, rngs=rngs)

  return network_fn
