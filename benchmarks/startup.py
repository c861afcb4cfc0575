"""Start-up time of a training run with and without the persistent compilation cache.

    python benchmarks/startup.py [--config configs/digits.py] [--steps 2]

Runs `python -m soft_diffusion.main --config C --workdir W --config.train.total_steps=STEPS` three
times, each in a fresh workdir: without `--compilation_cache_dir`, then twice with one new cache
folder (the first fills it, the second is a restart that finds it). Prints the wall time of each
process (imports, data, prior, compiles, the steps, one checkpoint) and the ratio of the restart
to the uncached run. A benchmark, not a test: numbers depend on the machine.
"""

from __future__ import annotations

import argparse
import os
import pathlib
import subprocess
import sys
import tempfile
import time

REPO = pathlib.Path(__file__).resolve().parents[1]


def run(config: str, workdir: pathlib.Path, steps: int, cache: pathlib.Path | None) -> float:
  command = [
    sys.executable,
    "-m",
    "soft_diffusion.main",
    f"--config={config}",
    f"--workdir={workdir}",
    f"--config.train.total_steps={steps}",
    f"--config.train.log_every_steps={steps}",
    f"--config.train.sample_every_steps={10 * steps}",
  ]
  if cache is not None:
    command.append(f"--compilation_cache_dir={cache}")
  start = time.perf_counter()
  proc = subprocess.run(command, cwd=REPO, capture_output=True, text=True, env={**os.environ, "JAX_PLATFORMS": "cpu"})
  seconds = time.perf_counter() - start
  if proc.returncode:
    sys.exit(f"run failed:\n{proc.stderr[-3000:]}")
  return seconds


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--config", default="configs/digits.py")
  parser.add_argument("--steps", type=int, default=2)
  args = parser.parse_args()
  with tempfile.TemporaryDirectory() as tmp:
    root = pathlib.Path(tmp)
    cache = root / "cache"
    plain = run(args.config, root / "plain", args.steps, None)
    cold = run(args.config, root / "cold", args.steps, cache)
    warm = run(args.config, root / "warm", args.steps, cache)
    entries = sum(1 for _ in cache.iterdir()) if cache.is_dir() else 0
  print(f"{args.config}, {args.steps} steps, whole process wall time:")
  print(f"  no cache:            {plain:6.1f} s")
  print(f"  cache, first start:  {cold:6.1f} s  ({entries} programs cached)")
  print(f"  cache, restart:      {warm:6.1f} s  ({warm / plain:.2f}x the uncached start)")


if __name__ == "__main__":
  main()
