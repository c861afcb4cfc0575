"""Few-step sampling: the multistep exponential integrator (soft_diffusion/multistep.py) against
the Momentum, deterministic and naive samplers, and its time grids, measured exactly.

    python studies/solver_study.py --part grids     # oracle fields: which grid and order
    python studies/solver_study.py --part fields    # fields, oracle + trained; VE twin vs PC
    python studies/solver_study.py --part digits    # the paper-form digits model (runs/digits_paper), two seeds
    python studies/solver_study.py --tables         # print the tables of the JSON
    python studies/solver_study.py --figure         # redraw docs/results/solver_vs_nfe.png from the JSON

* Fields (`--part grids`, `--part fields`): configs/gaussian_field.py (blur + noise, the levels
  of `--mode schedule`) and its VE twin configs/gaussian_field_ve.py, trained by
  `studies/field_study.py --train candidate ve` into runs/fields/<variant>_s0 (the EMA
  network of the last checkpoint) and the exact posterior mean (the oracle), the same p_1 and
  sample seed 0, 1,024 samples per point. Per point: the spectral Fréchet distance to the true
  law and the variance kept per band (`evaluation.exact`); the floor is the spectral FD of
  1,024 exact draws of the law (finite-sample noise), averaged over 4 seeds.
* Digits (`--part digits`): the model `make demo` trained when this study ran, configs/digits.py
  in its paper form, in runs/digits_paper (train it with `python -m soft_diffusion.main --config
  configs/digits.py:paper --workdir runs/digits_paper`; p_1 = forward), sample seeds 0 and 1,
  256 samples per point; pixel KID against the train digits at every point and, at NFE 10 and
  20 (multistep), 20 (multistep_sde) and 20 and 100 (Momentum), FID and KID with the project's
  Inception (the statistics of `studies/quality_study.py`'s runs/quality/reference).

A sampler spec is 'name@grid' ('multistep2@logsnr': order 2 on the log-SNR grid). Points are
kept in --results/solver_<part>.json (a rerun skips the points it holds) with their seconds.
"""

from __future__ import annotations

import dataclasses
import functools
import pathlib
import time

import field_study  # studies/, beside this script
import harness
import numpy as np

from soft_diffusion import multistep
from soft_diffusion.run.workdir import Workdir

# The digits model of `--part digits`: configs/digits.py in the form it had when this study ran.
DIGITS_CONFIG = "configs/digits.py:paper"
DIGITS_RUN = harness.REPO / "runs" / "digits_paper"

NFES = (5, 10, 15, 20, 35, 50)
GRID_SPECS = [f"{s}@{g}" for s in ("multistep2", "multistep3", "momentum") for g in ("uniform", "logsnr", "edm")]
GRID_SPECS += ["deterministic@uniform", "ancestral@uniform"]  # the other one-call samplers, for the sampler table
GRID_EXTRA = ("deterministic@uniform/100", "ancestral@uniform/100")
CHOSEN = multistep.DEFAULT_TIME_GRID  # the solver's default grid, chosen by --part grids
BLUR_SPECS = (
  f"multistep2@{CHOSEN}",
  f"multistep3@{CHOSEN}",
  f"multistep_sde2@{CHOSEN}",
  "momentum@uniform",
  "deterministic@uniform",
  "naive@uniform",
)
VE_SPECS = (f"multistep2@{CHOSEN}", f"multistep_sde2@{CHOSEN}", "pc@uniform", "momentum@uniform")
REFERENCE_POINTS = ("momentum@uniform/100",)  # Momentum at 100 NFE: the target to beat at 20
DIGIT_SPECS = (f"multistep2@{CHOSEN}", f"multistep_sde2@{CHOSEN}", "momentum@uniform")
DIGIT_SEEDS = (0, 1)
DIGIT_INCEPTION = (
  f"multistep2@{CHOSEN}/10",
  f"multistep2@{CHOSEN}/20",
  f"multistep_sde2@{CHOSEN}/20",
  "momentum@uniform/20",
  "momentum@uniform/100",
)
DIGIT_SAMPLES = 256
FIELD_SAMPLES = 1024
BANDS = ("ratio_low", "ratio_mid", "ratio_high")


