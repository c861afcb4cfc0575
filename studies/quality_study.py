"""Sample-quality studies on the digits: which level table, loss and parameterisation make the
paper's Momentum Sampler good, measured with the project's own metrics.

    python studies/quality_study.py --study accounting --seeds 0 1 --inception
    python studies/quality_study.py --study levels --seeds 0 1
    python studies/quality_study.py --study loss --seeds 0 1 2
    python studies/quality_study.py --study ve --seeds 0 --priors forward
    python studies/quality_study.py --study precond --seeds 0 --variants precond paper

Each variant is configs/digits.py with a few overrides (VARIANTS), except `ve`, which is
configs/digits_ve.py (the VE baseline); each (variant, training seed)
is trained with the CLI a user would run,

    python -m soft_diffusion.main --config configs/digits.py --workdir OUT/<variant>_s<seed> --config.seed=<seed> ...

(resumed if interrupted; a variant whose levels come from a pairing first runs the level
selection into its workdir), then sampled in this process (EMA parameters of the last
checkpoint, p_1 as the config says, sample seed 0, 256 images per point) with the Momentum and
naive samplers at 50, 100 and 200 NFE (the `ve` study: 20, 50 and 100, and the VE run with
score_sde's predictor-corrector sampler `pc` and with Momentum). Per point it measures, against the real train digits:

* pixel-space KID (×10³; `evaluation.spectral.pixel_kid`, 100 subsets of 256): cheap, and on
  16×16 grey images the pixels describe everything;
* the DCT ring variances (`evaluation.spectral.ring_report`): `ratio_high`, the variance over
  the rings 12 ≤ k+l < 20 relative to the real digits' (fine detail: 1 is right), and
  `top_excess_std`, the standard deviation in excess of the real digits' over the rings
  k+l ≥ 20, where the upsampled digits have almost no power (noise left in the samples);
* with --inception, FID and KID (×10³) with the project's Inception-v3 against the train
  split's statistics (`--mode stats`, computed once into OUT/reference and shared); at every
  point, or with `--inception POINT ...` only at those (about 1.5 min per point on 2 CPU cores).

The `precond` study (the per-coefficient preconditioning against the paper's form, docs/method.md
§2.4) draws 1,024 samples per point at 20 and 100 NFE, with the sampler's end as a factor: a
sampler name 'momentum:denoise' is the Momentum Sampler with sample.final = 'denoise'.

The real held-out digits (the validation split, 180 images) are measured the same way, as the
floor. Each run's numbers are kept in OUT/<variant>_s<seed>/quality.json (a rerun skips the
points it holds); the study's are written to --results (docs/results/quality_<study>.json) with
the wall time of each stage (a variant this run did not touch keeps its earlier record there), and
the tables (mean ± std over training seeds) are printed.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import pathlib
import time

import harness  # studies/, beside this script
import numpy as np

from soft_diffusion.run.workdir import Workdir

# DIGITS_BLUR_LEVELS_JOINT (the 'joint' variant) and DIGITS_BLUR_LEVELS
digits_levels = harness.config_module("digits")
SAMPLERS = ("momentum", "naive")
NFES = (50, 100, 200)
NUM_SAMPLES = 256
SAMPLE_SEED = 0

# variant -> (what it is, config overrides, level pairing to select into the workdir or None)
VARIANTS: dict[str, tuple[str, dict, str | None]] = {
  "joint": (
    "levels.pairing = joint (configs/digits.py's table from 4ce04ed until this study)",
    {"corruption.blur_sigma_table": digits_levels.DIGITS_BLUR_LEVELS_JOINT},
    None,
  ),
  "candidate": ("levels.pairing = candidate (configs/digits.py's table before 4ce04ed and now)", {}, None),
  "blur": ("levels.pairing = blur (the blur term alone)", {}, "blur"),
  "joint_min_blur": ("levels.pairing = joint_min_blur (every hop at least half blur)", {}, "joint_min_blur"),
  # on the default (candidate) table:
  "floor": ("loss.floor = 0.3", {"loss.floor": 0.3}, None),
  "lag": ("loss.lag = 0.02 (A_t = C_{t-0.02}: one sampler step at 50 NFE)", {"loss.lag": 0.02}, None),
  "wiener": ("model.skip = wiener (Wiener-gain skip per DCT frequency)", {"model.skip": "wiener"}, None),
  "wiener_lag": ("model.skip = wiener and loss.lag = 0.02", {"model.skip": "wiener", "loss.lag": 0.02}, None),
  # the per-coefficient preconditioning (docs/method.md §2.4), on the default table:
  "paper": (
    "the paper's loss and residual form (model.precond = none)",
    {"model.precond": "none", "loss.floor": 0.0},
    None,
  ),
  "precond": (
    "model.precond = spectral, c_in scalar",
    {"model.precond": "spectral", "model.precond_c_in": "scalar"},
    None,
  ),
  "precond_coef": (
    "model.precond = spectral, c_in per coefficient",
    {"model.precond": "spectral", "model.precond_c_in": "coefficient"},
    None,
  ),
  # the VE baseline (its own config):
  "ve": (
    "configs/digits_ve.py (C_t = I, score_sde's VE recipe scaled to the digits)",
    {"model.precond": "none", "loss.weighting": "inverse_noise_var", "model.output_scale": "noise_std"},
    None,
  ),
  "ve_precond": (
    "configs/digits_ve.py with EDM's recipe (C_t = I): the preconditioning and the log-normal density",
    {
      "model.precond": "spectral",
      "loss.weighting": "uniform",
      "model.output_scale": "none",
      "train.t_density": "lognormal",
    },
    None,
  ),
}
# Every digits variant states its skip (the residual form unless it says otherwise), so that a
# change of configs/digits.py's default cannot change what a variant's name stands for.
BASE_OVERRIDES = {"model.skip": "identity"}
# variant -> config (FILE:FORM); others: DIGITS_CONFIG. Every variant loads its config in a named
# form (schema.apply_form) and states the rest, so that a change of a config's default
# form cannot change what a variant's name stands for.
DIGITS_CONFIG = "configs/digits.py:paper"
VE_CONFIG = "configs/digits_ve.py:score_sde"
VARIANT_CONFIGS = {"ve": VE_CONFIG, "ve_precond": VE_CONFIG}
VARIANT_SAMPLERS = {"ve": ("pc", "momentum")}  # variant -> samplers; others: SAMPLERS
# A sampler name may carry the sampler's end: 'momentum:denoise' is sample.final = 'denoise'.
PRECOND_SAMPLERS = ("momentum:noise", "momentum:denoise", "multistep:denoise", "multistep_sde:denoise")
STUDY_SAMPLERS = {"precond": {"ve": ("pc", "momentum:denoise"), "ve_precond": ("pc", "momentum:denoise")}}
STUDIES = {
  "accounting": ("joint", "candidate"),
  "levels": ("joint", "candidate", "blur", "joint_min_blur"),
  "loss": ("candidate", "floor", "lag", "wiener", "wiener_lag"),
  "ve": ("candidate", "ve"),  # blur + Momentum against VE + PC (score_sde's noise removal at the end)
  "precond": ("paper", "precond", "precond_coef", "ve", "ve_precond"),
}
STUDY_NFES = {"ve": (20, 50, 100), "precond": (10, 20, 50, 100)}  # study -> NFE; others: NFES
STUDY_NUM_SAMPLES = {"precond": 1024}  # study -> samples per point; others: NUM_SAMPLES


def samplers_of(study: str, variant: str) -> tuple[str, ...]:
  if study == "precond":
    return STUDY_SAMPLERS["precond"].get(variant, PRECOND_SAMPLERS)
  return VARIANT_SAMPLERS.get(variant, SAMPLERS)


def config_of(variant: str) -> str:
  """The config (FILE:FORM) of a variant."""
  return VARIANT_CONFIGS.get(variant, DIGITS_CONFIG)


def make_config(overrides: dict, seed: int, variant: str = "candidate"):
  return harness.make_config(config_of(variant), overrides, seed)


def select_table(variant: str, pairing: str, workdir: pathlib.Path) -> tuple[float, ...]:
  """The levels of `pairing` on the digits, selected into WORKDIR (levels.json and .png)."""
  from soft_diffusion.run import settings as settings_lib
  from soft_diffusion.run.modes import levels

  path = Workdir.of(workdir).levels_file
  if not path.is_file():
    config = make_config({"levels.pairing": pairing}, 0)
    path = levels.write_levels(settings_lib.load(config), workdir)
  sigmas = tuple(round(s, 4) for s in json.loads(path.read_text())["sigmas"])
  print(f"{variant}: levels {sigmas[:5]} ... {sigmas[-1]}", flush=True)
  return sigmas


def train(variant: str, seed: int, out: pathlib.Path, timings: dict) -> dict:
  """Trains (unless done) and returns the overrides the run used."""
  _, overrides, pairing = VARIANTS[variant]
  workdir = out / f"{variant}_s{seed}"
  workdir.mkdir(parents=True, exist_ok=True)
  overrides = {**BASE_OVERRIDES, **overrides} if config_of(variant) == DIGITS_CONFIG else dict(overrides)
  if pairing is not None:
    overrides["corruption.blur_sigma_table"] = select_table(variant, pairing, workdir)
  config = make_config(overrides, seed, variant)
  flags = [f"--config.seed={seed}", *harness.override_flags(overrides)]
  harness.train_unless_done(workdir, config_of(variant), flags, num_steps=config.train.total_steps, timings=timings)
  return overrides


class Reference:
  """The real digits, their Inception statistics (when asked for) and the held-out floor."""

  def __init__(self, out: pathlib.Path, inception: bool, timings: dict, inception_points: set[str] | None = None):
    from soft_diffusion import data, evaluation
    from soft_diffusion.run import settings as settings_lib
    from soft_diffusion.run.modes import evaluate_fid

    self.settings = settings_lib.load(harness.load_config(DIGITS_CONFIG))

    def split(name):
      cfg = self.settings.data
      ds = data.make_dataset(cfg, split=name, batch_size=256, seed=0, train=False)
      return np.concatenate([np.asarray(evaluation.to_uint8(b)) for b in ds])

    self.train, self.held_out = split("train"), split("validation")
    self.inception = None
    self.inception_points = inception_points  # None: every point
    if inception:
      workdir = out / "reference"
      path = evaluate_fid.stats_path(workdir, self.settings)
      if not path.is_file():
        workdir.mkdir(parents=True, exist_ok=True)
        args = ["--config", DIGITS_CONFIG, "--workdir", str(workdir), "--mode", "stats"]
        harness.timed(timings, "reference/stats", lambda: harness.run_cli(args, workdir / "stats.log"))
      self.inception = evaluate_fid.load_reference(path, self.settings, "")[:2]

  def measure(self, images: np.ndarray, inception: bool = True) -> dict:
    from soft_diffusion import evaluation
    from soft_diffusion.evaluation import spectral

    kid_mean, kid_std = spectral.pixel_kid(images, self.train, num_subsets=100, subset_size=256, seed=0)
    record = {"pixel_kid_e3": 1e3 * kid_mean, "pixel_kid_std_e3": 1e3 * kid_std}
    report = spectral.ring_report(images, self.train)
    record.update({k: report[k] for k in ("ratio_high", "top_excess_std", "top_std", "ring_ratios")})
    if self.inception is not None and inception:
      stats, kid_ref = self.inception
      feats = evaluation.inception_features(images, params=evaluation.load_inception_params())
      kid_mean, kid_std = evaluation.kid(feats, kid_ref, num_subsets=100, subset_size=min(256, len(images)), seed=0)
      record.update({"fid": evaluation.fid(feats, stats), "kid_e3": 1e3 * kid_mean, "kid_std_e3": 1e3 * kid_std})
    return record


def noisy_draw_prior(run):
  """p_1 as this project fitted it before the noise was added exactly: a sample covariance of
  noisy draws C_1 x_0 + s_1 η (the same images and noise keys as that code used)."""
  import jax
  import jax.numpy as jnp

  from soft_diffusion import priors
  from soft_diffusion.run.modes import sample

  images = sample.load_training_images(run.settings, run.settings.train.prior_num_images)
  corrupt = jax.jit(lambda x, k: run.corruption.corrupt(x, jnp.ones(x.shape[0]), jax.random.normal(k, x.shape)))
  key = jax.random.key(run.settings.seed + 1)
  starts = range(0, len(images), 256)
  x1 = [np.asarray(corrupt(images[i : i + 256], jax.random.fold_in(key, j))) for j, i in enumerate(starts)]
  return priors.fit_gaussian_prior(np.concatenate(x1), 0.0)


def point_prior(run, name: str):
  """p_1 of a point: 'gaussian' (WORKDIR/prior.npz: the Gaussian fit, noise added exactly),
  'noisy_fit' (the earlier fit) or 'forward' (the exact forward marginal over the training images)."""
  from soft_diffusion import priors
  from soft_diffusion.run.modes import sample

  if name == "gaussian":
    settings = dataclasses.replace(run.settings, sample=dataclasses.replace(run.settings.sample, prior="gaussian"))
    return sample.make_prior(settings, run.corruption, run.workdir)
  if name == "noisy_fit":
    return noisy_draw_prior(run)
  return priors.ForwardPrior(sample.load_training_images(run.settings, run.settings.train.prior_num_images))


def inception_at(point: str, ref: Reference) -> bool:
  """Inception FID/KID (when asked for) at the points of every p_1 but the earlier noisy fit
  (whose pixel measures show it apart; the Inception costs 1-4 min per point on 2 CPU cores)."""
  if ref.inception is None or point.endswith("/noisy_fit"):
    return False
  return ref.inception_points is None or point in ref.inception_points


def point_names(prior_names, samplers=SAMPLERS, nfes=NFES) -> list[str]:
  """'sampler/NFE' for the default prior, 'sampler/NFE/prior' for the others."""
  return [f"{s}/{n}" + ("" if p == "gaussian" else f"/{p}") for p in prior_names for s in samplers for n in nfes]


def evaluate_run(
  variant: str,
  seed: int,
  overrides: dict,
  out: pathlib.Path,
  ref: Reference,
  timings: dict,
  prior_names=("gaussian",),
  nfes=NFES,
  samplers=None,
  num_samples=NUM_SAMPLES,
  only: set[str] | None = None,
) -> dict:
  import jax

  from soft_diffusion.run.modes import sample

  workdir = out / f"{variant}_s{seed}"
  path = workdir / "quality.json"
  record = harness.read_json(path, {"points": {}})
  want = point_names(prior_names, samplers or VARIANT_SAMPLERS.get(variant, SAMPLERS), nfes)
  if only is not None:
    want = [p for p in want if p in only]

  @functools.cache
  def run():  # only when a point is missing
    return sample.load_run(Workdir.of(workdir).settings(make_config(overrides, seed, variant)), workdir)

  @functools.cache
  def prior(name: str):
    return jax.device_put(point_prior(run(), name))

  def measure(point: str) -> dict:
    sampler, nfe, *rest = point.split("/")
    sampler, _, end = sampler.partition(":")  # 'momentum:denoise': sample.final = 'denoise'
    cfg = dataclasses.replace(
      run().settings.sample, sampler=sampler, num_steps=int(nfe), seed=SAMPLE_SEED, final=end or "auto"
    )
    t0 = time.perf_counter()
    images = dataclasses.replace(run(), prior=prior(rest[0] if rest else "gaussian")).draw(
      cfg, num_samples, progress=False
    )
    sampled = round(time.perf_counter() - t0, 1)
    result = {**ref.measure(images, inception_at(point, ref)), "sampling_seconds": sampled}
    print(f"{variant}_s{seed} {point}: " + short(result), flush=True)
    return result

  start = time.perf_counter()
  redo = lambda point, held: "fid" not in held and inception_at(point, ref)  # the Inception asked for later
  if harness.measure_points(path, want, measure, record=record, redo=redo):
    timings[f"{variant}_s{seed}/eval"] = round(time.perf_counter() - start, 1)
  return record


def short(p: dict) -> str:
  text = (
    f"pixel KID×1e3 {p['pixel_kid_e3']:.3f}  high ratio {p['ratio_high']:.2f}  top excess std {p['top_excess_std']:.4f}"
  )
  if "fid" in p:
    text += f"  FID {p['fid']:.1f}  KID×1e3 {p['kid_e3']:.2f}"
  return text


METRICS = {
  "fid": ("FID", "{:.1f}"),
  "kid_e3": ("KID ×10³ (Inception)", "{:.1f}"),
  "pixel_kid_e3": ("pixel KID ×10³", "{:.2f}"),
  "ratio_high": ("variance ratio, rings 12–19", "{:.2f}"),
  "top_excess_std": ("excess std, rings ≥ 20", "{:.4f}"),
}


def priors_in(study: dict) -> list[str]:
  """The p_1 of the study's points: 'gaussian' (point 'sampler/NFE'), then the others named."""
  points = {p for v in study["variants"].values() for r in v["runs"].values() for p in r}
  named = {p.split("/")[2] for p in points if p.count("/") == 2}
  return ["gaussian"] + sorted(named)


