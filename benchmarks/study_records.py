"""The committed study JSONs (docs/results/*.json), shared by the study scripts: a rerun that
measures some entries keeps the earlier record of the others."""

from __future__ import annotations

import importlib
import json
import pathlib
from collections.abc import Iterable


def make_config(spec: str, overrides: dict, seed: int):
  """`load_config(spec)` with `seed` and the overrides {'block.field': value} applied."""
  config = load_config(spec)
  config.seed = seed
  for key, value in overrides.items():
    block, leaf = key.split(".")
    config[block][leaf] = value
  return config


def load_config(spec: str):
  """The ConfigDict of `spec`, 'configs/FILE.py' or 'configs/FILE.py:FORM' (as `--config` takes
  it: FORM is passed to get_config), imported as a module of the repository."""
  path, _, form = spec.partition(":")
  module = importlib.import_module(path.removesuffix(".py").replace("/", "."))
  return module.get_config(form) if form else module.get_config()


def merge_with_earlier(path: pathlib.Path, key: str, fresh: dict, order: Iterable[str]) -> dict:
  """`fresh` (name -> record, this run's) over the records under `key` of the JSON at `path` (if
  any), keeping only names in `order` and in that order."""
  earlier = json.loads(path.read_text())[key] if path.is_file() else {}
  merged = {**earlier, **fresh}
  return {name: merged[name] for name in order if name in merged}


def markdown_table(caption: str, header: Iterable[str], rows: Iterable[Iterable[object]], align: str) -> str:
  """`caption`, a blank line, then a markdown table; `align` is one '|---|' cell spec per column,
  e.g. "|---|---:|" ('---' left, '---:' right)."""
  lines = [caption, "", "| " + " | ".join(header) + " |", align]
  return "\n".join([*lines, *("| " + " | ".join(str(c) for c in row) + " |" for row in rows)])
