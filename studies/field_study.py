"""Sample quality on the Gaussian fields, where every number is an exact distance to the true law:
which level selection, the trained network against its oracle, and blur + Momentum against the
VE baseline with score_sde's predictor-corrector sampler.

    python studies/field_study.py --train joint candidate blur wiener ve   # trains what is missing, then measures
    python studies/field_study.py --train floor lag joint_min_blur --variants floor lag joint_min_blur
    python studies/field_study.py --tables   # the tables of docs/results/quality_fields.json

Each variant is a config with a few overrides (VARIANTS). The ones named by --train are trained
with the CLI a user would run (skipped when their last checkpoint exists; never start this beside
another process training the same workdir),

    python -m soft_diffusion.main --config CONFIG --workdir OUT/<variant>_s<seed> --config.seed=<seed> ...

and sampled with the trained network (EMA parameters of the last checkpoint) and with the exact
posterior mean (the oracle: the floor a perfect network reaches) through the same sampler, prior,
levels and sample seed (0), 1,024 samples per point. A variant that is not trained gets its
oracle points only (its levels are selected into OUT/oracle_<variant>). Blur variants run the
Momentum and naive samplers, the VE variant PC and Momentum, at 20, 50 and 100 NFE.

Per point (`evaluation.exact.exact_metrics` against N(0, diag v), the true law): the spectral
Fréchet distance, the full FD, and the variance kept per band (low k+l < 8, mid, high k+l ≥ H;
1 is exact). Each run's points are kept in its folder (field_quality.json; a rerun skips the
points it holds); the study's are written to --results/quality_fields.json with the wall time of
each stage (a variant this run did not measure keeps its earlier record there), and the tables
are printed.
"""

from __future__ import annotations

import dataclasses
import functools
import pathlib
import time

import harness  # studies/, beside this script

from soft_diffusion.run.workdir import Workdir

# The recipes this study measured (schema.apply_form; the defaults moved since).
BLUR = "configs/gaussian_field.py:paper"
# variant -> (what it is, config file, overrides)
VARIANTS: dict[str, tuple[str, str, dict]] = {
  "joint": ("levels.pairing = joint (configs/gaussian_field.py until this study)", BLUR, {"levels.pairing": "joint"}),
  "candidate": ("levels.pairing = candidate (configs/gaussian_field.py since this study)", BLUR, {}),
  "blur": ("levels.pairing = blur (the blur term alone)", BLUR, {"levels.pairing": "blur"}),
  "joint_min_blur": (
    "levels.pairing = joint_min_blur (every hop at least half blur)",
    BLUR,
    {"levels.pairing": "joint_min_blur"},
  ),
  "floor": ("loss.floor = 0.3 (joint levels)", BLUR, {"levels.pairing": "joint", "loss.floor": 0.3}),
  "lag": (
    "loss.lag = 0.02 (A_t = C_{t-0.02}: one sampler step at 50 NFE; joint levels)",
    BLUR,
    {"levels.pairing": "joint", "loss.lag": 0.02},
  ),
  "wiener": ("model.skip = wiener (joint levels)", BLUR, {"levels.pairing": "joint", "model.skip": "wiener"}),
  "ve": ("configs/gaussian_field_ve.py (C_t = I, score_sde's VE recipe)", "configs/gaussian_field_ve.py:score_sde", {}),
}
SAMPLERS = {"ve": ("pc", "momentum")}  # variant -> samplers; the others: DEFAULT_SAMPLERS
DEFAULT_SAMPLERS = ("momentum", "naive")
NFES = (20, 50, 100)
SAMPLE_SEED = 0
BANDS = ("ratio_low", "ratio_mid", "ratio_high")


def make_config(variant: str, seed: int):
  _, path, overrides = VARIANTS[variant]
  return harness.make_config(path, overrides, seed)


def train(variant: str, seed: int, out: pathlib.Path, timings: dict) -> None:
  _, path, overrides = VARIANTS[variant]
  flags = [f"--config.seed={seed}", *harness.override_flags(overrides)]
  num_steps = make_config(variant, seed).train.total_steps
  harness.train_unless_done(out / f"{variant}_s{seed}", path, flags, num_steps=num_steps, timings=timings)


def oracle_setup(variant: str, seed: int, out: pathlib.Path):
  """(settings, corruption, prior) without a checkpoint: levels selected into OUT/oracle_<variant>."""
  from soft_diffusion import corruptions
  from soft_diffusion.run.modes import levels, sample

  workdir = out / f"oracle_{variant}"
  workdir.mkdir(parents=True, exist_ok=True)
  config = make_config(variant, seed)
  settings = Workdir.of(workdir).settings(config, resolve_levels=False)
  settings = levels.select_missing_levels(settings, workdir)
  corruption = corruptions.make(settings.corruption)
  return settings, corruption, sample.make_prior(settings, corruption, workdir, fit_missing=True)


