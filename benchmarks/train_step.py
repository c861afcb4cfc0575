"""Throughput of the jitted train step (forward, backward, Adam, EMA) on this machine's devices.

    python benchmarks/train_step.py       # CPU: digits (its batch); celeba64 with NCSN++ and with the U-Net, batch 4
    python benchmarks/train_step.py --configs celeba64 celeba64:unet --batch 128 --dtype bfloat16   # a GPU/TPU

A config is a file in configs/, optionally with `:<model.name>` to swap its network. For each:
images/s of `train.make_train_step` on a synthetic batch (the input pipeline is excluded; see
benchmarks/data.py), the step's FLOPs from XLA's cost analysis, the achieved FLOP/s, and its
ratio to the matmul FLOP/s measured in the same run: float32 (HIGHEST precision) for float32
models, bfloat16 for bfloat16 models, which on an accelerator is the MFU against the rate the
chip actually reaches. The step runs sharded over every local device, as in training. A
benchmark, not a test: numbers depend on the machine.
"""

from __future__ import annotations

import argparse
import importlib
import pathlib
import statistics
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
from timing import compile_with_flops, corruption_for_timing, matmul_flops_per_second

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))  # configs/

from soft_diffusion import settings as settings_lib  # noqa: E402
from soft_diffusion import state as state_lib  # noqa: E402
from soft_diffusion import train  # noqa: E402


def measure(name: str, batch: int | None, dtype: str | None, steps: int) -> dict:
  module, _, network = name.partition(":")
  config = importlib.import_module(f"configs.{module}").get_config()
  if network:
    config.model.name = network
  if batch is not None:
    config.train.batch_size = batch
  if dtype is not None:
    config.model.dtype = dtype
  settings = settings_lib.load(config)
  batch = settings.train.batch_size
  size = settings.data.image_size
  channels = 1 if settings.data.name == "digits" else 3
  mesh = state_lib.make_mesh()
  model = state_lib.make_model(settings.model)
  optimizer, schedule = state_lib.make_optimizer(settings.optim)
  corruption = corruption_for_timing(settings.corruption)
  state = state_lib.create_state(model, optimizer, (size, size, channels), settings.seed, state_lib.replicated(mesh))
  step = train.jit_train_step(model, corruption, optimizer, schedule, settings, state, mesh)
  x = np.random.default_rng(0).uniform(-1, 1, (batch, size, size, channels)).astype(np.float32)
  x = jax.device_put(x, state_lib.batch_sharding(mesh))
  step, flops, compile_s = compile_with_flops(step, state, x)
  for _ in range(2):  # warm-up
    state, metrics = step(state, x)
  jax.block_until_ready(metrics)
  times = []  # the median of blocked single steps: robust to the odd slow step on a shared CPU
  for _ in range(steps):
    start = time.perf_counter()
    state, metrics = step(state, x)
    jax.block_until_ready((state, metrics))
    times.append(time.perf_counter() - start)
  seconds = statistics.median(times)
  params = sum(p.size for p in jax.tree.leaves(state.params))
  return {
    "name": name,
    "network": settings.model.name,
    "batch": batch,
    "size": size,
    "dtype": settings.model.dtype,
    "params": params,
    "step_s": seconds,
    "images_per_s": batch / seconds,
    "flops": flops,
    "flop_per_s": flops / seconds,
    "compile_s": compile_s,
  }


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--configs", nargs="+", default=["digits", "celeba64", "celeba64:unet"])
  parser.add_argument("--batch", type=int, nargs="+", default=None, help="one per config (default: digits' own, 4)")
  parser.add_argument("--dtype", choices=["float32", "bfloat16"], default=None, help="default: the config's")
  parser.add_argument("--steps", type=int, default=10, help="timed steps per config (median reported)")
  parser.add_argument("--matmul_size", type=int, default=None, help="default: 2048 on CPU, 8192 elsewhere")
  args = parser.parse_args()
  batches = args.batch or [None if c == "digits" else 4 for c in args.configs]
  if len(batches) == 1:
    batches = batches * len(args.configs)
  if len(batches) != len(args.configs) or any(b is not None and b < 1 for b in batches) or args.steps < 1:
    parser.error("--batch takes one positive size per config (or one for all); --steps must be >= 1")
  backend = jax.default_backend()
  matmul_size = args.matmul_size or (2048 if backend == "cpu" else 8192)

  print(f"devices: {jax.device_count()} x {jax.devices()[0].device_kind} ({backend}), jax {jax.__version__}")
  results = [measure(name, b, args.dtype, args.steps) for name, b in zip(args.configs, batches, strict=True)]
  peaks = {}
  for dtype in sorted({r["dtype"] for r in results}):
    jdtype = jnp.bfloat16 if dtype == "bfloat16" else jnp.float32
    peaks[dtype] = matmul_flops_per_second(matmul_size, repeats=10, dtype=jdtype) * jax.local_device_count()
    print(f"{dtype} matmul {matmul_size}^2 on {jax.local_device_count()} device(s): {peaks[dtype] / 1e12:.3f} TFLOP/s")
  for r in results:
    ratio = r["flop_per_s"] / peaks[r["dtype"]]
    print(
      f"{r['name']} ({r['network']}): batch {r['batch']} x {r['size']}^2, {r['dtype']}, {r['params']:,} params | "
      f"{r['step_s'] * 1e3:.1f} ms/step, {r['images_per_s']:.1f} images/s | "
      f"{r['flops'] / r['batch'] / 1e9:.3f} GFLOP/image/step (XLA), {r['flop_per_s'] / 1e9:.1f} GFLOP/s | "
      f"ratio to {r['dtype']} matmul FLOP/s: {ratio:.3f} | compile {r['compile_s']:.1f} s"
    )


if __name__ == "__main__":
  main()
