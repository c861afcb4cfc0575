"""The run folder, WORKDIR: one owner for every path in it and for the side files' readers and
writers. No other module spells a name of the folder's layout.

    WORKDIR/
      checkpoints/<step>/          Orbax checkpoints (checkpoints.py)
      logs/                        metrics.jsonl (or metrics/<segments>.jsonl on an object store),
                                   TensorBoard events, plugins/profile/
      levels.json, levels.png      --mode levels: the selected blur levels and their figure
      time_grid.json, time_grid.png  --mode tune_grid: time grids fitted to the model, and their figure
      prior.npz                    the Gaussian p_1 fitted when training starts
      spectrum.npz                 the data's mean DCT power (key `power`)
      samples/grid_step<N>.png     the train loop's sample grids
      samples/<draw>/              --mode sample: samples.npz, samples.png, trajectory.png, forward.png
      stats/reference_<split>.npz  --mode stats: the Inception reference statistics
      eval/                        eval_step<N>.json, <metric>_step<N>.png, best.json, best_in_training.json
      restore/<tag>/               --mode restore: restorations.npz, metrics.json, restore_<name>.png

`Workdir.resolve(text)` checks a `--workdir` (a local folder, made absolute, or a URL such as
`gs://bucket/run`: any scheme `etils.epath` reads) and refuses in one line a file, a folder under
a file, one that cannot be written or reached. `Workdir.of(x)` wraps a path the caller already
trusts (tests, the library's callers). Every file goes through `files.write_atomic`.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import pathlib
import time
from typing import Any

from etils import epath

from soft_diffusion import errors
from soft_diffusion.run import files
from soft_diffusion.run import settings as settings_lib

log = logging.getLogger(__name__)

LEVELS_HINT = "run: python -m soft_diffusion.main --mode levels --config ... --workdir {workdir}"
TUNE_HINT = "run: python -m soft_diffusion.main --mode tune_grid --config ... --workdir {workdir}{steps}"


@dataclasses.dataclass(frozen=True)
class DrawFiles:
  """The files of one `--mode sample` draw: WORKDIR/samples/<draw>/."""

  folder: epath.Path

  @property
  def arrays(self) -> epath.Path:
    return self.folder / "samples.npz"

  @property
  def grid(self) -> epath.Path:
    return self.folder / "samples.png"

  @property
  def trajectory(self) -> epath.Path:
    return self.folder / "trajectory.png"

  @property
  def forward(self) -> epath.Path:
    return self.folder / "forward.png"


@dataclasses.dataclass(frozen=True)
class RestoreFiles:
  """The files of one `--mode restore` run: WORKDIR/restore/<tag>/."""

  folder: epath.Path

  @property
  def arrays(self) -> epath.Path:
    return self.folder / "restorations.npz"

  @property
  def metrics(self) -> epath.Path:
    return self.folder / "metrics.json"

  def figure(self, name: str) -> epath.Path:
    return self.folder / f"restore_{name}.png"


@dataclasses.dataclass(frozen=True)
class Workdir:
  """A run's folder (see the module docstring for its layout)."""

  root: epath.Path

  @classmethod
  def of(cls, workdir: Workdir | str | os.PathLike) -> Workdir:
    """`workdir` as a Workdir (no checks: `resolve` checks a user's --workdir)."""
    return workdir if isinstance(workdir, Workdir) else cls(epath.Path(workdir))

  @classmethod
  def resolve(cls, workdir: str | os.PathLike) -> Workdir:
    """`workdir` (absolute when local); one-line error if it cannot be a writable folder.
    Nothing is created: the folder appears when the first file is written."""
    text = os.fspath(workdir)
    if not text:
      raise errors.ConfigError("--workdir must name a folder, got an empty string")
    if not files.is_local(text):
      scheme, _, rest = text.partition("://")
      if not scheme.isidentifier() or not rest.strip("/"):
        raise errors.ConfigError(
          f"--workdir {text}: a URL must look like scheme://bucket/folder, e.g. gs://my-bucket/run"
        )
      path = epath.Path(text)
      try:
        is_file = path.exists() and not path.is_dir()
      except Exception as e:  # an unknown scheme, a missing bucket, no credentials, no network
        raise errors.ConfigError(
          f"--workdir {text} cannot be reached: {type(e).__name__}: {e}".split("\n")[0]
        ) from None
      if is_file:
        raise errors.ConfigError(f"--workdir {text} is a file; give a folder (it is created if missing)")
      return cls(path)
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
    return cls(epath.Path(path))

  def __str__(self) -> str:
    return str(self.root)

  def __fspath__(self) -> str:
    return os.fspath(self.root)

  @property
  def is_local(self) -> bool:
    return files.is_local(self.root)

  # -- folders and files --------------------------------------------------------------------

  @property
  def checkpoints(self) -> epath.Path:
    return self.root / "checkpoints"

  @property
  def logs(self) -> epath.Path:
    return self.root / "logs"

  @property
  def profile(self) -> epath.Path:
    """Where jax.profiler's trace lands (TensorBoard's profile plugin reads it)."""
    return self.logs / "plugins" / "profile"

  @property
  def levels_file(self) -> epath.Path:
    return self.root / "levels.json"

  @property
  def levels_figure(self) -> epath.Path:
    return self.root / "levels.png"

  @property
  def time_grid_file(self) -> epath.Path:
    return self.root / "time_grid.json"

  @property
  def time_grid_figure(self) -> epath.Path:
    return self.root / "time_grid.png"

  @property
  def prior_file(self) -> epath.Path:
    return self.root / "prior.npz"

  @property
  def spectrum_file(self) -> epath.Path:
    return self.root / "spectrum.npz"

  @property
  def samples(self) -> epath.Path:
    return self.root / "samples"

  def training_grid(self, step: int) -> epath.Path:
    return self.samples / f"grid_step{step:08d}.png"

  def draw(self, name: str) -> DrawFiles:
    return DrawFiles(self.samples / name)

  def reference_stats(self, split: str) -> epath.Path:
    return self.root / "stats" / f"reference_{split}.npz"

  @property
  def eval(self) -> epath.Path:
    return self.root / "eval"

  def eval_record(self, step: int) -> epath.Path:
    return self.eval / f"eval_step{step}.json"

  def eval_figure(self, what: str, step: int) -> epath.Path:
    """eval/<what>_step<N>.png, e.g. what = 'fid_vs_nfe'."""
    return self.eval / f"{what}_step{step}.png"

  @property
  def best_eval(self) -> epath.Path:
    return self.eval / "best.json"

  @property
  def best_in_training(self) -> epath.Path:
    return self.eval / "best_in_training.json"

  def restoration(self, tag: str) -> RestoreFiles:
    return RestoreFiles(self.root / "restore" / tag)

  # -- side files: readers and writers ----------------------------------------------------------

  def settings(self, config: Any, *, resolve_levels: bool = True, resolve_grid: bool = True) -> settings_lib.Settings:
    """`settings.load(config)`, with 'selected' blur levels read from levels.json (`read_levels`)
    and validated again with them, and with sample.time_grid = 'tuned' the grids of time_grid.json
    (`read_tuned_grids`). `resolve_levels=False`: for `--mode levels`, which writes that file,
    and for training, which selects and writes it first when it is missing; `resolve_grid=False`:
    for `--mode tune_grid`, which writes time_grid.json."""
    settings = settings_lib.load(config)
    if resolve_levels and settings_lib.needs_levels(settings):
      levels = self.read_levels(settings_lib.levels_fingerprint(settings))
      settings = settings_lib.load(settings_lib.with_levels(settings, levels))
    if resolve_grid and settings.sample.time_grid == "tuned" and not settings.sample.tuned_grids:
      settings = settings_lib.with_tuned_grids(settings, self.read_tuned_grids(settings))
    return settings

  def read_tuned_grids(self, settings: settings_lib.Settings) -> tuple[tuple[float, ...], ...]:
    """The grids of time_grid.json fitted for the sample block's order, form and end (any N),
    refused (one line, with what to run) when the file is missing, unreadable, fitted for other
    corruption settings or holding no grid for them."""
    path = self.time_grid_file
    hint = TUNE_HINT.format(workdir=self, steps="")
    if not path.is_file():
      raise errors.MissingError(f"sample.time_grid = 'tuned' but {path} does not exist; {hint}")
    try:
      record = json.loads(path.read_text())
      made_for, grids = record["fingerprint"], record["grids"]
      tables = {key: tuple(float(t) for t in grid["times"]) for key, grid in grids.items()}
    except (ValueError, KeyError, TypeError, AttributeError) as e:
      raise errors.ConfigError(
        f"{path} is not a grid file written by --mode tune_grid ({e}); delete it; {hint}"
      ) from None
    expected = json.loads(json.dumps(settings_lib.grid_fingerprint(settings)))
    if made_for != expected:
      raise errors.ConfigError(f"{path} was tuned for other corruption settings; {hint}")
    prefix = settings_lib.grid_key(settings.sample, None)
    mine = tuple(times for key, times in sorted(tables.items()) if key.startswith(prefix))
    if not mine:
      have = ", ".join(sorted(tables)) or "none"
      raise errors.ConfigError(f"{path} holds no grid for {prefix}* (it holds: {have}); {hint}")
    return mine

  def write_tuned_grids(self, settings: settings_lib.Settings, grids: dict[str, Any]) -> epath.Path:
    """Adds `grids` ({grid_key: {'times': [...], ...}}) to time_grid.json (a file fitted for other
    corruption settings is replaced)."""
    path = self.time_grid_file
    fingerprint = json.loads(json.dumps(settings_lib.grid_fingerprint(settings)))
    record = {"fingerprint": fingerprint, "grids": {}}
    if path.is_file():
      try:
        held = json.loads(path.read_text())
        if held.get("fingerprint") == fingerprint and isinstance(held.get("grids"), dict):
          record["grids"] = held["grids"]
      except ValueError:
        pass  # unreadable: replaced
    record["grids"].update(grids)
    files.write_json(path, record)
    return path

  def has_levels(self) -> bool:
    return self.levels_file.exists()

  def read_levels(self, fingerprint: dict[str, Any]) -> tuple[float, ...]:
    """The σ_B levels of levels.json, refused (one line, with what to run) when missing,
    unreadable or selected for other settings than `fingerprint` (settings.levels_fingerprint)."""
    path = self.levels_file
    hint = LEVELS_HINT.format(workdir=self)
    if not path.is_file():
      raise errors.MissingError(f"corruption.blur_schedule = 'selected' but {path} does not exist; {hint}")
    try:
      record = json.loads(path.read_text())
      sigmas, made_for = tuple(float(s) for s in record["sigmas"]), record["fingerprint"]
    except (ValueError, KeyError, TypeError) as e:
      raise errors.ConfigError(
        f"{path} is not a levels file written by --mode levels ({e}); delete it; {hint}"
      ) from None
    expected = json.loads(json.dumps(fingerprint))
    differ = sorted(k for k in expected if made_for.get(k) != expected[k])
    if differ:
      raise errors.ConfigError(f"{path} was selected for other settings (differ: {', '.join(differ)}); {hint}")
    return sigmas

  def write_levels(self, record: dict[str, Any]) -> epath.Path:
    files.write_json(self.levels_file, record)
    return self.levels_file

  def write_spectrum(self, power: Any) -> None:
    files.save_npz(self.spectrum_file, power=power)

  def read_spectrum(self, needed_by: str) -> Any:
    """The data's mean DCT power; `needed_by` names the setting that needs it, for the error."""
    if not self.spectrum_file.exists():
      raise errors.MissingError(f"no spectrum at {self.spectrum_file}; {needed_by} writes it when training starts")
    return files.load_npz(self.spectrum_file)["power"]

  def write_prior(self, arrays: dict[str, Any]) -> None:
    files.save_npz(self.prior_file, **arrays)

  def read_prior(self, fields: tuple[str, ...]) -> dict[str, Any]:
    """The arrays of prior.npz; refused when missing or lacking one of `fields`."""
    path = self.prior_file
    if not path.exists():
      raise errors.MissingError(f"no prior at {path}; it is written when training starts in that workdir")
    arrays = files.load_npz(path)
    missing = [k for k in fields if k not in arrays]
    if missing:
      raise errors.ConfigError(f"{path} lacks {', '.join(missing)}: not a prior written by this version")
    return arrays

  def metrics_log(self, start_step: int) -> MetricsLog:
    return MetricsLog(self.logs, start_step)

  def read_metrics(self) -> list[dict[str, Any]]:
    return read_metrics(self.logs)


# ------------------------------------------------------------------------------------------------
# The train loop's metrics in WORKDIR/logs.

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
    self.local = files.is_local(self.logdir)
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
    files.write_atomic(
      self.logdir / METRICS_SEGMENTS / f"{self.prefix}-{self.index:05d}.jsonl", lambda f: f.write(text)
    )
    self.index += 1
    self.buffer = []


def read_metrics(logdir: str | os.PathLike) -> list[dict[str, Any]]:
  """The records of WORKDIR/logs (metrics.jsonl, then the segments in the order they were written),
  one per step, sorted by step; a step logged twice (a resumed run repeats the steps after its
  last checkpoint) keeps its last record."""
  logdir = epath.Path(logdir)
  paths = [logdir / METRICS_FILE] if (logdir / METRICS_FILE).exists() else []
  if (logdir / METRICS_SEGMENTS).is_dir():
    paths += sorted((logdir / METRICS_SEGMENTS).glob("*.jsonl"), key=lambda p: p.name)
  by_step: dict[int, dict[str, Any]] = {}
  for path in paths:
    for line in path.read_text().splitlines():
      if line.strip():
        record = json.loads(line)
        by_step[record["step"]] = record
  return [by_step[step] for step in sorted(by_step)]
