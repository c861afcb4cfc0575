"""Files a run writes, and how long-running passes report progress.

* `resolve_workdir`: the run's folder as an `etils.epath.Path` (the path type Orbax uses): a
  local folder made absolute, or a URL such as `gs://bucket/run` (any scheme epath reads: through
  `tf.io.gfile` when TensorFlow is installed, else fsspec). Refused in one line when it is a file,
  sits under a file, cannot be written or cannot be reached. Every file of a run goes through
  this path type.
* Atomic writers: `write_atomic(path, write)` has `write(f)` fill an in-memory buffer, then
  publishes it whole: on a local disk as a sibling temporary file renamed over `path`; on an
  object store (no rename) as one object upload, which the store makes visible only once it is
  complete. Either way a crash never leaves a half-written `path`, and readers see the old file
  or the new one. `write_json`, `save_npz`, `save_figure` and `write_png` use it; `load_npz`
  reads an .npz from either.
* Metrics: `MetricsLog` (the train loop's JSON lines: appended on a local disk, uploaded in
  segments on an object store) and `read_metrics`, which reads either.
* `barrier(name)`: all processes meet here (nothing with one process); `write_once(writer, path,
  ...)`: results every process computed alike, written by process 0, then a barrier.
* `run_points(path, header, grid, measure)`: a resumable grid of measurements (--mode eval):
  the JSON is rewritten after every point, and a rerun keeps the points it already holds.
* Images: `to_uint8` (the one rounding rule for samples and reference images), `image_grid`,
  `write_png`; `pyplot()` is matplotlib on the file-only Agg backend.
* `Progress`: a log line with the count done, the rate and the ETA (days included), for
  sampling, statistics and the power-spectrum pass. The train loop writes its own line every
  `train.log_every_steps` (step, loss, images/s, ETA; train.py).
"""

from __future__ import annotations

import io
import json
import logging
import math
import os
import pathlib
import time
from collections.abc import Callable
from typing import IO, Any

import jax
import numpy as np
from etils import epath

from soft_diffusion import errors
from soft_diffusion.evaluation import to_uint8  # noqa: F401  (the drivers' rounding rule, re-exported)

log = logging.getLogger(__name__)


def is_local(path: str | os.PathLike) -> bool:
  """True for a path on this machine's file system, False for a URL (gs://, s3://, ...)."""
  return "://" not in os.fspath(path)


def resolve_workdir(workdir: str | os.PathLike) -> epath.Path:
  """`workdir` as an `epath.Path` (absolute when local); one-line error if it cannot be a
  writable folder. Nothing is created: the folder appears when the first file is written."""
  text = os.fspath(workdir)
  if not text:
    raise errors.ConfigError("--workdir must name a folder, got an empty string")
  if not is_local(text):
    scheme, _, rest = text.partition("://")
    if not scheme.isidentifier() or not rest.strip("/"):
      raise errors.ConfigError(
        f"--workdir {text}: a URL must look like scheme://bucket/folder, e.g. gs://my-bucket/run"
      )
    path = epath.Path(text)
    try:
      is_file = path.exists() and not path.is_dir()
    except Exception as e:  # an unknown scheme, a missing bucket, no credentials, no network
      raise errors.ConfigError(f"--workdir {text} cannot be reached: {type(e).__name__}: {e}".split("\n")[0]) from None
    if is_file:
      raise errors.ConfigError(f"--workdir {text} is a file; give a folder (it is created if missing)")
    return path
  path = pathlib.Path(text).expanduser().resolve()
  if path.exists() and not path.is_dir():
    raise errors.ConfigError(f"--workdir {workdir} is a file; give a folder (it is created if missing)")
  existing = path
  while not existing.exists():
    existing = existing.parent
  if not existing.is_dir():
    raise errors.ConfigError(f"--workdir {workdir} lies under the file {existing}; give a folder")
  if not os.access(existing, os.W_OK | os.X_OK):
    raise errors.ConfigError(f"--workdir {workdir}: {existing} is not writable")
  return epath.Path(path)


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


# ----------------------------------------------------------------------------------------------
# Atomic writers.


