"""The `Corruption` object (docs/method.md §1): x_t = C_t x_0 + s_t · η, and its typed config.

A `Corruption` pairs a linear operator `C_t` (anything with `apply(x, t)`) with a noise
schedule `s_t` (anything callable on t). The loss and the samplers only use its three methods
`apply`, `noise_std` and `corrupt`, so any object with those methods works in their place.

Shapes: images `x` are [B, H, W, C] floating arrays; times `t` are [B] (or a scalar, which is
broadcast) with 0 = clean and 1 = most corrupted.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Protocol

import jax
import jax.numpy as jnp


class LinearOperator(Protocol):
  """A time-indexed linear corruption operator C_t."""

  def apply(self, x: jax.Array, t: jax.Array) -> jax.Array:
    """C_t x for images x [B, H, W, C] and times t [B]."""
    ...


def check_images(x: Any, name: str = "x") -> jax.Array:
  """Returns `x` as an array after checking it is a [B, H, W, C] floating batch."""
  x = jnp.asarray(x)
  if x.ndim != 4:
    raise ValueError(f"{name} must have rank 4 [B, H, W, C], got shape {x.shape}")
  if not jnp.issubdtype(x.dtype, jnp.floating):
    raise ValueError(f"{name} must have a floating dtype (float32, bfloat16, ...), got {x.dtype}")
  return x


def check_batch_vector(v: Any, batch: int, name: str) -> jax.Array:
  """Returns `v` broadcast to [batch], float; raises unless it is a scalar or has shape [batch]."""
  v = jnp.asarray(v)
  if v.shape not in ((), (batch,)):
    raise ValueError(f"{name} must be a scalar or have shape [B] = ({batch},), got shape {v.shape}")
  if not jnp.issubdtype(v.dtype, jnp.floating):
    v = v.astype(jnp.float32)
  return jnp.broadcast_to(v, (batch,))


@dataclasses.dataclass(frozen=True)
class Corruption:
  """x_t = C_t x_0 + s_t η with C_t = `operator.apply` and s_t = `noise_schedule(t)`.

  Hashable and registered as a static pytree, so it can be closed over or passed to `jax.jit`.
  """

  operator: LinearOperator
  noise_schedule: Any  # callable: t [B] -> s_t [B]

  def apply(self, x: jax.Array, t: jax.Array) -> jax.Array:
    """C_t x. Args: x [B, H, W, C]; t [B] in [0, 1]. Returns [B, H, W, C], dtype of x."""
    x = check_images(x)
    t = check_batch_vector(t, x.shape[0], "t")
    return self.operator.apply(x, t)

  def diagonal(self, t: jax.Array, height: int, width: int) -> tuple[str, jax.Array]:
    """(basis, multipliers [B, H, W]) of C_t where it is diagonal in a fixed orthonormal basis
    shared by all channels: 'dct' (blur, identity) or 'pixel' (masking). Raises ValueError for an
    operator without a `diagonal` method (it is optional: the loss and samplers never need it)."""
    if not hasattr(self.operator, "diagonal"):
      raise ValueError(
        f"the corruption's operator {type(self.operator).__name__} is not diagonal in a known basis "
        "(it needs `basis` and `diagonal(t, height, width)`, as blur and masking have)"
      )
    return self.operator.basis, self.operator.diagonal(t, height, width)

  def noise_std(self, t: jax.Array) -> jax.Array:
    """s_t. Args: t [B] (or scalar). Returns an array of the same shape."""
    return self.noise_schedule(jnp.asarray(t))

  def corrupt(self, x0: jax.Array, t: jax.Array, noise: jax.Array) -> jax.Array:
    """C_t x0 + s_t · noise. Args: x0, noise [B, H, W, C]; t [B]. Returns [B, H, W, C]."""
    x0 = check_images(x0, "x0")
    noise = check_images(noise, "noise")
    if noise.shape != x0.shape:
      raise ValueError(f"noise must have the shape of x0 {x0.shape}, got {noise.shape}")
    t = check_batch_vector(t, x0.shape[0], "t")
    std = self.noise_std(t).astype(x0.dtype)
    return self.apply(x0, t) + std[:, None, None, None] * noise


jax.tree_util.register_static(Corruption)
