"""The launch scripts: syntax, clear refusals where their environment is missing, slurm.sh in a
job submitted from elsewhere (fake scontrol/srun), and tpu_pod.sh's whole cycle on a fake pod
(tests/fakes/gcloud runs each worker's commands in a local folder). launch/local.sh itself runs
the multi-process training in tests/test_multidevice.py."""

import os
import pathlib
import re
import shutil
import subprocess
import sys
import time

import pytest
from support import free_port

REPO = pathlib.Path(__file__).resolve().parents[1]
SCRIPTS = ["common.sh", "local.sh", "gpu.sh", "slurm.sh", "tpu_pod.sh", "stage_data.sh", "worker_logs.sh"]


def launch(script, *args, env=None):
  env = {**os.environ, "PYTHON": sys.executable, **(env or {})}  # stub on PATH first: env["PATH"]
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


def test_slurm_job_submitted_from_elsewhere_runs_one_process_per_node_with_all_gpus(tmp_path, tfds_dir):
  """sbatch runs a copy of slurm.sh from a spool folder, in the submission directory (not the
  checkout). Fake `scontrol` (the job's Command) and `srun` (records its arguments and working
  directory, then runs the command, here on the CPU) stand in for SLURM; JAX's SLURM detection
  reads the job's variables."""
  bin_dir, spool, elsewhere = tmp_path / "bin", tmp_path / "spool", tmp_path / "elsewhere"
  for d in (bin_dir, spool, elsewhere):
    d.mkdir()
  record = tmp_path / "srun.txt"
  (bin_dir / "scontrol").write_text(
    f'#!/usr/bin/env bash\necho "JobId=4242 Command={REPO}/launch/slurm.sh WorkDir=x"\n'
  )
  srun = "#!/usr/bin/env bash\n" + f'{{ pwd; printf "%s\\n" "$@"; }} > {record}\n'
  srun += 'while [[ "$1" == --* ]]; do shift; done\nexec "$@"\n'
  (bin_dir / "srun").write_text(srun)
  for stub in ("scontrol", "srun"):
    (bin_dir / stub).chmod(0o755)
  copy = spool / "slurm_script"
  copy.write_text((REPO / "launch" / "slurm.sh").read_text())
  env = {
    **os.environ,
    "PATH": f"{bin_dir}:{os.environ['PATH']}",
    "PYTHON": sys.executable,
    "JAX_PLATFORMS": "cpu",
    "SLURM_JOB_ID": "4242",
    "SLURM_SUBMIT_DIR": str(elsewhere),
    "SLURM_STEP_NODELIST": "localhost",
    "SLURM_NTASKS": "1",
    "SLURM_PROCID": "0",
    "SLURM_LOCALID": "0",
    "SLURM_CPUS_PER_TASK": "12",
    "SLURM_GPUS_ON_NODE": "4",
    "JAX_COORDINATOR_PORT": str(free_port()),
    "SOFT_DIFFUSION_ALLOW_CPU": "1",  # the explicit opt-out: this job runs on the CPU
  }
  workdir = tmp_path / "run"
  flags = ["--config", "configs/tiny.py", "--workdir", str(workdir), f"--config.data.path={tfds_dir}"]
  proc = subprocess.run(
    ["bash", str(copy), *flags, "--config.train.total_steps=2", "--config.train.tensorboard=False"],
    cwd=elsewhere,
    env=env,
    capture_output=True,
    text=True,
    timeout=300,
  )
  assert proc.returncode == 0, proc.stderr[-3000:]
  cwd, *args = record.read_text().splitlines()
  assert cwd == str(REPO)
  assert args[:3] == ["--kill-on-bad-exit=1", "--ntasks-per-node=1", "--cpus-per-task=12"]
  assert args[3:8] == [sys.executable, "-m", "soft_diffusion.main", "--distributed", "--local_device_ids=0,1,2,3"]
  assert "devices: 1 (cpu), processes: 1" in proc.stderr
  assert (workdir / "checkpoints" / "2").is_dir()

  # Without the opt-out a job whose jax finds no GPU refuses in one line, before it writes anything.
  env["SOFT_DIFFUSION_ALLOW_CPU"] = ""
  env["JAX_COORDINATOR_PORT"] = str(free_port())
  other = tmp_path / "cpu_run"
  flags_cpu = [*flags[:3], str(other), *flags[4:]]
  proc = subprocess.run(["bash", str(copy), *flags_cpu], cwd=elsewhere, env=env, capture_output=True, text=True)
  errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
  assert proc.returncode == 2 and len(errors) == 1 and "--require_backend=gpu" in errors[0], proc.stderr[-2000:]
  assert "runs on cpu" in errors[0] and not other.exists()
  assert "--require_backend=gpu" in record.read_text().splitlines()

  # Outside a checkout, with no Command to follow: a one-line refusal naming the fix.
  (bin_dir / "scontrol").write_text("#!/usr/bin/env bash\nexit 1\n")
  proc = subprocess.run(["bash", str(copy), *flags], cwd=elsewhere, env=env, capture_output=True, text=True)
  assert proc.returncode == 2 and "set SOFT_DIFFUSION_REPO" in proc.stderr, proc.stderr


