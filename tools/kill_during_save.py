"""kill -9 during asynchronous checkpoint saves: every restart must resume from the last complete
checkpoint and train on.

    python tools/kill_during_save.py [--kills 10] [--seed 0] [--workdir DIR]

Trains configs/tiny.py with a checkpoint every step (so an asynchronous save is nearly always in
flight) and SIGKILLs the whole process group at a random moment, 0.2-3 s after training is under
way, `--kills` times. Before each restart it records the newest finalized checkpoint on disk and
whether a save was cut off (an unfinished Orbax temporary folder left behind); the restart must
log "resumed from step S" with that S and then train past it. A last run trains 5 steps more and
must exit 0. Prints one line per kill and the count that resumed correctly. A script, not a test:
it takes a few minutes.
"""

from __future__ import annotations

import argparse
import os
import pathlib
import random
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time

REPO = pathlib.Path(__file__).resolve().parents[1]
FLAGS = [
  "--config=configs/tiny.py",
  "--config.checkpoint.every_steps=1",
  "--config.checkpoint.max_to_keep=2",
  "--config.train.log_every_steps=1",
  "--config.train.sample_every_steps=1000000",
]


def finalized_steps(workdir: pathlib.Path) -> tuple[list[int], list[str]]:
  """(complete checkpoint steps, names of unfinished temporary folders) in WORKDIR/checkpoints."""
  import orbax.checkpoint as ocp

  from soft_diffusion.run.workdir import Workdir

  root = pathlib.Path(Workdir.of(workdir).checkpoints)
  if not root.is_dir():
    return [], []
  steps, partial = [], []
  for path in root.iterdir():
    if path.name.isdigit() and ocp.path.step.is_checkpoint_finalized(path):
      steps.append(int(path.name))
    elif "tmp" in path.name:
      partial.append(path.name)
  return sorted(steps), partial


def start(workdir: pathlib.Path, num_steps: int) -> subprocess.Popen:
  command = [
    sys.executable,
    "-m",
    "soft_diffusion.main",
    f"--workdir={workdir}",
    *FLAGS,
    f"--config.train.total_steps={num_steps}",
  ]
  env = {**os.environ, "JAX_PLATFORMS": "cpu"}
  return subprocess.Popen(
    command, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True
  )


def run_until_killed(workdir: pathlib.Path, delay: float) -> tuple[list[str], float]:
  """Starts training, SIGKILLs its process group `delay` s after the first logged step; returns
  the log lines and the kill time (after start)."""
  proc = start(workdir, 10**7)
  lines: list[str] = []
  started = threading.Event()

  def read() -> None:
    for line in proc.stdout:
      lines.append(line)
      if re.search(r"step \d+/", line):
        started.set()

  reader = threading.Thread(target=read, daemon=True)
  reader.start()
  t0 = time.perf_counter()
  if not started.wait(timeout=600):
    os.killpg(proc.pid, signal.SIGKILL)
    sys.exit("training did not start:\n" + "".join(lines[-40:]))
  time.sleep(delay)
  os.killpg(proc.pid, signal.SIGKILL)
  proc.wait()
  reader.join(timeout=10)
  return lines, time.perf_counter() - t0


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--kills", type=int, default=10)
  parser.add_argument("--seed", type=int, default=0)
  parser.add_argument("--workdir", default=None, help="default: a temporary folder")
  args = parser.parse_args()
  rng = random.Random(args.seed)
  tmp = tempfile.TemporaryDirectory()
  workdir = pathlib.Path(args.workdir or tmp.name) / "run"
  ok = cut = 0
  expected: int | None = None  # the step the next start must resume from
  for kill in range(1, args.kills + 1):
    lines, _ = run_until_killed(workdir, rng.uniform(0.2, 3.0))
    log = "".join(lines)
    resumed = re.search(r"resumed from step (\d+)", log)
    last_logged = max((int(m) for m in re.findall(r"step (\d+)/", log)), default=-1)
    steps, partial = finalized_steps(workdir)
    good = expected is None and resumed is None or (resumed is not None and int(resumed.group(1)) == expected)
    trained_on = last_logged > (expected or 0)
    ok += good and trained_on
    cut += bool(partial)
    was = resumed.group(1) if resumed else "-"
    want = expected if expected is not None else "-"
    verdict = "ok" if good and trained_on else "FAILED"
    print(
      f"kill {kill:2d}: resumed from {was:>4} (expected {want}), trained to step {last_logged}, killed; "
      f"complete checkpoints now {steps}, save cut off: {'yes' if partial else 'no'} | {verdict}",
      flush=True,
    )
    expected = steps[-1] if steps else None
  final = start(workdir, (expected or 0) + 5)
  out, _ = final.communicate(timeout=600)
  resumed = re.search(r"resumed from step (\d+)", out)
  final_ok = final.returncode == 0 and resumed is not None and int(resumed.group(1)) == expected
  was = resumed.group(1) if resumed else "-"
  print(f"final run: exit {final.returncode}, resumed from {was}, {'ok' if final_ok else 'FAILED'}")
  print(
    f"{ok}/{args.kills} restarts resumed from the last complete checkpoint and trained on; {cut} kills cut a save off"
  )
  tmp.cleanup()
  sys.exit(0 if ok == args.kills and final_ok else 1)


if __name__ == "__main__":
  main()
