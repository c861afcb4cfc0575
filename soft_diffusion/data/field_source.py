"""The `gaussian_field` dataset: stationary Gaussian fields generated on the fly (docs/method.md §7).

Element i of a split is a pure function of (split, seed, i): a numpy generator seeded with
SeedSequence([tag, seed, i]) draws z and the image is IDCT2(√v ⊙ z) (soft_diffusion.gaussian_field).
So the source is random-access like the file-backed ones, the pipeline (per-process slicing,
batching, grain iterator state, exact resume) is the same, and nothing is stored on disk.

* 'train': an endless stream (2⁴⁰ elements) from the run's seed.
* 'validation': `EVAL_SIZE` fixed images from a seed of their own (the same for every run).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from soft_diffusion import gaussian_field

SPLITS = ("train", "validation")
TRAIN_SIZE = 2**40  # endless in practice: 2^40 images is ~2^33 steps of batch 128
EVAL_SIZE = 10_000
EVAL_SEED = 20221010  # the validation split's own seed (the paper's arXiv date)
_TAGS = {"train": 0, "validation": 1}
CHANNELS = 3


@dataclasses.dataclass
class GaussianFieldSource:
  """Random-access source of float32 [S, S, 3] Gaussian-field images (records are the images)."""

  image_size: int
  k0: float
  pixel_std: float
  split: str = "train"
  seed: int = 0

  def __post_init__(self):
    if self.split not in SPLITS:
      raise ValueError(f"split {self.split!r} of 'gaussian_field' must be one of {SPLITS}")
    self._root = np.sqrt(gaussian_field.spectrum(self.image_size, self.image_size, self.k0, self.pixel_std))
    self._seed = int(self.seed) if self.split == "train" else EVAL_SEED

  def __len__(self) -> int:
    return TRAIN_SIZE if self.split == "train" else EVAL_SIZE

  def __getitem__(self, index: int) -> np.ndarray:
    index = int(index)
    if not 0 <= index < len(self):
      raise IndexError(f"index {index} out of range for {len(self)} elements")
    rng = np.random.default_rng([_TAGS[self.split], self._seed, index])
    return gaussian_field.field_images(self._root, [rng], CHANNELS)[0]

  def spectrum(self) -> np.ndarray:
    """The exact mean DCT power [S, S, 3] of every image (v per channel)."""
    return np.repeat(np.square(self._root)[:, :, None], CHANNELS, axis=-1)


def from_config(cfg: Any, split: str, seed: int) -> GaussianFieldSource:
  return GaussianFieldSource(cfg.image_size, cfg.field_k0, cfg.field_pixel_std, split, seed)