FAKE_PYTHON = """#!/usr/bin/env bash
# A worker's .venv/bin/python: version queries go to the real interpreter (or say $FAKE_PY_VERSION);
# a run records its arguments, says it trains, and on SIGTERM says it saves, then exits 0.
if [[ "${1:-}" == -c && -n "${FAKE_PY_VERSION:-}" ]]; then echo "$FAKE_PY_VERSION"; exit 0; fi
if [[ "${1:-}" == -c || "${1:-}" == --version ]]; then exec "$REAL_PYTHON" "$@"; fi
echo "$*" > "$HOME/run_args"
echo "${LIBTPU_INIT_ARGS-unset} ${XLA_FLAGS-unset}" > "$HOME/run_env"
trap 'echo "worker $FAKE_WORKER: SIGTERM, saves and exits"; exit 0' TERM
echo "worker $FAKE_WORKER: training"
for i in $(seq 600); do sleep 0.1; done
"""

FAKE_UV = """#!/usr/bin/env bash
echo "$*" >> "$HOME/uv_calls"
case "$1" in
  --version) echo "uv $FAKE_UV_VERSION" ;;
  venv) mkdir -p .venv/bin && cp "$FAKE_GCLOUD_ROOT/python_stub" .venv/bin/python ;;
esac
"""


