"""What the networks share: compute dtypes, the output-scale choice, the checks of the fields
every network config has, the sinusoidal time embedding, and the building blocks: `group_norm`,
the residual block `ResBlock` and the self-attention block `AttnBlock`. Each network configures
the blocks (initialisers, resampling, the attention's parameter layout); parameter names and
shapes are those each network had before the blocks were shared, so checkpoints still load."""

from __future__ import annotations

import functools
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
PRECONDS = ("none", "spectral")  # the same (preconditioning.py)
PRECOND_C_INS = ("scalar", "coefficient")
PRECOND_SPECTRA = ("data", "flat", "tilted")
TUPLE_FIELDS = ("channel_mult", "attention_resolutions", "fir_kernel")


def check_network_config(cfg: Any, name: str, min_channels: int) -> None:
  """Normalises list fields to tuples (hashable) and checks the fields all network configs have:
  name, channels, channel_mult, num_res_blocks, attention_resolutions, dropout, dtype,
  output_scale, skip, precond, precond_c_in, precond_spectrum. One-line errors name `config.model.<field>`."""
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
  check(cfg.precond in PRECONDS, "model.precond", f"one of {PRECONDS}", cfg.precond)
  check(cfg.precond_c_in in PRECOND_C_INS, "model.precond_c_in", f"one of {PRECOND_C_INS}", cfg.precond_c_in)
  check(
    cfg.precond_spectrum in PRECOND_SPECTRA, "model.precond_spectrum", f"one of {PRECOND_SPECTRA}", cfg.precond_spectrum
  )
  if cfg.precond != "none":  # the preconditioning replaces the residual form's skip and output scale
    check(cfg.skip == "identity", "model.skip", "'identity' with model.precond = 'spectral'", cfg.skip)
    check(cfg.output_scale == "none", "model.output_scale", "'none' with model.precond = 'spectral'", cfg.output_scale)
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


# ----------------------------------------------------------------------------------------------
# Building blocks.


def num_groups(channels: int) -> int:
  """GroupNorm groups for `channels`: a quarter of them, at most 32, at least 1."""
  return min(32, max(1, channels // 4))


def group_norm(x: jax.Array, dtype: Any) -> jax.Array:
  """GroupNorm over the last axis (`num_groups`), created in the calling module's scope."""
  return nn.GroupNorm(num_groups(x.shape[-1]), dtype=dtype)(x)


class ResBlock(nn.Module):
  """The residual block of both networks: GroupNorm, swish, [resample], 3×3 conv, + a projection
  of the time embedding, GroupNorm, swish, dropout, 3×3 conv initialised by `last_init` (zero or
  near zero, so the block starts as the identity path), and a 1×1 conv on the skip when the
  channels or the size change; output (skip + h)/√2.

  resample: None, or a function applied to both the branch and the skip after the first norm
    (NCSN++'s FIR up- and downsampling: BigGAN-type blocks).
  kernel_init / last_init: the initialiser of every conv and dense / of the last conv.
  """

  out_channels: int
  dropout: float
  dtype: Any = jnp.float32
  resample: Callable[[jax.Array], jax.Array] | None = None
  kernel_init: Callable[..., Any] = nn.linear.default_kernel_init
  last_init: Callable[..., Any] = nn.initializers.zeros

  @nn.compact
  def __call__(self, x: jax.Array, temb: jax.Array, train: bool) -> jax.Array:
    def conv(h: jax.Array, kernel: int, init: Callable[..., Any]) -> jax.Array:
      return nn.Conv(self.out_channels, (kernel, kernel), kernel_init=init, dtype=self.dtype)(h)

    h = nn.swish(group_norm(x, self.dtype))
    if self.resample is not None:
      h, x = self.resample(h), self.resample(x)
    h = conv(h, 3, self.kernel_init)
    temb = nn.Dense(self.out_channels, kernel_init=self.kernel_init, dtype=self.dtype)(nn.swish(temb))
    h = h + temb[:, None, None, :]
    h = nn.swish(group_norm(h, self.dtype))
    h = nn.Dropout(self.dropout, deterministic=not train)(h)
    h = conv(h, 3, self.last_init)
    if x.shape[-1] != self.out_channels or self.resample is not None:
      x = conv(x, 1, self.kernel_init)
    return (x + h) / math.sqrt(2.0)


ATTENTION_LAYOUTS = ("heads", "single")


class AttnBlock(nn.Module):
  """Multi-head self-attention over the H·W positions, residual, (x + out)/√2.

  The key and value projections have no bias: a key bias adds the same logit to every key of a
  query (softmax cancels it) and a value bias passes through the attention weights (which sum
  to 1) as a constant the output bias already provides. Such parameters get a gradient that is
  zero up to rounding, which Adam would normalise into steps of full size in a random
  direction. The softmax runs in float32 whatever `dtype` is.

  layout: 'heads', projections of shape [C, heads, C/heads] (the U-Net's), or 'single', one head
    with [C, C] projections (NCSN++'s, as score_sde's).
  qkv_init / out_init: the initialisers of the query, key and value / of the output projection.
  """

  num_heads: int = 1
  dtype: Any = jnp.float32
  layout: str = "heads"
  qkv_init: Callable[..., Any] = nn.linear.default_kernel_init
  out_init: Callable[..., Any] = nn.initializers.zeros

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    b, height, width, c = x.shape
    if self.layout not in ATTENTION_LAYOUTS:
      raise ValueError(f"layout must be one of {ATTENTION_LAYOUTS}, got {self.layout!r}")
    heads = self.num_heads if self.layout == "heads" else 1
    if c % heads:
      raise ValueError(f"attention over {c} channels cannot be split into {heads} heads")
    head_dim = c // heads
    h = group_norm(x, self.dtype).reshape(b, height * width, c)
    if self.layout == "heads":  # q, k, v: [B, N, heads, head_dim]
      dense = functools.partial(nn.DenseGeneral, (heads, head_dim))
      logits_spec, out_spec = "bqhd,bkhd->bhqk", "bhqk,bkhd->bqhd"
      out = nn.DenseGeneral(c, axis=(-2, -1), kernel_init=self.out_init, dtype=self.dtype, name="out")
    else:  # q, k, v: [B, N, C]
      dense = functools.partial(nn.Dense, c)
      logits_spec, out_spec = "bqc,bkc->bqk", "bqk,bkc->bqc"
      out = nn.Dense(c, kernel_init=self.out_init, dtype=self.dtype, name="out")
    q, k, v = (
      dense(use_bias=bias, kernel_init=self.qkv_init, dtype=self.dtype, name=name)(h)
      for name, bias in (("query", True), ("key", False), ("value", False))
    )
    logits = jnp.einsum(logits_spec, q, k, preferred_element_type=jnp.float32) / math.sqrt(head_dim)
    weights = jax.nn.softmax(logits, axis=-1).astype(self.dtype)
    h = out(jnp.einsum(out_spec, weights, v))
    return (x + h.reshape(b, height, width, c)) / math.sqrt(2.0)