def sample_cfg(base, spec: str, nfe: int, seed: int):
  name, grid = spec.split("@")
  order = 2
  if name.startswith("multistep"):
    name, order = name.rstrip("0123456789"), int(name[-1]) if name[-1].isdigit() else 2
  return dataclasses.replace(base, sampler=name, time_grid=grid, order=order, num_steps=nfe, seed=seed)


def load(path) -> dict:
  return harness.read_json(path, {"points": {}})


def field_setup(variant: str, trained: bool):
  """(settings, corruption, prior, params, net, skip) of runs/fields/<variant>_s0 (or the oracle setup)."""
  import jax

  from soft_diffusion.run.modes import sample

  out = harness.REPO / "runs" / "fields"
  if trained:
    workdir = out / f"{variant}_s0"
    run = sample.load_run(Workdir.of(workdir).settings(field_study.make_config(variant, 0)), workdir)
    return run.settings, run.corruption, jax.device_put(run.prior), run.params, run.network, (run.skip, run.precond)
  settings, corruption, prior = field_study.oracle_setup(variant, 0, out)
  return settings, corruption, jax.device_put(prior), None, None, (None, None)


def field_points(record: dict, variant: str, denoisers, specs, nfes, extra=(), path=None) -> None:
  from soft_diffusion import data, gaussian_field
  from soft_diffusion.evaluation import exact
  from soft_diffusion.run.modes import sample

  for denoiser in denoisers:
    want = [f"{variant}/{denoiser}/{s}/{n}" for s in specs for n in nfes]
    want += [f"{variant}/{denoiser}/{p}" for p in extra]

    @functools.cache
    def setup(denoiser=denoiser):  # only when a point is missing
      settings, corruption, prior, params, net, (skip, precond) = field_setup(variant, denoiser == "trained")
      v = data.exact_spectrum(settings.data)[..., 0]
      if "floor" not in record.setdefault("floors", {}).get(variant, {}):
        record["floors"][variant] = exact_floor(v)
      oracle = gaussian_field.oracle_denoiser(corruption, v)
      return settings, corruption, prior, params, net, skip, precond, v, oracle

    def measure(point: str, denoiser=denoiser, setup=setup) -> dict:
      settings, corruption, prior, params, net, skip, precond, v, oracle = setup()
      _, _, spec, nfe = point.split("/")
      cfg = sample_cfg(settings.sample, spec, int(nfe), 0)
      denoise_fn = oracle if denoiser == "oracle" else None
      draw_fn = sample.make_draw_fn(net, corruption, cfg, raw=True, denoise_fn=denoise_fn, skip=skip, precond=precond)
      t0 = time.perf_counter()
      images = sample.draw(draw_fn, params, prior, cfg, FIELD_SAMPLES, raw=True)
      metrics = exact.exact_metrics(images, v)
      metrics = {k: m for k, m in metrics.items() if k != "ring_ratios"}
      bands = " / ".join(f"{metrics[b]:.3f}" for b in BANDS)
      print(f"{point}: spectral FD {metrics['spectral_fd']:.3f}  bands " + bands, flush=True)
      return {**metrics, "seconds": round(time.perf_counter() - t0, 1)}

    harness.measure_points(path, want, measure, record=record)


def exact_floor(v: np.ndarray) -> dict:
  """Spectral FD of FIELD_SAMPLES exact draws of the law, over 4 seeds: the finite-sample floor."""
  from soft_diffusion import gaussian_field
  from soft_diffusion.data.field_source import CHANNELS
  from soft_diffusion.evaluation import exact

  values = []
  for seed in range(4):
    rngs = [np.random.default_rng([seed, i]) for i in range(FIELD_SAMPLES)]
    images = gaussian_field.field_images(np.sqrt(v), rngs, CHANNELS)
    values.append(exact.exact_metrics(images, v)["spectral_fd"])
  return {"floor": float(np.mean(values)), "floor_std": float(np.std(values)), "seeds": 4}


