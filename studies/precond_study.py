"""Training that learns what the samplers read, on the Gaussian fields (every number an exact
distance to the true law): the paper's loss and residual form, `loss.floor`, and the
per-coefficient preconditioning (`model.precond = 'spectral'`, both c_in forms, and with
deliberately wrong spectra), with the sampler's end (`sample.final`) as a second factor; the VE
twin with score_sde's recipe and with EDM's preconditioning.

    python studies/precond_study.py --train precond precond_coef paper   # trains what is missing, then measures
    python studies/precond_study.py --variants precond paper              # measures (oracle-only if untrained)
    python studies/precond_study.py --tables                              # docs/results/precond_fields.json

Each variant is a config with a few overrides (VARIANTS), trained with the CLI a user would run

    python -m soft_diffusion.main --config CONFIG --workdir OUT/<variant>_s<seed> --config.seed=<seed> ...

(skipped when its last checkpoint exists; never start this beside another process training the
same workdir), then sampled in this process with the trained network (EMA parameters of the last
checkpoint) and with the exact posterior mean (the oracle: the floor a perfect network reaches)
through the same sampler, prior, levels and sample seed (0), 1,024 samples per point. Points are
'denoiser/sampler/NFE/end'. The oracle points depend on the corruption only, so they are
measured once per corruption (OUT/oracle_blur, OUT/oracle_ve).

Per point (`evaluation.exact.exact_metrics` against N(0, diag v)): the spectral Fréchet distance,
the full FD, and the variance kept per band (low k+l < 8, mid, high k+l ≥ H; 1 is exact). Each
run's points are kept in its folder (precond_quality.json; a rerun skips the points it holds);
the study's go to --results/precond_fields.json with the wall time of each stage (a variant this
run did not measure keeps its earlier record there), and the tables are printed.
"""

from __future__ import annotations

import dataclasses
import functools
import pathlib
import time

import field_study  # studies/, beside this script
import harness

from soft_diffusion.run.workdir import Workdir

BLUR = "configs/gaussian_field.py"
VE = "configs/gaussian_field_ve.py"
# Every variant states its parameterisation and loss, so that a change of a config's default cannot
# change what a variant's name stands for.
COMMON = {"loss.floor": 0.0, "loss.weighting": "uniform", "model.skip": "identity", "train.t_density": "uniform"}
PAPER = {**COMMON, "model.precond": "none"}
PRECOND = {**COMMON, "model.precond": "spectral"}
VE_RECIPE = {
  "loss.floor": 0.0,
  "model.skip": "identity",
  "model.precond": "none",
  "loss.weighting": "inverse_noise_var",
  "model.output_scale": "noise_std",
  "train.t_density": "uniform",
}
VE_EDM = {
  "loss.floor": 0.0,
  "model.skip": "identity",
  "model.precond": "spectral",
  "loss.weighting": "uniform",
  "model.output_scale": "none",
  "train.t_density": "lognormal",
}
# variant -> (what it is, config file, overrides)
VARIANTS: dict[str, tuple[str, str, dict]] = {
  "paper": ("the paper's loss (weight c_t²) and residual form h = x_t + φ", BLUR, PAPER),
  "floor": ("the paper's form with loss.floor = 0.3", BLUR, {**PAPER, "loss.floor": 0.3}),
  "precond": ("model.precond = spectral, c_in scalar (EDM's form)", BLUR, {**PRECOND, "model.precond_c_in": "scalar"}),
  "precond_coef": (
    "model.precond = spectral, c_in per coefficient (x_t whitened)",
    BLUR,
    {**PRECOND, "model.precond_c_in": "coefficient"},
  ),
  "precond_flat": (
    "model.precond = spectral with a wrong, flat spectrum (c_in scalar)",
    BLUR,
    {**PRECOND, "model.precond_c_in": "scalar", "model.precond_spectrum": "flat"},
  ),
  "precond_tilted": (
    "model.precond = spectral with a wrong spectrum, tilted ×2 per octave (c_in scalar)",
    BLUR,
    {**PRECOND, "model.precond_c_in": "scalar", "model.precond_spectrum": "tilted"},
  ),
  "ve": ("VE twin, score_sde's recipe (σ² weighting, output × s_t)", VE, VE_RECIPE),
  "ve_precond": (
    "VE twin, EDM's recipe (C_t = I): the preconditioning with the data's spectrum and the log-normal density",
    VE,
    VE_EDM,
  ),
  "precond_lognormal": (
    "model.precond = spectral (c_in scalar) and train.t_density = lognormal",
    BLUR,
    {**PRECOND, "model.precond_c_in": "scalar", "train.t_density": "lognormal"},
  ),
}
FAMILY = {"ve": "ve", "ve_precond": "ve"}  # variant -> corruption family of its oracle; others: blur
# (sampler, NFE, end) per family
POINTS = {
  "blur": [
    ("momentum", 100, "noise"),
    ("momentum", 100, "denoise"),
    ("momentum", 20, "noise"),
    ("momentum", 20, "denoise"),
    ("multistep", 20, "noise"),
    ("multistep", 20, "denoise"),
    ("multistep", 10, "denoise"),
    ("multistep_sde", 50, "noise"),
    ("multistep_sde", 50, "denoise"),
  ],
  "ve": [
    ("pc", 100, "denoise"),
    ("momentum", 100, "noise"),
    ("momentum", 100, "denoise"),
    ("multistep", 20, "noise"),
    ("multistep", 20, "denoise"),
  ],
}
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