def evaluate_variant(variant: str, seed: int, out: pathlib.Path, timings: dict) -> dict:
  """Points 'denoiser/sampler/NFE' of a variant (trained ones only when its checkpoint exists)."""
  import jax

  from soft_diffusion import data, gaussian_field
  from soft_diffusion.evaluation import exact
  from soft_diffusion.run.modes import sample

  workdir = out / f"{variant}_s{seed}"
  config = make_config(variant, seed)
  trained = harness.finished(workdir, config.train.total_steps)
  path = (workdir if trained else out / f"oracle_{variant}") / "field_quality.json"
  record = harness.read_json(path, {"points": {}})
  denoisers = ("trained", "oracle") if trained else ("oracle",)
  samplers = SAMPLERS.get(variant, DEFAULT_SAMPLERS)

  @functools.cache
  def setup():  # only when a point is missing
    if trained:
      run = sample.load_run(Workdir.of(workdir).settings(config), workdir)
      settings, corruption, prior = run.settings, run.corruption, run.prior
      trained_fns = run.params, run.network, run.skip, run.precond
    else:
      settings, corruption, prior = oracle_setup(variant, seed, out)
      trained_fns = None, None, None, None
    v = data.exact_spectrum(settings.data)[..., 0]
    return settings, corruption, jax.device_put(prior), trained_fns, v, gaussian_field.oracle_denoiser(corruption, v)

  def measure(point: str) -> dict:
    settings, corruption, prior, (params, net, skip, precond), v, oracle = setup()
    denoiser, sampler, nfe = point.split("/")
    cfg = dataclasses.replace(settings.sample, sampler=sampler, num_steps=int(nfe), seed=SAMPLE_SEED)
    denoise_fn = oracle if denoiser == "oracle" else None
    draw_fn = sample.make_draw_fn(net, corruption, cfg, raw=True, denoise_fn=denoise_fn, skip=skip, precond=precond)
    t0 = time.perf_counter()
    images = sample.draw(draw_fn, params, prior, cfg, settings.eval.num_images, raw=True)
    metrics = exact.exact_metrics(images, v)
    print(f"{variant}_s{seed} {point}: " + short(metrics), flush=True)
    return {**metrics, "num_images": len(images), "seconds": round(time.perf_counter() - t0, 1)}

  start = time.perf_counter()
  names = [f"{d}/{s}/{n}" for d in denoisers for s in samplers for n in NFES]
  if harness.measure_points(path, names, measure, record=record):
    record["levels"] = list(setup()[0].corruption.blur_sigma_table or ())
    record["trained"] = trained
    harness.write_json(path, record)
    timings[f"{variant}_s{seed}/eval"] = round(time.perf_counter() - start, 1)
  return record


def short(m: dict) -> str:
  bands = " / ".join(f"{m[b]:.3f}" for b in BANDS)
  return f"spectral FD {m['spectral_fd']:.3f}  FD {m['fd']:.2f}  bands {bands}"


def tables(study: dict) -> str:
  """Markdown: spectral FD trained / oracle per variant × sampler × NFE; at the largest NFE the
  trained/oracle ratio, the band ratios trained (oracle) and the full FD."""
  nfes = study["nfes"]
  top = nfes[-1]
  rows = []
  for name, v in study["variants"].items():
    points = v["points"]
    for sampler in v["samplers"]:
      cells = []
      for n in nfes:
        t, o = points.get(f"trained/{sampler}/{n}"), points.get(f"oracle/{sampler}/{n}")
        cells.append(" / ".join(harness.fmt(p["spectral_fd"]) if p else "—" for p in (t, o)))
      rows.append([name, sampler, *cells])
  by_nfe = harness.markdown_table(
    "Spectral FD to the true law, trained network / oracle (lower is better):",
    ["variant", "sampler", *map(str, nfes)],
    rows,
    "|---|---|" + "---:|" * len(nfes),
  )
  rows = []
  for name, v in study["variants"].items():
    for sampler in v["samplers"]:
      t, o = v["points"].get(f"trained/{sampler}/{top}"), v["points"].get(f"oracle/{sampler}/{top}")
      if t is None or o is None:
        continue
      bands = [f"{t[b]:.3f} ({o[b]:.3f})" for b in BANDS]
      rows.append(
        [name, sampler, f"{t['spectral_fd'] / o['spectral_fd']:.2f}", *bands, f"{t['fd']:.2f} ({o['fd']:.2f})"]
      )
  at_top = harness.markdown_table(
    f"At {top} NFE: trained / oracle spectral FD, variance kept per band trained (oracle; 1 is exact), full FD:",
    ["variant", "sampler", "trained / oracle", "low (k+l<8)", "mid", "high (k+l≥H)", "full FD"],
    rows,
    "|---|---|---:|---:|---:|---:|---:|",
  )
  return by_nfe + "\n\n" + at_top


def main() -> None:
  parser = harness.parser(
    __doc__, out=harness.REPO / "runs" / "fields", tables="only print the tables of --results' JSON"
  )
  harness.variant_arguments(parser, VARIANTS)
  args = parser.parse_args()
  path = args.results / "quality_fields.json"
  if args.tables:
    print(tables(harness.read_json(path)))
    return
  args.out.mkdir(parents=True, exist_ok=True)
  timings: dict = {}
  for variant in args.train:
    train(variant, args.seed, args.out, timings)
  study = {
    "study": "fields",
    "point_names": "denoiser/sampler/NFE (denoiser: trained = EMA network, oracle = exact posterior mean)",
    "num_images": 1024,
    "sample_seed": SAMPLE_SEED,
    "training_seed": args.seed,
    "nfes": list(NFES),
    "variants": {},
    "timings": timings,
  }
  for variant in args.variants:
    record = evaluate_variant(variant, args.seed, args.out, timings)
    study["variants"][variant] = {
      "description": VARIANTS[variant][0],
      "samplers": list(SAMPLERS.get(variant, DEFAULT_SAMPLERS)),
      "trained": record.get("trained", False),
      "levels": record.get("levels", []),
      "points": {k: {m: v for m, v in p.items() if m != "ring_ratios"} for k, p in record["points"].items()},
      "ring_ratios": {k: p["ring_ratios"] for k, p in record["points"].items() if "ring_ratios" in p},
    }
  # variants this run did not measure keep their earlier record; all in VARIANTS' order
  study["variants"] = harness.merge_with_earlier(path, "variants", study["variants"], VARIANTS)
  harness.publish(path, study, tables(study))


if __name__ == "__main__":
  main()
