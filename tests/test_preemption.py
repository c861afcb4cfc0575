"""SIGTERM on a pod: the hosts must stop at the same step, or one waits for ever in a collective
that the other never joins.

Two real processes joined by `jax.distributed` over localhost train configs/tiny.py; SIGTERM goes
to one of them only, at a random moment (while it starts, compiles, restores or trains), in
TRIALS consecutive runs of the same workdir. Every time both processes must save the same step
and exit 0. Then the resumed-TRIALS-times run must be bit-identical to one that trained to the
same step without a stop. The suite runs 2 trials (each starts two processes: most of this file's
time), one SIGTERM in start-up and one in training, to each process once;
`SOFT_DIFFUSION_PREEMPTION_TRIALS=10 pytest tests/test_preemption.py` runs the 10 of
docs/large-runs.md.
"""

import os
import pathlib
import random
import re
import signal
import subprocess
import sys
import time

import numpy as np
from support import REPO, checkpoint_steps, cpu_env, flat, free_port, saved_state

TRIALS = int(os.environ.get("SOFT_DIFFUSION_PREEMPTION_TRIALS", "2"))
SAVED = re.compile(r"SIGTERM: process (\d) saves step (\d+) and exits")


def start_pair(workdir, tfds_dir, num_steps, logs):
  """Two processes of `python -m soft_diffusion.main --distributed`, each writing its own log."""
  port = free_port()
  flags = [
    "--config=configs/tiny.py",
    f"--workdir={workdir}",
    "--distributed",
    f"--coordinator_address=127.0.0.1:{port}",
    "--num_processes=2",
    f"--config.data.path={tfds_dir}",
    f"--config.train.total_steps={num_steps}",
    "--config.train.log_every_steps=1000",
    "--config.train.sample_every_steps=1000000",
    "--config.checkpoint.every_steps=1000000",
    "--config.optim.decay=constant",
    "--config.optim.warmup_steps=0",
    "--config.train.tensorboard=False",  # TensorBoard imports TensorFlow: seconds of start-up per trial
  ]
  # JAX's persistent cache serves process 0 only (on the CPU each process's key differs and only
  # process 0 writes), so process 1 compiles at every start: XLA's quick backend mode makes that
  # 2-4x faster here. Every run of this file, stopped or straight, uses it.
  env = cpu_env(XLA_FLAGS=f"{os.environ.get('XLA_FLAGS', '')} --xla_backend_optimization_level=0".strip())
  procs = []
  for i, log in enumerate(logs):
    command = [sys.executable, "-m", "soft_diffusion.main", *flags, f"--process_id={i}"]
    procs.append(subprocess.Popen(command, cwd=REPO, env=env, stdout=open(log, "w"), stderr=subprocess.STDOUT))
  return procs


def wait_for(log, text, procs, timeout=180):
  """Waits until `log` contains `text`."""
  deadline = time.monotonic() + timeout
  while text not in log.read_text():
    assert time.monotonic() < deadline and all(p.poll() is None for p in procs), log.read_text()[-3000:]
    time.sleep(0.05)


def wait_all(procs, logs, timeout=180):
  """Waits for every process; a process still running after `timeout` s is the hang this file is about."""
  deadline = time.monotonic() + timeout
  codes = []
  for proc in procs:
    try:
      codes.append(proc.wait(timeout=max(1.0, deadline - time.monotonic())))
    except subprocess.TimeoutExpired:
      for p in procs:
        p.kill()
      tails = "\n".join(pathlib.Path(log).read_text()[-2000:] for log in logs)
      raise AssertionError(f"a process still runs {timeout} s after the SIGTERM (the pod hang):\n{tails}") from None
  return codes


def test_sigterm_to_one_process_stops_both_at_the_same_step_and_resumes_exactly(tfds_dir, tmp_path):
  from soft_diffusion.data import prepare

  prepare.prepare("digits", tfds_dir)  # once here: two processes preparing at once would race

  seed = int(os.environ.get("PREEMPTION_SEED", time.time_ns() % 10**6))
  rng = random.Random(seed)
  workdir = tmp_path / "stopped"
  history = []
  last = 0
  for trial in range(TRIALS):
    logs = [tmp_path / f"trial{trial}.{i}.log" for i in range(2)]
    procs = start_pair(workdir, tfds_dir, 1_000_000, logs)
    if trial < 2:  # the first two trials cover both phases and both processes; later ones draw them
      victim = rng.randrange(2) if trial == 0 else 1 - history[0][0]
      phase = ("start-up", "training")[(trial + seed) % 2]
    else:
      victim, phase = rng.randrange(2), rng.choice(["start-up", "training"])
    if phase == "start-up":  # imports, jax.distributed, restoring, compiling
      time.sleep(rng.uniform(0.5, 5.0))
    else:
      wait_for(logs[victim], "first step done", procs)
      time.sleep(rng.uniform(0.0, 1.0))
    procs[victim].send_signal(signal.SIGTERM)
    codes = wait_all(procs, logs)
    texts = [log.read_text() for log in logs]
    context = f"seed {seed} (PREEMPTION_SEED={seed} repeats it), trial {trial}, SIGTERM to {victim} in {phase}"
    assert codes == [0, 0], f"{context}: exit codes {codes}\n" + "\n".join(t[-2000:] for t in texts)
    saved = [SAVED.findall(text) for text in texts]
    assert all(len(s) == 1 for s in saved), f"{context}: save lines {saved}"
    steps = {int(s[0][1]) for s in saved}
    assert len(steps) == 1, f"{context}: the processes saved different steps {saved}"
    step = steps.pop()
    assert step > last and checkpoint_steps(workdir)[-1] == step, f"{context}: {step}, {checkpoint_steps(workdir)}"
    history.append((victim, phase, step))
    print(f"trial {trial}: SIGTERM to process {victim} in {phase}; both saved step {step}", flush=True)
    last = step
  print(f"seed {seed}: (process signalled, when, step both saved) per trial: {history}")

  reference = tmp_path / "straight"
  logs = [tmp_path / f"straight.{i}.log" for i in range(2)]
  assert wait_all(start_pair(reference, tfds_dir, last, logs), logs) == [0, 0]
  a, b = flat(saved_state(workdir, last)), flat(saved_state(reference, last))
  assert a.keys() == b.keys()
  for key in a:
    np.testing.assert_array_equal(a[key], b[key], err_msg=f"{key}: stopped {TRIALS} times differs from straight")
