"""The small-scale study of docs/results.md's "Results at small scale": the paper's claims against exact
ground truth (stationary Gaussian fields, docs/method.md §7).

    python studies/reproduce_small.py                 # everything; resumes where it stopped
    python studies/reproduce_small.py --stages fields --out DIR --figures docs/results

For configs/gaussian_field.py (blur + noise) and configs/gaussian_field_ve.py (VE twin: same
network, steps and batch), it runs the CLI a user would run:

    python -m soft_diffusion.main --config configs/<name>.py --workdir OUT/<name>               # train
    python -m soft_diffusion.main --config configs/<name>.py --workdir OUT/<name> --mode eval   # exact metrics

(training resumes from its last checkpoint; eval skips the points its JSON already holds), then
writes OUT/study.json (every number, and the wall time of each stage that ran), the figures
spectral_fd_vs_nfe.png, variance_ratio.png and samples.png (in OUT and in --figures), and prints
docs/results.md's tables. With --figures DIR, the JSONs go there too, as DIR/small_fields.json,
small_digits.json and small_floor.json. The trained network and the exact posterior mean
(oracle) are evaluated with the same samplers, priors, seeds and sample counts.

Stage `digits`: configs/digits.py (blur) and configs/digits_ve.py (VE twin, equal training
compute) on real images: train, `--mode stats` once (the reference is the same for both), and
`--mode eval` (FID/KID, 256 samples per point) for every sampler at NFE 20-300 with each sample
seed of DIGITS_SEEDS, kept as OUT/<config>/eval/eval_seed<k>.json; writes OUT/digits.json and
fid_vs_nfe_digits.png.

Stage `floor`: the `loss.floor = 0.3` extension (see losses.py) against the paper's loss, on
configs/gaussian_field.py (spectral FD, trained network, Momentum and naive at 50/100/200 NFE) and
configs/digits.py (FID, sample seed 0, Momentum and naive at NFE 20-300; reuses the digits stage's
reference statistics), everything else as in those configs; writes OUT/floor.json and prints the
comparison with the stages above where they ran.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import shutil
import time

import harness  # studies/, beside this script

from soft_diffusion.run.workdir import Workdir

REPO = harness.REPO

CONFIGS = {"gaussian_field": "blur + noise", "gaussian_field_ve": "VE (identity + noise)"}
DIGITS = {"digits": "blur + noise", "digits_ve": "VE (identity + noise)"}
DIGITS_SAMPLERS = {
  "digits": ("momentum", "naive", "deterministic"),
  "digits_ve": ("momentum", "naive", "deterministic", "pc"),
}
DIGITS_NFE = (20, 50, 100, 200, 300)
DIGITS_SEEDS = (0, 1)
TABLE_NFE = (10, 20, 50, 100, 200, 300)
FLOOR = 0.3
FLOOR_RUNS = {  # config -> (samplers, NFE, extra flags)
  "gaussian_field": (("momentum", "naive"), (50, 100, 200), ["--config.eval.oracle=False"]),
  "digits": (("momentum", "naive"), DIGITS_NFE, ["--config.sample.seed=0"]),
}


# The recipe each config had when this study ran (its ':FORM'; schema.apply_form): the
# defaults moved with the preconditioning study, these keep this study's numbers.
FORMS = {"gaussian_field": "paper", "gaussian_field_ve": "score_sde", "digits": "paper", "digits_ve": "score_sde"}


def config_file(name: str) -> str:
  """`--config` argument of a config: its file, with the form this study used."""
  return f"configs/{name}.py" + (f":{FORMS[name]}" if name in FORMS else "")


def config_of(name: str):
  return harness.load_config(config_file(name))


TIMINGS_PATH: pathlib.Path | None = None  # set by main(); every stage's time is saved as it ends


def timed(timings: dict, key: str, fn) -> None:
  harness.timed(timings, key, fn, TIMINGS_PATH)


def train(workdir: pathlib.Path, name: str, config, timings: dict, flags=()) -> None:
  """Trains config `name` (this study's form) into `workdir` unless its last checkpoint exists."""
  steps = config.train.total_steps
  harness.train_unless_done(
    workdir, config_file(name), flags, num_steps=steps, timings=timings, log=False, save=TIMINGS_PATH
  )


def run_stage(out: pathlib.Path, name: str, timings: dict) -> dict:
  """Train (unless finished) and evaluate one config; returns its eval record."""

  config = config_of(name)
  workdir = out / name
  flags = ["--config", config_file(name), "--workdir", str(workdir)]
  train(workdir, name, config, timings)
  path = Workdir.of(workdir).eval_record(config.train.total_steps)
  complete = False
  if path.is_file():
    want = len(config.eval.samplers) * len(config.eval.num_steps) * (2 if config.eval.oracle else 1)
    complete = len(json.loads(path.read_text())["points"]) == want
  if not complete:
    timed(timings, f"{name}/eval", lambda: harness.run_cli([*flags, "--mode", "eval"]))
  return json.loads(path.read_text())


def run_digits(out: pathlib.Path, timings: dict, seeds: tuple[int, ...] = DIGITS_SEEDS) -> dict:
  """Blur vs VE on the digits: train both, one reference, FID/KID per sampler × NFE × seed.
  Seeds are the outer loop: both configs have seed 0's whole grid before seed 1 starts."""

  configs = {name: config_of(name) for name in DIGITS}
  flags = {name: ["--config", config_file(name), "--workdir", str(out / name)] for name in DIGITS}
  for name, config in configs.items():
    train(out / name, name, config, timings)
    stats = Workdir.of(out / name).reference_stats("train")
    first = Workdir.of(out / next(iter(DIGITS))).reference_stats("train")
    if not stats.is_file():
      if first.is_file():  # the same data and preprocessing: one reference for both configs
        stats.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(first, stats)
      else:
        timed(timings, "digits/stats", lambda name=name: harness.run_cli([*flags[name], "--mode", "stats"]))
  truth = digits_truth(out)
  print(f"real held-out digits ({truth['num_images']}): FID {truth['fid']:.1f}, KID {truth['kid_mean']:.4f}")
  results = {name: {} for name in DIGITS}
  for seed in seeds:
    for name, config in configs.items():
      workdir = out / name
      kept = Workdir.of(workdir).eval / f"eval_seed{seed}.json"  # this study's copy of each seed's record
      if not kept.is_file():
        args = [
          *flags[name],
          "--mode",
          "eval",
          f"--config.eval.samplers={DIGITS_SAMPLERS[name]!r}",
          f"--config.eval.num_steps={DIGITS_NFE!r}",
          f"--config.sample.seed={seed}",
        ]
        timed(timings, f"{name}/eval_seed{seed}", lambda args=args: harness.run_cli(args))
        shutil.copy(Workdir.of(workdir).eval_record(config.train.total_steps), kept)
      results[name][seed] = json.loads(kept.read_text())
  return results


def run_floor(out: pathlib.Path, timings: dict) -> dict:
  """Train and evaluate each FLOOR_RUNS config with loss.floor = FLOOR in OUT/<config>_floor03;
  returns {config: eval record}."""

  results = {}
  for name, (samplers, nfes, extra) in FLOOR_RUNS.items():
    config = config_of(name)
    workdir = out / f"{name}_floor03"
    flags = ["--config", config_file(name), "--workdir", str(workdir), f"--config.loss.floor={FLOOR}"]
    train(workdir, name, config, timings, [f"--config.loss.floor={FLOOR}"])
    stats = Workdir.of(workdir).reference_stats("train")
    if name == "digits" and not stats.is_file():
      shared = Workdir.of(out / "digits").reference_stats("train")
      if shared.is_file():
        stats.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(shared, stats)
      else:
        timed(timings, f"{name}_floor03/stats", lambda flags=flags: harness.run_cli([*flags, "--mode", "stats"]))
    args = [
      *flags,
      "--mode",
      "eval",
      f"--config.eval.samplers={samplers!r}",
      f"--config.eval.num_steps={tuple(nfes)!r}",
      *extra,
    ]
    timed(timings, f"{name}_floor03/eval", lambda args=args: harness.run_cli(args))
    results[name] = json.loads(Workdir.of(workdir).eval_record(config.train.total_steps).read_text())
  return results


def floor_table(out: pathlib.Path, floor: dict) -> str:
  """Markdown: the paper's loss (from the fields/digits stages, where they ran) against loss.floor."""
  lines = []
  for name, record in floor.items():
    samplers, nfes, _ = FLOOR_RUNS[name]
    metric = "spectral_fd" if name == "gaussian_field" else "fid"
    paper = {}
    run = Workdir.of(out / name)  # the floor run trains as long as the paper-loss run
    kept = run.eval / "eval_seed0.json" if name == "digits" else run.eval_record(record["checkpoint_step"])
    if kept.is_file():
      for p in json.loads(kept.read_text())["points"]:
        if p.get("denoiser", "trained") == "trained":
          paper[(p["sampler"], p["num_steps"])] = p[metric]
    got = {
      (p["sampler"], p["num_steps"]): p[metric] for p in record["points"] if p.get("denoiser", "trained") == "trained"
    }
    lines.append(f"\n{name}: {metric} of the trained network, paper's loss / loss.floor = {FLOOR}:\n")
    lines.append("| sampler | " + " | ".join(str(n) for n in nfes) + " |")
    lines.append("|---|" + "---:|" * len(nfes))
    for sampler in samplers:
      cells = [
        f"{fmt(paper[(sampler, n)]) if (sampler, n) in paper else '–'} / {fmt(got[(sampler, n)])}"
        for n in nfes
        if (sampler, n) in got
      ]
      lines.append(f"| {sampler} | " + " | ".join(cells) + " |")
  return "\n".join(lines)


def digits_truth(out: pathlib.Path) -> dict:
  """FID/KID of the real held-out digits (the whole 'validation' split, 180 images) against the
  train reference: what real images score with this few samples (FID's small-N bias), kept in
  OUT/digits_truth.json."""

  import numpy as np

  from soft_diffusion import data, evaluation
  from soft_diffusion.run.modes import evaluate_fid

  path = out / "digits_truth.json"
  if path.is_file():
    return json.loads(path.read_text())
  settings = Workdir.of(out / "digits").settings(config_of("digits"))
  cfg = settings.eval
  ds = data.make_dataset(settings.data, split="validation", batch_size=cfg.batch_size, seed=settings.seed, train=False)
  images = np.concatenate([np.asarray(evaluation.to_uint8(batch)) for batch in ds])
  feats = evaluation.inception_features(images, params=evaluation.load_inception_params(), batch_size=cfg.batch_size)
  stats, kid_ref, _ = evaluate_fid.load_reference(evaluate_fid.stats_path(out / "digits", settings), settings, "")
  subset = min(cfg.kid_subset_size, len(images))
  kid_mean, kid_std = evaluation.kid(feats, kid_ref, num_subsets=cfg.kid_num_subsets, subset_size=subset, seed=0)
  record = {"split": "validation", "num_images": len(images), "fid": evaluation.fid(feats, stats), "kid_mean": kid_mean}
  record["kid_std"] = kid_std
  path.write_text(json.dumps(record, indent=1))
  return record


def digits_table(results: dict, truth: dict | None = None) -> str:
  """Markdown: FID and KID (mean ± std over seeds) per (config, sampler) × NFE, and the real
  held-out digits' scores (`digits_truth`) for reference."""
  import numpy as np

  seeds = sorted({seed for by_seed in results.values() for seed in by_seed})
  lines = []
  for metric, scale, label in (("fid", 1.0, "FID"), ("kid_mean", 1e3, "KID × 10³")):
    lines.append(f"\n{label} on the digits (256 samples per point; mean ± std over sample seeds {seeds}):\n")
    lines.append("| corruption | sampler | " + " | ".join(str(n) for n in DIGITS_NFE) + " |")
    lines.append("|---|---|" + "---:|" * len(DIGITS_NFE))
    for name, by_seed in results.items():
      for sampler in DIGITS_SAMPLERS[name]:
        cells = []
        for n in DIGITS_NFE:
          values = [
            scale * p[metric]
            for r in by_seed.values()
            for p in r["points"]
            if (p["sampler"], p["num_steps"]) == (sampler, n)
          ]
          cells.append(f"{np.mean(values):.1f} ± {np.std(values):.1f}" if values else "")
        lines.append(f"| {DIGITS[name]} | {sampler} | " + " | ".join(cells) + " |")
    if truth is not None:
      lines.append(f"\nreal held-out digits ({truth['num_images']} images): {label} {scale * truth[metric]:.1f}")
  return "\n".join(lines)


def plot_digits(path: pathlib.Path, results: dict, floor: dict | None = None) -> None:
  """FID vs NFE per config × sampler (mean ± std over seeds); with `floor` (the floor stage's
  digits eval record), its samplers too (sample seed 0, dotted)."""
  import numpy as np

  from soft_diffusion.run import figures, image_files

  plt = image_files.pyplot()
  fig, ax = plt.subplots(figsize=(9.0, 4.4))
  for name, by_seed in results.items():
    for sampler in DIGITS_SAMPLERS[name]:
      fids = np.array(
        [
          [next(p["fid"] for p in r["points"] if (p["sampler"], p["num_steps"]) == (sampler, n)) for n in DIGITS_NFE]
          for r in by_seed.values()
        ]
      )
      ax.errorbar(
        DIGITS_NFE,
        fids.mean(0),
        yerr=fids.std(0),
        fmt="o-" if name == "digits" else "s--",
        capsize=2,
        label=f"{DIGITS[name]}, {sampler}",
      )
  if floor is not None:
    for sampler in FLOOR_RUNS["digits"][0]:
      points = sorted((p["num_steps"], p["fid"]) for p in floor["points"] if p["sampler"] == sampler)
      ax.plot(*zip(*points, strict=True), "^:", label=f"blur + noise, loss.floor = {FLOOR}, {sampler} (seed 0)")
  ax.set(yscale="log", xlabel="NFE (network evaluations per sample)", ylabel="FID (256 samples)")
  figures.nfe_axis(ax, list(DIGITS_NFE))
  ax.set_title("digits 16×16: blur vs VE at equal training compute", fontsize=9)
  ax.grid(True, which="both", alpha=0.3)
  ax.legend(fontsize=6.5, loc="upper left", bbox_to_anchor=(1.01, 1.0))
  fig.tight_layout()
  image_files.save_figure(fig, path, dpi=120)


def sample_grid(out: pathlib.Path, path: pathlib.Path, nfe: int = 100, num: int = 16) -> None:
  """Samples side by side: the truth, then each config's samplers at `nfe` (trained network)."""
  import dataclasses

  import numpy as np

  from soft_diffusion import gaussian_field
  from soft_diffusion.run import image_files
  from soft_diffusion.run.modes import sample as sample_lib

  columns = []
  truth_cfg = None
  for name, label in CONFIGS.items():
    run = sample_lib.load_run(Workdir.of(out / name).settings(config_of(name)), out / name)
    truth_cfg = truth_cfg or run.settings.data
    for sampler in run.settings.eval.samplers:
      cfg = dataclasses.replace(run.settings.sample, sampler=sampler, num_steps=nfe, batch_size=num)
      columns.append((f"{label}\n{sampler}", run.draw(cfg, num, progress=False, raw=True)))
  d = truth_cfg
  v = gaussian_field.spectrum(d.image_size, d.image_size, d.field_k0, d.field_pixel_std)
  rngs = [np.random.default_rng([99, i]) for i in range(num)]
  columns.insert(0, ("truth", gaussian_field.field_images(np.sqrt(v), rngs)))
  plt = image_files.pyplot()
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
  image_files.save_figure(fig, path, dpi=130)


GAP_SPLITS = (0.3, 0.6, 0.8)  # "oracle for t >= tau, network below"
GAP_NFE = 100
GAP_IMAGES = 512  # samples per gap point (compare within the gap table: spectral FD of the truth ≈ 0.2 here)
GAP_SNR = 0.1  # "oracle at the frequencies where x_t's signal-to-noise c²v/s² < GAP_SNR, network elsewhere"


def gap_analysis(out: pathlib.Path) -> dict:
  """Where the trained network loses to the oracle: spectral FD at GAP_NFE with the Momentum
  Sampler when the denoiser is the oracle for t >= tau and the network below, for each tau of
  GAP_SPLITS (tau = 0: oracle throughout; tau = 1.01: network throughout), and when it is the
  oracle only at the DCT frequencies where x_t carries almost no signal (c_t² v / s_t² < GAP_SNR:
  what C_t removes, where the loss's weight c_t² is near 0) and the network elsewhere; on each
  config, with the eval's prior and seed and GAP_IMAGES samples."""
  import dataclasses

  import jax
  import jax.numpy as jnp

  from soft_diffusion import dct, gaussian_field
  from soft_diffusion.evaluation import exact
  from soft_diffusion.run.modes import sample as sample_lib

  result = {}
  for name in CONFIGS:
    run = sample_lib.load_run(Workdir.of(out / name).settings(config_of(name)), out / name)
    d = run.settings.data
    v = gaussian_field.spectrum(d.image_size, d.image_size, d.field_k0, d.field_pixel_std)
    net = run.denoise_fn()
    oracle = gaussian_field.oracle_denoiser(run.corruption, v)
    cfg = dataclasses.replace(run.settings.sample, sampler="momentum", num_steps=GAP_NFE)
    result[name] = {}
    for tau in (0.0, *GAP_SPLITS, 1.01):

      def hybrid(x, t, tau=tau, oracle=oracle, net=net):
        return jax.lax.cond(t[0] >= tau, lambda: oracle(x, t), lambda: net(x, t))

      images = run.draw(cfg, GAP_IMAGES, progress=False, raw=True, denoise_fn=hybrid)
      m = exact.exact_metrics(images, v, full=False)
      result[name][str(tau)] = {k: m[k] for k in ("spectral_fd", "ratio_low", "ratio_mid", "ratio_high") if k in m}
      print(f"{name}: oracle for t >= {tau}: spectral FD {m['spectral_fd']:.3f}", flush=True)
    size = d.image_size
    v_b = jnp.asarray(v, jnp.float32)[None, :, :, None]

    def by_frequency(x, t, oracle=oracle, net=net, corruption=run.corruption, v_b=v_b, size=size):
      c = gaussian_field.dct_multipliers(corruption, t, size, size)[..., None]
      quiet = (jnp.square(c) * v_b / jnp.square(corruption.noise_std(t))[:, None, None, None] < GAP_SNR).astype(x.dtype)
      mixed = quiet * dct.dct2(oracle(x, t)) + (1 - quiet) * dct.dct2(net(x, t))
      return dct.dct2(mixed, inverse=True)

    images = run.draw(cfg, GAP_IMAGES, progress=False, raw=True, denoise_fn=by_frequency)
    m = exact.exact_metrics(images, v, full=False)
    result[name]["snr"] = {k: m[k] for k in ("spectral_fd", "ratio_low", "ratio_mid", "ratio_high") if k in m}
    print(f"{name}: oracle where c²v/s² < {GAP_SNR}: spectral FD {m['spectral_fd']:.3f}", flush=True)
  return result


def gap_table(gap: dict) -> str:
  taus = list(next(iter(gap.values())))
  label = {"0.0": "oracle", "1.01": "network", "snr": f"oracle where c²v/s² < {GAP_SNR}"}
  lines = [f"\nSpectral FD at {GAP_NFE} NFE (Momentum, {GAP_IMAGES} samples) oracle for t ≥ τ, network below:\n"]
  lines.append("| corruption | " + " | ".join(label.get(t, f"τ = {t}") for t in taus) + " |")
  lines.append("|---|" + "---:|" * len(taus))
  for name, row in gap.items():
    lines.append(f"| {CONFIGS[name]} | " + " | ".join(f"{row[t]['spectral_fd']:.3f}" for t in taus) + " |")
  return "\n".join(lines)


def fmt(value: float) -> str:
  """3 significant digits (2 in scientific notation, from 1,000 on)."""
  if value >= 1e3:
    return f"{value:.1e}".replace("e+0", "e")
  return f"{value:.3g}" if value < 1 else f"{value:#.3g}".rstrip(".")


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
        cells.append(f"{fmt(t['spectral_fd'])} / {fmt(o['spectral_fd'])}" if t and o else "")
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
      cells.append(f"{fmt(t['fd'])} ({fmt(o['fd'])})")
      lines.append(f"| {CONFIGS[name]} | {sampler} | " + " | ".join(cells) + " |")
  return "\n".join(lines)


RESULT_NAMES = {"study.json": "small_fields.json", "digits.json": "small_digits.json", "floor.json": "small_floor.json"}


def copy_figures(out: pathlib.Path, target: str | None, names: list[str]) -> None:
  """Copies the figures `names` and every study JSON written so far (as RESULT_NAMES' names, so
  docs/results.md's tables trace to committed files) into `target`."""
  if target:
    folder = pathlib.Path(target)
    folder.mkdir(parents=True, exist_ok=True)
    for name in names:
      shutil.copy(out / name, folder / name)
    for name, published in RESULT_NAMES.items():
      if (out / name).is_file():
        shutil.copy(out / name, folder / published)


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--out", default="runs/reproduce_small", help="study folder (resumes if present)")
  parser.add_argument(
    "--figures", default=None, help="also copy the figures and the study JSONs here (e.g. docs/results)"
  )
  parser.add_argument(
    "--stages", nargs="+", default=["fields", "digits", "floor"], choices=["fields", "digits", "floor"]
  )
  parser.add_argument("--digits_seeds", type=int, nargs="+", default=list(DIGITS_SEEDS), help="sample seeds")
  args = parser.parse_args()
  os.environ.setdefault("JAX_PLATFORMS", "cpu")
  out = (REPO / args.out).resolve() if not os.path.isabs(args.out) else pathlib.Path(args.out)
  out.mkdir(parents=True, exist_ok=True)
  global TIMINGS_PATH
  timings_path = TIMINGS_PATH = out / "timings.json"
  timings = json.loads(timings_path.read_text()) if timings_path.is_file() else {}
  figures = []
  if "digits" in args.stages:
    digits = run_digits(out, timings, tuple(args.digits_seeds))
    timings_path.write_text(json.dumps(timings, indent=2))
    plot_digits(out / "fid_vs_nfe_digits.png", digits)
    (out / "digits.json").write_text(json.dumps({"timings_seconds": timings, "results": digits}, indent=1))
    figures.append("fid_vs_nfe_digits.png")
    print(digits_table(digits, digits_truth(out)))
  if "floor" in args.stages:
    floor = run_floor(out, timings)
    (out / "floor.json").write_text(
      json.dumps({"floor": FLOOR, "timings_seconds": timings, "results": floor}, indent=1)
    )
    print(floor_table(out, floor))
    if (out / "digits.json").is_file():
      digits = json.loads((out / "digits.json").read_text())["results"]
      plot_digits(out / "fid_vs_nfe_digits.png", digits, floor["digits"])
      figures.append("fid_vs_nfe_digits.png")
  if "fields" not in args.stages:
    copy_figures(out, args.figures, figures)
    return
  records = {}
  for name in CONFIGS:
    records[name] = run_stage(out, name, timings)
    timings_path.write_text(json.dumps(timings, indent=2))

  from soft_diffusion.run import figures

  runs = [(CONFIGS[name], record["points"]) for name, record in records.items()]
  figures.spectral_fd_vs_nfe(out / "spectral_fd_vs_nfe.png", runs)
  only = lambda pts: [p for p in pts if p["sampler"] in ("momentum", "naive")]  # noqa: E731
  figures.ring_ratios(out / "variance_ratio.png", [(label, only(points)) for label, points in runs], nfe=100)
  if "samples" not in timings:
    timed(timings, "samples", lambda: sample_grid(out, out / "samples.png"))
  else:
    sample_grid(out, out / "samples.png")
  timings_path.write_text(json.dumps(timings, indent=2))
  if "gap" not in timings:
    start = time.perf_counter()
    gap = gap_analysis(out)
    timings["gap"] = round(time.perf_counter() - start, 1)
    (out / "gap.json").write_text(json.dumps(gap, indent=1))
  gap = json.loads((out / "gap.json").read_text())
  timings_path.write_text(json.dumps(timings, indent=2))
  study = {"configs": CONFIGS, "timings_seconds": timings, "records": records, "gap": gap}
  (out / "study.json").write_text(json.dumps(study, indent=1))
  copy_figures(out, args.figures, [*figures, "spectral_fd_vs_nfe.png", "variance_ratio.png", "samples.png"])
  print(tables(records))
  print(gap_table(gap))
  total = sum(v for k, v in timings.items())
  print(f"\nstages that ran (s): {timings}; total {total / 60:.1f} min")
  print(f"wrote {out / 'study.json'} and the figures")


if __name__ == "__main__":
  main()
