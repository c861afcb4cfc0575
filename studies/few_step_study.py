"""Ten steps and fewer: the multistep solver's forms (soft_diffusion/multistep.py), its time grids
(time_grids.py) and grids fitted to the law or to the model (grid_tuning.py), at 4-20 NFE, against
Momentum at 100 and 300 NFE and, on the VE twin, against DPM-Solver++(2M).

    python studies/few_step_study.py --part exact     # oracle fields (blur + noise) and the VE twin
    python studies/few_step_study.py --part trained   # the default field model, runs/fields_default
    python studies/few_step_study.py --part digits    # the default digits model, runs/digits (make demo)
    python studies/few_step_study.py --tables         # print the tables of the JSON
    python studies/few_step_study.py --figure         # redraw docs/results/few_step.png from the JSON

Solvers ('ms<order>[m|ml]'): the deterministic multistep sampler of order 1 (the deterministic
sampler), 2 in its three forms ('exact': the line through the last two estimates integrated
exactly; 'm': 'midpoint', DPM-Solver++(2M)'s form; 'ml': 'midpoint_logsnr') and 3. Grids: the
families uniform / logsnr / edm, 'optimal' (the grid minimising the exact spectral FD below,
fitted on the exact law from the uniform and edm grids, the better kept: the best any grid can
do with the oracle) and 'tuned' (`--mode tune_grid` on the trained model: fitted to bring N-step
solutions close to 200-step ones; the defaults of the `tune` block).

* Fields (`--part exact`, `--part trained`): configs/gaussian_field.py (16×16×3 Gaussian fields,
  blur + noise, selected levels; its default end, the last estimate x̂_0) and its VE twin
  configs/gaussian_field_ve.py (C_t = I, the end x at t = 0). Per point: 'exact_fd', the spectral
  Fréchet distance of the samples' law to the truth computed exactly from the sampler's gain per
  DCT coefficient (oracle only: no finite-sample noise), and 'spectral_fd', that of 1,024 samples
  (p_1 exact, sample seed 0; the floor is that of 1,024 exact draws of the law, mean of 4 seeds).
  The VE twin also runs DPM-Solver++(2M) (`dpmpp_2m`: its update in numpy float64, written from
  Lu et al. 2022, Algorithm 2) on the same σ grid from the same starts, and every VE point has
  'rmse', the root mean square distance per sample to the exact ODE end point of its start.
* Digits (`--part digits`): configs/digits.py's model (`make demo`), 1,024 samples per point,
  seed 0 (and seeds 1, 2 at 10 NFE and for Momentum at 100), pixel KID against the train digits
  and Inception FID / KID with the project's Inception against the train split's statistics.

Points are kept in --results/few_step_<part>.json (a rerun skips the points it holds) with their
seconds.
"""

from __future__ import annotations

import dataclasses
import pathlib
import time

import harness  # studies/, beside this script
import numpy as np

from soft_diffusion.run.workdir import Workdir

NFES = (4, 5, 6, 8, 10, 15, 20)
SOLVERS = {
  "ms1": (1, "exact"),
  "ms2": (2, "exact"),
  "ms2m": (2, "midpoint"),
  "ms2ml": (2, "midpoint_logsnr"),
  "ms3": (3, "exact"),
}
FAMILIES = ("uniform", "logsnr", "edm")
REFERENCE = ((100, "momentum"), (300, "momentum"))
FIELD_SAMPLES = 1024
# variant -> config, end: the blur fields with their config's end (x̂_0) and with x at t = 0; the VE twin
VARIANTS = (
  ("blur", "configs/gaussian_field.py", "denoise"),
  ("blur_noise", "configs/gaussian_field.py", "noise"),
  ("ve", "configs/gaussian_field_ve.py", "noise"),
)
DIGITS_CONFIG = "configs/digits.py"
OUT = harness.REPO / "runs" / "few_step"
FIELDS_RUN = harness.REPO / "runs" / "fields_default"
DIGITS_RUN = harness.REPO / "runs" / "digits"
TRAINED_SOLVERS = ("ms2", "ms2m", "ms3")
TUNED_NFES = (5, 10, 20)  # --mode tune_grid costs minutes per N on 2 cores: these N only
TRAINED_GRIDS = ("uniform", "edm", "optimal", "tuned")
DIGIT_SOLVERS = ("ms2",)  # every NFE and grid
DIGIT_FORMS_AT_10 = ("ms2m", "ms3", "ms1")  # the other forms: 10 NFE, seed 0, family grids
DIGIT_BEST_AT_10 = "ms1"  # the best of those on seed 0 (KID): also seeds 1-2 at 10 NFE and 5 / 20 NFE on seed 0
DIGIT_GRIDS = ("uniform", "edm", "tuned")
DIGIT_TUNED_NFES = (5, 10)
DIGIT_SAMPLES = 1024
SEEDS = (0, 1, 2)
FIT_STARTS = (("uniform", 0.05), ("edm", 0.2))
FIT_ITERATIONS = 200