def point_names(family: str, denoiser: str) -> list[str]:
  return [f"{denoiser}/{s}/{n}/{end}" for s, n, end in POINTS[family]]


def measure(points: list[str], folder: pathlib.Path, setup, label: str) -> dict:
  """The points of `points` missing from folder/precond_quality.json, measured and added."""
  import jax

  from soft_diffusion import data, gaussian_field
  from soft_diffusion.evaluation import exact
  from soft_diffusion.run.modes import sample

  path = folder / "precond_quality.json"
  record = harness.read_json(path, {"points": {}})

  @functools.cache
  def context():  # only when a point is missing
    settings, corruption, prior, params, net, precond, skip = setup()
    v = data.exact_spectrum(settings.data)[..., 0]
    oracle = gaussian_field.oracle_denoiser(corruption, v)
    return settings, corruption, jax.device_put(prior), params, net, precond, skip, v, oracle

  def one(point: str) -> dict:
    settings, corruption, prior, params, net, precond, skip, v, oracle = context()
    denoiser, sampler, nfe, end = point.split("/")
    cfg = dataclasses.replace(settings.sample, sampler=sampler, num_steps=int(nfe), seed=SAMPLE_SEED, final=end)
    kwargs = {"denoise_fn": oracle} if denoiser == "oracle" else {"skip": skip, "precond": precond}
    draw_fn = sample.make_draw_fn(net, corruption, cfg, raw=True, **kwargs)
    t0 = time.perf_counter()
    images = sample.draw(draw_fn, params, prior, cfg, settings.eval.num_images, raw=True)
    metrics = exact.exact_metrics(images, v)
    print(f"{label} {point}: " + field_study.short(metrics), flush=True)
    return {**metrics, "num_images": len(images), "seconds": round(time.perf_counter() - t0, 1)}

  harness.measure_points(path, points, one, record=record)
  return record


def loss_floor(settings, workdir: pathlib.Path, bins: int) -> list[float]:
  """The lowest loss any network can reach with this run's preconditioning, per equal bin of t
  (t uniform): the exact posterior mean's, per coefficient (true posterior variance)/c_out², with
  c_out from the spectrum the run preconditions with (exact for Gaussian data; 2,000 t per bin)."""
  import jax.numpy as jnp
  import numpy as np

  from soft_diffusion import corruptions, data, preconditioning

  corruption = corruptions.make(settings.corruption)
  v = data.exact_spectrum(settings.data)[..., 0]
  used = preconditioning.spectrum_for(v, settings.model.precond_spectrum)[..., 0]
  floors = []
  for b in range(bins):
    t = np.linspace(b / bins, (b + 1) / bins, 2001)[:-1]
    _, c = corruption.diagonal(jnp.asarray(t, jnp.float32), *v.shape)
    c = np.asarray(c, np.float64)
    s2 = np.square(np.asarray(corruption.noise_std(jnp.asarray(t, jnp.float32)), np.float64))[:, None, None]
    posterior = v * s2 / (c**2 * v + s2)
    c_out2 = used * s2 / (c**2 * used + s2)
    floors.append(float(np.mean(posterior / c_out2)))
  return floors


