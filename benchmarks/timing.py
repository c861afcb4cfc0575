"""Timing helpers shared by the benchmark scripts (run as `python benchmarks/<name>.py`)."""

from __future__ import annotations

import dataclasses
import statistics
import time
from collections.abc import Iterable

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


def interleaved_seconds(calls: dict, *, repeats: int) -> dict:
  """Median wall time of each `calls[name]()` after one compile-and-warm-up call each, timed in
  rounds (every call once per round) so that a slow drift of the machine's speed falls on all of
  them alike instead of on whichever ran last."""
  for fn in calls.values():
    jax.block_until_ready(fn())
  times = {name: [] for name in calls}
  for _ in range(repeats):
    for name, fn in calls.items():
      start = time.perf_counter()
      jax.block_until_ready(fn())
      times[name].append(time.perf_counter() - start)
  return {name: statistics.median(t) for name, t in times.items()}


def compile_with_flops(jitted, *args):
  """(compiled program, FLOPs of one call over all its devices by XLA's cost analysis, compile seconds).

  The compiled program is SPMD-partitioned, and its cost analysis counts one device's share:
  that times the number of devices the program runs on (a sharded matmul on 4 CPU devices:
  2.1e6 per device, 8.4e6 in all). Where the backend has no cost analysis of the compiled
  program (it returns None on some GPU builds), the lowered program's, which counts the whole
  computation before XLA's optimisation (rematerialisation not included)."""
  start = time.perf_counter()
  lowered = jitted.lower(*args)
  compiled = lowered.compile()
  seconds = time.perf_counter() - start
  return compiled, total_flops(compiled, lowered), seconds


def _first(cost):
  return cost[0] if isinstance(cost, (list, tuple)) and cost else cost


def total_flops(compiled, lowered=None) -> float:
  """FLOPs of one call of `compiled` over all its devices (see compile_with_flops); NaN if unknown."""
  cost = _first(compiled.cost_analysis())
  if cost and "flops" in cost:
    shardings = jax.tree.leaves(compiled.input_shardings)
    devices = len(shardings[0].device_set) if shardings else 1
    return float(cost["flops"]) * devices
  cost = _first(lowered.cost_analysis()) if lowered is not None else None
  return float(cost["flops"]) if cost and "flops" in cost else float("nan")


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


def preconditioner_for_timing(settings, corruption, image_shape):
  """The preconditioning of `settings` (None for model.precond = 'none') over a flat spectrum:
  a step's cost does not depend on the spectrum, which a run reads from its workdir."""
  import numpy as np

  from soft_diffusion import preconditioning

  if settings.model.precond == "none":
    return None
  spectrum = preconditioning.spectrum_for(np.ones(image_shape, np.float32), settings.model.precond_spectrum)
  return preconditioning.Preconditioner(corruption, spectrum, c_in=settings.model.precond_c_in)


def markdown_table(caption: str, header: Iterable[str], rows: Iterable[Iterable[object]], align: str) -> str:
  """`caption`, a blank line, then a markdown table (a --json record's `--tables`); `align` is one
  '|---|' cell spec per column, e.g. "|---|---:|" ('---' left, '---:' right)."""
  lines = [caption, "", "| " + " | ".join(header) + " |", align]
  return "\n".join([*lines, *("| " + " | ".join(str(c) for c in row) + " |" for row in rows)])