def sample_cfg(base, solver: str, nfe: int, grid, seed: int = 0, final: str | None = None):
  if solver == "momentum":
    return dataclasses.replace(base, sampler="momentum", time_grid="uniform", num_steps=nfe, seed=seed)
  order, form = SOLVERS[solver]
  options = {"final": final} if final else {}
  return dataclasses.replace(
    base, sampler="multistep", order=order, form=form, time_grid=grid, num_steps=nfe, seed=seed, **options
  )


def field_setup(config: str, name: str):
  """(settings, corruption, prior, v) of `config` with its levels and exact p_1 in OUT/<name>."""
  import jax

  from soft_diffusion import corruptions, data
  from soft_diffusion.run.modes import levels, sample

  workdir = OUT / name
  workdir.mkdir(parents=True, exist_ok=True)
  settings = Workdir.of(workdir).settings(harness.load_config(config), resolve_levels=False)
  settings = levels.select_missing_levels(settings, workdir)
  corruption = corruptions.make(settings.corruption)
  prior = sample.make_prior(settings, corruption, workdir, fit_missing=True)
  return settings, corruption, jax.device_put(prior), data.exact_spectrum(settings.data)[..., 0]


_OBJECTIVES: dict = {}


def exact_objective(variant: str, corruption, v, solver: str, final: str):
  """times -> the exact spectral FD of `solver` with the oracle (grid_tuning.exact_objective), one per point kind."""
  from soft_diffusion import grid_tuning

  key = (variant, solver, final)
  if key not in _OBJECTIVES:
    order, form = SOLVERS[solver]
    _OBJECTIVES[key] = grid_tuning.exact_objective(grid_tuning.solver(order, form, final), corruption, v)
  return _OBJECTIVES[key]


def optimal_grid(variant: str, corruption, v, solver: str, nfe: int, final: str) -> tuple[np.ndarray, float]:
  """The grid minimising the exact spectral FD of `solver` with the oracle (FIT_STARTS, best kept)."""
  from soft_diffusion import grid_tuning, time_grids

  objective = exact_objective(variant, corruption, v, solver, final)
  best = None
  for start, lr in FIT_STARTS:
    grid = time_grids.make(start, corruption, nfe, *v.shape)
    tuned = grid_tuning.tune(objective, grid, iterations=FIT_ITERATIONS, learning_rate=lr)
    if best is None or tuned.loss < best.loss:
      best = tuned
  return best.times, best.loss


CHECKED_OPTIMUM = "blur_noise/ms2/5"  # the 5-NFE target's point: is its optimal grid the fit's minimum?
CHECK_ITERATIONS = 600


def check_optimum(record: dict, corruption, v, final: str) -> None:
  """Refits the optimal grid of CHECKED_OPTIMUM from more starts (the grid itself, the three
  families, three random grids) with longer fits (CHECK_ITERATIONS, learning rates 0.05 and 0.01):
  record['optimum_check'] gets each fit's exact FD and grid."""
  from soft_diffusion import grid_tuning, time_grids

  variant, solver, nfe = CHECKED_OPTIMUM.split("/")
  objective = exact_objective(variant, corruption, v, solver, final)
  rng = np.random.default_rng(0)
  starts = {"optimal": np.asarray(record["optimal_grids"][CHECKED_OPTIMUM]["times"])}
  starts.update({f: time_grids.make(f, corruption, int(nfe), *v.shape) for f in FAMILIES})
  for i in range(3):
    starts[f"random {i}"] = np.concatenate([[1.0], np.sort(rng.uniform(0, 1, int(nfe) - 1))[::-1], [0.0]])
  fits = []
  for name, grid in starts.items():
    for lr in (0.05, 0.01):
      tuned = grid_tuning.tune(objective, grid, iterations=CHECK_ITERATIONS, learning_rate=lr)
      fits.append({"start": name, "learning_rate": lr, "exact_fd": tuned.loss, "times": tuned.times.tolist()})
      print(f"optimum check {CHECKED_OPTIMUM} from {name}, lr {lr}: exact FD {tuned.loss:.4g}", flush=True)
  record["optimum_check"] = {
    "point": CHECKED_OPTIMUM,
    "optimal_exact_fd": record["optimal_grids"][CHECKED_OPTIMUM]["exact_fd"],
    "fits": fits,
  }


