"""FID/KID evaluation: reference statistics (`--mode stats`) and FID vs NFE (`--mode eval`).

* `reference_stats(settings, workdir)`: the `eval.split` images of the dataset (the first
  `eval.ref_num_images`, or all), through the training preprocessing (centre crop, antialiased
  bilinear resize to data.image_size), rounded to uint8 like the samples, then Inception pool3
  features (evaluation/). Streams: only the float64 sums and the first `eval.kid_ref_features`
  feature vectors (for KID) are kept. Writes `WORKDIR/stats/reference_<split>.npz` with `mu`,
  `sigma`, `count`, `kid_features` and `meta` (JSON: dataset, split, sizes, the preprocessing
  and the weights' source). The file is written atomically.
* `evaluate(settings, workdir, step=None)`: for each sampler in `eval.samplers` and each step
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

import json
import logging

import jax
import numpy as np
from etils import epath

from soft_diffusion import data, errors, evaluation
from soft_diffusion.run import checkpoints, files, processes
from soft_diffusion.run import settings as settings_lib
from soft_diffusion.run import state as state_lib
from soft_diffusion.run.modes import evaluate_exact, evaluate_fid
from soft_diffusion.run.settings import Settings
from soft_diffusion.run.workdir import Workdir

log = logging.getLogger(__name__)


def _start(mode: str, settings: Settings, workdir: epath.Path, mesh: jax.sharding.Mesh | None):
  """Checks shared by both modes, in order; returns (settings, workdir, mesh, Inception params);
  no Inception params (None) for a dataset whose law is known, whose metrics are exact."""
  settings = settings_lib.require(settings, f"--mode {mode}")
  workdir = epath.Path(workdir)
  name = settings.data.name
  if data.has_exact_law(settings.data):
    if mode == "stats":
      raise errors.ConfigError(
        f"config.data.name = {name!r} needs no reference statistics: --mode eval measures exact distances "
        "to the known law"
      )
    if settings.eval.oracle and settings.corruption.name == "mask":
      raise errors.ConfigError(
        "config.eval.oracle must be False for corruption.name = 'mask' (the exact posterior mean is diagonal in "
        "the DCT basis for 'blur' and 'identity' only)"
      )
    return settings, workdir, mesh if mesh is not None else state_lib.make_mesh(), None
  mesh = mesh if mesh is not None else state_lib.make_mesh()
  state_lib.check_batch_split("eval.batch_size", settings.eval.batch_size, mesh)
  with errors.user_input("Inception weights"):  # missing/foreign weights fail here, before any data pass
    params = evaluation.load_inception_params()
  return settings, workdir, mesh, params


def reference_stats(settings: Settings, workdir: epath.Path, mesh: jax.sharding.Mesh | None = None) -> epath.Path:
  """--mode stats: computes and writes the reference statistics; returns the .npz path."""
  settings, workdir, mesh, params = _start("stats", settings, workdir, mesh)
  return evaluate_fid.reference_stats(settings, workdir, mesh, params)


def evaluate(
  settings: Settings, workdir: epath.Path, step: int | None = None, mesh: jax.sharding.Mesh | None = None
) -> epath.Path:
  """--mode eval: FID and KID (exact distances for a dataset whose law is known) for every
  (sampler, step count) of settings.eval; returns the JSON path."""
  settings, workdir, mesh, params = _start("eval", settings, workdir, mesh)
  if params is None:
    return evaluate_exact.evaluate_exact(settings, workdir, mesh, step)
  return evaluate_fid.evaluate_fid(settings, workdir, mesh, params, step)


def evaluate_steps(
  settings: Settings, workdir: epath.Path, steps: str, mesh: jax.sharding.Mesh | None = None
) -> epath.Path:
  """--mode eval --steps: evaluates several checkpoints, `steps` = 'all' (every complete one in
  WORKDIR/checkpoints, e.g. those kept by checkpoint.keep_every_steps) or a comma list. Each
  writes its own eval_step<N>.json (resumable per point, as for one step); then eval/best.json
  ranks them: per grid point the checkpoint with the lowest FID (spectral FD for
  a dataset whose law is known; trained network only), and overall the one with the lowest geometric mean
  of that metric over the grid. Returns the path of best.json. Every requested step is checked
  to exist before anything is evaluated."""
  root = epath.Path(workdir)
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
    records[step] = json.loads(evaluate(settings, root, step, mesh).read_text())
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
  path = Workdir.of(root).best_eval
  processes.write_once(files.write_json, path, summary)
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