def test_tpu_pod_on_a_fake_pod(tmp_path, tfds_dir):
  """tpu_pod.sh against tests/fakes/gcloud: a 2-worker pod of local folders, gs:// buckets in a
  folder. --setup (uv, pinned commit, version check), --stage_data/--data (copy + checksums), a
  detached run that refuses workers on another commit, --logs and --stop."""
  from soft_diffusion.data import prepare

  root = tmp_path / "pod"
  (root / "worker_bin").mkdir(parents=True)
  (root / "bin").mkdir()
  shutil.copy(REPO / "tests" / "fakes" / "gcloud", root / "bin" / "gcloud")
  (root / "python_stub").write_text(FAKE_PYTHON)
  (root / "worker_bin" / "uv").write_text(FAKE_UV)
  (root / "worker_bin" / "hostname").write_text('#!/usr/bin/env bash\necho "worker$FAKE_WORKER"\n')
  for f in (root / "python_stub", root / "worker_bin" / "uv", root / "worker_bin" / "hostname"):
    f.chmod(0o755)
  uv_version = re.search(r"^UV_VERSION=(\S+)$", (REPO / "launch" / "tpu_pod.sh").read_text(), re.M).group(1)
  env = {
    "PATH": f"{root / 'bin'}:{os.environ['PATH']}",
    "FAKE_GCLOUD_ROOT": str(root),
    "FAKE_UV_VERSION": uv_version,
    "REAL_PYTHON": sys.executable,
  }
  pod = ["--tpu", "pod", "--zone", "us-central2-b"]
  head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True).stdout.strip()
  workers = [root / f"worker{i}" for i in range(2)]

  def worker_commit(i):
    return subprocess.run(
      ["git", "rev-parse", "HEAD"], cwd=workers[i] / "soft_diffusion", capture_output=True, text=True
    ).stdout.strip()

  # --setup refuses a commit the workers could not fetch (no remote branch has it), before any ssh
  pushed = subprocess.run(["git", "branch", "-r", "--contains", head], cwd=REPO, capture_output=True, text=True)
  if not pushed.stdout.strip():  # a checkout whose HEAD is pushed has nothing to refuse here
    unpushed = launch("tpu_pod.sh", *pod, "--repo", "https://example.invalid/sd.git", "--setup", env=env)
    assert unpushed.returncode == 2 and "is on no remote branch; push it first" in unpushed.stderr, unpushed.stderr
    assert not (root / "calls").exists()

  # --setup: every worker cloned at this checkout's commit, packages through uv, version checked
  proc = launch("tpu_pod.sh", *pod, "--repo", str(REPO), "--setup", env=env)
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert [worker_commit(i) for i in range(2)] == [head, head]
  for i in range(2):
    assert f"worker worker{i}: {head[:12]}, Python 3.11" in proc.stdout
    calls = (workers[i] / "uv_calls").read_text()
    assert "pip install --quiet --python .venv/bin/python -c constraints.txt -e .[train,tpu]" in calls
  old = launch("tpu_pod.sh", *pod, "--repo", str(REPO), "--setup", env={**env, "FAKE_PY_VERSION": "3.10"})
  assert old.returncode != 0
  assert "worker worker0: soft_diffusion/.venv/bin/python is Python 3.10; soft_diffusion needs >= 3.11" in old.stderr

  # --stage_data here, --data on the workers: the files arrive, checked against SHA256SUMS
  prepare.prepare("digits", tfds_dir)
  weights = tmp_path / "weights.pt"
  weights.write_bytes(b"stand-in for the Inception weights")
  stage = launch(
    "stage_data.sh", "gs://b/sd", "--name", "digits", "--data_dir", tfds_dir, "--weights", str(weights), env=env
  )
  assert stage.returncode == 0, stage.stderr[-3000:]
  proc = launch("tpu_pod.sh", *pod, "--data", "gs://b/sd", env=env)
  assert proc.returncode == 0, proc.stderr[-3000:]
  source = pathlib.Path(tfds_dir) / "soft_diffusion_digits"
  files = sorted(p.relative_to(source) for p in source.rglob("*") if p.is_file())
  for w in workers:
    copied = w / "tensorflow_datasets" / "soft_diffusion_digits"
    assert sorted(p.relative_to(copied) for p in copied.rglob("*") if p.is_file()) == files
    assert (w / ".cache" / "soft_diffusion" / "inception" / "default_1.pt").read_bytes() == weights.read_bytes()
  again = launch("tpu_pod.sh", *pod, "--data", "gs://b/sd", env=env)
  assert again.returncode == 0 and again.stdout.count("is here already") == 2
  shutil.copytree(root / "bucket" / "b" / "sd", root / "bucket" / "b" / "bad")
  (root / "bucket" / "b" / "bad" / "inception" / "default_1.pt").write_bytes(b"damaged")
  bad = launch("tpu_pod.sh", *pod, "--data", "gs://b/bad", env=env)
  assert bad.returncode != 0 and "gs://b/bad does not match its SHA256SUMS" in bad.stderr

  # A worker on another commit: nothing starts anywhere
  git = ["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "--quiet", "--allow-empty", "-m", "local"]
  subprocess.run(git, cwd=workers[1] / "soft_diffusion", check=True)  # worker 1 drifts to another commit
  run_args = ["--", "--config", "configs/celeba64.py", "--workdir", "gs://b/runs/c 1", "--config.train.total_steps=10"]
  refused = launch("tpu_pod.sh", *pod, *run_args, env=env)
  assert refused.returncode == 2 and f"workers not on this checkout's commit {head[:12]}: worker1" in refused.stderr
  assert not any((w / "run_args").exists() for w in workers)
  subprocess.run(["git", "checkout", "--quiet", "--detach", head], cwd=workers[1] / "soft_diffusion", check=True)

  # A slice with a worker that does not answer, or a config the commit lacks: nothing starts
  missing = launch("tpu_pod.sh", *pod, *run_args, env={**env, "FAKE_GCLOUD_SLICE_WORKERS": "3"})
  assert missing.returncode == 2 and "2 of the slice's 3 workers answered" in missing.stderr, missing.stderr
  no_config = launch("tpu_pod.sh", *pod, "--", "--config", "configs/nope.py:paper", "--workdir", "gs://b/r", env=env)
  assert no_config.returncode == 2 and "--config configs/nope.py is not a file of this checkout's commit" in (
    no_config.stderr
  )
  assert not any((w / "run_args").exists() for w in workers)

  # The run: detached (the launcher returns while the workers train), then --logs and --stop; the
  # compilation cache is shared beside the workdir; --env and --gcloud_flag reach the workers / gcloud
  passing = ["--env", "LIBTPU_INIT_ARGS=--xla_tpu_enable_foo=true", "--gcloud_flag=--internal-ip", "--log_every", "1"]
  started = launch("tpu_pod.sh", *pod, *passing, *run_args, env=env)
  assert started.returncode == 0, started.stderr[-3000:]
  for w in workers:
    wait_until(lambda w=w: (w / "run_env").exists())
    assert (w / "run_args").read_text().split() == [
      "-m", "soft_diffusion.main", "--distributed", "--compilation_cache_dir=gs://b/runs/compilation_cache",
      "--config", "configs/celeba64.py", "--workdir", "gs://b/runs/c", "1", "--config.train.total_steps=10",
    ]  # fmt: skip
    assert (w / "run_env").read_text().split() == ["--xla_tpu_enable_foo=true", "unset"]
  ssh_calls = [line for line in (root / "calls").read_text().splitlines() if " ssh " in line]
  assert ssh_calls[-1].rstrip().endswith("--internal-ip"), ssh_calls[-1]
  again = launch("tpu_pod.sh", *pod, *run_args, env=env)
  assert again.returncode == 2 and "a run is still going on: worker0 worker1" in again.stderr
  logs = launch("tpu_pod.sh", *pod, "--logs", "all", env=env)
  assert "worker 0: training" in logs.stdout and "worker 1: training" in logs.stdout
  stop = launch("tpu_pod.sh", *pod, "--stop", env=env)
  assert stop.returncode == 0 and stop.stdout.count("SIGTERM sent") == 2
  for i, w in enumerate(workers):
    wait_until(lambda w=w, i=i: f"worker {i}: SIGTERM, saves and exits" in (w / "soft_diffusion_run.log").read_text())

  # Each worker's log reaches the workdir in numbered segments (launch/worker_logs.sh), its last
  # lines after the run ended; only this run's lines.
  def copied(i):
    folder = root / "bucket" / "b" / "runs" / "c 1" / "logs" / "workers" / f"worker{i}"
    return "".join(p.read_text() for p in sorted(folder.glob("segment_*.log"))) if folder.is_dir() else ""

  for i in range(2):
    wait_until(lambda i=i: f"worker {i}: SIGTERM, saves and exits" in copied(i))
    assert copied(i).startswith(f"worker {i}: training") and copied(i).count("training") == 1


def wait_until(condition, timeout=30.0):
  deadline = time.monotonic() + timeout
  while not condition():
    assert time.monotonic() < deadline, "timed out"
    time.sleep(0.1)


def test_relative_paths_are_the_callers_folder_not_the_checkout(tmp_path):
  """The launchers run in the checkout; a relative --workdir, data path or config file given from
  another folder means that folder, while a config named relative to the checkout stays as is."""
  record = tmp_path / "args.txt"
  stub = tmp_path / "python"  # imports go to the real interpreter; a run records its arguments
  stub.write_text(
    f'#!/usr/bin/env bash\nif [[ "$1" == -c ]]; then exec {sys.executable} "$@"; fi\necho "$@" > {record}\n'
  )
  stub.chmod(0o755)
  elsewhere = tmp_path / "elsewhere"
  elsewhere.mkdir()
  (elsewhere / "mine.py").write_text("def get_config(form=None): ...\n")
  for config, expected in (("configs/digits.py", "configs/digits.py"), ("mine.py:paper", f"{elsewhere}/mine.py:paper")):
    args = ["--config", config, "--workdir", "runs/x", "--config.data.path=data", "--config.seed=1"]
    proc = subprocess.run(
      ["bash", str(REPO / "launch" / "local.sh"), *args],
      cwd=elsewhere,
      env={**os.environ, "PYTHON": str(stub), "SOFT_DIFFUSION_COMPILATION_CACHE": "cache"},
      capture_output=True,
      text=True,
    )
    assert proc.returncode == 0, proc.stderr
    assert record.read_text().split() == [
      "-m", "soft_diffusion.main", f"--compilation_cache_dir={elsewhere}/cache", "--config", expected,
      "--workdir", f"{elsewhere}/runs/x", f"--config.data.path={elsewhere}/data", "--config.seed=1",
    ]  # fmt: skip


def test_slurm_one_task_per_gpu_gives_each_process_its_gpu(tmp_path):
  """sbatch --ntasks-per-node=4 --gpus-per-task=1: srun starts 4 tasks per node, and each process
  drives the one GPU SLURM bound to it (device 0 of the one it sees), else its local rank's."""
  bin_dir = tmp_path / "bin"
  bin_dir.mkdir()
  record = tmp_path / "srun.txt"
  # srun: records its arguments, then runs the task's command as local rank 2
  (bin_dir / "srun").write_text(
    f'#!/usr/bin/env bash\nprintf "%s\\n" "$@" > {record}\n'
    'while [[ "$1" == --* ]]; do shift; done\nSLURM_LOCALID=2 exec "$@"\n'
  )
  python = tmp_path / "python"  # imports go to the real interpreter; a run prints its arguments
  python.write_text(f'#!/usr/bin/env bash\nif [[ "$1" == -c ]]; then exec {sys.executable} "$@"; fi\necho "RUN $*"\n')
  for f in (bin_dir / "srun", python):
    f.chmod(0o755)
  env = {
    **os.environ,
    "PATH": f"{bin_dir}:{os.environ['PATH']}",
    "PYTHON": str(python),
    "SLURM_JOB_ID": "7",
    "SOFT_DIFFUSION_REPO": str(REPO),
    "SLURM_NTASKS_PER_NODE": "4(x2)",
    "SLURM_GPUS_ON_NODE": "4",
    "SOFT_DIFFUSION_COMPILATION_CACHE": str(tmp_path / "cache"),
  }
  for visible, device in (("3", "0"), ("", "2")):
    proc = subprocess.run(
      ["bash", "launch/slurm.sh", "--config", "configs/tiny.py", "--workdir", str(tmp_path / "run")],
      cwd=REPO,
      env={**env, "CUDA_VISIBLE_DEVICES": visible},
      capture_output=True,
      text=True,
    )
    assert proc.returncode == 0, proc.stderr
    assert record.read_text().splitlines()[:2] == ["--kill-on-bad-exit=1", "--ntasks-per-node=4"]
    run = proc.stdout.split("RUN ", 1)[1].split()
    assert run[:4] == ["-m", "soft_diffusion.main", "--distributed", f"--local_device_ids={device}"], proc.stdout
    assert "--require_backend=gpu" in run and run[-4:] == [
      "--config",
      "configs/tiny.py",
      "--workdir",
      str(tmp_path / "run"),
    ]
