"""Timing helpers shared by the benchmark scripts (run as `python benchmarks/<name>.py`)."""

from __future__ import annotations

import dataclasses
import statistics
import time

import jax
import jax.numpy as jnp


def seconds_per_call(fn, *args, repeats: int) -> float:
  """Median wall time of `fn(*args)` after one compile-and-warm-up call."""
  jax.block_until_ready(fn(*args))
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    jax.block_until_ready(fn(*args))
    times.append(time.perf_counter() - start)
  return statistics.median(times)


def compile_with_flops(jitted, *args):
  """(compiled program, FLOPs of one call by XLA's cost analysis, compile seconds)."""
  start = time.perf_counter()
  compiled = jitted.lower(*args).compile()
  seconds = time.perf_counter() - start
  cost = compiled.cost_analysis()
  cost = cost[0] if isinstance(cost, (list, tuple)) else cost
  return compiled, float(cost.get("flops", float("nan"))), seconds


def xla_flops(jitted, *args) -> float:
  """FLOPs of one call as counted by XLA's cost analysis of the compiled program."""
  return compile_with_flops(jitted, *args)[1]


def matmul_flops_per_second(n: int, repeats: int, dtype=jnp.float32) -> float:
  """Achieved FLOP/s of one [n, n] x [n, n] matmul in `dtype` (float32 at HIGHEST precision)."""
  a = jax.random.normal(jax.random.key(0), (n, n), dtype)
  b = jax.random.normal(jax.random.key(1), (n, n), dtype)
  precision = jax.lax.Precision.HIGHEST if dtype == jnp.float32 else None
  mm = jax.jit(lambda a, b: jnp.matmul(a, b, precision=precision))
  return 2.0 * n**3 / seconds_per_call(mm, a, b, repeats=repeats)


def corruption_for_timing(cfg):
  """The corruption of a config block; 'selected' blur levels (read from a workdir in a run)
  are replaced by the log schedule over the same range: a step's cost does not depend on them."""
  from soft_diffusion import corruptions

  if cfg.blur_schedule == "selected" and cfg.blur_sigma_table is None:
    cfg = dataclasses.replace(cfg, blur_schedule="log")
  return corruptions.make(cfg)