def write_atomic(path: str | os.PathLike, write: Callable[[IO[bytes]], Any]) -> None:
  """`write(f)` into a buffer, then `path` gets the whole buffer or nothing (see the module
  docstring): a crash never leaves a half-written `path`."""
  buffer = io.BytesIO()
  write(buffer)
  data = buffer.getvalue()
  path = epath.Path(path)
  path.parent.mkdir(parents=True, exist_ok=True)
  if not is_local(path):
    path.write_bytes(data)  # one upload: the object store publishes it only when it is complete
    return
  local = pathlib.Path(path)
  tmp = local.with_name(f"{local.stem}.tmp{local.suffix}")
  try:
    tmp.write_bytes(data)
    os.replace(tmp, local)  # atomic on POSIX
  except BaseException:
    tmp.unlink(missing_ok=True)
    raise


def write_json(path: str | os.PathLike, record: dict[str, Any]) -> None:
  write_atomic(path, lambda f: f.write(json.dumps(record, indent=1).encode()))


def save_npz(path: str | os.PathLike, **arrays: Any) -> None:
  write_atomic(path, lambda f: np.savez(f, **{k: np.asarray(v) for k, v in arrays.items()}))


def load_npz(path: str | os.PathLike) -> dict[str, np.ndarray]:
  """Every array of an .npz file, read whole (local or remote)."""
  with np.load(io.BytesIO(epath.Path(path).read_bytes())) as f:
    return {k: f[k] for k in f.files}


METRICS_FILE = "metrics.jsonl"  # in WORKDIR/logs, on a local disk
METRICS_SEGMENTS = "metrics"  # WORKDIR/logs/metrics/<start>-<launch ms>-<index>.jsonl, on an object store


class MetricsLog:
  """The train loop's metrics in WORKDIR/logs, one JSON line per record.

  On a local disk each record is appended to logs/metrics.jsonl at once. An object store cannot
  append, and rewriting one object per line would upload the whole history again for every line
  (about 20 GB over a CelebA run); there the records are buffered, and every `flush_every`
  records, at `flush()` (the loop calls it with every checkpoint) and at `close()`, the buffer
  becomes one new object logs/metrics/<start step>-<launch time ms>-<index>.jsonl, so every line
  is uploaded once. `read_metrics` reads both forms.
  """

  def __init__(self, logdir: str | os.PathLike, start_step: int, flush_every: int = 100):
    self.logdir = epath.Path(logdir)
    self.local = is_local(self.logdir)
    self.flush_every = flush_every
    self.prefix = f"{start_step:09d}-{time.time_ns() // 1_000_000:013d}"
    self.index = 0
    self.buffer: list[str] = []

  def write(self, record: dict[str, Any]) -> None:
    line = json.dumps(record) + "\n"
    if self.local:
      self.logdir.mkdir(parents=True, exist_ok=True)
      with open(self.logdir / METRICS_FILE, "a") as f:
        f.write(line)
      return
    self.buffer.append(line)
    if len(self.buffer) >= self.flush_every:
      self.flush()

  def flush(self) -> None:
    if not self.buffer:
      return
    text = "".join(self.buffer).encode()
    write_atomic(self.logdir / METRICS_SEGMENTS / f"{self.prefix}-{self.index:05d}.jsonl", lambda f: f.write(text))
    self.index += 1
    self.buffer = []


def read_metrics(logdir: str | os.PathLike) -> list[dict[str, Any]]:
  """The records of WORKDIR/logs (metrics.jsonl, then the segments in the order they were written),
  one per step, sorted by step; a step logged twice (a resumed run repeats the steps after its
  last checkpoint) keeps its last record."""
  logdir = epath.Path(logdir)
  files = [logdir / METRICS_FILE] if (logdir / METRICS_FILE).exists() else []
  if (logdir / METRICS_SEGMENTS).is_dir():
    files += sorted((logdir / METRICS_SEGMENTS).glob("*.jsonl"), key=lambda p: p.name)
  by_step: dict[int, dict[str, Any]] = {}
  for path in files:
    for line in path.read_text().splitlines():
      if line.strip():
        record = json.loads(line)
        by_step[record["step"]] = record
  return [by_step[step] for step in sorted(by_step)]


# ----------------------------------------------------------------------------------------------
# Images and figures.


