"""The small-scale study of the README's "Results at small scale": the paper's claims against exact
ground truth (stationary Gaussian fields, SPEC §7).

    python benchmarks/reproduce_small.py                 # everything; resumes where it stopped
    python benchmarks/reproduce_small.py --out DIR --figures docs/results

For configs/gaussian_field.py (blur + noise) and configs/gaussian_field_ve.py (VE twin: same
network, steps and batch), it runs the CLI a user would run:

    python -m soft_diffusion.main --config configs/<name>.py --workdir OUT/<name>               # train
    python -m soft_diffusion.main --config configs/<name>.py --workdir OUT/<name> --mode eval   # exact metrics

(training resumes from its last checkpoint; eval skips the points its JSON already holds), then
writes OUT/study.json (every number, and the wall time of each stage that ran), the figures
spectral_fd_vs_nfe.png, variance_ratio.png and samples.png (in OUT and in --figures), and prints
the README's tables. The trained network and the exact posterior mean (oracle) are evaluated with
the same samplers, priors, seeds and sample counts.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import shutil
import subprocess
import sys
import time

REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # configs/

CONFIGS = {"gaussian_field": "blur + noise", "gaussian_field_ve": "VE (identity + noise)"}
TABLE_NFE = (10, 20, 50, 100, 200, 300)


def run_cli(args: list[str]) -> None:
  cmd = [sys.executable, "-m", "soft_diffusion.main", *args]
  print("+", " ".join(cmd[1:]), flush=True)
  subprocess.run(cmd, check=True, cwd=REPO)


def final_checkpoint_exists(workdir: pathlib.Path, num_steps: int) -> bool:
  return (workdir / "checkpoints" / str(num_steps)).is_dir()


def timed(timings: dict, key: str, fn) -> None:
  start = time.perf_counter()
  fn()
  timings[key] = round(time.perf_counter() - start, 1)


def run_stage(out: pathlib.Path, name: str, timings: dict) -> dict:
  """Train (unless finished) and evaluate one config; returns its eval record."""
  import importlib

  config = importlib.import_module(f"configs.{name}").get_config()
  workdir = out / name
  flags = ["--config", f"configs/{name}.py", "--workdir", str(workdir)]
  if not final_checkpoint_exists(workdir, config.train.num_steps):
    timed(timings, f"{name}/train", lambda: run_cli(flags))
  path = workdir / "eval" / f"eval_step{config.train.num_steps}.json"
  complete = False
  if path.is_file():
    want = len(config.eval.samplers) * len(config.eval.num_steps) * (2 if config.eval.oracle else 1)
    complete = len(json.loads(path.read_text())["points"]) == want
  if not complete:
    timed(timings, f"{name}/eval", lambda: run_cli([*flags, "--mode", "eval"]))
  return json.loads(path.read_text())


def sample_grid(out: pathlib.Path, path: pathlib.Path, nfe: int = 100, num: int = 16) -> None:
  """Samples side by side: the truth, then each config's samplers at `nfe` (trained network)."""
  import dataclasses
  import importlib

  import numpy as np

  from soft_diffusion import artifacts, gaussian_field
  from soft_diffusion import sample as sample_lib

  columns = []
  truth_cfg = None
  for name, label in CONFIGS.items():
    run = sample_lib.load_run(importlib.import_module(f"configs.{name}").get_config(), out / name)
    truth_cfg = truth_cfg or run.settings.data
    for sampler in run.settings.eval.samplers:
      cfg = dataclasses.replace(run.settings.sample, sampler=sampler, num_steps=nfe, batch_size=num)
      columns.append((f"{label}\n{sampler}", run.draw(cfg, num, progress=False, raw=True)))
  d = truth_cfg
  v = gaussian_field.spectrum(d.image_size, d.image_size, d.field_k0, d.field_pixel_std)
  rngs = [np.random.default_rng([99, i]) for i in range(num)]
  columns.insert(0, ("truth", gaussian_field.field_images(np.sqrt(v), rngs)))
  plt = artifacts.pyplot()
  rows = 4
  fig, axes = plt.subplots(1, len(columns), figsize=(1.45 * len(columns), 1.9))
  for ax, (title, images) in zip(axes, columns, strict=True):
    shown = np.clip((images[: rows * rows] + 1.0) / 2.0, 0.0, 1.0)
    s = shown.shape[1]
    tiled = shown.reshape(rows, rows, s, s, 3).transpose(0, 2, 1, 3, 4).reshape(rows * s, rows * s, 3)
    ax.imshow(tiled, interpolation="nearest")
    ax.set_title(title, fontsize=6.5)
    ax.set_xticks([])
    ax.set_yticks([])
  fig.suptitle(f"Gaussian fields {d.image_size}×{d.image_size}: samples at {nfe} NFE (trained networks)", fontsize=8)
  fig.tight_layout()
  artifacts.save_figure(fig, path, dpi=130)


