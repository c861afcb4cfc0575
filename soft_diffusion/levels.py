"""Corruption-level selection on real data: `select_schedule(config, workdir)` (`--mode schedule`).

One pass over the training split accumulates the mean orthonormal-DCT power spectrum
E[DCT2(x_0)²] per coefficient and channel (float64); `schedules.select_blur_levels` then runs
SPEC §3 on it: `levels.num_candidates` log-spaced σ_B in [blur_sigma_min, blur_sigma_max], the
noise s_t of candidate i at t = i/(M-1) in the distance, and `levels.num_levels` levels kept.

Writes, atomically, `WORKDIR/schedule.json` (the levels, ε, hop distances, candidates, the
settings they were selected for) and `WORKDIR/schedule.png` (σ_B(t) against the log schedule,
the hop distances against ε, and the radial power spectrum). Training and sampling use the
levels when `corruption.blur_schedule = 'selected'` (and refuse a schedule.json selected for
other settings).
"""

from __future__ import annotations

import logging
import pathlib
import time
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from soft_diffusion import data, dct, schedules, train

log = logging.getLogger(__name__)


def power_spectrum(settings: train.Settings, *, progress: bool = True) -> tuple[np.ndarray, int]:
  """Mean DCT power [H, W, C] over the training split (or its first levels.num_images), and N."""
  cfg = settings.data
  source = data.make_source(cfg, cfg.train_split)
  limit = settings.levels.num_images or len(source)
  limit = min(limit, len(source))
  ds = data.make_dataset(cfg, split=cfg.train_split, batch_size=256, seed=settings.seed, train=False, source=source)
  report = train.Progress("power spectrum", limit) if progress else None
  total, count = None, 0
  for batch in ds:
    batch = np.asarray(batch)[: limit - count]
    part = np.square(dct.dct2_host(batch)).sum(axis=0)
    total = part if total is None else total + part
    count += len(batch)
    if report:
      report(count)
    if count >= limit:
      break
  if count == 0:
    raise ValueError(f"split {cfg.train_split!r} of {cfg.name!r} has no images")
  return total / count, count


def _plot(path: pathlib.Path, levels: schedules.BlurLevels, settings: train.Settings, power: np.ndarray) -> None:
  plt = train.pyplot()
  c = settings.corruption
  k = len(levels.sigmas)
  t = np.linspace(0, 1, k)
  fig, axes = plt.subplots(1, 3, figsize=(13, 3.8))
  ax = axes[0]
  ax.plot(t, levels.sigmas, "o-", ms=3, label=f"selected ({k} levels)")
  t_fine = np.linspace(0, 1, 200)
  ax.plot(t_fine, c.blur_sigma_min * (c.blur_sigma_max / c.blur_sigma_min) ** t_fine, "--", label="log schedule")
  ax.set(xlabel="t", ylabel="σ_B(t) [px]", yscale="log", title="blur level")
  ax.legend()
  ax = axes[1]
  ax.plot(np.arange(1, k), levels.selection.hop_distances, "o-", ms=3)
  ax.axhline(levels.selection.epsilon, color="k", ls=":", label=f"ε = {levels.selection.epsilon:.3g}")
  ax.set(xlabel="hop k (level k-1 → k)", ylabel="d (W2 bound)", title="distance between neighbouring levels")
  ax.legend()
  ax = axes[2]
  n = power.shape[0]
  radius = np.hypot(*np.meshgrid(np.arange(n), np.arange(n), indexing="ij")).round().astype(int)
  radial = np.bincount(radius.ravel(), power.sum(-1).ravel()) / np.maximum(np.bincount(radius.ravel()), 1)
  ax.semilogy(np.arange(len(radial)), radial)
  ax.set(xlabel="DCT frequency radius", ylabel="mean power", title=f"data spectrum ({settings.data.name})")
  fig.tight_layout()
  train.save_figure(fig, path)


def select_schedule(config: Any, workdir: str) -> pathlib.Path:
  """Runs level selection for `config` and writes WORKDIR/schedule.json and schedule.png."""
  settings = train.settings_from_config(config)
  c = settings.corruption
  if c.name != "blur":
    raise ValueError(
      f"config.corruption.name must be 'blur' for --mode schedule (blur level selection), got {c.name!r}"
    )
  workdir = pathlib.Path(workdir).resolve()
  noise = schedules.make_noise_schedule(
    c.noise_schedule, std_min=c.noise_std_min, std_max=c.noise_std_max, clip_t=c.noise_clip_t
  )
  power, count = power_spectrum(settings)
  m = settings.levels.num_candidates
  noise_stds = np.asarray(noise(jnp.linspace(0.0, 1.0, m, dtype=jnp.float32)), np.float64)
  start = time.perf_counter()
  levels = schedules.select_blur_levels(
    power,
    sigma_min=c.blur_sigma_min,
    sigma_max=c.blur_sigma_max,
    num_candidates=m,
    num_levels=settings.levels.num_levels,
    noise_stds=noise_stds,
  )
  log.info(
    "selected %d levels in %.1f s (ε = %.4g)", len(levels.sigmas), time.perf_counter() - start, levels.selection.epsilon
  )
  workdir.mkdir(parents=True, exist_ok=True)
  record = {
    "sigmas": [float(s) for s in levels.sigmas],
    "t": [float(x) for x in np.linspace(0, 1, len(levels.sigmas))],
    "epsilon": levels.selection.epsilon,
    "hop_distances": [float(x) for x in levels.selection.hop_distances],
    "candidate_indices": [int(i) for i in levels.selection.indices],
    "candidate_sigmas": [float(x) for x in levels.candidate_sigmas],
    "num_images": count,
    "fingerprint": train.schedule_fingerprint(settings),
    "method": "SPEC §3: synchronous-coupling W2 bound on the mean DCT power spectrum, fewest hops, K levels",
  }
  path = workdir / "schedule.json"
  train.write_json(path, record)
  _plot(workdir / "schedule.png", levels, settings, power)
  log.info("wrote %s and schedule.png (levels from %d images, %d devices)", path, count, jax.device_count())
  return path