def optimum_check_line(fields: dict) -> str:
  check = fields.get("optimum_check")
  if not check:
    return ""
  fits, optimal = check["fits"], check["optimal_exact_fd"]
  again = sorted({f["start"] for f in fits if f["exact_fd"] <= optimal * 1.001})
  others = [f["exact_fd"] for f in fits if f["exact_fd"] > optimal * 1.001]
  return (
    f"optimum check ({check['point']}): {len(fits)} fits of {CHECK_ITERATIONS} updates from "
    f"{len({f['start'] for f in fits})} starts; lowest exact FD {harness.fmt(min(f['exact_fd'] for f in fits))} "
    f"against the optimal grid's "
    f"{harness.fmt(optimal)}, reached from: {', '.join(again)}"
    + (f"; the other fits stop at {harness.fmt(min(others))}–{harness.fmt(max(others))}" if others else "")
  )


def dpmpp_2m(denoise, x, sigmas, times):
  """DPM-Solver++(2M) (Lu et al. 2022, Algorithm 2, data prediction) over σ_0 > … > σ_N > 0, float64."""
  old = None
  for i in range(len(sigmas) - 1):
    d = denoise(x, times[i])
    h = np.log(sigmas[i] / sigmas[i + 1])
    if old is not None:
      r = np.log(sigmas[i - 1] / sigmas[i]) / h
      d, old = d + (d - old) / (2 * r), d
    else:
      old = d
    x = (sigmas[i + 1] / sigmas[i]) * x + (1 - np.exp(-h)) * d
  return x


