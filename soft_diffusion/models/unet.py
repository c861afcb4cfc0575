"""An NCSN++/DDPM++-style U-Net in Flax Linen: the raw network φ_θ(x_t, t).

The network knows nothing about diffusion; `denoiser.py` turns it into the clean-image
estimate h_θ = φ_θ + x_t (docs/method.md §2). Architecture (score_sde's DDPM++/NCSN++ family, simplified):
sinusoidal embedding of t → MLP; a 3×3 input conv; per resolution level `num_res_blocks`
residual blocks (GroupNorm, swish, conv, + time embedding, GroupNorm, swish, dropout, conv;
skip connections rescaled by 1/√2), self-attention at the resolutions in `attention_resolutions`,
average-pool downsampling; a middle block (res, attention, res); a mirrored upsampling path with
skip concatenation and nearest-neighbour upsampling; GroupNorm, swish and a zero-initialised
3×3 output conv (so φ = 0 and h = x_t at initialisation).

The network's hyper-parameters are one frozen dataclass, `UNetConfig` (the typed form of the
`model` config block; its defaults are those of configs/default.py, the docs/method.md §6 CelebA-64
recipe). Computation runs in `config.dtype` (e.g. bfloat16) with float32 parameters; the output
is float32.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from soft_diffusion import typed_config
from soft_diffusion.models.common import (
  DTYPES,
  check_network_config,
  residual_blocks,
  resolve_dtype,
  timestep_embedding,
)


@dataclasses.dataclass(frozen=True)
class UNetConfig:
  """Typed form of `config.model` for model.name = 'unet' (field comments: configs/default.py)."""

  name: str = "unet"
  channels: int = 128
  channel_mult: tuple[int, ...] = (1, 2, 2, 2)
  num_res_blocks: int = 4
  attention_resolutions: tuple[int, ...] = (16,)
  dropout: float = 0.1
  num_heads: int = 1
  dtype: str = "auto"  # bfloat16 compute on GPU/TPU, float32 on CPU (models.resolve_dtype)
  output_scale: str = "none"
  skip: str = "identity"
  remat: bool = False

  def __post_init__(self):
    check_network_config(self, "unet", min_channels=1)
    typed_config.check(
      typed_config.is_int_at_least(self.num_heads, 1), "model.num_heads", "an int >= 1", self.num_heads
    )

  @property
  def downsamplings(self) -> int:
    """Times the input is halved: H and W must be divisible by 2 to this power."""
    return len(self.channel_mult) - 1


def _groups(channels: int) -> int:
  return min(32, max(1, channels // 4))


class ResBlock(nn.Module):
  out_channels: int
  dropout: float
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array, temb: jax.Array, train: bool) -> jax.Array:
    h = nn.swish(nn.GroupNorm(_groups(x.shape[-1]), dtype=self.dtype)(x))
    h = nn.Conv(self.out_channels, (3, 3), dtype=self.dtype)(h)
    h = h + nn.Dense(self.out_channels, dtype=self.dtype)(nn.swish(temb))[:, None, None, :]
    h = nn.swish(nn.GroupNorm(_groups(self.out_channels), dtype=self.dtype)(h))
    h = nn.Dropout(self.dropout, deterministic=not train)(h)
    h = nn.Conv(self.out_channels, (3, 3), dtype=self.dtype, kernel_init=nn.initializers.zeros)(h)
    if x.shape[-1] != self.out_channels:
      x = nn.Conv(self.out_channels, (1, 1), dtype=self.dtype)(x)
    return (x + h) / math.sqrt(2.0)


class AttnBlock(nn.Module):
  """Multi-head self-attention over the H·W positions, residual, rescaled by 1/√2.

  The key and value projections have no bias: a key bias adds the same logit to every key of a
  query (softmax cancels it) and a value bias passes through the attention weights (which sum
  to 1) as a constant the output bias already provides. Such parameters get a gradient that is
  zero up to rounding, which Adam would normalise into steps of full size in a random
  direction. The softmax runs in float32 whatever `dtype` is.
  """

  num_heads: int = 1
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    b, height, width, c = x.shape
    if c % self.num_heads:
      raise ValueError(f"attention over {c} channels cannot be split into {self.num_heads} heads")
    head_dim = c // self.num_heads
    h = nn.GroupNorm(_groups(c), dtype=self.dtype)(x).reshape(b, height * width, c)
    proj = lambda name, bias: nn.DenseGeneral((self.num_heads, head_dim), use_bias=bias, dtype=self.dtype, name=name)
    q, k, v = proj("query", True)(h), proj("key", False)(h), proj("value", False)(h)
    logits = jnp.einsum("bqhd,bkhd->bhqk", q, k, preferred_element_type=jnp.float32) / math.sqrt(head_dim)
    weights = jax.nn.softmax(logits, axis=-1).astype(self.dtype)
    h = jnp.einsum("bhqk,bkhd->bqhd", weights, v)
    h = nn.DenseGeneral(c, axis=(-2, -1), dtype=self.dtype, kernel_init=nn.initializers.zeros, name="out")(h)
    return (x + h.reshape(b, height, width, c)) / math.sqrt(2.0)


class UNet(nn.Module):
  """φ_θ(x_t, t): [B, H, W, C] x [B] -> [B, H, W, C] (H, W divisible by 2^config.downsamplings)."""

  config: UNetConfig = UNetConfig()

  @nn.compact
  def __call__(self, x: jax.Array, t: jax.Array, *, train: bool = False) -> jax.Array:
    cfg = self.config
    dtype = DTYPES[resolve_dtype(cfg.dtype, jax.default_backend())]
    out_channels = x.shape[-1]
    res_block = residual_blocks(ResBlock, cfg.remat)
    temb = timestep_embedding(t, cfg.channels)
    temb = nn.Dense(4 * cfg.channels, dtype=dtype)(temb)
    temb = nn.Dense(4 * cfg.channels, dtype=dtype)(nn.swish(temb))

    h = nn.Conv(cfg.channels, (3, 3), dtype=dtype)(x.astype(dtype))
    skips = [h]
    for level, mult in enumerate(cfg.channel_mult):
      for _ in range(cfg.num_res_blocks):
        h = res_block(cfg.channels * mult, cfg.dropout, dtype)(h, temb, train)
        if h.shape[1] in cfg.attention_resolutions:
          h = AttnBlock(cfg.num_heads, dtype)(h)
        skips.append(h)
      if level != len(cfg.channel_mult) - 1:
        h = nn.avg_pool(h, (2, 2), strides=(2, 2))
        skips.append(h)

    h = res_block(h.shape[-1], cfg.dropout, dtype)(h, temb, train)
    h = AttnBlock(cfg.num_heads, dtype)(h)
    h = res_block(h.shape[-1], cfg.dropout, dtype)(h, temb, train)

    for level, mult in reversed(list(enumerate(cfg.channel_mult))):
      for _ in range(cfg.num_res_blocks + 1):
        h = jnp.concatenate([h, skips.pop()], axis=-1)
        h = res_block(cfg.channels * mult, cfg.dropout, dtype)(h, temb, train)
        if h.shape[1] in cfg.attention_resolutions:
          h = AttnBlock(cfg.num_heads, dtype)(h)
      if level != 0:
        b, height, width, c = h.shape
        h = jax.image.resize(h, (b, 2 * height, 2 * width, c), method="nearest")
        h = nn.Conv(c, (3, 3), dtype=dtype)(h)
    assert not skips

    h = nn.swish(nn.GroupNorm(_groups(h.shape[-1]), dtype=dtype)(h))
    h = nn.Conv(out_channels, (3, 3), dtype=dtype, kernel_init=nn.initializers.zeros)(h)
    return h.astype(jnp.float32)
