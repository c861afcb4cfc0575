"""--mode schedule / stats / eval and the sampling extras, end to end on the digits data."""

import json
import os
import pathlib
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from soft_diffusion import corruptions, evaluate, evaluation, levels, priors, train
from soft_diffusion import sample as sample_lib

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "benchmarks"))
import fid_ladder  # noqa: E402
from test_train import REPO, main_command, tiny_config, tiny_flags  # noqa: E402


@pytest.fixture(scope="module")
def tfds_dir(tmp_path_factory):
  return str(tmp_path_factory.mktemp("tfds"))


def digits_config(tfds_dir):
  from configs import digits

  config = digits.get_config()
  config.data.path = tfds_dir
  return config


def test_schedule_mode_reproduces_the_digits_table(tfds_dir, tmp_path):
  from configs import digits

  path = levels.select_schedule(digits_config(tfds_dir), str(tmp_path))
  record = json.loads(path.read_text())
  assert record["num_images"] == 1617 and len(record["sigmas"]) == 32
  # configs/digits.py embeds the levels this procedure selected (rounded to 4 decimals).
  np.testing.assert_allclose(record["sigmas"], digits.DIGITS_BLUR_LEVELS, atol=5e-5)
  assert max(record["hop_distances"]) <= record["epsilon"] * (1 + 1e-12)
  assert (tmp_path / "schedule.png").stat().st_size > 10_000


def test_selected_schedule_is_read_and_must_match_the_settings(tfds_dir, tmp_path):
  config = digits_config(tfds_dir)
  config.corruption.blur_schedule = "selected"
  config.levels.num_levels = 8
  settings = train.settings_from_config(config)
  with pytest.raises(FileNotFoundError, match="--mode schedule"):
    train.with_selected_levels(settings, tmp_path)
  levels.select_schedule(config, str(tmp_path))
  chosen = train.with_selected_levels(settings, tmp_path)
  assert len(chosen.corruption.blur_sigma_table) == 8
  assert corruptions.make(chosen.corruption).operator.sigma_schedule.sigmas == chosen.corruption.blur_sigma_table
  config.data.image_size = 8
  with pytest.raises(ValueError, match=r"selected for other settings \(differ: image_size\)"):
    train.with_selected_levels(train.settings_from_config(config), tmp_path)


def test_forward_prior_draws_the_exact_forward_marginal():
  corruption = corruptions.make({"name": "blur"})
  x0 = jax.random.uniform(jax.random.key(0), (1, 8, 8, 1), minval=-1, maxval=1)
  draws = priors.sample_forward(priors.ForwardPrior(x0), corruption, jax.random.key(1), 4000)
  mean_target = corruption.apply(x0, jnp.ones(1))[0]
  s1 = float(corruption.noise_std(jnp.ones(1))[0])
  np.testing.assert_allclose(draws.mean(0), mean_target, atol=4 * s1 / np.sqrt(4000))
  np.testing.assert_allclose(draws.std(0), s1, rtol=0.1)


@pytest.fixture(scope="module")
def trained(tfds_dir, tmp_path_factory):
  workdir = tmp_path_factory.mktemp("run")
  config = tiny_config(tfds_dir, num_steps=2)
  train.train_and_evaluate(config, str(workdir))
  return config, workdir


def test_sampling_split_over_8_devices_gives_the_images_of_one(trained, tfds_dir):
  config, workdir = trained
  overrides = tiny_flags(
    tfds_dir,
    optim__decay="cosine",
    optim__warmup_steps=2,
    sample__num_steps=3,
    sample__num_images=8,
    sample__batch_size=8,
  )
  env = dict(os.environ, JAX_PLATFORMS="cpu", XLA_FLAGS="--xla_force_host_platform_device_count=8")
  proc = subprocess.run(
    [*main_command(workdir, *overrides), "--mode=sample"],
    cwd=REPO,
    env=env,
    capture_output=True,
    text=True,
    timeout=300,
  )
  assert proc.returncode == 0, proc.stderr[-2000:]
  assert "devices: 8 (cpu)" in proc.stderr
  eight = np.load(workdir / "samples" / "samples.npz")["images"]
  config = config.copy_and_resolve_references()
  config.sample.num_images = config.sample.batch_size = 8
  one = np.load(sample_lib.sample(config, str(workdir)))["images"]
  assert jax.device_count() == 1 and eight.shape == (8, 8, 8, 1)
  np.testing.assert_array_equal(eight, one)