def digit_points(record: dict, path) -> None:
  import quality_study

  from soft_diffusion.run.modes import sample

  want = [f"{s}/{n}/s{seed}" for seed in DIGIT_SEEDS for s in DIGIT_SPECS for n in NFES]
  want += [f"{p}/s{seed}" for seed in DIGIT_SEEDS for p in REFERENCE_POINTS]

  def inception_at(point):
    return point.rsplit("/", 1)[0] in DIGIT_INCEPTION

  @functools.cache
  def setup():  # only when a point is missing
    ref = quality_study.Reference(harness.REPO / "runs" / "quality", True, {})
    run = sample.load_run(Workdir.of(DIGITS_RUN).settings(harness.load_config(DIGITS_CONFIG)), DIGITS_RUN)
    return ref, run

  def measure(point: str) -> dict:
    ref, run = setup()
    spec, nfe, seed = point.split("/")
    cfg = sample_cfg(run.settings.sample, spec, int(nfe), int(seed[1:]))
    t0 = time.perf_counter()
    images = run.draw(cfg, DIGIT_SAMPLES, progress=False)
    seconds = round(time.perf_counter() - t0, 1)
    measured = ref.measure(images, inception_at(point))
    measured.pop("ring_ratios", None)
    print(f"digits {point}: " + quality_study.short(measured), flush=True)
    return {**measured, "sampling_seconds": seconds}

  redo = lambda point, held: inception_at(point) and "fid" not in held
  harness.measure_points(path, want, measure, record=record, redo=redo)


def field_table(record: dict, variant: str, denoiser: str, specs, nfes=NFES) -> str:
  floor = record.get("floors", {}).get(variant, {}).get("floor")
  lines = [
    f"{variant}, {denoiser}: spectral FD (floor {harness.fmt(floor)}; ×floor in brackets at 10 and 20 NFE)\n",
    "| sampler | " + " | ".join(str(n) for n in nfes) + " |",
    "|---|" + "---:|" * len(nfes),
  ]
  for spec in specs:
    cells = []
    for n in nfes:
      p = record["points"].get(f"{variant}/{denoiser}/{spec}/{n}")
      cell = harness.fmt(p and p["spectral_fd"])
      if p and floor and n in (10, 20):
        cell += f" ({p['spectral_fd'] / floor:.1f}×)"
      cells.append(cell)
    lines.append(f"| {spec} | " + " | ".join(cells) + " |")
  for p in (*REFERENCE_POINTS, *GRID_EXTRA):
    q = record["points"].get(f"{variant}/{denoiser}/{p}")
    if q:
      lines.append(f"\n{p.replace('/', ' at ')} NFE: {harness.fmt(q['spectral_fd'])}")
  return "\n".join(lines)


def band_table(record: dict, variant: str, denoiser: str, specs, nfe: int) -> str:
  lines = [
    f"{variant}, {denoiser}, {nfe} NFE: variance kept per band (1 is exact)\n",
    "| sampler | low | mid | high |",
    "|---|---:|---:|---:|",
  ]
  for spec in specs:
    p = record["points"].get(f"{variant}/{denoiser}/{spec}/{nfe}")
    if p:
      lines.append(f"| {spec} | " + " | ".join(f"{p[b]:.3f}" for b in BANDS) + " |")
  return "\n".join(lines)


def digit_table(record: dict) -> str:
  def mean_std(spec, n, key):
    vals = [record["points"].get(f"{spec}/{n}/s{s}", {}).get(key) for s in DIGIT_SEEDS]
    vals = [v for v in vals if v is not None]
    if not vals:
      return "—"
    return f"{np.mean(vals):.2f}" + (f" ± {np.std(vals):.2f}" if len(vals) > 1 else "")

  nfes = [*NFES, 100]
  lines = ["digits, demo model: pixel KID ×10³ (mean ± std over sample seeds 0, 1)\n"]
  lines += ["| sampler | " + " | ".join(str(n) for n in nfes) + " |", "|---|" + "---:|" * len(nfes)]
  for spec in DIGIT_SPECS:
    lines.append(f"| {spec} | " + " | ".join(mean_std(spec, n, "pixel_kid_e3") for n in nfes) + " |")
  lines += [
    "\nInception FID / KID ×10³ (mean ± std over the two seeds)\n",
    "| point | FID | KID ×10³ |",
    "|---|---:|---:|",
  ]
  for p in DIGIT_INCEPTION:
    spec, n = p.split("/")
    lines.append(f"| {spec} at {n} NFE | {mean_std(spec, n, 'fid')} | {mean_std(spec, n, 'kid_e3')} |")
  return "\n".join(lines)


