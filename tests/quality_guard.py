"""The quality guard's run (tests/test_quality.py; also benchmarks/quality_guard.py, which runs it
for other configurations to show what it catches): configs/digits.py trained for GUARD_STEPS
steps, then 256 samples with the Momentum and the naive sampler at 100 NFE, measured against the
real train digits with the cheap measures of `soft_diffusion.evaluation.spectral`:

* pixel-space KID (×10³): on 16×16 grey digits the pixels are a complete description, so this
  KID sees shape errors and noise alike, costs milliseconds, and needs no network weights;
* the DCT variance ratio over the rings 12 ≤ k + l < 20 (fine detail; the real digits: 1), and
  the standard deviation in excess of the real digits' over the rings k + l ≥ 20, where the
  upsampled digits have almost no power (noise a sampler leaves; a coarse metric misses it).
"""

from __future__ import annotations

import dataclasses
import pathlib
import sys

from soft_diffusion.run.workdir import Workdir

REPO = pathlib.Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
  sys.path.insert(0, str(REPO))

GUARD_STEPS = 1500
NUM_SAMPLES = 256
NFE = 100


def guard_config(tfds_dir: str | None, overrides: dict | None = None, form: str | None = None):
  """configs/digits.py (in its default form, or `form`: configs/default.py apply_form), shortened
  to GUARD_STEPS (the cosine decay with it), plus `overrides` ({dotted key: value})."""
  from configs import digits

  config = digits.get_config() if form is None else digits.get_config(form)
  config.data.path = tfds_dir
  config.train.num_steps = GUARD_STEPS
  config.optim.decay_steps = GUARD_STEPS
  config.checkpoint.every_steps = GUARD_STEPS
  config.train.sample_every_steps = 10 * GUARD_STEPS  # no grid
  config.train.log_every_steps = 500
  config.train.tensorboard = False
  for key, value in (overrides or {}).items():
    node = config
    *path, leaf = key.split(".")
    for part in path:
      node = node[part]
    node[leaf] = value
  return config


def run_guard(
  workdir, tfds_dir: str | None, overrides: dict | None = None, form: str | None = None
) -> dict[str, dict[str, float]]:
  """Trains the guard config (guard_config) in `workdir` (resumes if it holds a run) and measures
  both samplers: {sampler: {"pixel_kid_e3", "ratio_high", "top_excess_std"}}."""
  from soft_diffusion.evaluation import spectral
  from soft_diffusion.run.modes import sample, train

  config = guard_config(tfds_dir, overrides, form)
  train.run_training(Workdir.of(str(workdir)).settings(config, resolve_levels=False), str(workdir))
  run = sample.load_run(Workdir.of(workdir).settings(config), workdir)
  real = sample.load_training_images(run.settings, 10_000)
  out = {}
  for sampler in ("momentum", "naive"):
    cfg = dataclasses.replace(run.settings.sample, sampler=sampler, num_steps=NFE, seed=0)
    images = run.draw(cfg, NUM_SAMPLES, progress=False)
    kid_mean, _ = spectral.pixel_kid(images, real, num_subsets=100, subset_size=NUM_SAMPLES, seed=0)
    report = spectral.ring_report(images, real)
    out[sampler] = {
      "pixel_kid_e3": 1e3 * kid_mean,
      "ratio_high": report["ratio_high"],
      "top_excess_std": report["top_excess_std"],
    }
  return out


def summary(metrics: dict[str, dict[str, float]]) -> str:
  return "; ".join(
    f"{s}: pixel KID×1e3 {m['pixel_kid_e3']:.2f}, high-ring ratio {m['ratio_high']:.2f}, "
    f"top excess std {m['top_excess_std']:.4f}"
    for s, m in metrics.items()
  )
