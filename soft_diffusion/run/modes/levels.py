"""`--mode levels`: corruption-level selection on real data, and the levels file it writes.

`write_levels(settings, workdir)`: one pass over the training split accumulates the mean
orthonormal-DCT power spectrum E[DCT2(x_0)²] per coefficient and channel (float64; for a
dataset whose law is known, `data.exact_spectrum`, no pass);
`level_selection.select_blur_levels` then runs docs/method.md §3 on it: `levels.num_candidates`
log-spaced σ_B in [blur_sigma_min, blur_sigma_max] and `levels.num_levels` = K levels kept,
level k with the noise s(t_k) it is trained with, t_k = k/(K-1); how the noise enters the
distances is `levels.pairing` (level_selection.PAIRINGS).

It writes, atomically, `WORKDIR/levels.json` (the levels, ε, hop distances, candidates, and the
`fingerprint` of the settings they were selected for) and `WORKDIR/levels.png` (σ_B(t) against
the log-spaced levels, the hop distances against ε, the radial power spectrum). The file and
its reader belong to workdir.py (`Workdir.settings` resolves the levels of every other mode); the
fingerprint is `settings.levels_fingerprint`.
`select_missing_levels` is training's step: it selects and writes the levels first when the file
is missing.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from etils import epath

from soft_diffusion import data, dct, errors, level_selection, schedules
from soft_diffusion.run import figures, processes, reporting
from soft_diffusion.run import settings as settings_lib
from soft_diffusion.run import state as state_lib
from soft_diffusion.run.workdir import Workdir

Settings = settings_lib.Settings

log = logging.getLogger(__name__)

METHOD = (
  "level selection: synchronous-coupling W2 bound on the mean DCT power spectrum; noise pairing levels.pairing "
  "(level_selection.PAIRINGS); smallest epsilon admitting K levels"
)


def power_spectrum(settings: Settings, *, progress: bool = True, announce: bool = False) -> tuple[np.ndarray, int]:
  """Mean DCT power [H, W, C] over the training split (or its first levels.num_images), and N.
  `announce`: log the devices once the data is found (the start of --mode levels).

  For a dataset whose law is known (`data.exact_spectrum`) that spectrum, and N = 0 (no data pass)."""
  cfg = settings.data
  exact = data.exact_spectrum(cfg)
  if exact is not None:
    return exact, 0
  with errors.user_input("config.data"):
    source = data.make_source(cfg, cfg.train_split, settings.seed)
  if announce:
    state_lib.log_devices()
  limit = min(settings.levels.num_images or len(source), len(source))
  # Each process reads its share of the images (every process_count-th), and the sums are added
  # over processes: a pod decodes the data once in all, not once per host.
  index, num_processes = jax.process_index(), jax.process_count()
  share = len(range(index, limit, num_processes))
  report = reporting.Progress("power spectrum" + (f" (this process's {share})" if num_processes > 1 else ""), share)
  if limit == 0:
    raise errors.ConfigError(f"config.data.train_split: split {cfg.train_split!r} of {cfg.name!r} has no images")
  total, count = None, 0
  batches = data.first_batches(
    cfg,
    cfg.train_split,
    limit,
    batch_size=256,
    seed=settings.seed,
    source=source,
    process_index=index,
    process_count=num_processes,
  )
  for batch in batches:
    part = np.square(dct.dct2_host(batch)).sum(axis=0)
    total = part if total is None else total + part
    count += len(batch)
    if progress:
      report(count)
  if total is None:  # this process's share is empty (fewer images than processes): zeros of the shape
    first = next(iter(data.first_batches(cfg, cfg.train_split, 1, batch_size=1, seed=settings.seed, source=source)))
    total = np.zeros(first.shape[1:], np.float32)
  if num_processes > 1:
    total, count = (
      processes.sum_over_processes(total),
      int(round(float(processes.sum_over_processes(np.float64(count))))),
    )
  if count == 0:
    raise errors.ConfigError(f"config.data.train_split: split {cfg.train_split!r} of {cfg.name!r} has no images")
  return total / count, count


def _select(
  settings: Settings, announce: bool = False
) -> tuple[level_selection.BlurLevels, dict[str, Any], np.ndarray]:
  """(levels, the levels.json record, the power spectrum) for `settings` (one data pass)."""
  c = settings.corruption
  if c.name != "blur":
    raise errors.ConfigError(
      f"config.corruption.name must be 'blur' for --mode levels (blur level selection), got {c.name!r}"
    )
  noise = schedules.make_noise_schedule(
    c.noise_schedule, std_min=c.noise_std_min, std_max=c.noise_std_max, clip_t=c.noise_clip_t
  )
  power, count = power_spectrum(settings, announce=announce)
  k = settings.levels.num_levels
  level_noise_stds = np.asarray(noise(jnp.linspace(0.0, 1.0, k, dtype=jnp.float32)), np.float64)
  start = time.perf_counter()
  levels = level_selection.select_blur_levels(
    power,
    sigma_min=c.blur_sigma_min,
    sigma_max=c.blur_sigma_max,
    num_candidates=settings.levels.num_candidates,
    num_levels=k,
    level_noise_stds=level_noise_stds,
    noise_schedule=lambda t: np.asarray(noise(jnp.asarray(t, jnp.float32)), np.float64),
    pairing=settings.levels.pairing,
    min_blur_share=settings.levels.min_blur_share,
  )
  log.info(
    "selected %d levels in %.1f s (ε = %.4g)", len(levels.sigmas), time.perf_counter() - start, levels.selection.epsilon
  )
  record = {
    "sigmas": [float(s) for s in levels.sigmas],  # read back by `Workdir.read_levels`
    "t": [float(x) for x in np.linspace(0, 1, len(levels.sigmas))],
    "epsilon": levels.selection.epsilon,
    "hop_distances": [float(x) for x in levels.selection.hop_distances],
    "candidate_indices": [int(i) for i in levels.selection.indices],
    "candidate_sigmas": [float(x) for x in levels.candidate_sigmas],
    "num_images": count,
    "fingerprint": settings_lib.levels_fingerprint(settings),
    "method": METHOD,
  }
  return levels, record, power


def _write(workdir: Workdir, levels, record: dict[str, Any], settings: Settings, power: np.ndarray) -> epath.Path:
  if jax.process_index() == 0:  # every process selects the same levels; one writes them
    workdir.write_levels(record)
    figures.levels_figure(workdir.levels_figure, levels, settings, power)
    source = f"{record['num_images']} images" if record["num_images"] else "the exact spectrum"
    log.info("wrote %s and %s (levels from %s)", workdir.levels_file, workdir.levels_figure.name, source)
  return workdir.levels_file


def write_levels(settings: Settings, workdir: epath.Path) -> epath.Path:
  """Runs level selection for `settings` and writes WORKDIR/levels.json and levels.png.

  Args:
    settings: from `settings.load(config)`.
    workdir: the run's folder (`Workdir.resolve`).
  """
  workdir = Workdir.of(workdir)
  levels, record, power = _select(settings, announce=True)
  return _write(workdir, levels, record, settings, power)


def select_missing_levels(settings: Settings, workdir: epath.Path) -> Settings:
  """Training's levels: with `corruption.blur_schedule = 'selected'`, the settings with the levels
  of WORKDIR/levels.json, selected and written first when the file is missing (one pass over the
  data, with progress), so a config never trains on levels it did not select. Otherwise
  `settings` unchanged."""
  if not settings_lib.needs_levels(settings):
    return settings
  workdir = Workdir.of(workdir)
  exists = workdir.has_levels()
  processes.barrier("levels checked")  # every process has decided before process 0 writes the file
  if exists:
    return workdir.settings(settings)
  log.info("blur_schedule = 'selected' and no %s: selecting the levels first", workdir.levels_file)
  levels, record, power = _select(settings)
  _write(workdir, levels, record, settings, power)
  return settings_lib.with_levels(settings, tuple(float(s) for s in record["sigmas"]))
