"""--mode stats then --mode eval on a trained tiny run, and the errors they answer bad input with."""

import itertools
import json

import jax
import numpy as np
import pytest
from support import REPO, TRAINED_STEPS

from soft_diffusion import errors, evaluation
from soft_diffusion.run.modes import evaluate, evaluate_exact
from soft_diffusion.run.workdir import Workdir


def test_stats_then_eval_end_to_end_and_their_errors(tiny_config, trained_run):
  with pytest.raises(
    errors.MissingError, match="no reference statistics .*run: python -m soft_diffusion.main --mode stats"
  ):
    evaluate.evaluate(Workdir.of(trained_run).settings(tiny_config), trained_run)
  cfg = tiny_config.eval
  stats_file = evaluate.reference_stats(Workdir.of(trained_run).settings(tiny_config), trained_run)
  with np.load(stats_file) as f:
    meta = json.loads(str(f["meta"]))
    assert int(f["count"]) == cfg.ref_num_images and f["kid_features"].shape == (cfg.ref_num_images, 2048)
  assert meta["weights_sha1"] == evaluation.weights.SHA1 and meta["image_size"] == tiny_config.data.image_size
  result = json.loads(evaluate.evaluate(Workdir.of(trained_run).settings(tiny_config), trained_run).read_text())
  points = result["points"]
  assert [(p["sampler"], p["num_steps"]) for p in points] == list(itertools.product(cfg.samplers, cfg.num_steps))
  assert all(np.isfinite(p["fid"]) and p["fid"] > 0 and np.isfinite(p["kid_mean"]) for p in points)
  assert result["checkpoint_step"] == TRAINED_STEPS and result["inception"] == evaluation.INCEPTION_SOURCE
  assert (trained_run / "eval" / f"fid_vs_nfe_step{TRAINED_STEPS}.png").stat().st_size > 10_000
  # A second run finds every point in the JSON and measures nothing.
  with pytest.MonkeyPatch.context() as patch:
    patch.setattr(evaluation, "inception_features", lambda *a, **k: pytest.fail("a finished point was measured again"))
    assert (
      json.loads(evaluate.evaluate(Workdir.of(trained_run).settings(tiny_config), trained_run).read_text())["points"]
      == points
    )

  # Statistics made with another preprocessing are refused.
  other = tiny_config.copy_and_resolve_references()
  other.data.crop_size = 6
  with pytest.raises(errors.ConfigError, match=r"made with other preprocessing or weights \(differ: crop_size\)"):
    evaluate.evaluate(Workdir.of(trained_run).settings(other), trained_run)
  other = tiny_config.copy_and_resolve_references()
  other.eval.split = "bogus"
  with pytest.raises(errors.ConfigError, match=r"config.eval.split: split 'bogus' of 'digits' must be one of"):
    evaluate.reference_stats(Workdir.of(trained_run).settings(other), trained_run)
  if jax.device_count() > 1:
    other = tiny_config.copy_and_resolve_references()
    other.eval.batch_size = jax.device_count() + 1
    with pytest.raises(errors.ConfigError, match="config.eval.batch_size must be a multiple"):
      evaluate.evaluate(Workdir.of(trained_run).settings(other), trained_run)