def exact_part(record: dict, path: pathlib.Path) -> None:
  """Oracle fields (blur + noise) and the VE twin."""
  import jax
  import jax.numpy as jnp
  import solver_study

  from soft_diffusion import dct, gaussian_field, grid_tuning, priors, samplers, time_grids
  from soft_diffusion.evaluation import exact
  from soft_diffusion.run.modes import sample

  for variant, config, final in VARIANTS:
    settings, corruption, prior, v = field_setup(config, f"oracle_{variant}")
    if variant not in record.setdefault("floors", {}):
      record["floors"][variant] = solver_study.exact_floor(v)
    oracle = gaussian_field.oracle_denoiser(corruption, v)
    grids = {}

    def grid_of(solver, nfe, grid, corruption=corruption, v=v, final=final, variant=variant, grids=grids):
      if grid != "optimal":
        return time_grids.make(grid, corruption, nfe, *v.shape)
      name = f"{variant}/{solver}/{nfe}"
      if name not in record.setdefault("optimal_grids", {}):
        times, loss = optimal_grid(variant, corruption, v, solver, nfe, final)
        record["optimal_grids"][name] = {"times": times.tolist(), "exact_fd": loss}
      return np.asarray(record["optimal_grids"][name]["times"])

    x1 = np.asarray(
      jax.jit(lambda key, p=prior, c=corruption: priors.sample_p1(p, c, key, FIELD_SAMPLES))(jax.random.key(0))
    )
    std_1 = np.asarray(grid_tuning.start_std(corruption, v))
    std_0 = np.sqrt(
      np.asarray(gaussian_field.dct_multipliers(corruption, jnp.zeros(1), *v.shape)[0]) ** 2 * v
      + float(corruption.noise_std(jnp.zeros(1))[0]) ** 2
    )
    exact_end = np.asarray(
      dct.dct2(jnp.asarray(np.asarray(dct.dct2(jnp.asarray(x1))) * (std_0 / std_1)[None, :, :, None]), inverse=True)
    )

    def measure(
      point,
      grid_of=grid_of,
      settings=settings,
      corruption=corruption,
      v=v,
      final=final,
      oracle=oracle,
      x1=x1,
      exact_end=exact_end,
      variant=variant,
      std_1=std_1,
    ):
      _, solver, grid, nfe = point.split("/")
      nfe = int(nfe)
      t0 = time.perf_counter()
      out = {}
      if solver == "momentum":
        cfg = sample_cfg(settings.sample, solver, nfe, "uniform")
        sampler = sample.sampler_of(cfg)
        images = np.asarray(
          jax.jit(lambda x: sampler(oracle, x, corruption, num_steps=nfe, key=jax.random.key(1)))(jnp.asarray(x1))
        )
      elif solver == "dpmpp_2m":
        times = grid_of(solver, nfe, grid)
        sigmas = np.asarray(corruption.noise_std(jnp.asarray(times, jnp.float32)), np.float64)
        t32 = np.asarray(jnp.asarray(times, jnp.float32), np.float64)
        denoise = lambda x, t: np.asarray(
          oracle(jnp.asarray(x, jnp.float32), jnp.full((x.shape[0],), t, jnp.float32)), np.float64
        )
        images = dpmpp_2m(denoise, np.asarray(x1, np.float64), sigmas, t32)
        ones = np.asarray(dct.dct2(jnp.ones((1, *v.shape, 1)), inverse=True), np.float64)
        gains = np.asarray(dct.dct2(jnp.asarray(dpmpp_2m(denoise, ones, sigmas, t32), jnp.float32)))[0, :, :, 0]
        out["exact_fd"] = float(grid_tuning.exact_spectral_fd(jnp.asarray(gains), jnp.asarray(std_1), v))
      else:
        times = grid_of(solver, nfe, grid)
        order, form = SOLVERS[solver]
        sampler = samplers.get("multistep", order=order, form=form, time_grid=times, final=final)
        images = np.asarray(
          jax.jit(lambda x: sampler(oracle, x, corruption, num_steps=nfe, key=jax.random.key(1)))(jnp.asarray(x1))
        )
        out["exact_fd"] = float(exact_objective(variant, corruption, v, solver, final)(jnp.asarray(times, jnp.float32)))
      metrics = exact.exact_metrics(images, v)
      out.update({k: metrics[k] for k in ("spectral_fd", "ratio_low", "ratio_mid", "ratio_high")})
      if variant == "ve":
        out["rmse"] = float(np.sqrt(np.mean(np.square(images - exact_end))))
      out["seconds"] = round(time.perf_counter() - t0, 1)
      print(f"{point}: " + "  ".join(f"{k} {val:.4g}" for k, val in out.items()), flush=True)
      jax.clear_caches()  # every grid compiles anew: hundreds of executables exhaust the process's memory maps
      return out

    want = [f"{variant}/{s}/{g}/{n}" for n in NFES for s in SOLVERS for g in (*FAMILIES, "optimal")]
    if variant == "ve":
      want += [f"ve/dpmpp_2m/{g}/{n}" for n in NFES for g in ("edm", "uniform")]
    want += [f"{variant}/momentum/uniform/{n}" for n, _ in REFERENCE]
    harness.measure_points(path, want, measure, record=record)
    if variant == CHECKED_OPTIMUM.split("/")[0] and "optimum_check" not in record:
      check_optimum(record, corruption, v, final)
      harness.write_json(path, record)


def tune_grids(config: str, workdir: pathlib.Path, solvers, nfes, log_name: str) -> None:
  """`--mode tune_grid` on a trained run for each solver and N of `nfes` (skipped when held)."""
  for solver in solvers:
    order, form = SOLVERS[solver]
    settings = Workdir.of(workdir).settings(harness.load_config(config), resolve_grid=False)
    cfg = dataclasses.replace(settings.sample, sampler="multistep", order=order, form=form)
    from soft_diffusion.run import settings as settings_lib

    keys = [settings_lib.grid_key(cfg, n) for n in nfes]
    held = harness.read_json(Workdir.of(workdir).time_grid_file, {}).get("grids", {})
    if all(k in held for k in keys):
      continue
    args = ["--config", config, "--workdir", str(workdir), "--mode", "tune_grid"]
    args += ["--config.sample.sampler=multistep", f"--config.sample.order={order}", f"--config.sample.form={form}"]
    args += [f"--config.tune.num_steps={tuple(nfes)}"]
    harness.run_cli(args, workdir / f"{log_name}_{solver}.log")


