"""A resumable grid of measurements: `run_points(path, header, grid, measure)` rewrites the JSON
at `path` after every point, and a rerun keeps the points a file with the same header already
holds (--mode eval; the studies use it too)."""

from __future__ import annotations

import json
import logging
from typing import Any

from etils import epath

from soft_diffusion.run import files, processes, reporting

log = logging.getLogger(__name__)


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
  report = reporting.Progress("eval", len(grid), unit="points")
  kept = 0
  for spec in grid:
    key = json.dumps(spec, sort_keys=True)
    if key in done:
      points.append(done[key])
      kept += 1
    else:
      points.append({**spec, **measure(spec)})
      processes.write_once(files.write_json, path, {**header, "points": points})
    report(len(points))
  if kept:
    log.info("%d of %d points were already in %s (kept)", kept, len(grid), path)
  record = {**header, "points": points}
  processes.write_once(files.write_json, path, record)
  return record
