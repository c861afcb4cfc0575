"""The same config trains the same way on 1 device, on 8 devices of one process, and on 2
processes x 4 devices joined by `jax.distributed` (CPU collectives over localhost).

Each run is `launch/local.sh` (which runs `python -m soft_diffusion.main`) in a subprocess: XLA's
fake CPU device count is fixed before jax is imported, and the two-process run is two real
processes with a localhost coordinator.
"""

import json
import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest
from support import REPO, flat, saved_state

from soft_diffusion.run.workdir import Workdir

STEPS = 5


def pinned(tfds_dir):
  """configs/tiny.py with its numbers pinned here: tuning that config must not move this test."""
  return {
    "data.path": tfds_dir,
    "train.log_every_steps": 1,
    "train.total_steps": STEPS,
    "checkpoint.every_steps": 100,
    "optim.warmup_steps": 0,
    "optim.lr": 2e-3,
    "optim.decay": "constant",
  }


def overrides(tfds_dir):
  return [f"--config.{key}={value}" for key, value in pinned(tfds_dir).items()]


EVAL = {"eval.samplers": ("momentum",), "eval.num_steps": (3,)}  # one point: the test is about sharding


def start(workdir, tfds_dir, devices, processes=1, mode="train"):
  """launch/local.sh: `processes` processes with `devices` fake CPU devices each."""
  # The launch script's compilation cache: the session's (conftest), else one beside the workdir.
  cache = os.environ.get("JAX_COMPILATION_CACHE_DIR") or pathlib.Path(workdir).parent / "compilation_cache"
  env = dict(os.environ, PYTHON=sys.executable, SOFT_DIFFUSION_COMPILATION_CACHE=str(cache))
  launcher = ["bash", "launch/local.sh", "--processes", str(processes), "--cpu_devices", str(devices), "--"]
  command = [*launcher, "--config=configs/tiny.py", f"--workdir={workdir}", f"--mode={mode}", *overrides(tfds_dir)]
  if mode == "eval":
    command += [f"--config.{key}={value!r}" for key, value in EVAL.items()]
  return subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def finish(proc, label):
  out, _ = proc.communicate(timeout=600)
  assert proc.returncode == 0, f"{label} failed:\n{out[-4000:]}"
  return out


def losses(workdir):
  from soft_diffusion.run import workdir as workdir_lib

  by_step = {r["step"]: r["loss"] for r in workdir_lib.read_metrics(pathlib.Path(workdir) / "logs")}
  return np.array([by_step[s] for s in range(1, STEPS + 1)])


def relative_differences(a, b):
  """Per tensor ||a - b|| / ||b|| (tensors that are all zero: ||a - b||)."""
  fa, fb = flat(a), flat(b)
  assert fa.keys() == fb.keys()
  out = {}
  for key in fb:
    diff = np.linalg.norm(fa[key].astype(np.float64) - fb[key])
    scale = np.linalg.norm(fb[key].astype(np.float64))
    out[key] = diff / scale if scale > 0 else diff
  return out


@pytest.fixture(scope="module")
def runs(tfds_dir, tmp_path_factory):
  root = tmp_path_factory.mktemp("runs")
  finish(start(root / "one_device", tfds_dir, 1), "1 process x 1 device")  # may prepare the dataset
  finish(start(root / "eight_devices", tfds_dir, 8), "1 process x 8 devices")
  out = finish(start(root / "two_processes", tfds_dir, 4, processes=2), "2 processes x 4 devices")
  assert out.count("devices: 8 (cpu), processes: 2") == 2, out[-3000:]
  return root


def test_eight_devices_give_the_losses_of_one(runs):
  one, eight = losses(runs / "one_device"), losses(runs / "eight_devices")
  rel = np.abs(eight - one) / np.abs(one)
  print(f"losses 1 device {one.tolist()}\nlosses 8 devices {eight.tolist()}\nrelative differences {rel.tolist()}")
  assert np.all(rel <= 1e-5), f"8-device losses differ from 1-device losses by up to {rel.max():.2e} (relative)"
  assert len(set(one.tolist())) == STEPS  # five different batches, not one repeated


def test_two_processes_give_the_parameters_of_one(runs):
  single, multi = saved_state(runs / "eight_devices", STEPS), saved_state(runs / "two_processes", STEPS)
  assert int(multi["step"]) == STEPS
  rel = relative_differences(multi, single)
  weights = {k: v for k, v in rel.items() if k.startswith(("['params']", "['ema_params']"))}
  moments = {k: v for k, v in rel.items() if k.startswith("['opt_state']")}
  worst = max(weights, key=weights.get)
  print(
    f"2 processes x 4 vs 1 x 8 after {STEPS} steps: parameters and EMA within {weights[worst]:.2e} ({worst}); "
    f"Adam moments within {max(moments.values()):.2e}"
  )
  assert weights[worst] <= 1e-5, f"{worst}: 2x4 differs from 1x8 by {weights[worst]:.2e} relative after {STEPS} steps"
  # Adam's second moments hold squared gradients, whose rounding differences (another all-reduce
  # order) are twice as large relatively: a looser bound.
  assert max(moments.values()) <= 1e-4, max(moments, key=moments.get)
  moved = relative_differences(single, saved_state(runs / "one_device", STEPS))
  assert max(moved.values()) <= 1e-4  # and 1 device agrees too (looser: more steps of float drift)
  np.testing.assert_allclose(losses(runs / "two_processes"), losses(runs / "eight_devices"), rtol=1e-5)


