"""--mode stats then --mode eval on a trained tiny run, and the errors they answer bad input with."""

import itertools
import json

import jax
import numpy as np
import pytest
from support import TRAINED_STEPS

from soft_diffusion import errors, evaluate, evaluation


def test_stats_then_eval_end_to_end_and_their_errors(tiny_config, trained_run):
  with pytest.raises(
    errors.MissingError, match="no reference statistics .*run: python -m soft_diffusion.main --mode stats"
  ):
    evaluate.evaluate(tiny_config, trained_run)
  cfg = tiny_config.eval
  stats_file = evaluate.reference_stats(tiny_config, trained_run)
  with np.load(stats_file) as f:
    meta = json.loads(str(f["meta"]))
    assert int(f["count"]) == cfg.ref_num_images and f["kid_features"].shape == (cfg.ref_num_images, 2048)
  assert meta["weights_sha1"] == evaluation.weights.SHA1 and meta["image_size"] == tiny_config.data.image_size
  result = json.loads(evaluate.evaluate(tiny_config, trained_run).read_text())
  points = result["points"]
  assert [(p["sampler"], p["num_steps"]) for p in points] == list(itertools.product(cfg.samplers, cfg.num_steps))
  assert all(np.isfinite(p["fid"]) and p["fid"] > 0 and np.isfinite(p["kid_mean"]) for p in points)
  assert result["checkpoint_step"] == TRAINED_STEPS and result["inception"] == evaluation.INCEPTION_SOURCE
  assert (trained_run / "eval" / f"fid_vs_nfe_step{TRAINED_STEPS}.png").stat().st_size > 10_000

  # Statistics made with another preprocessing are refused.
  other = tiny_config.copy_and_resolve_references()
  other.data.crop_size = 6
  with pytest.raises(errors.ConfigError, match=r"made with other preprocessing or weights \(differ: crop_size\)"):
    evaluate.evaluate(other, trained_run)
  other = tiny_config.copy_and_resolve_references()
  other.eval.split = "bogus"
  with pytest.raises(errors.ConfigError, match=r"config.eval.split: split 'bogus' of 'digits' must be one of"):
    evaluate.reference_stats(other, trained_run)
  if jax.device_count() > 1:
    other = tiny_config.copy_and_resolve_references()
    other.eval.batch_size = jax.device_count() + 1
    with pytest.raises(errors.ConfigError, match="config.eval.batch_size must be a multiple"):
      evaluate.evaluate(other, trained_run)