def eval_config(config):
  config = config.copy_and_resolve_references()
  config.eval.ref_num_images = 16
  config.eval.num_images = 8
  config.eval.batch_size = 8
  config.eval.nfe = (2, 3)
  config.eval.kid_subset_size = 8
  config.eval.kid_num_subsets = 4
  return config


def test_sample_writes_images_and_figures_with_either_prior(trained):
  config, workdir = trained
  config = config.copy_and_resolve_references()
  config.sample.prior = "forward"
  path = sample_lib.sample(config, str(workdir), step=2)
  images = np.load(path)["images"]
  assert images.shape == (4, 8, 8, 1) and images.dtype == np.uint8
  for name, least in (("samples.png", 200), ("trajectory.png", 5_000), ("forward.png", 5_000)):
    assert (workdir / "samples" / name).stat().st_size > least, name
  with pytest.raises(FileNotFoundError, match=r"no checkpoint for step 7 .*available: \[2\]"):
    sample_lib.load_run(config, str(workdir), step=7)


def test_stats_then_eval_end_to_end_and_their_errors(trained):
  config, workdir = trained
  config = eval_config(config)
  with pytest.raises(
    FileNotFoundError, match="no reference statistics .*run: python -m soft_diffusion.main --mode stats"
  ):
    evaluate.evaluate(config, str(workdir))
  stats_file = evaluate.reference_stats(config, str(workdir))
  with np.load(stats_file) as f:
    meta = json.loads(str(f["meta"]))
    assert int(f["count"]) == 16 and f["kid_features"].shape == (16, 2048)
  assert meta["weights_sha1"] == evaluation.weights.SHA1 and meta["image_size"] == 8
  result = json.loads(evaluate.evaluate(config, str(workdir)).read_text())
  points = result["points"]
  assert [(p["sampler"], p["nfe"]) for p in points] == [("momentum", 2), ("momentum", 3), ("naive", 2), ("naive", 3)]
  assert all(np.isfinite(p["fid"]) and p["fid"] > 0 and np.isfinite(p["kid_mean"]) for p in points)
  assert result["checkpoint_step"] == 2 and result["inception"] == evaluation.INCEPTION_SOURCE
  assert (workdir / "eval" / "fid_vs_nfe_step2.png").stat().st_size > 10_000
  # Statistics made with another preprocessing are refused.
  other = config.copy_and_resolve_references()
  other.data.crop_size = 6
  with pytest.raises(ValueError, match=r"made with other preprocessing or weights \(differ: crop_size\)"):
    evaluate.evaluate(other, str(workdir))
  other = config.copy_and_resolve_references()
  other.eval.batch_size = 6
  if jax.device_count() > 1:
    with pytest.raises(ValueError, match="config.eval.batch_size must be a multiple"):
      evaluate.evaluate(other, str(workdir))


def test_fid_sanity_ladder(tfds_dir):
  """Train vs held-out digits is the smallest FID; blurring the held-out set raises it.

  With 24 images a set FID carries a large small-sample bias (n = 180 gives 31 for the first
  row, see the README), so "small" is checked with the unbiased KID."""
  rows = fid_ladder.ladder(24, [1.0, 3.0], tfds_dir)
  fids = [fid for _, fid, _ in rows]
  kids = [kid for _, _, kid in rows]
  assert fids[0] < fids[1] < fids[2] and kids[0] < kids[1] < kids[2], rows
  assert abs(kids[0]) < 0.2 * kids[1], rows