def trained_cfg(run, solver: str, nfe: int, grid: str, seed: int, optimal: dict):
  """The sample block of a point; explicit grids ('optimal', 'tuned') go in as tuned_grids."""
  cfg = sample_cfg(run.settings.sample, solver, nfe, "uniform", seed)
  if solver == "momentum" or grid in FAMILIES:
    return dataclasses.replace(cfg, time_grid=grid) if solver != "momentum" else cfg
  if grid == "optimal":
    return dataclasses.replace(cfg, time_grid="tuned", tuned_grids=(tuple(optimal[f"blur/{solver}/{nfe}"]["times"]),))
  tuned = dataclasses.replace(cfg, time_grid="tuned")
  return dataclasses.replace(
    tuned, tuned_grids=Workdir.of(run.workdir).read_tuned_grids(dataclasses.replace(run.settings, sample=tuned))
  )


def trained_part(record: dict, path: pathlib.Path) -> None:
  """The default field model: sampled spectral FD of 1,024 samples per point."""
  from soft_diffusion import data
  from soft_diffusion.evaluation import exact
  from soft_diffusion.run.modes import sample

  config = VARIANTS[0][1]
  if not harness.finished(FIELDS_RUN, harness.load_config(config).train.total_steps):
    harness.run_cli(["--config", config, "--workdir", str(FIELDS_RUN)], FIELDS_RUN.parent / "fields_default_train.log")
  tune_grids(config, FIELDS_RUN, ("ms2",), TUNED_NFES, "tune")
  optimal = harness.read_json(path.parent / "few_step_exact.json", {}).get("optimal_grids", {})
  run = sample.load_run(Workdir.of(FIELDS_RUN).settings(harness.load_config(config)), FIELDS_RUN)
  v = data.exact_spectrum(run.settings.data)[..., 0]

  def measure(point: str) -> dict:
    _, solver, grid, nfe = point.split("/")
    t0 = time.perf_counter()
    images = run.draw(trained_cfg(run, solver, int(nfe), grid, 0, optimal), FIELD_SAMPLES, progress=False, raw=True)
    metrics = exact.exact_metrics(images, v)
    out = {k: metrics[k] for k in ("spectral_fd", "ratio_low", "ratio_mid", "ratio_high")}
    out["seconds"] = round(time.perf_counter() - t0, 1)
    print(f"{point}: spectral FD {out['spectral_fd']:.4f}", flush=True)
    return out

  want = [f"trained/{s}/{g}/{n}" for n in NFES for s in TRAINED_SOLVERS for g in TRAINED_GRIDS if g != "tuned"]
  want += [f"trained/ms2/tuned/{n}" for n in TUNED_NFES]
  want += [f"trained/momentum/uniform/{n}" for n, _ in REFERENCE]
  harness.measure_points(path, want, measure, record=record)


def digits_part(record: dict, path: pathlib.Path) -> None:
  """The default digits model: pixel KID and Inception FID / KID of 1,024 samples per point."""
  import quality_study

  from soft_diffusion.run.modes import sample

  config = DIGITS_CONFIG
  if not harness.finished(DIGITS_RUN, harness.load_config(config).train.total_steps):
    harness.run_cli(["--config", config, "--workdir", str(DIGITS_RUN)], DIGITS_RUN.parent / "digits_train.log")
  tune_grids(config, DIGITS_RUN, DIGIT_SOLVERS, DIGIT_TUNED_NFES, "tune")
  run = sample.load_run(Workdir.of(DIGITS_RUN).settings(harness.load_config(config)), DIGITS_RUN)
  reference = quality_study.Reference(OUT / "quality", True, record.setdefault("timings", {}))

  def measure(point: str) -> dict:
    _, solver, grid, nfe, seed = point.split("/")
    t0 = time.perf_counter()
    images = run.draw(trained_cfg(run, solver, int(nfe), grid, int(seed[1:]), {}), DIGIT_SAMPLES, progress=False)
    seconds = round(time.perf_counter() - t0, 1)
    measured = reference.measure(images)
    measured.pop("ring_ratios", None)
    print(f"{point}: " + quality_study.short(measured), flush=True)
    return {**measured, "sampling_seconds": seconds}

  # In the order of what the targets need first (a point costs minutes on 2 cores): 10 NFE on every
  # seed, then the other budgets.
  want = [f"digits/momentum/uniform/100/s{s}" for s in SEEDS] + ["digits/momentum/uniform/300/s0"]
  want += [f"digits/{s}/{g}/10/s{seed}" for seed in SEEDS for s in DIGIT_SOLVERS for g in DIGIT_GRIDS]
  want += [f"digits/{s}/{g}/10/s0" for s in DIGIT_FORMS_AT_10 for g in DIGIT_GRIDS if g != "tuned"]
  best = DIGIT_BEST_AT_10
  want += [f"digits/{best}/{g}/10/s{seed}" for g in ("uniform", "edm") for seed in SEEDS]
  want += [f"digits/{best}/uniform/{n}/s0" for n in (5, 20, 100)]  # 100: how far its converged ODE is
  tuned = lambda g, n: g != "tuned" or n in DIGIT_TUNED_NFES
  by_need = sorted(NFES, key=lambda n: (n != 5, n != 20, n))
  want += [f"digits/{s}/{g}/{n}/s0" for n in by_need for s in DIGIT_SOLVERS for g in DIGIT_GRIDS if tuned(g, n)]
  want += [f"digits/{s}/edm/10/s{seed}" for seed in SEEDS[1:] for s in DIGIT_SOLVERS]
  want = list(dict.fromkeys(want))
  harness.measure_points(path, want, measure, record=record)


