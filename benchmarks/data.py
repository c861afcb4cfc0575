"""CelebA-64 input throughput per host, decoding every step and from the decoded cache, on fake
218×178 JPEGs.

    python benchmarks/data.py [--images 1024] [--batch 128] [--batches 16] [--workers 0 2]

Runs the training pipeline of configs/celeba64 (decode JPEG, centre crop 140, antialiased
resize to 64, random flip, batch) from an in-memory source of random-content JPEGs, so disk
and TFDS reads are excluded, and prints images/s for each worker count: decoding every step
(data.cache = False), building the cache (the one decoding pass at start-up, in parallel) and
streaming from it (data.cache = True, the celeba64 config's setting); then each next to the
rate a train step would consume at --chip_rate images/s per accelerator chip. A benchmark, not
a test.
"""

from __future__ import annotations

import argparse
import io
import os
import time

import grain
import numpy as np
from PIL import Image

from soft_diffusion import data
from soft_diffusion.data import pipeline


class InMemoryJpegs:
  """Random-access source of encoded JPEGs (picklable, so grain workers can use it)."""

  def __init__(self, count: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    self.jpegs = []
    for _ in range(count):
      small = rng.uniform(0, 255, (28, 24, 3)).astype(np.uint8)  # smooth content, like a photo
      buf = io.BytesIO()
      Image.fromarray(small).resize((178, 218), Image.BILINEAR).save(buf, format="JPEG", quality=90)
      self.jpegs.append(buf.getvalue())

  def __len__(self) -> int:
    return len(self.jpegs)

  def __getitem__(self, index: int) -> dict:
    return {"image": self.jpegs[index], "name": f"fake[{index}]"}


def images_per_second(cfg: data.DataConfig, source: InMemoryJpegs, batch: int, batches: int) -> float:
  iterator = iter(data.make_dataset(cfg, split="train", batch_size=batch, seed=0, train=True, source=source))
  for _ in range(2):  # start workers, fill buffers
    next(iterator)
  start = time.perf_counter()
  for i in range(batches):
    next(iterator)
    done = i + 1
    rate = done * batch / (time.perf_counter() - start)
    print(f"\r  {done}/{batches} batches, {rate:8.1f} images/s, ETA {(batches - done) * batch / rate:5.1f} s", end="")
  elapsed = time.perf_counter() - start
  print()
  if hasattr(iterator, "close"):
    iterator.close()
  return batches * batch / elapsed


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--images", type=int, default=1024)
  parser.add_argument("--batch", type=int, default=128)
  parser.add_argument("--batches", type=int, default=16)
  parser.add_argument("--workers", type=int, nargs="+", default=[0, 2])
  parser.add_argument("--chip_rate", type=float, default=256.0, help="images/s one accelerator chip consumes")
  args = parser.parse_args()
  if min(args.images, args.batch, args.batches) < 1 or min(args.workers) < 0:
    parser.error("--images, --batch, --batches must be >= 1 and --workers >= 0")

  source = InMemoryJpegs(args.images)
  print(f"host: {os.cpu_count()} CPU cores; {args.images} fake 218x178 JPEGs, batch {args.batch}")
  rates = {}
  for workers in args.workers:
    cfg = data.DataConfig(name="celeb_a", image_size=64, crop_size=140, random_flip=True, num_workers=workers)
    print(f"decoding every step, num_workers={workers}:")
    rates[f"decode, {workers} workers"] = images_per_second(cfg, source, args.batch, args.batches)
  workers = max(args.workers)
  cfg = data.DataConfig(name="celeb_a", image_size=64, crop_size=140, random_flip=True, num_workers=workers, cache=True)
  start = time.perf_counter()
  pipeline.decode_all(grain.MapDataset.source(source), pipeline.Preprocess(140, 64), cfg)
  build = len(source) / (time.perf_counter() - start)
  print(f"building the cache with {workers} workers: {build:.1f} images/s (CelebA's 162,770: {162_770 / build:.0f} s)")
  print("from the cache:")
  rates["cached"] = images_per_second(cfg, source, args.batch, args.batches)
  print(f"\nrequired by the CelebA-64 train step at {args.chip_rate:.0f} images/s per chip:")
  for chips in (1, 4, 8):
    need = chips * args.chip_rate
    ratios = ", ".join(f"{w}: {r / need:5.2f}x" for w, r in rates.items())
    print(f"  {chips} chip(s) per host: {need:7.0f} images/s -> measured/required: {ratios}")
  for label, rate in rates.items():
    print(f"{label}: {rate:.1f} images/s")


if __name__ == "__main__":
  main()
