"""Throughput of the jitted train step (forward, backward, Adam, EMA) on this machine's devices.

    python benchmarks/train_step.py       # CPU: digits (its batch); celeba64 with NCSN++ and with the U-Net, batch 4
    python benchmarks/train_step.py --configs celeba64 celeba64:unet --batch 128 --dtype bfloat16   # a GPU/TPU
    python benchmarks/train_step.py --memory --configs celeba64 --batch 32 --grad_accum 4   # memory only

A config is a file in configs/, optionally with `@<form>` (its recipe, schema.apply_form:
`digits@paper`) and `:<model.name>` to swap its network. For each:
images/s of `train.make_train_step` on a synthetic batch (the input pipeline is excluded; see
benchmarks/data.py), the step's FLOPs from XLA's cost analysis, the achieved FLOP/s, and its
ratio to the matmul FLOP/s measured in the same run: float32 (HIGHEST precision) for float32
models, bfloat16 for bfloat16 models, which on an accelerator is the MFU against the rate the
chip actually reaches. The step runs sharded over every local device, as in training. Each line
also gives the step's peak device memory by XLA's memory analysis of the compiled program.
`--remat` and `--grad_accum K` set model.remat and train.grad_accum_steps; `--memory` only
compiles, and prints the peak memory of the four combinations of (remat off/on) x (1 or K
micro-batches) with their ratios to the plain step. A benchmark, not a test: numbers depend on
the machine.
"""

from __future__ import annotations

import argparse
import pathlib
import statistics
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
from timing import compile_with_flops, corruption_for_timing, matmul_flops_per_second, preconditioner_for_timing

from soft_diffusion import models
from soft_diffusion.run import schema
from soft_diffusion.run import settings as settings_lib
from soft_diffusion.run import state as state_lib
from soft_diffusion.run.modes import train

CONFIGS = pathlib.Path(__file__).resolve().parents[1] / "configs"


def peak_bytes(compiled) -> int:
  """Device memory of one call by XLA's memory analysis: arguments + outputs + temporaries −
  donated (aliased) buffers. (Its `peak_memory_in_bytes` reads 4 MiB for every variant on the
  CPU, so it is not used.)"""
  stats = compiled.memory_analysis()
  parts = stats.argument_size_in_bytes + stats.output_size_in_bytes + stats.temp_size_in_bytes
  return int(parts - stats.alias_size_in_bytes)


def residual_bytes(model, params, batch: int, size: int, channels: int) -> int:
  """Bytes of the activations the network's forward pass keeps for the backward pass (JAX's own
  accounting, before XLA's scheduling; jax._src.ad_checkpoint.saved_residuals is not public)."""
  from jax._src import ad_checkpoint

  x, t = jnp.zeros((batch, size, size, channels)), jnp.zeros((batch,))
  saved = ad_checkpoint.saved_residuals(lambda p: model.apply({"params": p}, x, t).sum(), params)
  return int(sum(np.prod(aval.shape) * aval.dtype.itemsize for aval, _ in saved))


def measure(name: str, batch: int | None, dtype: str | None, steps: int, remat: bool = False, accum: int = 1) -> dict:
  """Compiles the train step of config `name` and times `steps` calls (none when steps is 0)."""
  spec, _, network = name.partition(":")
  module, _, form = spec.partition("@")
  config = schema.load_config(str(CONFIGS / f"{module}.py") + (f":{form}" if form else ""))
  if network:
    config.model.name = network
  config.model.remat = remat
  config.train.grad_accum_steps = accum
  if batch is not None:
    config.train.batch_size = batch
  if dtype is not None:
    config.model.dtype = dtype
  settings = settings_lib.load(config)
  batch = settings.train.batch_size
  size = settings.data.image_size
  channels = 1 if settings.data.name == "digits" else 3
  mesh = state_lib.make_mesh()
  model = models.make_network(settings.model)
  optimizer, lr_schedule = state_lib.make_optimizer(settings.optim)
  corruption = corruption_for_timing(settings.corruption)
  state = state_lib.create_state(model, optimizer, (size, size, channels), settings.seed, state_lib.replicated(mesh))
  precond = preconditioner_for_timing(settings, corruption, (size, size, channels))
  step = train.jit_train_step(model, corruption, optimizer, lr_schedule, settings, state, mesh, precond=precond)
  x = np.random.default_rng(0).uniform(-1, 1, (batch, size, size, channels)).astype(np.float32)
  x = jax.device_put(x, state_lib.batch_sharding(mesh))
  print(f"{name}: compiling the train step, batch {batch} ...", file=sys.stderr, flush=True)
  step, flops, compile_s = compile_with_flops(step, state, x)
  memory = peak_bytes(step)
  print(f"{name}: compiled in {compile_s:.1f} s; timing {steps} steps ...", file=sys.stderr, flush=True)
  if not steps:
    residuals = residual_bytes(model, state.params, batch // accum, size, channels)
    return {"name": name, "batch": batch, "remat": remat, "accum": accum, "peak_bytes": memory, "residuals": residuals}
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
    "peak_bytes": memory,
  }


