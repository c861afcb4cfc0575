"""Are the digits demo's samples recognisable and varied? Judged against the real 8×8 digits.

    python benchmarks/digits_quality.py runs/digits/samples/samples.npz

Samples (uint8, 16×16) are averaged 2×2 down to the digits' native 8×8 and [0, 1] range.
1. Nearest neighbour: the distance within which 95% of the held-out real digits (the
   `validation` split: every tenth image) find their nearest training digit is the threshold;
   the script prints the share of samples whose nearest training digit is that close
   (target ≥ 0.80).
2. Classes: a logistic-regression classifier fitted on the training digits labels the samples;
   the script prints how many samples fall in each class (target: all ten present). A
   classifier's confidence alone proves nothing (it is confident on noise too), hence (1).
"""

from __future__ import annotations

import argparse

import numpy as np


def to_native(images: np.ndarray) -> np.ndarray:
  """uint8 [N, 16, 16, 1] -> [N, 64] in [0, 1] at 8×8 (2×2 means)."""
  x = images.astype(np.float64)[..., 0] / 255.0
  n, h, w = x.shape
  f = h // 8
  return x.reshape(n, 8, f, 8, f).mean(axis=(2, 4)).reshape(n, 64)


def nearest_distance(a: np.ndarray, b: np.ndarray) -> np.ndarray:
  d2 = (a**2).sum(1)[:, None] + (b**2).sum(1)[None, :] - 2.0 * a @ b.T
  return np.sqrt(np.maximum(d2, 0.0)).min(axis=1)


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("samples", help="samples.npz written by --mode sample (key 'images')")
  args = parser.parse_args()
  from sklearn.datasets import load_digits
  from sklearn.linear_model import LogisticRegression

  with np.load(args.samples) as f:
    images = f["images"]
  if images.ndim != 4 or images.shape[-1] != 1 or images.shape[1] % 8 or images.dtype != np.uint8:
    raise SystemExit(f"expected uint8 [N, 8k, 8k, 1] digit samples, got {images.dtype} {images.shape}")
  digits = load_digits()
  real = digits.images.reshape(-1, 64) / 16.0
  held_out = np.arange(len(real)) % 10 == 0
  train, valid = real[~held_out], real[held_out]
  threshold = np.quantile(nearest_distance(valid, train), 0.95)
  samples = to_native(images)
  share = float(np.mean(nearest_distance(samples, train) <= threshold))
  classifier = LogisticRegression(max_iter=5000).fit(train, digits.target[~held_out])
  counts = np.bincount(classifier.predict(samples), minlength=10)
  print(f"{len(samples)} samples; 95% of held-out real digits lie within {threshold:.3f} of a training digit")
  print(f"share of samples within that distance: {share:.3f} (target >= 0.80)")
  print(f"samples per class 0..9: {counts.tolist()}; classes present: {int(np.sum(counts > 0))}/10")


if __name__ == "__main__":
  main()
