"""The denoiser wrapper: h_θ(x_t, t) = x_t + c(t) · φ_θ(x_t, t), the clean-image estimate (SPEC §2).

`make_denoise_fn(model, params, noise_std=...)` returns the `denoise_fn(x_t, t)` that the loss and
the samplers take; the residual form lives here, so the raw network knows nothing about diffusion.
The output scale c(t) is the model config's `output_scale`:

* 'none': c = 1, h = x_t + φ (the default);
* 'noise_std': c = s_t, h = x_t + s_t · φ. With C_t = I this is score_sde's `scale_by_sigma`:
  the score estimate (h - x_t)/s_t² = φ/s_t, so the network predicts the unit-variance noise
  direction and its output stays O(1) even where s_t is large (the VE SDE's s_1 of 180).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import flax.linen as nn
import jax


def make_denoise_fn(
  model: nn.Module,
  params: Any,
  *,
  noise_std: Callable[[jax.Array], jax.Array] | None = None,
  train: bool = False,
  dropout_key: jax.Array | None = None,
) -> Callable[[jax.Array, jax.Array], jax.Array]:
  """denoise_fn(x_t [B,H,W,C], t [B]) = x_t + c(t) · model(x_t, t), float32.

  Args:
    model: a network whose `config.output_scale` (if any) chooses c: 'none' or 'noise_std'.
    params: its parameters.
    noise_std: t [B] -> s_t [B] (e.g. `corruption.noise_std`); needed for 'noise_std'.
    train: dropout on (needs `dropout_key`).
  """
  rngs = {"dropout": dropout_key} if dropout_key is not None else None
  if train and rngs is None:
    raise ValueError("dropout_key is required when train=True")
  scaled = getattr(getattr(model, "config", None), "output_scale", "none") == "noise_std"
  if scaled and noise_std is None:
    raise ValueError("model.output_scale = 'noise_std' needs noise_std (e.g. corruption.noise_std)")

  def denoise_fn(x_t: jax.Array, t: jax.Array) -> jax.Array:
    phi = model.apply({"params": params}, x_t, t, train=train, rngs=rngs)
    if scaled:
      phi = phi * noise_std(t).astype(phi.dtype)[:, None, None, None]
    return phi + x_t.astype(phi.dtype)

  return denoise_fn
