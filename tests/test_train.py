"""The train loop: a golden first step, exact resume, sampling determinism, fail-fast config
errors. A tiny config on the embedded digits (8×8, a 2-level U-Net) keeps compiles short."""

import os
import pathlib
import signal
import subprocess
import sys

import numpy as np
import orbax.checkpoint as ocp
import pytest

from soft_diffusion import sample as sample_lib
from soft_diffusion import train

REPO = pathlib.Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def tfds_dir(tmp_path_factory):
  return str(tmp_path_factory.mktemp("tfds"))


def tiny_config(tfds_dir, **train_overrides):
  from configs import digits

  config = digits.get_config()
  config.data.path = tfds_dir
  config.data.image_size = 8
  config.model.channels = 4
  config.model.channel_mult = (1, 2)
  config.model.attention_resolutions = ()
  config.optim.warmup_steps = 2
  config.train.batch_size = 8
  config.train.log_every_steps = 2
  config.train.sample_every_steps = 1000
  config.train.prior_num_images = 64
  config.checkpoint.every_steps = 2
  config.sample.num_steps = 3
  config.sample.num_images = 4
  config.sample.batch_size = 4
  for key, value in train_overrides.items():
    config.train[key] = value
  return config


def saved_state(workdir, step):
  """The saved train state as arrays on this process's first device, whatever topology saved it."""
  import jax

  manager = ocp.CheckpointManager(
    pathlib.Path(workdir).resolve() / "checkpoints", item_handlers={"state": ocp.StandardCheckpointHandler()}
  )
  device = jax.sharding.SingleDeviceSharding(jax.devices()[0])
  target = jax.tree.map(
    lambda m: jax.ShapeDtypeStruct(m.shape, m.dtype, sharding=device), manager.item_metadata(step)["state"]
  )
  return manager.restore(step, args=ocp.args.Composite(state=ocp.args.StandardRestore(target)))["state"]


def flat(tree):
  import jax

  return {jax.tree_util.keystr(k): np.asarray(v) for k, v in jax.tree_util.tree_leaves_with_path(tree)}


def test_resume_gives_bitwise_the_same_state_and_sampling_is_deterministic(tfds_dir, tmp_path, monkeypatch):
  monkeypatch.chdir(tmp_path)  # relative workdirs, as users type them
  straight, resumed = pathlib.Path("straight"), pathlib.Path("resumed")
  train.train_and_evaluate(tiny_config(tfds_dir, num_steps=4), str(straight))
  train.train_and_evaluate(tiny_config(tfds_dir, num_steps=2), str(resumed))
  train.train_and_evaluate(tiny_config(tfds_dir, num_steps=4), str(resumed))  # resumes at step 2
  a, b = flat(saved_state(straight, 4)), flat(saved_state(resumed, 4))
  assert a.keys() == b.keys()
  for key in a:
    np.testing.assert_array_equal(a[key], b[key], err_msg=f"{key} differs after resume")
  assert int(a["['step']"]) == 4

  first = np.load(sample_lib.sample(tiny_config(tfds_dir), str(straight)))["images"]
  second = np.load(sample_lib.sample(tiny_config(tfds_dir), str(straight)))["images"]
  assert first.shape == (4, 8, 8, 1) and first.dtype == np.uint8
  np.testing.assert_array_equal(first, second)


def main_command(workdir, *overrides):
  return [
    sys.executable,
    "-m",
    "soft_diffusion.main",
    "--config",
    "configs/digits.py",
    f"--workdir={workdir}",
    *overrides,
  ]


def run_main(workdir, *overrides, timeout=120):
  env = dict(os.environ, JAX_PLATFORMS="cpu")
  return subprocess.run(
    main_command(workdir, *overrides), cwd=REPO, capture_output=True, text=True, timeout=timeout, env=env
  )


def test_bad_override_fails_before_anything_is_written(tmp_path):
  workdir = tmp_path / "run"
  proc = run_main(workdir, "--config.model.dtype=float16")
  assert proc.returncode != 0
  assert "config.model.dtype must be 'float32' or 'bfloat16', got 'float16'" in proc.stderr
  assert not workdir.exists()


def test_misspelled_override_is_rejected(tmp_path):
  proc = run_main(tmp_path, "--config.train.num_step=5")
  assert proc.returncode != 0 and "num_step" in proc.stderr


def test_sigterm_saves_exits_cleanly_and_the_run_resumes(tfds_dir, tmp_path):
  workdir = tmp_path / "run"
  small = [
    f"--config.data.path={tfds_dir}",
    "--config.data.image_size=8",
    "--config.model.channels=4",
    "--config.model.channel_mult=(1, 2)",
    "--config.model.attention_resolutions=()",
    "--config.train.batch_size=8",
    "--config.train.log_every_steps=5",
    "--config.train.prior_num_images=64",
    "--config.checkpoint.every_steps=100000",
    "--config.optim.decay=constant",
  ]
  env = dict(os.environ, JAX_PLATFORMS="cpu")
  proc = subprocess.Popen(
    main_command(workdir, *small, "--config.train.num_steps=100000"),
    cwd=REPO,
    stdout=subprocess.PIPE,
    stderr=subprocess.STDOUT,
    text=True,
    env=env,
  )
  lines = []
  for line in proc.stdout:  # wait until training is under way
    lines.append(line)
    if "step 10/100000" in line:
      proc.send_signal(signal.SIGTERM)
      break
  rest, _ = proc.communicate(timeout=300)
  log = "".join(lines) + rest
  assert proc.returncode == 0, log[-3000:]
  saved = sorted(int(p.name) for p in (workdir / "checkpoints").iterdir() if p.name.isdigit())
  assert len(saved) == 1 and 10 <= saved[0] < 100000, f"checkpoints after SIGTERM: {saved}"
  resumed = run_main(workdir, *small, f"--config.train.num_steps={saved[0] + 5}", timeout=300)
  assert resumed.returncode == 0, resumed.stderr[-3000:]
  assert f"resumed from step {saved[0]}" in resumed.stderr
  assert (workdir / "checkpoints" / str(saved[0] + 5)).is_dir()
