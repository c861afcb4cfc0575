"""Are the digits demo's samples recognisable and varied? Judged against the real 8×8 digits.

    python tools/digits_quality.py SAMPLES.npz [--json quality.json]   # what --mode sample wrote, e.g.
        runs/digits/samples/momentum_100_forward_denoise_step4000/samples.npz (make demo's)
    python tools/digits_quality.py --tables docs/results/demo_quality.json   # the table of a --json record

Samples (uint8, 16×16) are averaged 2×2 down to the digits' native 8×8 and [0, 1] range.
1. Nearest neighbour: the distance within which 95% of the held-out real digits (the
   `validation` split: every tenth image) find their nearest training digit is the threshold;
   the script prints the share of samples whose nearest training digit is that close
   (target ≥ 0.80).
2. Classes: a logistic-regression classifier fitted on the training digits labels the samples;
   the script prints how many samples fall in each class (target: all ten present). A
   classifier's confidence alone proves nothing (it is confident on noise too), hence (1).
3. At the samples' own 16×16 (`soft_diffusion.evaluation.spectral`, against the held-out digits
   through the same 8 -> 16 pipeline, and the train digits as the reference the held-out ones
   are scored against too): pixel-space KID (×10³), the DCT variance ratio over the rings
   12 ≤ k+l < 20 (fine detail, 1 is right) and the excess noise std over the rings k+l ≥ 20
   (where the upsampled digits have almost no power). The nearest-neighbour share (1) is too
   coarse to see noise in the finest frequencies; these are not.
"""

from __future__ import annotations

import argparse
import json
import pathlib

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


def table(record: dict) -> str:
  """A --json record as the demo's quality table (measured against its targets)."""
  rows = [
    (
      "samples within the 95% held-out nearest-neighbour distance " + f"({record['nn_threshold']:.3f})",
      f"{record['nn_share']:.3f}",
      "≥ 0.80",
    ),
    (
      "classes found by the classifier",
      f"{record['classes_present']}/10 ({min(record['class_counts'])}–{max(record['class_counts'])} samples each)",
      "10/10",
    ),
    (
      f"pixel KID ×10³ against the {record['num_held_out']} held-out digits (held-out against train: "
      f"{record['pixel_kid_floor_e3']:.2f})",
      f"{record['pixel_kid_e3']:.2f} ± {record['pixel_kid_std_e3']:.2f}",
      "—",
    ),
    (
      "fine-detail variance ratio (rings 12–19) / excess noise std (rings ≥ 20)",
      f"{record['ratio_high']:.2f} / {record['top_excess_std']:.4f}",
      "1 / ≤ 0.012",
    ),
  ]
  lines = [
    f"{record['num_samples']} samples ({record['samples']})",
    "",
    "| what | measured | target |",
    "|---|---|---|",
  ]
  return "\n".join([*lines, *("| " + " | ".join(row) + " |" for row in rows)])


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("samples", nargs="?", help="samples.npz written by --mode sample (key 'images')")
  parser.add_argument("--json", help="also write the measures to this JSON file")
  parser.add_argument("--tables", help="only print the table of this --json file")
  args = parser.parse_args()
  if args.tables:
    print(table(json.loads(pathlib.Path(args.tables).read_text())))
    return
  if not args.samples:
    parser.error("give samples.npz (or --tables JSON)")
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
  pixel = print_pixel_measures(images)
  if args.json:
    record = {
      "samples": str(args.samples),
      "num_samples": len(samples),
      "nn_threshold": float(threshold),
      "nn_share": share,
      "class_counts": counts.tolist(),
      "classes_present": int(np.sum(counts > 0)),
      **pixel,
    }
    pathlib.Path(args.json).write_text(json.dumps(record, indent=1) + "\n")
    print(f"wrote {args.json}")


def print_pixel_measures(images: np.ndarray) -> dict:
  """Pixel KID and DCT ring measures at 16×16 against the held-out digits (3. above)."""
  from soft_diffusion import data, evaluation
  from soft_diffusion.evaluation import spectral

  cfg = data.DataConfig(name="digits", image_size=images.shape[1])

  def split(name):
    ds = data.make_dataset(cfg, split=name, batch_size=256, seed=0, train=False)
    return np.concatenate([np.asarray(evaluation.to_uint8(b)) for b in ds])

  held_out, train = split("validation"), split("train")
  kid, kid_std = spectral.pixel_kid(images, held_out, num_subsets=100, subset_size=len(held_out), seed=0)
  floor, _ = spectral.pixel_kid(held_out, train, num_subsets=100, subset_size=len(held_out), seed=0)
  report = spectral.ring_report(images, held_out)
  print(
    f"pixel KID×1e3 against the {len(held_out)} held-out digits: {1e3 * kid:.2f} ± {1e3 * kid_std:.2f} "
    f"(held-out against train: {1e3 * floor:.2f}); fine-detail variance ratio (rings 12-19) "
    f"{report['ratio_high']:.2f} (1 = real); excess noise std (rings >= 20) {report['top_excess_std']:.4f}"
  )
  return {
    "num_held_out": len(held_out),
    "pixel_kid_e3": 1e3 * float(kid),
    "pixel_kid_std_e3": 1e3 * float(kid_std),
    "pixel_kid_floor_e3": 1e3 * float(floor),
    "ratio_high": float(report["ratio_high"]),
    "top_excess_std": float(report["top_excess_std"]),
  }


if __name__ == "__main__":
  main()