def test_two_processes_fit_the_prior_of_one(runs):
  """Training starts by fitting the Gaussian p₁ (prior.npz): on 2 processes each fits on every
  other image and the fit's sums are added over processes, giving one process's prior."""
  with np.load(runs / "two_processes" / "prior.npz") as a, np.load(runs / "eight_devices" / "prior.npz") as b:
    assert sorted(a.files) == sorted(b.files)
    np.testing.assert_array_equal(a["full_index"], b["full_index"])
    for key in ("mean", "full_chol", "diag_std", "noise_std"):
      np.testing.assert_allclose(a[key], b[key], rtol=1e-5, atol=1e-6, err_msg=key)


@pytest.fixture(scope="module")
def evaluated(runs, tfds_dir):
  """--mode stats and --mode eval of the 2-process run's checkpoint, on 2 processes x 4 devices and
  (on a copy of the workdir) in this process on its one device."""
  import shutil

  from soft_diffusion.run import schema
  from soft_diffusion.run.modes import evaluate

  single = runs / "eval_single"
  shutil.copytree(runs / "two_processes", single)
  outputs = {}
  for mode in ("stats", "eval"):
    out = finish(start(runs / "two_processes", tfds_dir, 4, processes=2, mode=mode), f"--mode {mode}, 2 x 4")
    assert out.count("devices: 8 (cpu), processes: 2") == 2, out[-3000:]
    outputs[mode] = out
  config = schema.load_config(str(REPO / "configs" / "tiny.py"))
  for key, value in {**pinned(tfds_dir), **EVAL}.items():
    block, field = key.split(".")
    config[block][field] = value
  evaluate.reference_stats(Workdir.of(single).settings(config), single)
  evaluate.evaluate(Workdir.of(single).settings(config), single)
  return runs / "two_processes", single, outputs


def test_two_processes_evaluate_as_one(evaluated):
  """--mode stats on 2 processes: each reads and embeds every other reference image (its progress
  line counts its share) and the sums are added over processes: the statistics and the KID
  features (the first images, in order) are those of one process. --mode eval: the same FID/KID."""
  multi, single, outputs = evaluated
  with np.load(multi / "stats" / "reference_train.npz") as a, np.load(single / "stats" / "reference_train.npz") as b:
    count = int(b["count"])
    assert int(a["count"]) == count
    for share in ((count + 1) // 2, count // 2):
      assert f"reference features (digits/train) (this process's {share}): {share}/{share}" in outputs["stats"]
    np.testing.assert_allclose(a["mu"], b["mu"], rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(a["sigma"], b["sigma"], rtol=1e-3, atol=1e-5)
    assert a["kid_features"].shape == b["kid_features"].shape
    np.testing.assert_allclose(a["kid_features"], b["kid_features"], rtol=1e-4, atol=1e-4)
  pa = json.loads((multi / "eval" / f"eval_step{STEPS}.json").read_text())["points"]
  pb = json.loads((single / "eval" / f"eval_step{STEPS}.json").read_text())["points"]
  assert [(p["sampler"], p["num_steps"]) for p in pa] == [(p["sampler"], p["num_steps"]) for p in pb]
  fid_rel = max(abs(p["fid"] - q["fid"]) / q["fid"] for p, q in zip(pa, pb, strict=True))
  kid_abs = max(abs(p["kid_mean"] - q["kid_mean"]) for p, q in zip(pa, pb, strict=True))
  print(f"2 x 4 vs 1 process: FID within {fid_rel:.2e} relative, KID within {kid_abs:.2e}")
  assert fid_rel <= 1e-3 and kid_abs <= 1e-4


def test_two_processes_read_each_image_once_and_select_the_levels_of_one(tmp_path, tfds_dir):
  """--mode levels on 2 processes: each reads every other image of the power-spectrum pass (its
  progress line counts its share) and the sums are added over processes, so the levels, their
  distances and the image count are those of one process, within float rounding."""
  from soft_diffusion import data

  data.make_source(data.DataConfig(name="digits", path=tfds_dir), "train")  # prepared before two processes read
  runs = tmp_path
  for name, processes in (("levels_one", 1), ("levels_two", 2)):
    out = finish(start(runs / name, tfds_dir, 1, processes=processes, mode="levels"), f"--mode levels, {processes} x 1")
  one, two = (json.loads((runs / n / "levels.json").read_text()) for n in ("levels_one", "levels_two"))
  assert one["num_images"] == two["num_images"] == 1617  # the digits' train split
  for share in (809, 808):  # images 0, 2, 4, ... and 1, 3, 5, ...
    assert f"power spectrum (this process's {share}): {share}/{share}" in out, out[-3000:]
  assert one["candidate_indices"] == two["candidate_indices"]
  np.testing.assert_allclose(two["hop_distances"], one["hop_distances"], rtol=1e-6)
  np.testing.assert_allclose(two["epsilon"], one["epsilon"], rtol=1e-6)