def tables(records: dict[str, dict]) -> str:
  """Markdown: spectral FD per (config, sampler) × NFE, trained / oracle, and the band ratios at 100."""
  lines = []
  nfes = sorted({p["num_steps"] for r in records.values() for p in r["points"]})
  lines.append("Spectral FD to the true law (trained network / oracle), by NFE:\n")
  lines.append("| corruption | sampler | " + " | ".join(str(n) for n in nfes) + " |")
  lines.append("|---|---|" + "---:|" * len(nfes))
  for name, record in records.items():
    points = {(p["denoiser"], p["sampler"], p["num_steps"]): p for p in record["points"]}
    for sampler in dict.fromkeys(p["sampler"] for p in record["points"]):
      cells = []
      for n in nfes:
        t, o = points.get(("trained", sampler, n)), points.get(("oracle", sampler, n))
        cells.append(f"{t['spectral_fd']:.3g} / {o['spectral_fd']:.3g}" if t and o else "")
      lines.append(f"| {CONFIGS[name]} | {sampler} | " + " | ".join(cells) + " |")
  lines.append("\nVariance kept (v̂/v) per band at 100 NFE, trained (oracle):\n")
  lines.append("| corruption | sampler | low (k+l<8) | mid | high (k+l≥H) | full FD |")
  lines.append("|---|---|---:|---:|---:|---:|")
  for name, record in records.items():
    points = {(p["denoiser"], p["sampler"], p["num_steps"]): p for p in record["points"]}
    for sampler in dict.fromkeys(p["sampler"] for p in record["points"]):
      t, o = points.get(("trained", sampler, 100)), points.get(("oracle", sampler, 100))
      if not (t and o):
        continue
      cells = [
        f"{t.get(f'ratio_{b}', float('nan')):.3f} ({o.get(f'ratio_{b}', float('nan')):.3f})"
        for b in ("low", "mid", "high")
      ]
      cells.append(f"{t['fd']:.3g} ({o['fd']:.3g})")
      lines.append(f"| {CONFIGS[name]} | {sampler} | " + " | ".join(cells) + " |")
  return "\n".join(lines)


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--out", default="runs/reproduce_small", help="study folder (resumes if present)")
  parser.add_argument("--figures", default=None, help="also copy the figures here (e.g. docs/results)")
  args = parser.parse_args()
  os.environ.setdefault("JAX_PLATFORMS", "cpu")
  out = (REPO / args.out).resolve() if not os.path.isabs(args.out) else pathlib.Path(args.out)
  out.mkdir(parents=True, exist_ok=True)
  timings_path = out / "timings.json"
  timings = json.loads(timings_path.read_text()) if timings_path.is_file() else {}
  records = {}
  for name in CONFIGS:
    records[name] = run_stage(out, name, timings)
    timings_path.write_text(json.dumps(timings, indent=2))

  from soft_diffusion import evaluate

  runs = [(CONFIGS[name], record["points"]) for name, record in records.items()]
  evaluate.plot_spectral_fd(out / "spectral_fd_vs_nfe.png", runs)
  only = lambda pts: [p for p in pts if p["sampler"] in ("momentum", "naive")]  # noqa: E731
  evaluate.plot_ring_ratios(out / "variance_ratio.png", [(label, only(points)) for label, points in runs], nfe=100)
  if "samples" not in timings:
    timed(timings, "samples", lambda: sample_grid(out, out / "samples.png"))
  else:
    sample_grid(out, out / "samples.png")
  timings_path.write_text(json.dumps(timings, indent=2))
  study = {"configs": CONFIGS, "timings_seconds": timings, "records": records}
  (out / "study.json").write_text(json.dumps(study, indent=1))
  if args.figures:
    figures = pathlib.Path(args.figures)
    figures.mkdir(parents=True, exist_ok=True)
    for name in ("spectral_fd_vs_nfe.png", "variance_ratio.png", "samples.png"):
      shutil.copy(out / name, figures / name)
  print(tables(records))
  total = sum(v for k, v in timings.items())
  print(f"\nstages that ran (s): {timings}; total {total / 60:.1f} min")
  print(f"wrote {out / 'study.json'} and the figures")


if __name__ == "__main__":
  main()
