"""A run whose workdir is a bucket (gs://), offline: a Google Cloud Storage emulator
(gcp-storage-emulator, in memory, in this process) stands in for GCS. The command line trains,
resumes, samples, computes reference statistics and evaluates with --workdir gs://bucket/run; the
files are then read back from the emulator, and nothing is written to the local disk.

The subprocesses reach the emulator the way production code reaches GCS: etils.epath through
gcsfs (EPATH_USE_TF=false, STORAGE_EMULATOR_HOST) for our files and Orbax's metadata, and
TensorStore's own GCS driver (TENSORSTORE_GCS_HTTP_URL) for the checkpoint arrays. TensorFlow's
GCS client cannot be pointed at an emulator, so the TensorBoard writer is off here
(config.train.tensorboard = False); its gs:// support is TensorFlow's own. gcsfs and the emulator
come with the [test] extra.
"""

import io
import json

import gcs_emulator
import numpy as np
import pytest
from support import cli

BUCKET = "soft-diffusion-test"
DRAW = "momentum_3_forward_noise_step4"  # --mode sample's folder for configs/tiny.py at checkpoint 4 (sample.draw_name)


@pytest.fixture(scope="module")
def gcs():
  """(environment for the subprocesses, emulator URL) of an in-memory GCS emulator."""
  server, url = gcs_emulator.start(BUCKET)
  env = {
    "EPATH_USE_TF": "false",
    "GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT": "false",  # its bucket-type probe speaks gRPC, which the emulator lacks
    "STORAGE_EMULATOR_HOST": url,
    "TENSORSTORE_GCS_HTTP_URL": url,
    "GOOGLE_CLOUD_PROJECT": "test",
  }
  try:
    yield env, url
  finally:
    server.stop()


def test_train_resume_sample_stats_eval_with_a_bucket_workdir(gcs, tiny_flags, tmp_path, monkeypatch):
  env, url = gcs
  monkeypatch.chdir(tmp_path)  # a relative "gs:" folder would appear here if a path were mangled
  workdir = f"gs://{BUCKET}/runs/tiny"
  # 'selected' levels: training writes levels.json first, and every later command reads it back
  common = [*tiny_flags, "--config.train.tensorboard=False", "--config.train.total_steps=2"]
  common.append("--config.train.log_every_steps=1")
  common.append("--config.corruption.blur_schedule=selected")

  def run(*flags):
    result = cli(workdir, *common, *flags, env=env, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    return result

  run()
  assert any(n.startswith("runs/tiny/checkpoints/2/") for n in gcs_emulator.list_objects(url, BUCKET, "runs/tiny/"))
  resumed = run("--config.train.total_steps=4")  # a preempted VM's replacement finds the bucket's state
  assert "resumed from step 2" in resumed.stderr
  run("--mode", "sample")
  run("--mode", "stats")
  run("--mode", "eval", "--config.eval.samplers=('momentum',)", "--config.eval.num_steps=(2,)")

  def read(name):
    return gcs_emulator.read_object(url, BUCKET, f"runs/tiny/{name}")

  files = {n.removeprefix("runs/tiny/") for n in gcs_emulator.list_objects(url, BUCKET, "runs/tiny/")}
  for name in (
    "prior.npz",
    "levels.json",
    "levels.png",
    f"samples/{DRAW}/samples.npz",
    f"samples/{DRAW}/samples.png",
    f"samples/{DRAW}/trajectory.png",
    "stats/reference_train.npz",
    "eval/eval_step4.json",
    "eval/fid_vs_nfe_step4.png",
  ):
    assert name in files, sorted(files)
  assert not any(".tmp" in name for name in files)
  saved = {name.split("/")[1] for name in files if name.startswith("checkpoints/")}
  assert sorted(int(step) for step in saved if step.isdigit()) == [2, 4]
  # Metrics: one segment per run here (flushed with each checkpoint), each line uploaded once
  # (an object store cannot append; rewriting one object per line uploads the history again).
  segments = sorted(name for name in files if name.startswith("logs/metrics/"))
  assert len(segments) == 2 and "logs/metrics.jsonl" not in files, sorted(files)
  steps = [json.loads(line)["step"] for name in segments for line in read(name).decode().splitlines()]
  assert steps == [1, 2, 3, 4]
  uploaded = sum(size for name, size in gcs_emulator.writes if name.startswith("runs/tiny/logs/metrics"))
  stored = sum(len(read(name)) for name in segments)
  assert uploaded == stored, f"{uploaded} bytes of metrics uploaded for {stored} stored"
  with np.load(io.BytesIO(read(f"samples/{DRAW}/samples.npz"))) as f:
    assert f["images"].shape[0] == 8 and f["images"].dtype == np.uint8
  record = json.loads(read("eval/eval_step4.json"))
  assert record["checkpoint_step"] == 4 and all(np.isfinite(p["fid"]) for p in record["points"])
  assert not list(tmp_path.iterdir())  # nothing landed on the local disk
