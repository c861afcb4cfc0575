"""Files a run writes, and how long-running passes report progress.

* `resolve_workdir`: the run's folder as an absolute path (Orbax needs one), refused in one line
  when it is a file, sits under a file, or cannot be written.
* Atomic writers: `write_atomic(path, write)` writes a sibling temporary file and renames it
  over `path`, so a crash never leaves a half-written file; `write_json`, `save_npz`,
  `save_figure` and `write_png` use it. `append_jsonl` appends one JSON line.
* Images: `to_uint8` (the one rounding rule for samples and reference images), `image_grid`,
  `write_png`; `pyplot()` is matplotlib on the file-only Agg backend.
* `Progress`: a log line with the count done, the rate and the ETA (days included), for
  sampling, statistics and the power-spectrum pass. The train loop reports with
  `clu.periodic_actions.ReportProgress` instead.
"""

from __future__ import annotations

import json
import logging
import math
import os
import pathlib
import time
from collections.abc import Callable
from typing import Any

import jax.numpy as jnp
import numpy as np

from soft_diffusion import errors

log = logging.getLogger(__name__)


def resolve_workdir(workdir: str | os.PathLike) -> pathlib.Path:
  """The absolute path of `workdir`; one-line error if it cannot be a writable folder.

  Nothing is created: the folder appears when the first file is written.
  """
  if not str(workdir):
    raise errors.ConfigError("--workdir must name a folder, got an empty string")
  if "://" in str(workdir):  # pathlib would turn gs://b/x into the local folder ./gs:/b/x
    raise errors.ConfigError(
      f"--workdir {workdir}: bucket workdirs are not supported yet (issue 13); give a folder on a file "
      "system every process sees"
    )
  path = pathlib.Path(workdir).expanduser().resolve()
  if path.exists() and not path.is_dir():
    raise errors.ConfigError(f"--workdir {workdir} is a file; give a folder (it is created if missing)")
  existing = path
  while not existing.exists():
    existing = existing.parent
  if not existing.is_dir():
    raise errors.ConfigError(f"--workdir {workdir} lies under the file {existing}; give a folder")
  if not os.access(existing, os.W_OK | os.X_OK):
    raise errors.ConfigError(f"--workdir {workdir}: {existing} is not writable")
  return path


# ----------------------------------------------------------------------------------------------
# Atomic writers.


def write_atomic(path: pathlib.Path, write: Callable[[pathlib.Path], Any]) -> None:
  """`write(tmp)` into a sibling temporary file, then rename it to `path` (atomic on POSIX): a
  crash never leaves a half-written `path`."""
  path = pathlib.Path(path)
  path.parent.mkdir(parents=True, exist_ok=True)
  tmp = path.with_name(f"{path.stem}.tmp{path.suffix}")
  try:
    write(tmp)
    tmp.replace(path)
  except BaseException:
    tmp.unlink(missing_ok=True)
    raise


def write_json(path: pathlib.Path, record: dict[str, Any]) -> None:
  write_atomic(path, lambda tmp: tmp.write_text(json.dumps(record, indent=1)))


def save_npz(path: pathlib.Path, **arrays: Any) -> None:
  write_atomic(path, lambda tmp: np.savez(tmp, **{k: np.asarray(v) for k, v in arrays.items()}))


def append_jsonl(path: pathlib.Path, record: dict[str, Any]) -> None:
  """One JSON line per record (after a resume, a step may appear twice: the last one counts)."""
  path.parent.mkdir(parents=True, exist_ok=True)
  with path.open("a") as f:
    f.write(json.dumps(record) + "\n")


# ----------------------------------------------------------------------------------------------
# Images and figures.


def to_uint8(x) -> jnp.ndarray:
  """Images in [-1, 1] -> uint8 [0, 255] (rounded), as samples and reference images are stored."""
  return jnp.round((jnp.asarray(x) + 1.0) * 127.5).clip(0, 255).astype(jnp.uint8)


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


def write_png(images: np.ndarray, path: pathlib.Path) -> None:
  """uint8 [N, H, W, C] as one grid PNG; images of 32 px or less are shown 4× larger."""
  from PIL import Image

  grid = image_grid(images)
  img = Image.fromarray(grid[..., 0] if grid.shape[-1] == 1 else grid)
  if images.shape[1] <= 32:
    img = img.resize((img.width * 4, img.height * 4), Image.NEAREST)
  write_atomic(path, img.save)


def pyplot():
  """matplotlib.pyplot on the file-only Agg backend (no display needed)."""
  import matplotlib

  matplotlib.use("Agg")
  import matplotlib.pyplot as plt

  return plt


def save_figure(fig: Any, path: pathlib.Path, dpi: int = 110) -> None:
  write_atomic(path, lambda tmp: fig.savefig(tmp, dpi=dpi))
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
