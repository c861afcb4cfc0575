"""How long-running passes report progress: a log line with the count done, the rate and the
ETA (days included), for sampling, statistics and the power-spectrum pass. The train loop writes
its own line every `train.log_every_steps` (step, loss, images/s, ETA; modes/train.py)."""

from __future__ import annotations

import logging
import math
import time

log = logging.getLogger(__name__)


def format_duration(seconds: float) -> str:
  """'HH:MM:SS', with whole days in front when there are any: 26 h -> '1d 02:00:00'."""
  if not math.isfinite(seconds):
    return "?"
  total = max(0, round(seconds))
  days, rest = divmod(total, 86_400)
  hours, rest = divmod(rest, 3600)
  minutes, secs = divmod(rest, 60)
  clock = f"{hours:02d}:{minutes:02d}:{secs:02d}"
  return f"{days}d {clock}" if days else clock


class Progress:
  """Logs `what: done/total  rate unit/s  ETA` each time it is called with the count done."""

  def __init__(self, what: str, total: int, *, unit: str = "images", note: str = ""):
    self.what, self.total, self.unit, self.note = what, total, unit, note
    self.start = time.perf_counter()

  def __call__(self, done: int) -> None:
    rate = done / max(time.perf_counter() - self.start, 1e-9)
    eta = format_duration((self.total - done) / rate) if rate > 0 else "?"
    log.info("%s: %d/%d  %.1f %s/s%s  ETA %s", self.what, done, self.total, rate, self.unit, self.note, eta)
