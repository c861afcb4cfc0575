"""Errors a user causes and can fix (bad config values, paths, missing files), as opposed to bugs.

The command line (`main.py`) prints a `UserError` as one line, `error: <message>`, and exits
with status 2; any other exception is a bug and keeps its traceback. Each class also derives
from the built-in exception a caller would expect (`ValueError`, `FileNotFoundError`,
`RuntimeError`), so library users can catch those as before.

A message names what was wrong (the config field, path or flag) and what is allowed or which
command to run; it is one line.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator


class UserError(Exception):
  """Input a user can fix; printed without a traceback."""


class ConfigError(UserError, ValueError):
  """A config value, override or flag that is not allowed."""


class MissingError(UserError, FileNotFoundError):
  """Something that has to exist first (dataset, checkpoint, statistics, weights, schedule)."""


class CheckpointError(UserError, RuntimeError):
  """A checkpoint that exists but cannot be used with this config."""


def one_line(text: str) -> str:
  """`text` with its lines joined by '; ' (a message must fit on one line)."""
  return "; ".join(line.strip() for line in str(text).splitlines() if line.strip())


@contextlib.contextmanager
def user_input(what: str | None = None) -> Iterator[None]:
  """Turns the ValueError/OSError raised while checking or opening user-named input (a
  dataset, a file, a batch split) into a one-line `UserError`, prefixed with `what` (e.g.
  'config.data') when the message does not name it already."""
  try:
    yield
  except UserError:
    raise
  except (ValueError, OSError) as e:
    text = one_line(e)
    if what and not text.startswith(what):
      text = f"{what}: {text}"
    raise (MissingError if isinstance(e, FileNotFoundError) else ConfigError)(text) from e
