"""What the study scripts share: their common command-line arguments, configs with overrides,
the CLI in a subprocess, train-unless-done, resumable points, the study JSONs
(docs/results/*.json: a rerun that measures some entries keeps the earlier record of the others)
and markdown tables.

A study imports it plainly (`import harness`: a script run as `python studies/x.py` has studies/
first on its import path). A grid whose record is a list of points under one header is
`soft_diffusion.run.points.run_points` (what `--mode eval` writes); `measure_points` here keeps
the layout the studies' records have: points by name, several grids in one file.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import subprocess
import sys
import time
from collections.abc import Callable, Iterable

from soft_diffusion.run.workdir import Workdir

REPO = pathlib.Path(__file__).resolve().parents[1]
RESULTS = REPO / "docs" / "results"

# ----------------------------------------------------------------------------------------------
# Command line.


def parser(doc: str, *, out: pathlib.Path | None = None, tables: str | None = None) -> argparse.ArgumentParser:
  """An ArgumentParser described by `doc`'s first paragraph, with --results (the folder of the
  study's JSON, docs/results), --out (the study's runs, default `out`) when `out` is given, and
  --tables (`tables`: its help) when `tables` is given."""
  p = argparse.ArgumentParser(description=doc.split("\n\n")[0])
  if tables is not None:
    p.add_argument("--tables", action="store_true", help=tables)
  if out is not None:
    p.add_argument("--out", type=pathlib.Path, default=out)
  p.add_argument("--results", type=pathlib.Path, default=RESULTS)
  return p


def variant_arguments(p: argparse.ArgumentParser, variants: Iterable[str]) -> None:
  """--variants (to measure; default all), --train (to train first; default none) and --seed."""
  names = list(variants)
  p.add_argument("--variants", nargs="+", default=names, choices=names)
  p.add_argument("--train", nargs="*", default=[], choices=names, help="variants to train")
  p.add_argument("--seed", type=int, default=0, help="training seed")


# ----------------------------------------------------------------------------------------------
# Configs.


def load_config(spec: str):
  """The ConfigDict of `spec`, 'configs/FILE.py' or 'configs/FILE.py:FORM' (as `--config` takes
  it: FORM is passed to get_config), a path relative to the repository."""
  from soft_diffusion.run import schema

  return schema.load_config(str(REPO / spec))


def config_module(name: str):
  """The module configs/<name>.py (for the constants it names), loaded by path."""
  from soft_diffusion.run import schema

  return schema.sibling(str(REPO / "configs" / f"{name}.py"), name)


def apply_overrides(config, overrides: dict):
  """`config` with the overrides {'block.field': value} set (any depth of dotted keys)."""
  for key, value in overrides.items():
    node = config
    *path, leaf = key.split(".")
    for part in path:
      node = node[part]
    node[leaf] = value
  return config


def make_config(spec: str, overrides: dict, seed: int):
  """`load_config(spec)` with `seed` and the overrides applied."""
  config = load_config(spec)
  config.seed = seed
  return apply_overrides(config, overrides)


def override_flags(overrides: dict) -> list[str]:
  """The CLI's `--config.KEY=VALUE` flags of the overrides (tuples as '(a,b,)'; strings unquoted,
  as absl's config flags take them)."""

  def value(v) -> str:
    if isinstance(v, tuple):
      return "(" + ",".join(repr(x) for x in v) + ("," if len(v) == 1 else "") + ")"
    return str(v)

  return [f"--config.{k}={value(v)}" for k, v in overrides.items()]


# ----------------------------------------------------------------------------------------------
# The CLI.


def command(args: Iterable[str]) -> list[str]:
  """`python -m soft_diffusion.main ARGS` with this interpreter."""
  return [sys.executable, "-m", "soft_diffusion.main", *args]


def run_cli(args: Iterable[str], log: pathlib.Path | None = None) -> None:
  """Runs the CLI from the repository root (printing the command), its output appended to `log`
  or on this terminal; raises CalledProcessError when it fails."""
  cmd = command(args)
  print("+", " ".join(cmd[1:]), *([f"> {log}"] if log else []), flush=True)
  if log is None:
    subprocess.run(cmd, check=True, cwd=REPO)
    return
  with log.open("a") as f:
    subprocess.run(cmd, check=True, cwd=REPO, stdout=f, stderr=subprocess.STDOUT)