SOLVER_NAMES = {
  "ms1": "order 1",
  "ms2": "order 2, exact",
  "ms2m": "order 2, midpoint (2M)",
  "ms2ml": "order 2, midpoint in λ",
  "ms3": "order 3",
  "dpmpp_2m": "DPM-Solver++(2M), reference",
}


def _cell(p: dict | None, key: str, floor: float | None = None) -> str:
  if not p or key not in p:
    return "—"
  text = harness.fmt(p[key])
  return text + (f" ({p[key] / floor:.1f}×)" if floor else "")


def field_table(record: dict, variant: str, key: str, solvers, grids, title: str, ratio: bool = False) -> str:
  floor = record.get("floors", {}).get(variant, {}).get("floor") if ratio else None
  rows = []
  for solver in solvers:
    for grid in grids:
      cells = [_cell(record["points"].get(f"{variant}/{solver}/{grid}/{n}"), key, floor) for n in NFES]
      if any(c != "—" for c in cells):
        rows.append([f"{SOLVER_NAMES[solver]} @ {grid}", *cells])
  refs = [(n, record["points"].get(f"{variant}/momentum/uniform/{n}")) for n, _ in REFERENCE]
  refs = [f"Momentum at {n} NFE: {_cell(p, key, floor)}" for n, p in refs if p and key in p]
  table = harness.markdown_table(title, ["solver @ grid", *map(str, NFES)], rows, "|---|" + "---:|" * len(NFES))
  return table + ("\n\n" + "; ".join(refs) if refs else "")


def digit_table(record: dict) -> str:
  def mean_std(point: str, key: str, seeds=SEEDS) -> str:
    vals = [record["points"].get(f"{point}/s{s}", {}).get(key) for s in seeds]
    vals = [v for v in vals if v is not None]
    if not vals:
      return "—"
    return f"{np.mean(vals):.2f}" + (f" ± {np.std(vals):.2f}" if len(vals) > 1 else "")

  out = []
  for key, what in (("kid_e3", "Inception KID ×10³"), ("fid", "Inception FID"), ("pixel_kid_e3", "pixel KID ×10³")):
    rows = [
      [f"{SOLVER_NAMES[s]} @ {g}", *[mean_std(f"digits/{s}/{g}/{n}", key, SEEDS if n == 10 else (0,)) for n in NFES]]
      for s in SOLVERS  # in SOLVERS' order: the measured ones
      if s in (*DIGIT_SOLVERS, *DIGIT_FORMS_AT_10)
      for g in DIGIT_GRIDS
    ]
    rows = [row for row in rows if any(cell != "—" for cell in row[1:])]
    title = f"digits, default model, {what} (1,024 samples; seed 0, at 10 NFE mean ± std of seeds 0-2)"
    table = harness.markdown_table(title, ["solver @ grid", *map(str, NFES)], rows, "|---|" + "---:|" * len(NFES))
    refs = [f"Momentum at 100 NFE: {mean_std('digits/momentum/uniform/100', key)}"]
    refs.append(f"at 300 NFE: {mean_std('digits/momentum/uniform/300', key, (0,))}")
    ode = mean_std(f"digits/{DIGIT_BEST_AT_10}/uniform/100", key, (0,))
    if ode != "—":
      refs.append(f"{SOLVER_NAMES[DIGIT_BEST_AT_10]} @ uniform at 100 NFE: {ode}")
    out.append(table + "\n\n" + "; ".join(refs))
  return "\n\n".join(out)