def tables(study: dict, metrics=tuple(METRICS)) -> str:
  """Markdown: per metric, variant × sampler rows, NFE columns, mean ± std (ddof 0) over training seeds."""
  lines = []
  floor = study["held_out"]
  nfes = study.get("nfes", NFES)
  for key, (label, fmt) in METRICS.items():
    if key not in metrics:
      continue
    if not any(key in p for v in study["variants"].values() for r in v["runs"].values() for p in r.values()):
      continue
    held_out = f"; real held-out digits: {fmt.format(floor[key])}" if key in floor else ""
    caption = "mean ± std (ddof 0) over the training seeds, their number in parentheses; a value without ± is one seed"
    lines += [f"\n{label} ({caption}{held_out})\n"]
    lines += ["| variant | sampler | " + " | ".join(str(n) for n in nfes) + " |", "|---|---|" + "---:|" * len(nfes)]
    for name, v in study["variants"].items():
      samplers = v.get("samplers", SAMPLERS)
      for sampler, prior in [(s, p) for p in priors_in(study) for s in samplers]:
        cells = []
        for nfe in nfes:
          point = f"{sampler}/{nfe}" + ("" if prior == "gaussian" else f"/{prior}")
          vals = [r[point][key] for r in v["runs"].values() if key in r.get(point, {})]
          if not vals:
            cells.append("—")
          elif len(vals) == 1:
            cells.append(fmt.format(vals[0]))
          else:
            cells.append(f"{fmt.format(np.mean(vals))} ± {fmt.format(np.std(vals))} ({len(vals)})")
        label = sampler if prior == "gaussian" else f"{sampler}, p₁ {prior}"
        if any(c != "—" for c in cells):  # a row without any measured point is left out
          lines.append(f"| {name} | {label} | " + " | ".join(cells) + " |")
  return "\n".join(lines)


