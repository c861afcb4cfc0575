"""NCSN++ (Song et al., 2021, "Score-Based Generative Modeling through SDEs") in Flax Linen: the
network the paper's CelebA-64 results are compared against (docs/method.md §6), as the raw network φ_θ.

Written from the paper's description and the settings of score_sde's CelebA NCSN++ config
(`configs/ve/celeba_ncsnpp.py`): nf = 128, channel multipliers (1, 2, 2, 2), 4 residual blocks
per resolution, attention at 16×16, dropout 0.1, and

* BigGAN-type residual blocks: GroupNorm, swish, 3×3 conv, + a projection of the time
  embedding, GroupNorm, swish, dropout, 3×3 conv with near-zero init ("init_scale 0"); the skip
  path gets a 1×1 conv when the width or the resolution changes; (skip + residual)/√2. The blocks
  that change resolution resample both paths with the FIR filter (`fir_kernel`, [1, 3, 3, 1]):
  `fir_downsample` / `fir_upsample` below.
* Progressive input "residual": the input image is carried down a pyramid; at each new
  resolution it is FIR-downsampled with a 3×3 conv to the feature width and added to the
  features, (pyramid + h)/√2. No progressive output.
* Self-attention (single head, DDPM style) after every down-path block and once per up-path
  level at the resolutions in `attention_resolutions`, plus one in the middle.
* Sinusoidal (positional) embedding of t (scaled by 1000, as DDPM's step index) → Dense →
  swish → Dense; GroupNorm with min(C/4, 32) groups; "fan-avg uniform" initialisation
  (variance scaling) for every conv and dense layer, scale 1, or 1e-10 for the layers that end a
  residual branch and for the output conv (so φ ≈ 0 at initialisation).

Deviation (as in our U-Net): the attention's key and value projections have no bias. A key
bias adds the same logit to every key of a query (the softmax cancels it) and a value bias is
a constant the output bias already provides; their gradients are zero up to rounding, which
Adam turns into full-size random steps. This removes 2·C parameters per attention block.

Computation runs in `config.dtype` (e.g. bfloat16) with float32 parameters; the output is float32.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

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
class NCSNppConfig:
  """The `model` block for model.name = 'ncsnpp' (NCSN++, the default network): the defaults of
  docs/method.md §6, score_sde's NCSN++ CelebA-64 recipe.

  The config schema: each field's comment is its documentation, here for the fields every network
  shares too (UNetConfig documents only its own; `python -m soft_diffusion.run.schema` lists every
  field, docs/config.md shows them).
  """

  name: str = "ncsnpp"  # 'ncsnpp' (NCSN++, the paper's comparison network) | 'unet' (DDPM-style U-Net)
  channels: int = 128  # base channel count (NCSN++'s nf)
  channel_mult: tuple[int, ...] = (1, 2, 2, 2)  # channels per resolution level = channels * mult
  num_res_blocks: int = 4  # residual blocks per level
  attention_resolutions: tuple[int, ...] = (16,)  # feature-map sides with self-attention
  dropout: float = 0.1  # dropout rate in the residual blocks
  fir_kernel: tuple[int, ...] = (1, 3, 3, 1)  # FIR resampling filter, separable taps ('ncsnpp' only)
  # compute dtype: 'auto' (bfloat16 on GPU/TPU, float32 on CPU: models.resolve_dtype) | 'float32' |
  # 'bfloat16'; the parameters, optimizer state, corruption and loss stay float32 either way
  dtype: str = "auto"
  # h = x_t + φ ('none') or x_t + s_t·φ ('noise_std': score_sde's scale_by_sigma; see models/denoiser.py)
  output_scale: str = "none"
  # h = S_t x_t + c·φ with S_t = I ('identity', the paper's residual form) or the linear MMSE
  # (Wiener) estimate per DCT frequency ('wiener', extension: blur/identity; see models/denoiser.py)
  skip: str = "identity"
  # 'none': the residual form above with the loss of config.loss (the paper's) | 'spectral'
  # (extension, blur/identity): EDM's preconditioning per DCT coefficient, x̂_0 = c_skip x_t +
  # c_out F(c_in x_t) with the data's power spectrum, and its loss (weight 1/c_out² per
  # coefficient; loss.weighting 'uniform', no floor or lag): docs/method.md §2.4
  precond: str = "none"
  precond_c_in: str = "scalar"  # 'spectral' only: c_in = 1/√(total power of x_t) | 'coefficient' (x_t whitened)
  # 'spectral' only: the v it uses: 'data' | 'flat' (its mean everywhere) | 'tilted' (× the
  # frequency radius: ×2 per octave); the last two are deliberately wrong, for the field study
  precond_spectrum: str = "data"
  # recompute each residual block's activations in the backward pass instead of storing them
  # (less memory for about one more forward pass; parameters and checkpoints are unchanged)
  remat: bool = False

  def __post_init__(self):
    check_network_config(self, "ncsnpp", min_channels=4)
    k = self.fir_kernel
    typed_config.check(
      isinstance(k, tuple) and len(k) >= 2 and all(isinstance(v, (int, float)) and v >= 0 for v in k) and sum(k) > 0,
      "model.fir_kernel",
      "a tuple of >= 2 non-negative taps with a positive sum",
      k,
    )

  @property
  def downsamplings(self) -> int:
    """Times the input is halved: H and W must be divisible by 2 to this power."""
    return len(self.channel_mult) - 1


# ----------------------------------------------------------------------------------------------
# FIR resampling (StyleGAN2's upfirdn with a separable kernel), as depthwise convolutions.


def fir_filter_2d(taps: tuple[float, ...]) -> np.ndarray:
  """The separable 2-D filter outer(k, k) / sum(k)² (unit DC gain), float64 [K, K]."""
  k = np.asarray(taps, np.float64)
  k = np.outer(k, k)
  return k / k.sum()


def _depthwise(x: jax.Array, kernel: np.ndarray, *, strides: int, padding: int, lhs_dilation: int = 1) -> jax.Array:
  """Each channel of x [B, H, W, C] convolved (true convolution: kernel flipped) with `kernel`."""
  c = x.shape[-1]
  w = jnp.asarray(np.ascontiguousarray(kernel[::-1, ::-1]), x.dtype)
  w = jnp.tile(w[:, :, None, None], (1, 1, 1, c))
  return jax.lax.conv_general_dilated(
    x,
    w,
    window_strides=(strides, strides),
    padding=((padding, padding), (padding, padding)),
    lhs_dilation=(lhs_dilation, lhs_dilation),
    dimension_numbers=("NHWC", "HWIO", "NHWC"),
    feature_group_count=c,
  )


def fir_downsample(x: jax.Array, taps: tuple[float, ...]) -> jax.Array:
  """[B, H, W, C] -> [B, H/2, W/2, C]: FIR low-pass, then every second sample.

  With taps k of length K (even), per axis y[i] = Σ_j k_j x[2i + j - (K-2)/2] / Σk, zero outside.
  """
  k = fir_filter_2d(taps)
  return _depthwise(x, k, strides=2, padding=(k.shape[0] - 2) // 2)


def fir_upsample(x: jax.Array, taps: tuple[float, ...]) -> jax.Array:
  """[B, H, W, C] -> [B, 2H, 2W, C]: zeros between samples, then the FIR filter with gain 4.

  For [1, 3, 3, 1] per axis: y[2i] = (x[i-1] + 3 x[i]) / 4 and y[2i+1] = (3 x[i] + x[i+1]) / 4.
  """
  k = fir_filter_2d(taps) * 4.0
  pad = k.shape[0] // 2
  return _depthwise(x, k, strides=1, padding=pad, lhs_dilation=2)[:, : 2 * x.shape[1], : 2 * x.shape[2]]


def _init(scale: float = 1.0) -> Any:
  """Fan-avg uniform variance scaling; scale 0 means 1e-10 (a branch that starts near zero)."""
  return nn.initializers.variance_scaling(1e-10 if scale == 0 else scale, "fan_avg", "uniform")


def _conv(
  x: jax.Array, features: int, kernel: int, dtype: Any, *, scale: float = 1.0, strides: int = 1, padding="SAME"
):
  conv = nn.Conv(features, (kernel, kernel), strides=strides, padding=padding, kernel_init=_init(scale), dtype=dtype)
  return conv(x)


class PyramidDownsample(nn.Module):
  """The progressive input's step down: FIR filter, then a 3×3 conv with stride 2 (StyleGAN2's
  fused conv_downsample), to `out_channels`."""

  out_channels: int
  fir_kernel: tuple[int, ...]
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    k = fir_filter_2d(self.fir_kernel)
    x = _depthwise(x, k, strides=1, padding=(k.shape[0] - 2 + 2) // 2)  # the 3×3 conv's padding folded in
    return _conv(x, self.out_channels, 3, self.dtype, strides=2, padding="VALID")


class NCSNpp(nn.Module):
  """φ_θ(x_t, t): [B, H, W, C] x [B] -> [B, H, W, C] (H, W divisible by 2^config.downsamplings)."""

  config: NCSNppConfig = NCSNppConfig()

  @nn.compact
  def __call__(self, x: jax.Array, t: jax.Array, *, train: bool = False) -> jax.Array:
    cfg = self.config
    dtype = DTYPES[resolve_dtype(cfg.dtype, jax.default_backend())]
    out_channels = x.shape[-1]
    res_block = residual_blocks(ResBlock, cfg.remat)
    resamplers = {
      None: None,
      "up": functools.partial(fir_upsample, taps=cfg.fir_kernel),
      "down": functools.partial(fir_downsample, taps=cfg.fir_kernel),
    }
    block = lambda channels, resample=None: res_block(  # BigGAN-type: resampling inside the block
      channels, cfg.dropout, dtype, resamplers[resample], kernel_init=_init(), last_init=_init(0.0)
    )
    attention = lambda: AttnBlock(1, dtype, "single", qkv_init=_init(0.1), out_init=_init(0.0))

    temb = timestep_embedding(t, cfg.channels)
    temb = nn.Dense(4 * cfg.channels, kernel_init=_init(), dtype=dtype)(temb)
    temb = nn.Dense(4 * cfg.channels, kernel_init=_init(), dtype=dtype)(nn.swish(temb))

    x = x.astype(dtype)
    pyramid = x
    skips = [_conv(x, cfg.channels, 3, dtype)]
    last = len(cfg.channel_mult) - 1
    for level, mult in enumerate(cfg.channel_mult):
      for _ in range(cfg.num_res_blocks):
        h = block(cfg.channels * mult)(skips[-1], temb, train)
        if h.shape[1] in cfg.attention_resolutions:
          h = attention()(h)
        skips.append(h)
      if level != last:
        h = block(skips[-1].shape[-1], "down")(skips[-1], temb, train)
        pyramid = PyramidDownsample(h.shape[-1], cfg.fir_kernel, dtype)(pyramid)
        pyramid = (pyramid + h) / math.sqrt(2.0)
        skips.append(pyramid)

    h = skips[-1]
    h = block(h.shape[-1])(h, temb, train)
    h = attention()(h)
    h = block(h.shape[-1])(h, temb, train)

    for level, mult in reversed(list(enumerate(cfg.channel_mult))):
      for _ in range(cfg.num_res_blocks + 1):
        h = block(cfg.channels * mult)(jnp.concatenate([h, skips.pop()], axis=-1), temb, train)
      if h.shape[1] in cfg.attention_resolutions:
        h = attention()(h)
      if level != 0:
        h = block(h.shape[-1], "up")(h, temb, train)
    assert not skips

    h = nn.swish(group_norm(h, dtype))
    h = _conv(h, out_channels, 3, dtype, scale=0.0)
    return h.astype(jnp.float32)
