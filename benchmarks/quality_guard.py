"""What the quality guard (tests/test_quality.py) measures, for the default config and for the
configurations it must catch.

    python benchmarks/quality_guard.py [--configs default regressed] [--out runs/quality_guard]
    python benchmarks/quality_guard.py --tables    # the table of docs/results/quality_guard.json

Each configuration is configs/digits.py cut to the guard's GUARD_STEPS with a few overrides
(CONFIGS), trained and measured by the guard's own code (tests/quality_guard.py: pixel KID,
fine-detail ring variance ratio and top-ring excess noise for Momentum and naive at 100 NFE).
Prints a table and writes docs/results/quality_guard.json, from which the guard's thresholds
were set.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import sys
import time

REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))
sys.path.insert(0, str(REPO))

import study_records  # noqa: E402  (benchmarks/, beside this script)
from quality_guard import GUARD_STEPS, NFE, NUM_SAMPLES, run_guard  # noqa: E402

from configs import digits  # noqa: E402

# name -> (what it is, form of configs/digits.py or None for its default, overrides)
CONFIGS = {
  "default": ("configs/digits.py as it is", None, {}),
  "paper": (
    "configs/digits.py:paper (the paper's residual form, loss and end; the default before the"
    " preconditioning study, measured then as 'default')",
    "paper",
    {},
  ),
  "wiener": (
    "configs/digits.py:paper with model.skip = wiener (the Wiener-gain skip)",
    "paper",
    {"model.skip": "wiener"},
  ),
  "regressed": (
    "the configuration before this guard: the joint level table (one hop 0.01 -> 0.35 px), the Gaussian p_1"
    " and the residual form",
    "paper",
    {
      "corruption.blur_sigma_table": digits.DIGITS_BLUR_LEVELS_JOINT,
      "sample.prior": "gaussian",
      "model.skip": "identity",
    },
  ),
}


def table(record: dict) -> str:
  """The guard's numbers per config and sampler, as a markdown table."""
  return study_records.markdown_table(
    f"guard run: {record['guard_steps']} steps, {record['num_samples']} samples at {record['nfe']} NFE",
    ("config", "sampler", "pixel KID ×10³", "variance ratio, rings 12–19", "excess std, rings ≥ 20"),
    [
      (name, sampler, f"{m['pixel_kid_e3']:.2f}", f"{m['ratio_high']:.2f}", f"{m['top_excess_std']:.4f}")
      for name, r in record["configs"].items()
      for sampler, m in r["metrics"].items()
    ],
    "|---|---|---:|---:|---:|",
  )


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--configs", nargs="+", default=list(CONFIGS), choices=list(CONFIGS))
  parser.add_argument("--out", type=pathlib.Path, default=REPO / "runs" / "quality_guard")
  parser.add_argument("--results", type=pathlib.Path, default=REPO / "docs" / "results")
  parser.add_argument("--tables", action="store_true", help="only print the table of --results' JSON")
  args = parser.parse_args()
  if args.tables:
    print(table(json.loads((args.results / "quality_guard.json").read_text())))
    return
  args.results.mkdir(parents=True, exist_ok=True)
  path = args.results / "quality_guard.json"
  record = {"guard_steps": GUARD_STEPS, "nfe": NFE, "num_samples": NUM_SAMPLES, "configs": {}}
  for name in args.configs:
    description, form, overrides = CONFIGS[name]
    start = time.perf_counter()
    metrics = run_guard(args.out / name, None, overrides, form)
    record["configs"][name] = {
      "description": description,
      "form": form or "default",
      "overrides": {k: list(v) if isinstance(v, tuple) else v for k, v in overrides.items()},
      "metrics": metrics,
      "seconds": round(time.perf_counter() - start, 1),
    }
  # configs this run does not touch keep their earlier record; all in CONFIGS' order
  record["configs"] = study_records.merge_with_earlier(path, "configs", record["configs"], CONFIGS)
  print(table(record))
  path.write_text(json.dumps(record, indent=1) + "\n")
  print(f"\nwrote {path}")


if __name__ == "__main__":
  main()