def tables(results: pathlib.Path) -> str:
  out = []
  grids = load(results / "solver_grids.json")
  if grids["points"]:
    out.append(field_table(grids, "candidate", "oracle", GRID_SPECS))
  fields = load(results / "solver_fields.json")
  if fields["points"]:
    for denoiser in ("oracle", "trained"):
      out.append(field_table(fields, "candidate", denoiser, BLUR_SPECS))
      out.append(band_table(fields, "candidate", denoiser, BLUR_SPECS, 10))
    for denoiser in ("oracle", "trained"):
      out.append(field_table(fields, "ve", denoiser, VE_SPECS))
  digits = load(results / "solver_digits.json")
  if digits["points"]:
    out.append(digit_table(digits))
  return "\n\n".join(out)


def figure(results: pathlib.Path, path: pathlib.Path) -> None:
  """Spectral FD vs NFE on the fields (oracle dashed, trained solid; the exact-sample floor) and
  pixel KID vs NFE on the digits (mean over the sample seeds)."""
  import matplotlib

  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  import matplotlib.ticker

  fields, digits = load(results / "solver_fields.json"), load(results / "solver_digits.json")
  fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))
  for ax, variant, specs in ((axes[0], "candidate", BLUR_SPECS), (axes[1], "ve", VE_SPECS)):
    for i, spec in enumerate(specs):
      for denoiser, style in (("trained", "-"), ("oracle", "--")):
        pts = [(n, fields["points"].get(f"{variant}/{denoiser}/{spec}/{n}")) for n in NFES]
        pts = [(n, p["spectral_fd"]) for n, p in pts if p]
        if pts:
          label = spec + (" (oracle)" if denoiser == "oracle" else "")
          ax.plot(*zip(*pts, strict=True), style, marker="o", color=f"C{i}", label=label, ms=3)
    floor = fields.get("floors", {}).get(variant, {}).get("floor")
    if floor:
      ax.axhline(floor, color="k", lw=0.8, ls=":", label="exact samples (floor)")
    ax.set(xscale="log", yscale="log", xlabel="NFE", ylabel="spectral FD to the true law")
    ax.set_title("Gaussian fields, " + ("blur + noise" if variant == "candidate" else "VE twin"))
    ax.legend(fontsize=6)
  for i, spec in enumerate(DIGIT_SPECS):
    pts = []
    for n in [*NFES, 100]:
      vals = [digits["points"].get(f"{spec}/{n}/s{s}", {}).get("pixel_kid_e3") for s in DIGIT_SEEDS]
      vals = [v for v in vals if v is not None]
      if vals:
        pts.append((n, float(np.mean(vals))))
    if pts:
      axes[2].plot(*zip(*pts, strict=True), "-o", color=f"C{i}", label=spec, ms=3)
  axes[2].axhline(0.0, color="k", lw=0.8, ls=":")
  axes[2].set(xscale="log", xlabel="NFE", ylabel="pixel KID ×10³ (mean of 2 seeds; unbiased, can be < 0)")
  axes[2].set_title("digits, demo model")
  axes[2].legend(fontsize=7)
  for ax in axes:
    ax.set_xticks([5, 10, 20, 50, 100])
    ax.xaxis.set_major_formatter(matplotlib.ticker.ScalarFormatter())
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  plt.close(fig)


def main() -> None:
  parser = harness.parser(__doc__, tables="only print the tables of the JSON")
  parser.add_argument("--part", choices=("grids", "fields", "digits"))
  parser.add_argument("--denoisers", nargs="+", default=["oracle", "trained"])
  parser.add_argument("--figure", action="store_true", help="only redraw the figure from the JSON")
  args = parser.parse_args()
  if not (args.tables or args.figure):
    path = args.results / f"solver_{args.part}.json"
    record = load(path)
    record["description"] = __doc__.split("\n\n")[0]
    start = time.perf_counter()
    if args.part == "grids":
      field_points(record, "candidate", ["oracle"], GRID_SPECS, NFES, GRID_EXTRA, path=path)
    elif args.part == "fields":
      field_points(record, "candidate", args.denoisers, BLUR_SPECS, NFES, REFERENCE_POINTS, path=path)
      field_points(record, "ve", args.denoisers, VE_SPECS, NFES, path=path)
    else:
      digit_points(record, path)
    record.setdefault("timings", {})[time.strftime("%Y-%m-%d %H:%M")] = round(time.perf_counter() - start, 1)
    harness.write_json(path, record)
  if not args.tables:
    figure(args.results, args.results / "solver_vs_nfe.png")
  if not args.figure:
    print(tables(args.results))


if __name__ == "__main__":
  main()
