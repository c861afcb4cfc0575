"""What the quality guard (tests/test_quality.py) measures, for the default config and for the
configurations it must catch.

    python studies/quality_guard.py [--configs default regressed] [--out runs/quality_guard]
    python studies/quality_guard.py --tables    # the table of docs/results/quality_guard.json

The guard's run (`run_guard`, which tests/test_quality.py calls too): configs/digits.py cut to
GUARD_STEPS steps with a few overrides (CONFIGS), then 256 samples with the Momentum and the
naive sampler at 100 NFE, measured against the real train digits with the cheap measures of
`soft_diffusion.evaluation.spectral`:

* pixel-space KID (×10³): on 16×16 grey digits the pixels are a complete description, so this
  KID sees shape errors and noise alike, costs milliseconds, and needs no network weights;
* the DCT variance ratio over the rings 12 ≤ k + l < 20 (fine detail; the real digits: 1), and
  the standard deviation in excess of the real digits' over the rings k + l ≥ 20, where the
  upsampled digits have almost no power (noise a sampler leaves; a coarse metric misses it).

Prints a table and writes docs/results/quality_guard.json, from which the guard's thresholds
were set.
"""

from __future__ import annotations

import dataclasses
import time

import harness  # studies/, beside this script

from soft_diffusion.run.workdir import Workdir

GUARD_STEPS = 1500
NUM_SAMPLES = 256
NFE = 100

# name -> (what it is, form of configs/digits.py or None for its default, overrides)
CONFIGS = {
  "default": ("configs/digits.py as it is", None, {}),
  "paper": (
    "configs/digits.py:paper (the paper's residual form, loss and end; the default before the"
    " preconditioning study, measured then as 'default')",
    "paper",
    {},
  ),
  "wiener": (
    "configs/digits.py:paper with model.skip = wiener (the Wiener-gain skip)",
    "paper",
    {"model.skip": "wiener"},
  ),
  "regressed": (
    "the configuration before this guard: the joint level table (one hop 0.01 -> 0.35 px), the Gaussian p_1"
    " and the residual form",
    "paper",
    {
      "corruption.blur_sigma_table": harness.config_module("digits").DIGITS_BLUR_LEVELS_JOINT,
      "sample.prior": "gaussian",
      "model.skip": "identity",
    },
  ),
}


def guard_config(tfds_dir: str | None, overrides: dict | None = None, form: str | None = None):
  """configs/digits.py (in its default form, or `form`: schema.apply_form), shortened
  to GUARD_STEPS (the cosine decay with it), plus `overrides` ({dotted key: value})."""
  config = harness.load_config("configs/digits.py" + (f":{form}" if form else ""))
  config.data.path = tfds_dir
  config.train.total_steps = GUARD_STEPS
  config.optim.decay_steps = GUARD_STEPS
  config.checkpoint.every_steps = GUARD_STEPS
  config.train.sample_every_steps = 10 * GUARD_STEPS  # no grid
  config.train.log_every_steps = 500
  config.train.tensorboard = False
  return harness.apply_overrides(config, overrides or {})


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


def table(record: dict) -> str:
  """The guard's numbers per config and sampler, as a markdown table."""
  return harness.markdown_table(
    f"guard run: {record['guard_steps']} steps, {record['num_samples']} samples at {record['nfe']} NFE",
    ("config", "sampler", "pixel KID ×10³", "variance ratio, rings 12–19", "excess std, rings ≥ 20"),
    [
      (name, sampler, f"{m['pixel_kid_e3']:.2f}", f"{m['ratio_high']:.2f}", f"{m['top_excess_std']:.4f}")
      for name, r in record["configs"].items()
      for sampler, m in r["metrics"].items()
    ],
    "|---|---|---:|---:|---:|",
  )


def main() -> None:
  parser = harness.parser(
    __doc__, out=harness.REPO / "runs" / "quality_guard", tables="only print the table of --results' JSON"
  )
  parser.add_argument("--configs", nargs="+", default=list(CONFIGS), choices=list(CONFIGS))
  args = parser.parse_args()
  path = args.results / "quality_guard.json"
  if args.tables:
    print(table(harness.read_json(path)))
    return
  record = {"guard_steps": GUARD_STEPS, "nfe": NFE, "num_samples": NUM_SAMPLES, "configs": {}}
  for name in args.configs:
    description, form, overrides = CONFIGS[name]
    start = time.perf_counter()
    metrics = run_guard(args.out / name, None, overrides, form)
    record["configs"][name] = {
      "description": description,
      "form": form or "default",
      "overrides": {k: list(v) if isinstance(v, tuple) else v for k, v in overrides.items()},
      "metrics": metrics,
      "seconds": round(time.perf_counter() - start, 1),
    }
  # configs this run does not touch keep their earlier record; all in CONFIGS' order
  record["configs"] = harness.merge_with_earlier(path, "configs", record["configs"], CONFIGS)
  harness.publish(path, record, table(record))


if __name__ == "__main__":
  main()
