"""What the processes of a multi-host run do together (nothing with one process).

* `barrier(name)`: every process waits until all have arrived.
* `sum_over_processes(x)`: a float64 sum over processes (statistics split over processes).
* `gather_interleaved(rows, num)`: rows i, i + n, ... of every process back in sequence order.
* `write_once(writer, path, ...)`: results every process computed alike, written by process 0,
  then a barrier.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import numpy as np
from etils import epath


def barrier(name: str) -> None:
  """Every process waits here until all have arrived (nothing to do with one process)."""
  if jax.process_count() > 1:
    from jax.experimental import multihost_utils

    multihost_utils.sync_global_devices(name)


def sum_over_processes(x: np.ndarray) -> np.ndarray:
  """`x` (this process's part, the same shape on every process) summed over all processes; every
  process gets the sum, in float64: the collective carries float32 (JAX's default), so `x` travels
  as a float32 value plus its float32 remainder, which keeps about 48 bits of each part."""
  x = np.asarray(x, np.float64)
  if jax.process_count() == 1:
    return x
  from jax.experimental import multihost_utils

  high = x.astype(np.float32)
  low = (x - high.astype(np.float64)).astype(np.float32)
  parts = np.asarray(multihost_utils.process_allgather(np.stack([high, low])), np.float64)  # [P, 2, ...]
  return parts.sum(axis=(0, 1))


def gather_interleaved(rows: np.ndarray, num: int) -> np.ndarray:
  """Every process's rows, where process i holds rows i, i + n, i + 2n, ... of a sequence (the
  shares `data.first_batches` reads), gathered into the sequence's first `num` rows, in order,
  on every process (float32)."""
  from jax.experimental import multihost_utils

  processes = jax.process_count()
  width = -(-num // processes)
  padded = np.zeros((width, *rows.shape[1:]), np.float32)
  padded[: len(rows)] = rows
  parts = np.asarray(multihost_utils.process_allgather(padded))  # [P, width, ...]
  return parts.transpose(1, 0, *range(2, parts.ndim)).reshape(-1, *rows.shape[1:])[:num]


def write_once(writer: Callable[..., Any], path: epath.Path, *args: Any, **kwargs: Any) -> None:
  """`writer(path, ...)` on process 0 only, then a barrier: under --distributed every process
  computes the same results and none reads a file before it is complete."""
  if jax.process_index() == 0:
    writer(path, *args, **kwargs)
  barrier(f"wrote {path}")
