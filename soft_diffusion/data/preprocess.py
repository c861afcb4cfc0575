"""Image preprocessing on the host (numpy + PIL only): decode, centre crop, antialiased
bilinear resize, random flip, scaling to [-1, 1]. Runs inside grain workers.

`resize` reproduces `tf.image.resize(x, size, method="bilinear", antialias=True)` (TF's
ScaleAndTranslate with a triangle kernel widened by the downscale factor, half-pixel centres,
weights renormalised at the borders) as two small matmuls with weights built once per
(input size, output size).
"""

from __future__ import annotations

import functools
import io

import numpy as np
from PIL import Image


def decode_image(data: bytes, name: str) -> np.ndarray:
  """Encoded PNG/JPEG bytes -> uint8 [H, W, C] (C = 1 or 3). Raises naming `name` if corrupt."""
  try:
    with Image.open(io.BytesIO(data)) as img:
      img.load()
      if img.mode not in ("L", "RGB"):
        img = img.convert("RGB")
      array = np.asarray(img, dtype=np.uint8)
  except Exception as e:  # PIL raises several types for corrupt data
    raise ValueError(f"cannot decode image {name}: {type(e).__name__}: {e}") from None
  return array[..., None] if array.ndim == 2 else array


def center_crop(image: np.ndarray, crop_size: int | None) -> np.ndarray:
  """Central crop_size × crop_size window ([H, W, C]); None = the largest central square."""
  height, width = image.shape[:2]
  size = min(height, width) if crop_size is None else crop_size
  if size > height or size > width:
    raise ValueError(f"crop_size {size} is larger than the image ({height}×{width})")
  top = (height - size) // 2
  left = (width - size) // 2
  return image[top : top + size, left : left + size]


@functools.lru_cache(maxsize=32)
def resize_weights(in_size: int, out_size: int) -> np.ndarray:
  """[out_size, in_size] float64 weights of TF's antialiased bilinear (triangle) resampling."""
  scale = out_size / in_size
  kernel_scale = max(1.0 / scale, 1.0)  # antialias: widen the kernel when downscaling
  centres = (np.arange(out_size) + 0.5) / scale  # output pixel centres in input coordinates
  inputs = np.arange(in_size) + 0.5
  weights = np.maximum(0.0, 1.0 - np.abs(inputs[None, :] - centres[:, None]) / kernel_scale)
  weights /= weights.sum(axis=1, keepdims=True)
  weights.setflags(write=False)
  return weights


def resize(image: np.ndarray, size: int) -> np.ndarray:
  """Antialiased bilinear resize of [H, W, C] to [size, size, C], float32 (input value range)."""
  rows = resize_weights(image.shape[0], size).astype(np.float32)
  cols = resize_weights(image.shape[1], size).astype(np.float32)
  x = image.astype(np.float32)
  return np.einsum("ih,hwc,jw->ijc", rows, x, cols, optimize=True)


def to_model_range(image: np.ndarray) -> np.ndarray:
  """[0, 255] -> [-1, 1], float32."""
  return (image.astype(np.float32) / 127.5 - 1.0).astype(np.float32)


def preprocess(data: bytes, name: str, *, crop_size: int | None, image_size: int) -> np.ndarray:
  """Encoded image -> [image_size, image_size, C] float32 in [-1, 1] (no flip)."""
  image = center_crop(decode_image(data, name), crop_size)
  return to_model_range(resize(image, image_size))
