"""`--mode tune_grid`: time grids fitted to a trained model (soft_diffusion/grid_tuning.py).

For each N of `tune.num_steps` (default: sample.num_steps) the N+1 times of the sample block's
'multistep' sampler (its order, form and end) are fitted so that its N-step solutions come
closest, in mean squared distance, to the same sampler's `tune.reference_steps`-step solution on
the uniform grid from the same `tune.num_images` starts x_1 ~ p_1 (seed `tune.seed`): Adam on
the grid's logits for `tune.iterations` updates from the `tune.start` grid, the best grid kept.
The objective of the uniform, logsnr and edm grids at each N is logged beside it.

Writes (process 0, atomically) WORKDIR/time_grid.json, one entry per grid_key (order, form, end,
N) added to what the file holds for the same corruption, and WORKDIR/time_grid.png; sampling
with sample.time_grid = 'tuned' then uses the grid of its num_steps.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from etils import epath

from soft_diffusion import errors, grid_tuning, priors, samplers, time_grids
from soft_diffusion.run import figures, processes, reporting
from soft_diffusion.run import settings as settings_lib
from soft_diffusion.run.modes import sample as sample_lib
from soft_diffusion.run.workdir import Workdir

log = logging.getLogger(__name__)


def check(settings: settings_lib.Settings) -> None:
  """What the mode needs of the config, refused in one line before anything is read or compiled."""
  if settings.sample.sampler != "multistep":
    raise errors.ConfigError(
      f"--mode tune_grid fits grids for sample.sampler = 'multistep' only, got {settings.sample.sampler!r}; "
      "set --config.sample.sampler=multistep"
    )


def tune_grid(
  settings: settings_lib.Settings, workdir: epath.Path, mesh: Any = None, step: int | None = None
) -> epath.Path:
  """Fits the grids, writes time_grid.json and time_grid.png; returns the JSON's path."""
  settings = settings_lib.require(settings, "tune_grid")
  check(settings)
  cfg, sample = settings.tune, settings.sample
  workdir = Workdir.of(workdir)
  run = sample_lib.load_run(settings, workdir, step, mesh=mesh)
  final = "denoise" if samplers.ends_denoised(sample.sampler, sample.final) else "noise"
  solver = grid_tuning.solver(sample.order, sample.form, final=final)
  denoise_fn = run.denoise_fn()
  x_1 = priors.sample_p1(run.prior, run.corruption, jax.random.key(cfg.seed), cfg.num_images)
  height, width = x_1.shape[1:3]  # the sampled images' size (a crop, when data.crop_size is set)
  start = time.perf_counter()
  reference = jax.jit(
    lambda x: solver(
      denoise_fn, x, run.corruption, num_steps=cfg.reference_steps, key=jax.random.key(0), time_grid="uniform"
    )
  )(x_1)
  reference = jax.block_until_ready(reference)
  log.info(
    "tune_grid: reference (%d steps, %d starts) in %.1f s",
    cfg.reference_steps,
    cfg.num_images,
    time.perf_counter() - start,
  )
  objective = grid_tuning.distillation_loss(solver, denoise_fn, run.corruption, x_1, reference)
  evaluate = jax.jit(objective)
  grids = {}
  for n in cfg.num_steps or (sample.num_steps,):
    begin = time.perf_counter()
    families = {
      f: float(evaluate(jnp.asarray(time_grids.make(f, run.corruption, n, height, width), jnp.float32)))
      for f in time_grids.FAMILIES
    }
    progress = reporting.Progress(f"tune_grid N={n}", cfg.iterations + 1, unit="evaluations")

    def report(i: int, loss: float, progress=progress, n=n) -> None:
      if i % 10 == 0 or i == cfg.iterations:
        progress(i + 1)
        log.info("tune_grid N=%d: update %d/%d  objective %.3e", n, i, cfg.iterations, loss)

    start_grid = time_grids.make(cfg.start, run.corruption, n, height, width)
    tuned = grid_tuning.tune(
      objective, start_grid, iterations=cfg.iterations, learning_rate=cfg.learning_rate, callback=report
    )
    key = settings_lib.grid_key(sample, n)
    grids[key] = {
      "times": [float(t) for t in tuned.times],
      "objective": tuned.loss,
      "start_objective": tuned.start_loss,
      "family_objectives": families,
      "losses": [float(v) for v in tuned.losses],
      "checkpoint_step": run.step,
      "tune": dataclasses.asdict(cfg),
      "seconds": round(time.perf_counter() - begin, 1),
    }
    log.info(
      "tune_grid %s: objective %.3e (start %s %.3e; %s) in %.0f s; times %s",
      key,
      tuned.loss,
      cfg.start,
      tuned.start_loss,
      ", ".join(f"{f} {v:.3e}" for f, v in families.items()),
      grids[key]["seconds"],
      np.round(tuned.times, 4).tolist(),
    )
  processes.write_once(lambda path: workdir.write_tuned_grids(settings, grids), workdir.time_grid_file)
  processes.write_once(figures.tuned_grids_figure, workdir.time_grid_figure, grids)
  log.info("tune_grid: wrote %s and %s", workdir.time_grid_file, workdir.time_grid_figure)
  return workdir.time_grid_file
