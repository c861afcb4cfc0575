"""Fixed test images for the Inception parity checks (shared by the test and tools/make_inception_golden.py).

Smooth random colour fields plus a sharp-edged rectangle and a little noise, from a seeded NumPy
generator, so the golden file stores only features, never images. Groups cover the resampling
path (64×64 like CelebA-64, 28×20 non-square, 8×8 tiny) and the no-resize path (299×299).
"""

from __future__ import annotations

import hashlib

import numpy as np

GROUPS = {"64x64": (4, 64, 64), "28x20": (2, 28, 20), "8x8": (2, 8, 8), "299x299": (2, 299, 299)}


def make_images(name: str) -> np.ndarray:
  """uint8 [N, H, W, 3] for one group; identical on every platform (integer-seeded NumPy)."""
  n, h, w = GROUPS[name]
  rng = np.random.default_rng(list(GROUPS).index(name) + 2022)
  yy, xx = np.meshgrid(np.linspace(0, 1, h), np.linspace(0, 1, w), indexing="ij")
  images = np.zeros((n, h, w, 3))
  for i in range(n):
    for c in range(3):
      fx, fy, phase = rng.uniform(0.5, 4.0), rng.uniform(0.5, 4.0), rng.uniform(0, 2 * np.pi)
      images[i, :, :, c] = 128 + 90 * np.sin(2 * np.pi * (fx * xx + fy * yy) + phase)
    y0, x0 = rng.integers(0, h // 2 + 1), rng.integers(0, w // 2 + 1)
    images[i, y0 : y0 + max(h // 3, 1), x0 : x0 + max(w // 3, 1)] = rng.uniform(0, 255, 3)
    images[i] += rng.normal(0, 8, (h, w, 3))
  return np.clip(np.round(images), 0, 255).astype(np.uint8)


def digest(images: np.ndarray) -> str:
  return hashlib.sha1(np.ascontiguousarray(images).tobytes()).hexdigest()