def main() -> None:
  parser = harness.parser(
    __doc__,
    out=harness.REPO / "runs" / "quality",
    tables="only print the tables of the study's JSON in --results (runs nothing)",
  )
  parser.add_argument("--study", choices=sorted(STUDIES), required=True)
  parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
  parser.add_argument("--variants", nargs="+", help="a subset of the study's variants")
  parser.add_argument("--metrics", nargs="+", default=list(METRICS), choices=list(METRICS), help="tables to print")
  parser.add_argument(
    "--inception",
    nargs="*",
    metavar="POINT",
    help="also FID and KID with the Inception-v3: at every point, or only at those named (momentum/100/forward)",
  )
  parser.add_argument(
    "--only",
    nargs="+",
    metavar="POINT",
    help="evaluate only these points (e.g. momentum:denoise/100/forward); the others keep their records",
  )
  parser.add_argument(
    "--priors",
    nargs="+",
    choices=("gaussian", "noisy_fit", "forward"),
    help="p_1 of the points (default: gaussian; the accounting study: all three)",
  )
  args = parser.parse_args()
  if args.tables:
    print(tables(harness.read_json(args.results / f"quality_{args.study}.json"), args.metrics))
    return
  variants = args.variants or STUDIES[args.study]
  nfes = STUDY_NFES.get(args.study, NFES)
  prior_names = tuple(
    args.priors or (("gaussian", "noisy_fit", "forward") if args.study == "accounting" else ("gaussian",))
  )
  num_samples = STUDY_NUM_SAMPLES.get(args.study, NUM_SAMPLES)
  known = {p for v in variants for p in point_names(prior_names, samplers_of(args.study, v), nfes)}
  for flag, points in (("--inception", args.inception), ("--only", args.only)):
    unknown = sorted(set(points or ()) - known)
    if unknown:
      parser.error(f"{flag}: unknown points {unknown}; this study has {sorted(known)} (with --priors as given)")
  args.out.mkdir(parents=True, exist_ok=True)
  timings: dict = {}
  overrides = {(v, s): train(v, s, args.out, timings) for s in args.seeds for v in variants}
  ref = Reference(args.out, args.inception is not None, timings, set(args.inception) if args.inception else None)
  study = {
    "study": args.study,
    "point_names": "sampler/NFE: p_1 = the Gaussian fit (noise added exactly); sampler/NFE/prior: that p_1",
    "config": "configs/digits.py",
    "num_samples": num_samples,
    "nfes": list(nfes),
    "sample_seed": SAMPLE_SEED,
    "priors": list(prior_names),
    "reference": f"train split ({len(ref.train)} digits)",
    "held_out": {k: v for k, v in ref.measure(ref.held_out).items() if k != "ring_ratios"},
    "variants": {},
    "timings": timings,
  }
  study["held_out"]["num_images"] = len(ref.held_out)
  for v in variants:
    runs = {}
    for s in args.seeds:
      record = evaluate_run(
        v,
        s,
        overrides[v, s],
        args.out,
        ref,
        timings,
        prior_names,
        nfes,
        samplers_of(args.study, v),
        num_samples,
        set(args.only) if args.only else None,
      )
      runs[str(s)] = record["points"]
    levels = overrides[v, args.seeds[0]].get("corruption.blur_sigma_table", digits_levels.DIGITS_BLUR_LEVELS)
    samplers = samplers_of(args.study, v)
    study["variants"][v] = {"description": VARIANTS[v][0], "samplers": list(samplers), "runs": runs}
    if config_of(v) == DIGITS_CONFIG:
      study["variants"][v]["levels"] = list(levels)
  path = args.results / f"quality_{args.study}.json"
  # variants this run did not touch keep their earlier record; all in VARIANTS' order
  study["variants"] = harness.merge_with_earlier(path, "variants", study["variants"], VARIANTS)
  study["priors"] = priors_in(study)  # of every variant's points, this run's and the earlier
  harness.publish(path, study, tables(study, args.metrics))


if __name__ == "__main__":
  main()