def finished(workdir: pathlib.Path | str, num_steps: int) -> bool:
  """Whether the run in `workdir` (relative to the repository, or absolute) has its last checkpoint."""
  return (Workdir.of(REPO / workdir).checkpoints / str(num_steps)).is_dir()


def timed(timings: dict, key: str, fn: Callable[[], object], save: pathlib.Path | None = None) -> None:
  """Runs `fn`, its wall time (s) into timings[key]; `timings` rewritten to `save` when given."""
  start = time.perf_counter()
  fn()
  timings[key] = round(time.perf_counter() - start, 1)
  if save is not None:
    save.write_text(json.dumps(timings, indent=2))


def train_unless_done(
  workdir: pathlib.Path | str,
  config: str,
  flags: Iterable[str] = (),
  *,
  num_steps: int,
  timings: dict | None = None,
  key: str | None = None,
  log: bool = True,
  save: pathlib.Path | None = None,
) -> bool:
  """Trains with the CLI a user would run, `--config CONFIG --workdir WORKDIR FLAGS` (resuming
  its last checkpoint), unless the run has its last checkpoint (step `num_steps`): never beside
  another process training the same workdir. Its output goes to WORKDIR/train.log (`log`) or to
  this terminal; its wall time to timings[key] (default '<workdir name>/train'). Whether it ran."""
  if finished(workdir, num_steps):
    return False
  path = REPO / workdir
  path.mkdir(parents=True, exist_ok=True)
  args = ["--config", config, "--workdir", str(workdir), *flags]
  fn = lambda: run_cli(args, path / "train.log" if log else None)
  timed(timings if timings is not None else {}, key or f"{path.name}/train", fn, save)
  return True


# ----------------------------------------------------------------------------------------------
# Records.


def read_json(path: pathlib.Path, default=None):
  """The JSON at `path`; `default` when there is no such file (and a default is given)."""
  if default is not None and not path.is_file():
    return default
  return json.loads(path.read_text())


def write_json(path: pathlib.Path, record) -> None:
  """`record` as indented JSON at `path` (its folder made), ending with a newline."""
  path.parent.mkdir(parents=True, exist_ok=True)
  path.write_text(json.dumps(record, indent=1) + "\n")


def measure_points(
  path: pathlib.Path,
  names: Iterable[str],
  measure: Callable[[str], dict],
  *,
  record: dict | None = None,
  redo: Callable[[str, dict], bool] | None = None,
) -> list[str]:
  """Resumable points by name: every name of `names` that `record` (default: the JSON at `path`,
  {'points': {}} when there is none) lacks under 'points', or whose result `redo(name, result)`
  says to measure again, gets `measure(name)`, and the record is rewritten to `path` after each.
  Returns the names measured; the record (passed in) holds the results."""
  record = record if record is not None else read_json(path, {"points": {}})
  held = record.setdefault("points", {})
  missing = [n for n in names if n not in held or (redo is not None and redo(n, held[n]))]
  for name in missing:
    held[name] = measure(name)
    write_json(path, record)
  return missing


def merge_with_earlier(path: pathlib.Path, key: str, fresh: dict, order: Iterable[str]) -> dict:
  """`fresh` (name -> record, this run's) over the records under `key` of the JSON at `path` (if
  any), keeping only names in `order` and in that order."""
  earlier = json.loads(path.read_text())[key] if path.is_file() else {}
  merged = {**earlier, **fresh}
  return {name: merged[name] for name in order if name in merged}


def publish(path: pathlib.Path, record: dict, tables: str) -> None:
  """Writes a study's JSON to `path`, prints its tables and where it went."""
  write_json(path, record)
  print(tables)
  print(f"\nwrote {path}")


# ----------------------------------------------------------------------------------------------
# Tables.


def markdown_table(caption: str, header: Iterable[str], rows: Iterable[Iterable[object]], align: str) -> str:
  """`caption`, a blank line, then a markdown table; `align` is one '|---|' cell spec per column,
  e.g. "|---|---:|" ('---' left, '---:' right)."""
  lines = [caption, "", "| " + " | ".join(header) + " |", align]
  return "\n".join([*lines, *("| " + " | ".join(str(c) for c in row) + " |" for row in rows)])


def fmt(x: float | None) -> str:
  """3 significant digits, 2 in scientific notation from 1,000 on; '—' for None."""
  return "—" if x is None else (f"{x:.3g}" if x < 1e3 else f"{x:.1e}")