def evaluate(variant: str, seed: int, out: pathlib.Path, timings: dict) -> dict:
  """{'trained': points or None, 'oracle': the family's oracle points}."""
  from soft_diffusion import corruptions
  from soft_diffusion.run.modes import levels, sample

  family = FAMILY.get(variant, "blur")
  workdir = out / f"{variant}_s{seed}"
  config = make_config(variant, seed)
  start = time.perf_counter()

  def oracle_setup():
    folder = out / f"oracle_{family}"
    folder.mkdir(parents=True, exist_ok=True)
    settings = levels.select_missing_levels(Workdir.of(folder).settings(config, resolve_levels=False), folder)
    corruption = corruptions.make(settings.corruption)
    prior = sample.make_prior(settings, corruption, folder, fit_missing=True)
    return settings, corruption, prior, None, None, None, None

  result = {"oracle": measure(point_names(family, "oracle"), out / f"oracle_{family}", oracle_setup, family)["points"]}
  if harness.finished(workdir, config.train.total_steps):

    def trained_setup():
      run = sample.load_run(Workdir.of(workdir).settings(config), workdir)
      return run.settings, run.corruption, run.prior, run.params, run.network, run.precond, run.skip

    trained = measure(point_names(family, "trained"), workdir, trained_setup, f"{variant}_s{seed}")
    result["trained"] = trained["points"]
    settings = Workdir.of(workdir).settings(config)
    if settings.model.precond != "none":  # the loss against its floor, per bin of t
      last = Workdir.of(workdir).read_metrics()[-1]
      bins = settings.train.loss_bins
      names = [f"loss_t{b / bins:.2f}-{(b + 1) / bins:.2f}" for b in range(bins)]
      uniform = settings.train.t_density == "uniform"
      result["loss"] = {
        "final_by_t": [last.get(n) for n in names],
        "floor_by_t": loss_floor(settings, workdir, bins) if uniform else None,
      }
  timings[f"{variant}_s{seed}/eval"] = round(time.perf_counter() - start, 1)
  return result


def tables(study: dict) -> str:
  """Markdown: per variant and (sampler, NFE, end), spectral FD trained / oracle and their ratio,
  and the variance kept per band (trained)."""
  rows = []
  for name, v in study["variants"].items():
    trained, oracle = v.get("trained") or {}, v["oracle"]
    for sampler, nfe, end in POINTS[FAMILY.get(name, "blur")]:
      t, o = trained.get(f"trained/{sampler}/{nfe}/{end}"), oracle.get(f"oracle/{sampler}/{nfe}/{end}")
      if t is None or o is None:
        continue
      bands = " / ".join(f"{t[b]:.2f}" for b in BANDS)
      ratio = t["spectral_fd"] / o["spectral_fd"]
      rows.append(
        [name, sampler, nfe, end, harness.fmt(t["spectral_fd"]), harness.fmt(o["spectral_fd"]), f"{ratio:.2f}", bands]
      )
  header = ["variant", "sampler", "NFE", "end", "trained", "oracle", "ratio", "variance kept, low / mid / high"]
  caption = (
    "Spectral FD to the true law of the fields (lower is better; trained network and the exact "
    "posterior mean through the same sampler), 1,024 samples, training seed "
    f"{study['training_seed']}; the variance kept per band of the trained samples (1 is exact):"
  )
  table = harness.markdown_table(caption, header, rows, "|---|---|---:|---|---:|---:|---:|---|")
  loss_rows = []
  for name, v in study["variants"].items():
    loss = v.get("loss")
    if loss and loss.get("floor_by_t"):
      cells = [f"{a:.4f} / {b:.4f}" for a, b in zip(loss["final_by_t"], loss["floor_by_t"], strict=True)]
      loss_rows.append([name, *cells])
  if not loss_rows:
    return table
  caption = (
    "The preconditioned loss at the end of training (the last 100 steps' mean) / the lowest any "
    "network can reach with that preconditioning (the exact posterior mean's), per quarter of t:"
  )
  header = ["variant", "t < 0.25", "0.25–0.5", "0.5–0.75", "t ≥ 0.75"]
  return table + "\n\n" + harness.markdown_table(caption, header, loss_rows, "|---|---:|---:|---:|---:|")


def main() -> None:
  parser = harness.parser(
    __doc__, out=harness.REPO / "runs" / "precond" / "fields", tables="only print the tables of --results' JSON"
  )
  harness.variant_arguments(parser, VARIANTS)
  args = parser.parse_args()
  path = args.results / "precond_fields.json"
  if args.tables:
    print(tables(harness.read_json(path)))
    return
  args.out.mkdir(parents=True, exist_ok=True)
  timings: dict = {}
  for variant in args.train:
    train(variant, args.seed, args.out, timings)
  study = {
    "study": "precond_fields",
    "point_names": "denoiser/sampler/NFE/end (trained: EMA network; oracle: exact posterior mean; end: sample.final)",
    "num_images": 1024,
    "sample_seed": SAMPLE_SEED,
    "training_seed": args.seed,
    "variants": {},
    "timings": timings,
  }
  for variant in args.variants:
    study["variants"][variant] = {
      "description": VARIANTS[variant][0],
      "config": VARIANTS[variant][1],
      "overrides": VARIANTS[variant][2],
      **evaluate(variant, args.seed, args.out, timings),
    }
  study["variants"] = harness.merge_with_earlier(path, "variants", study["variants"], VARIANTS)
  earlier = harness.read_json(path, {}).get("timings", {})
  study["timings"] = {**earlier, **timings}  # a rerun that measured nothing keeps the earlier times
  harness.publish(path, study, tables(study))


if __name__ == "__main__":
  main()
