"""SIGTERM, the pre-emption notice of Cloud TPUs, SLURM and Kubernetes: the train loop saves a
checkpoint and exits 0, and rerunning the same command resumes.

One process: a Python handler sets a flag that the loop polls after every step. Several
processes: the hosts of a pod can see the signal at different steps, and a host that stops to
save while another starts the next step leaves both waiting in different collectives for ever.
There JAX's preemption service (started by `jax.distributed.initialize`, on by default) catches
SIGTERM on any host and tells the others through the coordinator, and
`multihost_utils.reached_preemption_sync_point(step)` turns True on every process at the same
step: all save that step together, then exit 0 (tests/test_preemption.py sends SIGTERM to one
of two processes at random moments).
"""

from __future__ import annotations

import os
import signal

from soft_diffusion import errors

_sigterm_seen = False


def _on_sigterm(signum, frame) -> None:
  del signum, frame
  global _sigterm_seen
  _sigterm_seen = True


def catch_early() -> None:
  """Called first thing by the command line, before JAX is imported: a SIGTERM that arrives while
  the run starts (imports, jax.distributed, compiling) is remembered instead of killing the
  process (see `forward_to_jax`)."""
  try:
    signal.signal(signal.SIGTERM, _on_sigterm)
  except ValueError:  # not the main thread
    pass


def release_early() -> None:
  """For the modes that do not train: SIGTERM gets its default action back (and one that came
  already ends the process now)."""
  try:
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
  except ValueError:
    return
  if _sigterm_seen:
    os.kill(os.getpid(), signal.SIGTERM)


def forward_to_jax() -> None:
  """After jax.distributed.initialize (whose preemption service now owns SIGTERM): a SIGTERM seen
  before it is sent again, so that the service hears of it and every process stops together."""
  if _sigterm_seen:
    os.kill(os.getpid(), signal.SIGTERM)


def check_service() -> None:
  """Several processes need JAX's preemption service to agree on the step to stop at."""
  import jax

  if jax.process_count() > 1 and not jax.config.jax_enable_preemption_service:
    raise errors.ConfigError(
      "jax_enable_preemption_service is off: with several processes SIGTERM needs it to stop every "
      "process at the same step (turn it back on: JAX_ENABLE_PREEMPTION_SERVICE=1)"
    )


class Preemption:
  """`should_stop(step)`, called after every step: True once a SIGTERM was seen by this process
  (one process) or by any process (several; then True at the same step on all of them). A
  context manager: with one process it installs the handler and restores the previous one on
  exit. `start_step`: the step the run starts (or resumes) from, the same on every process.

  JAX's service counts steps from 0 in each process's life: a notice that arrives before the
  first `should_stop` (while the run starts, compiles or restores) sets the stop at its step 1.
  So the steps it sees are counted from `start_step`, not the run's absolute step numbers (with
  those, a resumed run would wait for a step it has long passed, and never stop)."""

  def __init__(self, start_step: int = 0):
    import jax

    self.multi = jax.process_count() > 1
    self.start_step = start_step
    self._previous = None

  def __enter__(self):
    if not self.multi:  # with several processes the signal belongs to JAX's preemption service
      try:
        self._previous = signal.signal(signal.SIGTERM, _on_sigterm)
      except ValueError:  # not the main thread: no handler
        self._previous = None
    return self

  def should_stop(self, step: int) -> bool:
    if self.multi:
      from jax.experimental import multihost_utils

      return bool(multihost_utils.reached_preemption_sync_point(step - self.start_step))
    return _sigterm_seen

  def __exit__(self, *exc):
    if self._previous is not None:
      signal.signal(signal.SIGTERM, self._previous)
