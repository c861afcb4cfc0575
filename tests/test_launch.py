"""The launch scripts: syntax, clear refusals where their environment is missing, and the exact
command tpu_pod.sh sends to every worker (gcloud replaced by a stub that prints its arguments).
launch/local.sh itself runs the multi-process training in tests/test_multidevice.py."""

import os
import pathlib
import subprocess
import sys

import pytest

REPO = pathlib.Path(__file__).resolve().parents[1]
SCRIPTS = ["common.sh", "local.sh", "gpu.sh", "slurm.sh", "tpu_pod.sh"]


def launch(script, *args, env=None):
  env = {**os.environ, "PYTHON": sys.executable, **(env or {})}
  return subprocess.run(
    ["bash", f"launch/{script}", *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=120
  )


@pytest.mark.parametrize("script", SCRIPTS)
def test_syntax(script):
  proc = subprocess.run(["bash", "-n", f"launch/{script}"], cwd=REPO, capture_output=True, text=True)
  assert proc.returncode == 0, proc.stderr


def test_refusals_name_what_is_missing():
  cases = [
    ("gpu.sh", ["--config", "configs/digits.py"], {"JAX_PLATFORMS": "cpu"}, "sees no GPU"),
    ("slurm.sh", [], {"SLURM_JOB_ID": ""}, "not inside a SLURM job"),
    ("tpu_pod.sh", ["--zone", "z"], {}, "--tpu and --zone are required"),
    ("local.sh", ["--processes", "0", "--"], {}, "--processes must be an integer >= 1"),
    ("local.sh", ["--processes", "2", "--bogus"], {}, "unknown option --bogus"),
  ]
  for script, args, env, message in cases:
    proc = launch(script, *args, env=env)
    assert proc.returncode == 2 and message in proc.stderr, (script, proc.stderr)


def test_tpu_pod_runs_the_same_command_on_every_worker(tmp_path):
  stub = tmp_path / "gcloud"
  stub.write_text('#!/usr/bin/env bash\nprintf "%s\\n" "$@"\n')
  stub.chmod(0o755)
  env = {"PATH": f"{tmp_path}:{os.environ['PATH']}"}
  proc = launch(
    "tpu_pod.sh",
    *("--tpu", "pod", "--zone", "us-central2-b", "--"),
    *("--config", "configs/celeba64.py", "--workdir", "/mnt/shared/run 1", "--config.train.num_steps=10"),
    env=env,
  )
  assert proc.returncode == 0, proc.stderr
  lines = proc.stdout.splitlines()
  assert lines[:5] == ["compute", "tpus", "tpu-vm", "ssh", "pod"]
  assert "--worker=all" in lines and "--zone=us-central2-b" in lines
  remote = next(line for line in lines if line.startswith("--command="))[len("--command=") :]
  assert remote == (
    "cd soft_diffusion && .venv/bin/python -m soft_diffusion.main --distributed"
    ' --compilation_cache_dir="$HOME/.cache/soft_diffusion/jax"'
    r" --config configs/celeba64.py --workdir /mnt/shared/run\ 1 --config.train.num_steps=10"
  )
