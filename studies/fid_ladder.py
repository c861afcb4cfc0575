"""FID sanity ladder on the embedded digits: FID/KID of the training images against held-out
images, then against the held-out images blurred more and more. A working FID is small for the
first and rises monotonically with the blur. Prints a table; takes ~N·5/4 s on a 2-core CPU.

    python studies/fid_ladder.py [--num 180] [--sigmas 0.5 1 2 4]
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np

from soft_diffusion import data, evaluation


def split_images(split: str, num: int, data_dir: str | None = None, image_size: int = 16) -> np.ndarray:
  """The first `num` digits of `split` at `image_size`, float32 in [-1, 1]."""
  cfg = data.DataConfig(name="digits", path=data_dir, image_size=image_size)
  return np.concatenate(list(data.first_batches(cfg, split, num, batch_size=num)))


def ladder(num: int, sigmas: list[float], data_dir: str | None = None) -> list[tuple[str, float, float]]:
  """[(label, FID, KID)] of train vs held-out, then vs held-out blurred by each σ."""
  return evaluation.blur_ladder(split_images("train", num, data_dir), split_images("validation", num, data_dir), sigmas)


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--num", type=int, default=180, help="images per set (digits validation has 180)")
  parser.add_argument("--sigmas", type=float, nargs="+", default=[0.5, 1.0, 2.0, 4.0])
  args = parser.parse_args(argv)
  start = time.perf_counter()
  rows = ladder(args.num, args.sigmas)
  print(f"digits 16x16, {args.num} train images as reference; Inception: {evaluation.INCEPTION_SOURCE}")
  print(f"{'set':28s} {'FID':>9s} {'KID':>9s}")
  for label, fid, kid in rows:
    print(f"{label:28s} {fid:9.2f} {kid:9.4f}")
  fids = [r[1] for r in rows]
  monotone = all(b > a for a, b in zip(fids, fids[1:], strict=False))
  print(f"monotone in blur: {monotone}; {time.perf_counter() - start:.0f} s")
  return 0 if monotone else 1


if __name__ == "__main__":
  sys.exit(main())
