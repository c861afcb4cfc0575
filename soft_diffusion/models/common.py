"""What the networks share: compute dtypes, the output-scale choice, the checks of the fields
every network config has, and the sinusoidal time embedding."""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from soft_diffusion import typed_config

DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}
AUTO_DTYPE = {"gpu": "bfloat16", "tpu": "bfloat16"}  # model.dtype = 'auto' by backend; others: float32


def resolve_dtype(dtype: str, backend: str) -> str:
  """model.dtype 'auto' -> 'bfloat16' on a GPU or TPU (their matrix units' fast path), 'float32'
  elsewhere (CPU); any other value is returned as it is."""
  return AUTO_DTYPE.get(backend, "float32") if dtype == "auto" else dtype


OUTPUT_SCALES = ("none", "noise_std")  # read by the denoiser wrapper (denoiser.py), not the network
SKIPS = ("identity", "wiener")  # the same
TUPLE_FIELDS = ("channel_mult", "attention_resolutions", "fir_kernel")


def check_network_config(cfg: Any, name: str, min_channels: int) -> None:
  """Normalises list fields to tuples (hashable) and checks the fields all network configs have:
  name, channels, channel_mult, num_res_blocks, attention_resolutions, dropout, dtype,
  output_scale, skip. One-line errors name `config.model.<field>`."""
  for field in TUPLE_FIELDS:
    if isinstance(getattr(cfg, field, None), list):  # lists (JSON, YAML, ConfigDict) become tuples
      object.__setattr__(cfg, field, tuple(getattr(cfg, field)))
  check, at_least = typed_config.check, typed_config.is_int_at_least
  check(cfg.name == name, "model.name", f"{name!r} for {type(cfg).__name__}", cfg.name)
  check(at_least(cfg.channels, min_channels), "model.channels", f"an int >= {min_channels}", cfg.channels)
  mult = cfg.channel_mult
  check(
    isinstance(mult, tuple) and len(mult) >= 1 and all(at_least(m, 1) for m in mult),
    "model.channel_mult",
    "a non-empty tuple of ints >= 1",
    mult,
  )
  check(at_least(cfg.num_res_blocks, 1), "model.num_res_blocks", "an int >= 1", cfg.num_res_blocks)
  sides = cfg.attention_resolutions
  check(
    isinstance(sides, tuple) and all(at_least(r, 1) for r in sides),
    "model.attention_resolutions",
    "a tuple of feature-map sides (ints >= 1)",
    sides,
  )
  dropout = cfg.dropout
  check(isinstance(dropout, (int, float)) and 0.0 <= dropout < 1.0, "model.dropout", "in [0, 1)", dropout)
  check(cfg.dtype in (*DTYPES, "auto"), "model.dtype", "'auto', 'float32' or 'bfloat16'", cfg.dtype)
  check(cfg.output_scale in OUTPUT_SCALES, "model.output_scale", f"one of {OUTPUT_SCALES}", cfg.output_scale)
  check(cfg.skip in SKIPS, "model.skip", f"one of {SKIPS}", cfg.skip)
  check(isinstance(cfg.remat, bool), "model.remat", "True or False", cfg.remat)


def residual_blocks(block_cls: type[nn.Module], remat: bool) -> Callable[..., nn.Module]:
  """A factory of `block_cls` instances named as Linen would auto-name them (`ResBlock_0`,
  `ResBlock_1`, ...), wrapped in `nn.remat` when `remat` is set: their activations are then
  recomputed in the backward pass instead of stored (less memory, about one more forward pass
  of compute). The names do not depend on `remat`, so checkpoints load either way. Call inside
  a compact `__call__`; blocks take (x, temb, train) positionally (train is static)."""
  cls = nn.remat(block_cls, static_argnums=(3,)) if remat else block_cls
  counter = itertools.count()
  return lambda *args, **kwargs: cls(*args, name=f"{block_cls.__name__}_{next(counter)}", **kwargs)


def timestep_embedding(t: jax.Array, dim: int, max_period: float = 10_000.0) -> jax.Array:
  """Sinusoidal embedding of t ∈ [0, 1] (scaled by 1000, as for DDPM step indices): [B] -> [B, dim]."""
  if dim % 2:
    raise ValueError(f"embedding dim must be even, got {dim}")
  half = dim // 2
  freqs = jnp.exp(-math.log(max_period) * jnp.arange(half, dtype=jnp.float32) / half)
  args = 1000.0 * t.astype(jnp.float32)[:, None] * freqs[None, :]
  return jnp.concatenate([jnp.sin(args), jnp.cos(args)], axis=-1)