# Datasheet dense bf16 matmul peaks per chip (FLOP/s), by jax's device_kind: MFU's denominator.
DATASHEET_BF16 = {
  "NVIDIA H100": 989e12,
  "NVIDIA H200": 989e12,
  "NVIDIA A100": 312e12,
  "TPU v4": 275e12,
  "TPU v5": 459e12,  # v5p reports its kind as "TPU v5"
  "TPU v5 lite": 197e12,  # v5e ("TPU v5 lite" is the longer, so the better, match)
  "TPU v5e": 197e12,
  "TPU v5p": 459e12,
  "TPU v6 lite": 918e12,
}


def datasheet_peak(kind: str) -> float | None:
  """The bf16 peak of the chip `kind` names (longest matching prefix), or None if unknown."""
  matches = [k for k in DATASHEET_BF16 if kind.startswith(k)]
  return DATASHEET_BF16[max(matches, key=len)] if matches else None


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--configs", nargs="+", default=["digits", "celeba64", "celeba64:unet"])
  parser.add_argument("--batch", type=int, nargs="+", default=None, help="one per config (default: digits' own, 4)")
  parser.add_argument("--dtype", choices=["float32", "bfloat16"], default=None, help="default: the config's")
  parser.add_argument("--steps", type=int, default=10, help="timed steps per config (median reported)")
  parser.add_argument("--matmul_size", type=int, default=None, help="default: 2048 on CPU, 8192 elsewhere")
  parser.add_argument("--remat", action="store_true", help="model.remat = True")
  parser.add_argument("--grad_accum", type=int, default=1, help="train.grad_accum_steps")
  parser.add_argument("--memory", action="store_true", help="peak memory of remat x accumulation, no timing")
  args = parser.parse_args()
  batches = args.batch or [None if c.startswith("digits") else 4 for c in args.configs]
  if len(batches) == 1:
    batches = batches * len(args.configs)
  if (
    len(batches) != len(args.configs)
    or any(b is not None and b < 1 for b in batches)
    or args.steps < 1
    or args.grad_accum < 1
  ):
    parser.error("--batch takes one positive size per config (or one for all); --steps must be >= 1")
  backend = jax.default_backend()
  matmul_size = args.matmul_size or (2048 if backend == "cpu" else 8192)

  print(f"devices: {jax.device_count()} x {jax.devices()[0].device_kind} ({backend}), jax {jax.__version__}")
  if args.memory:
    for name, b in zip(args.configs, batches, strict=True):
      base = None
      for remat in (False, True):
        for accum in sorted({1, args.grad_accum}):
          r = measure(name, b, args.dtype, 0, remat, accum)
          base = base or r
          print(
            f"{name}: batch {r['batch']}, remat {str(remat):5}, {accum} micro-batch(es): XLA peak "
            f"{r['peak_bytes'] / 2**20:,.1f} MiB ({r['peak_bytes'] / base['peak_bytes']:.2f}x the plain step) | "
            f"activations kept for backward {r['residuals'] / 2**20:,.1f} MiB "
            f"({r['residuals'] / base['residuals']:.2f}x)"
          )
    return
  results = [
    measure(name, b, args.dtype, args.steps, args.remat, args.grad_accum)
    for name, b in zip(args.configs, batches, strict=True)
  ]
  peaks = {}
  for dtype in sorted({r["dtype"] for r in results}):
    jdtype = jnp.bfloat16 if dtype == "bfloat16" else jnp.float32
    peaks[dtype] = matmul_flops_per_second(matmul_size, repeats=10, dtype=jdtype) * jax.local_device_count()
    print(f"{dtype} matmul {matmul_size}^2 on {jax.local_device_count()} device(s): {peaks[dtype] / 1e12:.3f} TFLOP/s")
  sheet = datasheet_peak(jax.devices()[0].device_kind)
  for r in results:
    ratio = r["flop_per_s"] / peaks[r["dtype"]]
    if sheet and r["dtype"] == "bfloat16":
      mfu = r["flop_per_s"] / (sheet * jax.local_device_count())
      print(f"{r['name']}: bf16 MFU against the datasheet peak ({sheet / 1e12:.0f} TFLOP/s per chip): {mfu:.3f}")
    print(
      f"{r['name']} ({r['network']}): batch {r['batch']} x {r['size']}^2, {r['dtype']}, {r['params']:,} params | "
      f"{r['step_s'] * 1e3:.1f} ms/step, {r['images_per_s']:.1f} images/s | "
      f"{r['flops'] / r['batch'] / 1e9:.3f} GFLOP/image/step (XLA), {r['flop_per_s'] / 1e9:.1f} GFLOP/s | "
      f"ratio to {r['dtype']} matmul FLOP/s: {ratio:.3f} | peak memory {r['peak_bytes'] / 2**20:,.1f} MiB | "
      f"compile {r['compile_s']:.1f} s"
    )


if __name__ == "__main__":
  main()
