"""Runs many command lines of `python -m soft_diffusion.main` from one process (tests/test_main.py).

    python tests/cli_runner.py < cases.json > results.json

Input: a JSON list of {"argv": [...], "env": {...}}. The imports a command line needs (absl,
ml_collections, JAX, the drivers) happen once here; then every case runs in a child forked from
this process, so each sees a fresh interpreter state (flags never parsed, nothing compiled) just
as `python -m soft_diffusion.main ARGV` would, and its exit status and stderr are those of that
command. Output: a JSON list of {"returncode": int, "stderr": str}, in the input's order.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile


def preload() -> None:
  """What every mode imports, loaded before the forks (children share it). Nothing here starts
  JAX's backend or parses flags: each child still does both itself."""
  import jax  # noqa: F401

  from soft_diffusion.run import main  # noqa: F401
  from soft_diffusion.run.modes import evaluate, levels, restore, sample, train, tune_grid  # noqa: F401


def run_case(argv: list[str], env: dict[str, str]) -> dict:
  with tempfile.TemporaryFile() as err:
    pid = os.fork()
    if pid == 0:  # the child: one command line, then exit with its status
      code = 1
      try:
        os.environ.update(env)
        os.dup2(err.fileno(), 2)
        sys.stderr = os.fdopen(2, "w", buffering=1)
        from soft_diffusion.run import main

        sys.argv = ["soft_diffusion.main", *argv]  # config_flags reads the overrides from sys.argv
        main.main(sys.argv)
        code = 0
      except SystemExit as e:
        code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
      except BaseException:  # a bug: its traceback on stderr, as the real command shows it
        import traceback

        traceback.print_exc()
      finally:
        sys.stderr.flush()
        os._exit(code)
    _, status = os.waitpid(pid, 0)
    err.seek(0)
    return {"returncode": os.waitstatus_to_exitcode(status), "stderr": err.read().decode(errors="replace")}


def main() -> int:
  cases = json.load(sys.stdin)
  preload()
  results = [run_case(case["argv"], case.get("env", {})) for case in cases]
  json.dump(results, sys.stdout)
  return 0


if __name__ == "__main__":
  sys.exit(main())
