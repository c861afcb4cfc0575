"""Restoration numbers: the exact benchmark on the Gaussian fields and PSNR/SSIM on the digits.

    python studies/restoration.py                 # runs what is missing, writes the JSON, prints the tables
    python studies/restoration.py --tables        # the tables of docs/results/restoration.json

Every point is the command a user runs,

    python -m soft_diffusion.main --config CONFIG --workdir WORKDIR --mode restore --config.restore.<key>=<value> ...

on a trained workdir (trained first with the plain training command when its last checkpoint is
missing: configs/gaussian_field.py:paper, about 9 min on 2 cores, and configs/digits.py:paper,
the demo model when this study ran, about 10 min, in runs/digits_paper). Each writes
WORKDIR/restore/<task>/metrics.json; this script collects them into --results/restoration.json
with the exact command, copies each task's figure of the trained network to
docs/results/restoration/<task>.png, and prints the tables:

* fields (16×16×3, σ_y = 0.05; Gaussian blur σ = 1.5 px and a random mask keeping 50 % of the
  pixels; and the blur with σ_y = 0.1 = s_t*, where native restoration loses nothing of y): for
  the trained network and the oracle, the exact scores of evaluation/posterior.py (estimate
  MSE / MMSE, sample MSE / 2 MMSE, 90 % coverage, residual FD), beside exact posterior samples
  with the same K (the floor) and the native level t*.
* digits (16×16 grey, σ_y = 0.02; the demo model (blur): deblurring σ = 1 px native and guided,
  guided inpainting of 50 % random pixels and of the lower half; configs/digits_mask.py, trained
  on soft central masks: its own mask at t = 0.5 native and guided, and 50 % random pixels
  guided): PSNR/SSIM of the MMSE estimate and of single samples, beside the observation and the
  linear MMSE (Wiener) estimate.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time

import harness  # studies/, beside this script
from etils import epath

from soft_diffusion.run.workdir import RestoreFiles

RESULTS = harness.RESULTS

FIELDS = ("configs/gaussian_field.py:paper", "runs/fields/candidate_s0", 4000)  # field_study's candidate run
# The digits model this study measured: configs/digits.py in the paper's form (its default then; the
# preconditioned default since is another network), in a folder of its own.
DIGITS = ("configs/digits.py:paper", "runs/digits_paper", 4000)
DIGITS_MASK = ("configs/digits_mask.py", "runs/digits_mask", 4000)
COMMON = {"num_steps": 100}  # and restore.sampler = 'ancestral', the default, unless a task names another
# name -> (config, workdir, final step), restore overrides
TASKS: dict[str, tuple[tuple[str, str, int], dict]] = {
  "fields/blur/native": (FIELDS, {"operator": "gaussian_blur", "size": 1.5, "sigma_y": 0.05, "method": "native"}),
  "fields/blur/guided": (FIELDS, {"operator": "gaussian_blur", "size": 1.5, "sigma_y": 0.05, "method": "guided"}),
  "fields/mask/guided": (FIELDS, {"operator": "random_mask", "size": 0.5, "sigma_y": 0.05, "method": "guided"}),
  # σ_y = s_t* = 0.1 (the noise of the model at σ_B = 1.5 px): native loses nothing of y here
  "fields/blur_s0.1/native": (FIELDS, {"operator": "gaussian_blur", "size": 1.5, "sigma_y": 0.1, "method": "native"}),
  "fields/blur_s0.1/guided": (FIELDS, {"operator": "gaussian_blur", "size": 1.5, "sigma_y": 0.1, "method": "guided"}),
  # the same with the Momentum Sampler: no noise while s_t is constant, so little spread from a fixed start
  "fields/blur_s0.1/native_momentum": (
    FIELDS,
    {"operator": "gaussian_blur", "size": 1.5, "sigma_y": 0.1, "method": "native", "sampler": "momentum"},
  ),
  "digits/blur/native": (DIGITS, {"operator": "gaussian_blur", "size": 1.0, "sigma_y": 0.02, "method": "native"}),
  "digits/blur/guided": (DIGITS, {"operator": "gaussian_blur", "size": 1.0, "sigma_y": 0.02, "method": "guided"}),
  "digits/mask/guided": (DIGITS, {"operator": "random_mask", "size": 0.5, "sigma_y": 0.02, "method": "guided"}),
  "digits/lower_half/guided": (DIGITS, {"operator": "lower_half", "sigma_y": 0.02, "method": "guided"}),
  "digits_mask/own_mask/native": (DIGITS_MASK, {"operator": "model", "size": 0.5, "sigma_y": 0.02, "method": "native"}),
  "digits_mask/own_mask/guided": (DIGITS_MASK, {"operator": "model", "size": 0.5, "sigma_y": 0.02, "method": "guided"}),
  "digits_mask/mask/guided": (
    DIGITS_MASK,
    {"operator": "random_mask", "size": 0.5, "sigma_y": 0.02, "method": "guided"},
  ),
}
DIGIT_SIZES = {"num_images": 64, "num_samples": 8}
SIZES = {"fields": {"num_images": 16, "num_samples": 64}, "digits": DIGIT_SIZES, "digits_mask": DIGIT_SIZES}


def run_task(name: str) -> dict:
  (config, workdir, step), overrides = TASKS[name]
  overrides = {**COMMON, **SIZES[name.split("/")[0]], **overrides}
  harness.train_unless_done(workdir, config, num_steps=step, log=False)
  flags = [f"--config.restore.{k}={v}" for k, v in overrides.items()]
  cmd = harness.command([f"--config={config}", f"--workdir={workdir}", "--mode=restore", *flags])
  start = time.perf_counter()
  proc = subprocess.run(cmd, cwd=harness.REPO, capture_output=True, text=True)
  if proc.returncode:
    return {"command": " ".join(cmd[1:]), "error": proc.stderr.strip().splitlines()[-1]}
  out = RestoreFiles(epath.Path(proc.stdout.strip().splitlines()[-1]))  # --mode restore prints its folder
  record = json.loads(out.metrics.read_text())
  figures = RESULTS / "restoration"
  figures.mkdir(parents=True, exist_ok=True)
  shutil.copyfile(out.figure("trained"), figures / (name.replace("/", "_") + ".png"))
  return {"command": "python " + " ".join(cmd[1:]), "seconds": round(time.perf_counter() - start, 1), **record}


def fmt(x, digits=3):
  return "—" if x is None else f"{x:.{digits}f}"


def tables(results: dict) -> str:
  lines = [
    "Fields (exact; 16 observations × 64 samples, 100 NFE): estimate MSE / MMSE | sample MSE / 2 MMSE | "
    "90 % coverage | residual FD",
    "",
    "| task | t* | denoiser | estimate | sample | coverage | residual FD |",
    "|---|---:|---|---:|---:|---:|---:|",
  ]
  for name, r in results.items():
    if not name.startswith("fields/"):
      continue
    if "error" in r:
      lines.append(f"| {name} | — | — | {r['error']} | | | |")
      continue
    for who in ("trained", "oracle", "exact_posterior"):
      m = r[who]["exact"] if who != "exact_posterior" else r[who]
      label = "exact posterior samples (floor)" if who == "exact_posterior" else who
      lines.append(
        f"| {name} | {fmt(r['t_start'])} | {label} | {fmt(m['estimate_mse_ratio'])} | {fmt(m['sample_mse_ratio'])} | "
        f"{fmt(m['coverage'])} | {fmt(m['residual_fd'])} |"
      )
  lines += [
    "",
    "Digits (64 validation images × 8 samples, 100 NFE): PSNR (dB) / SSIM",
    "",
    "| task | t* | MMSE estimate | single sample | Wiener (linear MMSE) | observation |",
    "|---|---:|---:|---:|---:|---:|",
  ]
  for name, r in results.items():
    if not name.startswith("digits"):
      continue
    if "error" in r:
      lines.append(f"| {name} | {r['error']} | | | | |")
      continue
    t = r["trained"]
    b = r["baselines"]
    pair = lambda m: f"{m['psnr']:.2f} / {m['ssim']:.3f}"  # noqa: E731
    lines.append(
      f"| {name} | {fmt(r['t_start'])} | {pair(t['estimate'])} | {pair(t['sample'])} | {pair(b['wiener'])} | "
      f"{pair(b['observation'])} |"
    )
  return "\n".join(lines)


def main() -> None:
  parser = harness.parser(__doc__, tables="print the tables of the JSON only")
  parser.add_argument("--tasks", nargs="*", default=list(TASKS), choices=list(TASKS))
  args = parser.parse_args()
  path = args.results / "restoration.json"
  results = harness.read_json(path, {})
  if not args.tables:
    for name in args.tasks:
      print(f"{name} ...", flush=True)
      results[name] = run_task(name)
      harness.write_json(path, results)
  print(tables(results))


if __name__ == "__main__":
  main()