def tables(results: pathlib.Path) -> str:
  out = []
  fields = harness.read_json(results / "few_step_exact.json", {"points": {}})
  if fields["points"]:
    for variant, what in (
      ("blur", "blur + noise, end x̂_0 (the config's)"),
      ("blur_noise", "blur + noise, end x at t = 0"),
    ):
      out.append(
        field_table(
          fields,
          variant,
          "exact_fd",
          SOLVERS,
          (*FAMILIES, "optimal"),
          f"oracle fields, {what}: exact spectral FD (no finite-sample bias)",
        )
      )
      floor = fields["floors"][variant]["floor"]
      title = f"oracle fields, {what}: spectral FD of 1,024 samples (×floor; floor {floor:.4f})"
      out.append(
        field_table(fields, variant, "spectral_fd", ("ms2", "ms2m", "ms3"), (*FAMILIES, "optimal"), title, True)
      )
    ve = ("ms2", "ms2m", "ms3", "dpmpp_2m")
    ve_grids = ("uniform", "edm", "optimal")  # 'logsnr' is 'uniform' here: λ is affine in t
    out.append(field_table(fields, "ve", "exact_fd", ve, ve_grids, "VE twin, oracle: exact spectral FD"))
    floor = fields["floors"]["ve"]["floor"]
    title = f"VE twin, oracle: spectral FD of 1,024 samples (×floor; floor {floor:.4f})"
    out.append(field_table(fields, "ve", "spectral_fd", ve, ve_grids, title, True))
    title = "VE twin, oracle: RMSE per sample to the exact ODE end point"
    out.append(field_table(fields, "ve", "rmse", ve, ve_grids, title))
  trained = harness.read_json(results / "few_step_trained.json", {"points": {}})
  if trained["points"]:
    floor = fields.get("floors", {}).get("blur", {}).get("floor")
    trained.setdefault("floors", {})["trained"] = {"floor": floor}
    title = f"fields, trained default model: spectral FD of 1,024 samples (×floor; floor {harness.fmt(floor)})"
    out.append(field_table(trained, "trained", "spectral_fd", TRAINED_SOLVERS, TRAINED_GRIDS, title, floor is not None))
  digits = harness.read_json(results / "few_step_digits.json", {"points": {}})
  if digits["points"]:
    out.append(digit_table(digits))
  check = optimum_check_line(fields)
  if check:  # last: the parts above keep their numbers
    out.append(check)
  return "\n\n".join(out)


