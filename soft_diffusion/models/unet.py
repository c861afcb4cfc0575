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

import flax.linen as nn
import jax
import jax.numpy as jnp

from soft_diffusion import typed_config
from soft_diffusion.models.common import (
  DTYPES,
  AttnBlock,
  ResBlock,
  check_network_config,
  group_norm,
  residual_blocks,
  resolve_dtype,
  timestep_embedding,
)


@dataclasses.dataclass(frozen=True)
class UNetConfig:
  """The `model` block for model.name = 'unet' (a DDPM-style U-Net).

  The config schema: the fields it shares with NCSNppConfig (the default network) are documented
  there, once; its own are documented here (`python -m soft_diffusion.run.schema` lists every
  field, docs/config.md shows them).
  """

  name: str = "unet"
  channels: int = 128
  channel_mult: tuple[int, ...] = (1, 2, 2, 2)
  num_res_blocks: int = 4
  attention_resolutions: tuple[int, ...] = (16,)
  dropout: float = 0.1
  num_heads: int = 1  # attention heads ('unet' only; NCSN++ attention has one head)
  dtype: str = "auto"
  output_scale: str = "none"
  skip: str = "identity"
  precond: str = "none"
  precond_c_in: str = "scalar"
  precond_spectrum: str = "data"
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

    h = nn.swish(group_norm(h, dtype))
    h = nn.Conv(out_channels, (3, 3), dtype=dtype, kernel_init=nn.initializers.zeros)(h)
    return h.astype(jnp.float32)
