"""Corruption-level selection on real data (`--mode schedule`), and the schedule.json it writes.

`select_schedule(settings, workdir)`: one pass over the training split accumulates the mean
orthonormal-DCT power spectrum E[DCT2(x_0)²] per coefficient and channel (float64; for
'gaussian_field' the generator's exact spectrum, no pass);
`level_selection.select_blur_levels` then runs docs/method.md §3 on it: `levels.num_candidates`
log-spaced σ_B in [blur_sigma_min, blur_sigma_max] and `levels.num_levels` = K levels kept,
level k with the noise s(t_k) it is trained with, t_k = k/(K-1); how the noise enters the
distances is `levels.pairing` (level_selection.PAIRINGS; 'joint' selects the pairs jointly).

It writes, atomically, `WORKDIR/schedule.json` (the levels, ε, hop distances, candidates, and
the `fingerprint` of the settings they were selected for) and `WORKDIR/schedule.png` (σ_B(t)
against the log schedule, the hop distances against ε, the radial power spectrum).
`read_levels` is the only reader: `settings.load` calls it for
`corruption.blur_schedule = 'selected'`, and it refuses a missing file or one whose
fingerprint differs, saying what to run.

This module takes validated `Settings` (see settings.py, which imports it to resolve the levels).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from typing import TYPE_CHECKING, Any

import jax
import jax.numpy as jnp
import numpy as np
from etils import epath

from soft_diffusion import artifacts, data, dct, errors, level_selection, schedules
from soft_diffusion import state as state_lib

if TYPE_CHECKING:
  from soft_diffusion.settings import Settings

log = logging.getLogger(__name__)

SCHEDULE_FILE = "schedule.json"
METHOD = (
  "level selection: synchronous-coupling W2 bound on the mean DCT power spectrum; noise pairing levels.pairing "
  "(level_selection.PAIRINGS); smallest epsilon admitting K levels"
)


def pairing_label(pairing: str, min_blur_share: float) -> str:
  """The fingerprint's name of a noise pairing ('joint' keeps the name schedule.json files of
  earlier versions carry, so they stay valid)."""
  if pairing == "joint":
    return "level k carries s(t_k)"
  return f"{pairing} {min_blur_share}" if pairing == "joint_min_blur" else pairing


def fingerprint(settings: Settings) -> dict[str, Any]:
  """What a selected schedule depends on; schedule.json must match it to be used."""
  c = settings.corruption
  return {
    "dataset": settings.data.name,
    "train_split": settings.data.train_split,
    "image_size": settings.data.image_size,
    "crop_size": settings.data.crop_size,
    **(
      {"field": [settings.data.field_k0, settings.data.field_pixel_std]}
      if settings.data.name == "gaussian_field"
      else {}
    ),
    "blur_sigma_min": c.blur_sigma_min,
    "blur_sigma_max": c.blur_sigma_max,
    "noise": [c.noise_schedule, c.noise_std_min, c.noise_std_max, c.noise_clip_t],
    "noise_pairing": pairing_label(settings.levels.pairing, settings.levels.min_blur_share),
    "num_candidates": settings.levels.num_candidates,
    "num_levels": settings.levels.num_levels,
  }


def read_levels(workdir: epath.Path, settings: Settings) -> tuple[float, ...]:
  """The σ_B levels of WORKDIR/schedule.json, checked against `fingerprint(settings)`."""
  path = epath.Path(workdir) / SCHEDULE_FILE
  hint = f"run: python -m soft_diffusion.main --mode schedule --config ... --workdir {workdir}"
  if not path.is_file():
    raise errors.MissingError(f"corruption.blur_schedule = 'selected' but {path} does not exist; {hint}")
  try:
    record = json.loads(path.read_text())
    sigmas, made_for = tuple(float(s) for s in record["sigmas"]), record["fingerprint"]
  except (ValueError, KeyError, TypeError) as e:
    raise errors.ConfigError(f"{path} is not a schedule written by --mode schedule ({e}); delete it; {hint}") from None
  expected = json.loads(json.dumps(fingerprint(settings)))
  differ = sorted(k for k in expected if made_for.get(k) != expected[k])
  if differ:
    raise errors.ConfigError(f"{path} was selected for other settings (differ: {', '.join(differ)}); {hint}")
  return sigmas


def power_spectrum(settings: Settings, *, progress: bool = True) -> tuple[np.ndarray, int]:
  """Mean DCT power [H, W, C] over the training split (or its first levels.num_images), and N.

  For 'gaussian_field' the exact spectrum v of the generator, and N = 0 (no data pass)."""
  cfg = settings.data
  with errors.user_input("config.data"):
    source = data.make_source(cfg, cfg.train_split, settings.seed)
  if cfg.name == "gaussian_field":
    return source.spectrum(), 0
  state_lib.log_devices()
  limit = min(settings.levels.num_images or len(source), len(source))
  ds = data.make_dataset(cfg, split=cfg.train_split, batch_size=256, seed=settings.seed, train=False, source=source)
  report = artifacts.Progress("power spectrum", limit) if progress else None
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
    raise errors.ConfigError(f"config.data.train_split: split {cfg.train_split!r} of {cfg.name!r} has no images")
  return total / count, count


def _plot(path: epath.Path, levels: level_selection.BlurLevels, settings: Settings, power: np.ndarray) -> None:
  plt = artifacts.pyplot()
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
  artifacts.save_figure(fig, path)


def _select(settings: Settings) -> tuple[level_selection.BlurLevels, dict[str, Any], np.ndarray]:
  """(levels, the schedule.json record, the power spectrum) for `settings` (one data pass)."""
  c = settings.corruption
  if c.name != "blur":
    raise errors.ConfigError(
      f"config.corruption.name must be 'blur' for --mode schedule (blur level selection), got {c.name!r}"
    )
  noise = schedules.make_noise_schedule(
    c.noise_schedule, std_min=c.noise_std_min, std_max=c.noise_std_max, clip_t=c.noise_clip_t
  )
  power, count = power_spectrum(settings)
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
    "sigmas": [float(s) for s in levels.sigmas],  # read back by `read_levels`
    "t": [float(x) for x in np.linspace(0, 1, len(levels.sigmas))],
    "epsilon": levels.selection.epsilon,
    "hop_distances": [float(x) for x in levels.selection.hop_distances],
    "candidate_indices": [int(i) for i in levels.selection.indices],
    "candidate_sigmas": [float(x) for x in levels.candidate_sigmas],
    "num_images": count,
    "fingerprint": fingerprint(settings),
    "method": METHOD,
  }
  return levels, record, power


def _write(workdir: epath.Path, levels, record: dict[str, Any], settings: Settings, power: np.ndarray) -> epath.Path:
  path = workdir / SCHEDULE_FILE
  if jax.process_index() == 0:  # every process selects the same levels; one writes them
    artifacts.write_json(path, record)
    _plot(workdir / "schedule.png", levels, settings, power)
    source = f"{record['num_images']} images" if record["num_images"] else "the exact spectrum"
    log.info("wrote %s and schedule.png (levels from %s)", path, source)
  return path


def select_schedule(settings: Settings, workdir: str | epath.Path) -> epath.Path:
  """Runs level selection for `settings` and writes WORKDIR/schedule.json and schedule.png.

  Args:
    settings: from `settings.load(config, workdir, resolve_levels=False)`.
    workdir: the run's folder.
  """
  workdir = artifacts.resolve_workdir(workdir)
  levels, record, power = _select(settings)
  return _write(workdir, levels, record, settings, power)


def select_missing_levels(settings: Settings, workdir: str | epath.Path) -> Settings:
  """Training with `corruption.blur_schedule = 'selected'` and no WORKDIR/schedule.json yet:
  selects the levels first (one pass over the data, with progress), writes schedule.json and
  returns the settings with the levels, so a config never trains on levels it did not select.
  Otherwise `settings` unchanged."""
  c = settings.corruption
  if c.name != "blur" or c.blur_schedule != "selected" or c.blur_sigma_table is not None:
    return settings
  workdir = artifacts.resolve_workdir(workdir)
  exists = (workdir / SCHEDULE_FILE).exists()
  artifacts.barrier("schedule checked")  # every process has decided before process 0 writes the file
  if exists:
    return settings
  log.info("corruption.blur_schedule = 'selected' and no %s in %s: selecting the levels first", SCHEDULE_FILE, workdir)
  levels, record, power = _select(settings)
  _write(workdir, levels, record, settings, power)
  table = tuple(float(s) for s in record["sigmas"])
  return dataclasses.replace(settings, corruption=dataclasses.replace(c, blur_sigma_table=table))
