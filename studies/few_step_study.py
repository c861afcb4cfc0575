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
TRAINED_GRIDS = ("uniform", "edm", "optimal", "tuned")
DIGIT_SOLVERS = ("ms2", "ms2m")
DIGIT_GRIDS = ("uniform", "edm", "tuned")
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
      return out

    want = [f"{variant}/{s}/{g}/{n}" for n in NFES for s in SOLVERS for g in (*FAMILIES, "optimal")]
    if variant == "ve":
      want += [f"ve/dpmpp_2m/{g}/{n}" for n in NFES for g in ("edm", "uniform")]
    want += [f"{variant}/momentum/uniform/{n}" for n, _ in REFERENCE]
    harness.measure_points(path, want, measure, record=record)


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
    {"exact": exact_part}[args.part](record, path)
    record.setdefault("timings", {})[time.strftime("%Y-%m-%d %H:%M")] = round(time.perf_counter() - start, 1)
    harness.write_json(path, record)


if __name__ == "__main__":
  main()