def figure(results: pathlib.Path, path: pathlib.Path) -> None:
  """Left: the optimal grids of the oracle fields (order 2, x̂_0 end) against uniform and edm. Middle:
  exact spectral FD vs NFE (oracle) and sampled (trained). Right: digits Inception KID vs NFE."""
  import matplotlib

  matplotlib.use("Agg")
  import matplotlib.pyplot as plt

  from soft_diffusion import corruptions, time_grids

  fields = harness.read_json(results / "few_step_exact.json", {"points": {}})
  trained = harness.read_json(results / "few_step_trained.json", {"points": {}})
  digits = harness.read_json(results / "few_step_digits.json", {"points": {}})
  fig, axes = plt.subplots(1, 3, figsize=(16, 4.4))
  settings = Workdir.of(OUT / "oracle_blur").settings(harness.load_config(VARIANTS[0][1]))
  corruption = corruptions.make(settings.corruption)
  for i, n in enumerate((5, 10, 20)):
    grid = fields.get("optimal_grids", {}).get(f"blur/ms2/{n}")
    if grid:
      axes[0].plot(np.arange(n + 1) / n, grid["times"], "o-", ms=3, color=f"C{i}", label=f"optimal, N = {n}")
      axes[0].plot(
        np.arange(n + 1) / n, time_grids.make("edm", corruption, n, 16, 16), ":", color=f"C{i}", label=f"edm, N = {n}"
      )
  axes[0].plot([0, 1], [1, 0], "k--", lw=0.8, label="uniform")
  axes[0].set(xlabel="step i / N", ylabel="t_i", title="oracle fields: the best grids (order 2, x̂_0 end)")
  for solver, grid, color in (
    ("ms2", "uniform", "C0"),
    ("ms2", "edm", "C1"),
    ("ms2", "optimal", "C2"),
    ("ms2m", "optimal", "C3"),
    ("ms3", "optimal", "C4"),
  ):
    pts = [(n, fields["points"].get(f"blur/{solver}/{grid}/{n}", {}).get("spectral_fd")) for n in NFES]
    pts = [(n, v) for n, v in pts if v is not None]
    if pts:
      axes[1].plot(
        *zip(*pts, strict=True), "--", marker="x", color=color, label=f"oracle {SOLVER_NAMES[solver]} @ {grid}"
      )
    pts = [(n, trained["points"].get(f"trained/{solver}/{grid}/{n}", {}).get("spectral_fd")) for n in NFES]
    pts = [(n, v) for n, v in pts if v is not None]
    if pts:
      axes[1].plot(
        *zip(*pts, strict=True), "-", marker="o", ms=3, color=color, label=f"trained {SOLVER_NAMES[solver]} @ {grid}"
      )
  floor = fields.get("floors", {}).get("blur", {}).get("floor")
  if floor:
    axes[1].axhline(floor, color="k", ls=":", lw=0.8, label="exact samples (floor)")
  for n, _ in REFERENCE:
    p = trained["points"].get(f"trained/momentum/uniform/{n}") or fields["points"].get(f"blur/momentum/uniform/{n}")
    if p:
      axes[1].axhline(p["spectral_fd"], color="grey", lw=0.8, ls="-.", label=f"Momentum at {n}")
  axes[1].set(xscale="log", yscale="log", xlabel="NFE", ylabel="spectral FD to the true law (1,024 samples)")
  axes[1].set_title("Gaussian fields, blur + noise", fontsize=10)
  lines = [(s, g) for s in DIGIT_SOLVERS for g in DIGIT_GRIDS] + [(DIGIT_BEST_AT_10, "uniform")]
  for i, (solver, grid) in enumerate(lines):
    pts = [(n, digits["points"].get(f"digits/{solver}/{grid}/{n}/s0", {}).get("kid_e3")) for n in NFES]
    pts = [(n, v) for n, v in pts if v is not None]
    if len(pts) > 1:
      axes[2].plot(*zip(*pts, strict=True), "-o", ms=3, color=f"C{i}", label=f"{SOLVER_NAMES[solver]} @ {grid}")
  for n, _ in REFERENCE:
    p = digits["points"].get(f"digits/momentum/uniform/{n}/s0")
    if p and "kid_e3" in p:
      axes[2].axhline(
        p["kid_e3"], color="grey", lw=0.8, ls="-." if n == 100 else ":", label=f"Momentum at {n} (seed 0)"
      )
  axes[2].set(xscale="log", xlabel="NFE", ylabel="Inception KID ×10³ (seed 0)", title="digits, default model")
  for ax in axes:
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=6)
  for ax in axes[1:]:
    ax.set_xticks(list(NFES), [str(n) for n in NFES])
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  plt.close(fig)


def main() -> None:
  parser = harness.parser(__doc__, tables="only print the tables of the JSON")
  parser.add_argument("--part", choices=("exact", "trained", "digits"))
  parser.add_argument("--figure", action="store_true", help="only redraw the figure from the JSON")
  args = parser.parse_args()
  if args.part:
    path = args.results / f"few_step_{args.part}.json"
    record = harness.read_json(path, {"points": {}})
    record["description"] = __doc__.split("\n\n")[0]
    start = time.perf_counter()
    {"exact": exact_part, "trained": trained_part, "digits": digits_part}[args.part](record, path)
    record.setdefault("timings", {})[time.strftime("%Y-%m-%d %H:%M")] = round(time.perf_counter() - start, 1)
    harness.write_json(path, record)
  if not args.tables:
    figure(args.results, args.results / "few_step.png")
  if not args.figure:
    print(tables(args.results))


if __name__ == "__main__":
  main()
