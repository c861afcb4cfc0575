"""The denoiser wrapper: h_θ(x_t, t) = φ_θ(x_t, t) + x_t, the clean-image estimate (SPEC §2).

`make_denoise_fn(model, params)` returns the `denoise_fn(x_t, t)` that the loss and the samplers
take; the residual form lives here, so the raw network knows nothing about diffusion.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import flax.linen as nn
import jax


def make_denoise_fn(
  model: nn.Module, params: Any, *, train: bool = False, dropout_key: jax.Array | None = None
) -> Callable[[jax.Array, jax.Array], jax.Array]:
  """denoise_fn(x_t [B,H,W,C], t [B]) = model(x_t, t) + x_t, float32."""
  rngs = {"dropout": dropout_key} if dropout_key is not None else None
  if train and rngs is None:
    raise ValueError("dropout_key is required when train=True")

  def denoise_fn(x_t: jax.Array, t: jax.Array) -> jax.Array:
    phi = model.apply({"params": params}, x_t, t, train=train, rngs=rngs)
    return phi + x_t.astype(phi.dtype)

  return denoise_fn