def image_grid(images: np.ndarray) -> np.ndarray:
  """uint8 [N, H, W, C] -> one uint8 [rows*H, cols*W, C] grid (square-ish, 1 px gaps)."""
  n, h, w, c = images.shape
  cols = math.ceil(math.sqrt(n))
  rows = math.ceil(n / cols)
  grid = np.full((rows * (h + 1) + 1, cols * (w + 1) + 1, c), 255, np.uint8)
  for i, img in enumerate(images):
    r, q = divmod(i, cols)
    grid[1 + r * (h + 1) : 1 + r * (h + 1) + h, 1 + q * (w + 1) : 1 + q * (w + 1) + w] = img
  return grid


def write_png(images: np.ndarray, path: str | os.PathLike) -> None:
  """uint8 [N, H, W, C] as one grid PNG; images of 32 px or less are shown 4× larger."""
  from PIL import Image

  grid = image_grid(images)
  img = Image.fromarray(grid[..., 0] if grid.shape[-1] == 1 else grid)
  if images.shape[1] <= 32:
    img = img.resize((img.width * 4, img.height * 4), Image.NEAREST)
  write_atomic(path, lambda f: img.save(f, format="PNG"))


def pyplot():
  """matplotlib.pyplot on the file-only Agg backend (no display needed)."""
  import matplotlib

  matplotlib.use("Agg")
  import matplotlib.pyplot as plt

  return plt


def save_figure(fig: Any, path: str | os.PathLike, dpi: int = 110) -> None:
  write_atomic(path, lambda f: fig.savefig(f, format="png", dpi=dpi))
  pyplot().close(fig)


# ----------------------------------------------------------------------------------------------
# Progress.


def format_duration(seconds: float) -> str:
  """'HH:MM:SS', with whole days in front when there are any: 26 h -> '1d 02:00:00'."""
  if not math.isfinite(seconds):
    return "?"
  total = max(0, round(seconds))
  days, rest = divmod(total, 86_400)
  hours, rest = divmod(rest, 3600)
  minutes, secs = divmod(rest, 60)
  clock = f"{hours:02d}:{minutes:02d}:{secs:02d}"
  return f"{days}d {clock}" if days else clock


class Progress:
  """Logs `what: done/total  rate unit/s  ETA` each time it is called with the count done."""

  def __init__(self, what: str, total: int, *, unit: str = "images", note: str = ""):
    self.what, self.total, self.unit, self.note = what, total, unit, note
    self.start = time.perf_counter()

  def __call__(self, done: int) -> None:
    rate = done / max(time.perf_counter() - self.start, 1e-9)
    eta = format_duration((self.total - done) / rate) if rate > 0 else "?"
    log.info("%s: %d/%d  %.1f %s/s%s  ETA %s", self.what, done, self.total, rate, self.unit, self.note, eta)


# ----------------------------------------------------------------------------------------------
# Results written by every process's computation, and resumable measurement grids.


def write_once(writer: Callable[..., Any], path: epath.Path, *args: Any, **kwargs: Any) -> None:
  """`writer(path, ...)` on process 0 only, then a barrier: under --distributed every process
  computes the same results and none reads a file before it is complete."""
  if jax.process_index() == 0:
    writer(path, *args, **kwargs)
  barrier(f"wrote {path}")


def run_points(path: epath.Path, header: dict[str, Any], grid: list[dict[str, Any]], measure) -> dict[str, Any]:
  """Measures every point of `grid` (dicts of what identifies a point) with `measure(point)` ->
  dict of results, rewriting `path` (header + points so far) after each; points already in a
  file with the same header are kept, not measured again. Returns the full record."""
  header = json.loads(json.dumps(header))
  done: dict[str, dict] = {}
  if path.is_file():
    try:
      old = json.loads(path.read_text())
      if {k: v for k, v in old.items() if k != "points"} == header:
        done = {json.dumps({k: p[k] for k in grid[0]}, sort_keys=True): p for p in old["points"]}
    except (ValueError, KeyError, TypeError, IndexError):
      done = {}  # unreadable or from another layout: measure everything again
  points: list[dict[str, Any]] = []
  progress = Progress("eval", len(grid), unit="points")
  kept = 0
  for spec in grid:
    key = json.dumps(spec, sort_keys=True)
    if key in done:
      points.append(done[key])
      kept += 1
    else:
      points.append({**spec, **measure(spec)})
      write_once(write_json, path, {**header, "points": points})
    progress(len(points))
  if kept:
    log.info("%d of %d points were already in %s (kept)", kept, len(grid), path)
  record = {**header, "points": points}
  write_once(write_json, path, record)
  return record
