"""Exact evaluation (`--mode eval`) for a dataset whose law is known (`data.exact_spectrum`: the
Gaussian fields, docs/method.md §7): no Inception and no reference file.

Each (denoiser, sampler, NFE) point reports the exact distances of `evaluation.exact` (spectral
and full Fréchet distance in the DCT basis, variance ratios per frequency band and ring) of
`eval.num_images` unclipped float samples; with `eval.oracle`, the same with the exact posterior
mean (`gaussian_field.oracle_denoiser`) in place of the network: the floor of each (sampler,
NFE). Writes `eval_step<N>.json`, `spectral_fd_vs_nfe_step<N>.png` and
`variance_ratio_step<N>.png`.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from typing import Any

from etils import epath

from soft_diffusion import data, gaussian_field
from soft_diffusion.evaluation import exact
from soft_diffusion.run import figures, points, processes
from soft_diffusion.run.modes import sample as sample_lib
from soft_diffusion.run.settings import Settings
from soft_diffusion.run.workdir import Workdir

log = logging.getLogger(__name__)


def evaluate_exact(settings: Settings, workdir: epath.Path, mesh: Any, step: int | None) -> epath.Path:
  """--mode eval for a dataset whose law is known: exact distances per (denoiser, sampler, NFE)."""
  cfg = settings.eval
  run = sample_lib.load_run(settings, workdir, step, mesh=mesh)
  v = data.exact_spectrum(settings.data)[..., 0]  # channels are alike
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
      "dataset": d.name,
      "image_size": d.image_size,
      "field_k0": d.field_k0,
      "field_pixel_std": d.field_pixel_std,
      "metrics": "soft_diffusion.evaluation.exact (DCT basis, float64; unclipped float samples)",
    },
    "sample_seed": settings.sample.seed,
    "sample_prior": settings.sample.prior,
    "eval_num_images": cfg.num_images,
    **sample_lib.sample_options(settings.sample),
  }
  denoisers = ("trained", "oracle") if cfg.oracle else ("trained",)
  grid = [
    {"denoiser": dn, "sampler": s, "num_steps": n} for dn in denoisers for s in cfg.samplers for n in cfg.num_steps
  ]
  workdir = Workdir.of(workdir)
  path = workdir.eval_record(run.step)
  record = points.run_points(path, header, grid, measure)
  runs = [("", record["points"])]
  processes.write_once(figures.spectral_fd_vs_nfe, workdir.eval_figure("spectral_fd_vs_nfe", run.step), runs, run.step)
  processes.write_once(figures.ring_ratios, workdir.eval_figure("variance_ratio", run.step), runs, run.step)
  log.info("wrote %s, spectral_fd_vs_nfe_step%d.png and variance_ratio_step%d.png", path, run.step, run.step)
  return path
