"""Image files and figure files: `image_grid`, `write_png` (a uint8 batch as one grid PNG) and
`pyplot()` (matplotlib on the file-only Agg backend), `save_figure`; written atomically
(`files.write_atomic`)."""

from __future__ import annotations

import math
import os
from typing import Any

import numpy as np

from soft_diffusion.run import files


def image_grid(images: np.ndarray) -> np.ndarray:
  """uint8 [N, H, W, C] -> one uint8 [rows*H, cols*W, C] grid (square-ish, 1 px gaps)."""
  n, h, w, c = images.shape
  cols = math.ceil(math.sqrt(n))
  rows = math.ceil(n / cols)
  grid = np.full((rows * (h + 1) + 1, cols * (w + 1) + 1, c), 255, np.uint8)
  for i, img in enumerate(images):
    r, q = divmod(i, cols)
    grid[1 + r * (h + 1) : 1 + r * (h + 1) + h, 1 + q * (w + 1) : 1 + q * (w + 1) + w] = img
  return grid


def write_png(images: np.ndarray, path: str | os.PathLike) -> None:
  """uint8 [N, H, W, C] as one grid PNG; images of 32 px or less are shown 4× larger."""
  from PIL import Image

  grid = image_grid(images)
  img = Image.fromarray(grid[..., 0] if grid.shape[-1] == 1 else grid)
  if images.shape[1] <= 32:
    img = img.resize((img.width * 4, img.height * 4), Image.NEAREST)
  files.write_atomic(path, lambda f: img.save(f, format="PNG"))


def pyplot():
  """matplotlib.pyplot on the file-only Agg backend (no display needed)."""
  import matplotlib

  matplotlib.use("Agg")
  import matplotlib.pyplot as plt

  return plt


def save_figure(fig: Any, path: str | os.PathLike, dpi: int = 110) -> None:
  files.write_atomic(path, lambda f: fig.savefig(f, format="png", dpi=dpi))
  pyplot().close(fig)