def test_gaussian_field_trains_and_evaluates_exactly_and_eval_resumes(tmp_path, monkeypatch):
  """The tiny config on 'gaussian_field': training selects its levels from the exact spectrum
  (no data pass), --mode eval reports the exact distances for the trained network and the
  oracle without Inception, and a restart measures only the points its JSON lacks; --mode stats
  is refused."""
  from soft_diffusion.run import schema
  from soft_diffusion.run.modes import train

  config = schema.load_config(str(REPO / "configs" / "tiny.py"))
  config.data.name = "gaussian_field"
  config.data.cache = False
  config.corruption.blur_schedule = "selected"
  config.train.total_steps = TRAINED_STEPS
  config.checkpoint.every_steps = 1  # two checkpoints, for --steps
  config.eval.num_images = 16
  config.eval.num_steps = (2,)
  config.eval.samplers = ("momentum",)
  train.run_training(Workdir.of(str(tmp_path)).settings(config, resolve_levels=False), str(tmp_path))
  selected = json.loads((tmp_path / "levels.json").read_text())
  assert selected["num_images"] == 0 and selected["fingerprint"]["field"] == [2.0, 0.3]

  with pytest.raises(errors.ConfigError, match="'gaussian_field' needs no reference statistics"):
    evaluate.reference_stats(Workdir.of(tmp_path).settings(config), tmp_path)
  path = evaluate.evaluate(Workdir.of(tmp_path).settings(config), tmp_path)
  record = json.loads(path.read_text())
  cfg = config.eval
  grid = list(itertools.product(("trained", "oracle"), cfg.samplers, cfg.num_steps))
  assert [(p["denoiser"], p["sampler"], p["num_steps"]) for p in record["points"]] == grid
  for p in record["points"]:
    assert p["num_images"] == 16 and np.isfinite(p["spectral_fd"]) and np.isfinite(p["fd"])
    assert len(p["ring_ratios"]) == 15 and {"ratio_low", "ratio_high"} <= set(p)
  assert record["truth"]["field_pixel_std"] == 0.3 and "inception" not in record
  for figure in ("spectral_fd_vs_nfe", "variance_ratio"):
    assert (tmp_path / "eval" / f"{figure}_step{TRAINED_STEPS}.png").stat().st_size > 10_000

  # Restart after the last point was lost: only that point is measured again, with the same result.
  calls = []
  measured = evaluate_exact.exact.exact_metrics
  monkeypatch.setattr(evaluate_exact.exact, "exact_metrics", lambda *a, **k: calls.append(1) or measured(*a, **k))
  partial = {**record, "points": record["points"][:-1]}
  path.write_text(json.dumps(partial))
  again = json.loads(evaluate.evaluate(Workdir.of(tmp_path).settings(config), tmp_path).read_text())
  assert len(calls) == 1
  strip = lambda p: {k: v for k, v in p.items() if "seconds" not in k}  # noqa: E731
  assert [strip(p) for p in again["points"]] == [strip(p) for p in record["points"]]
  # Another image count is another evaluation: its points are measured, none is taken from the file.
  config.eval.num_images = 8
  config.eval.samplers = ("naive",)
  config.eval.oracle = False
  calls.clear()
  assert [
    p["num_images"]
    for p in json.loads(evaluate.evaluate(Workdir.of(tmp_path).settings(config), tmp_path).read_text())["points"]
  ] == [8]
  assert len(calls) == 1

  # --steps all: step 2 is already in its JSON, step 1 is measured; best.json ranks the two.
  calls.clear()
  best = json.loads(
    evaluate.evaluate_steps(Workdir.of(str(tmp_path)).settings(config), str(tmp_path), "all").read_text()
  )
  assert len(calls) == 1 and best["steps"] == [1, 2] and best["metric"] == "spectral_fd"
  ((point, by_step),) = best["by_point"].items()
  assert point == "denoiser=trained, sampler=naive, num_steps=2" and set(by_step) == {"1", "2"}  # JSON keys
  assert best["best_step"] == min((1, 2), key=lambda s: by_step[str(s)])
  with pytest.raises(
    errors.MissingError, match=r"--steps 1,5: no checkpoint for step\(s\) \[5\] .* available: \[1, 2\]"
  ):
    evaluate.evaluate_steps(Workdir.of(str(tmp_path)).settings(config), str(tmp_path), "1,5")


def test_in_training_evaluation_logs_kid_and_fid_and_keeps_the_best_checkpoint(tiny_config, tmp_path):
  """eval.every_steps = 1: after every step KID and FID of the EMA samples go to metrics.jsonl,
  each step is saved with its FID, and with checkpoint.max_to_keep = 1 the lowest-FID checkpoint
  survives beside the latest (the reference statistics are computed first, as --mode stats)."""
  from support import checkpoint_steps

  from soft_diffusion.run import workdir as workdir_lib
  from soft_diffusion.run.modes import train

  config = tiny_config
  config.train.total_steps = 3
  config.train.tensorboard = False
  config.eval.every_steps = 1
  config.eval.train_num_images = 8
  config.checkpoint.every_steps = 100
  config.checkpoint.max_to_keep = 1
  workdir = tmp_path / "run"
  train.run_training(Workdir.of(str(workdir)).settings(config, resolve_levels=False), str(workdir))
  assert (workdir / "stats" / "reference_train.npz").is_file()
  records = {r["step"]: r for r in workdir_lib.read_metrics(workdir / "logs") if "eval_fid" in r}
  assert sorted(records) == [1, 2, 3]
  assert all(np.isfinite(r["eval_fid"]) and np.isfinite(r["eval_kid"]) for r in records.values())
  best = json.loads((workdir / "eval" / "best_in_training.json").read_text())
  best_step = min(records, key=lambda s: records[s]["eval_fid"])
  assert best["step"] == best_step and best["fid"] == pytest.approx(records[best_step]["eval_fid"])
  assert checkpoint_steps(workdir) == sorted({best_step, 3})
