"""Command line: train, sample, select corruption levels, reference statistics, evaluate.

    python -m soft_diffusion.main --config configs/digits.py --workdir runs/digits [--config.train.total_steps=100]
    python -m soft_diffusion.main --mode sample --config configs/digits.py --workdir runs/digits [--step N]
    python -m soft_diffusion.main --mode levels --config configs/digits.py --workdir runs/digits
    python -m soft_diffusion.main --mode stats --config configs/digits.py --workdir runs/digits
    python -m soft_diffusion.main --mode eval --config configs/digits.py --workdir runs/digits [--step N | --steps all]
    python -m soft_diffusion.main --mode restore --config configs/digits.py --workdir runs/digits [--config.restore.*]
    python -m soft_diffusion.main --mode tune_grid --config configs/digits.py --workdir runs/digits \
        --config.sample.sampler=multistep
    python -m soft_diffusion.main --distributed [--coordinator_address=host:port --num_processes=N --process_id=i] ...
    python -m soft_diffusion.main ... --compilation_cache_dir=DIR   # restarts skip recompiling

Flags may come in any order (`--config FILE` too: it is moved first). Flags are parsed, the
config file loaded, its overrides (`--config.x.y=v`, locked: a misspelled
key is an error) applied and every value validated before anything is compiled or written.
Anything a user can get wrong (flags, config values, paths, missing checkpoints, statistics,
weights or datasets) ends the program with one line on stderr, `error: <what and what to do>`,
and exit status 2. `--verbose` (or SOFT_DIFFUSION_VERBOSE=1) shows the traceback instead; a bug
always shows it. The drivers are imported only after the flags are checked, so a bad command
line is answered at once.
"""

from __future__ import annotations

import ast
import logging
import os
import pathlib
import re
import sys
from typing import Any

from absl import app, flags
from ml_collections import ConfigDict, config_flags

from soft_diffusion import errors
from soft_diffusion.run import preemption

MODES = ("train", "sample", "levels", "stats", "eval", "restore", "tune_grid")

_CONFIG = config_flags.DEFINE_config_file("config", None, "Path to an ml_collections config file.", lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Folder for checkpoints, logs, samples and results (made if missing).")
_MODE = flags.DEFINE_enum(
  "mode",
  "train",
  MODES,
  "train | sample (images + figures) | levels (level selection, docs/method.md §3) | stats (FID reference "
  "statistics) | eval (FID/KID vs network evaluations) | restore (posterior samples for degraded images) | "
  "tune_grid (time grids fitted to the model for sample.time_grid = 'tuned').",
)
_STEP = flags.DEFINE_integer(
  "step", None, "--mode sample/eval/tune_grid: checkpoint step to load (default: the latest)."
)
_STEPS = flags.DEFINE_string(
  "steps",
  None,
  "--mode eval: several checkpoints, 'all' or a comma list (e.g. 50000,100000); each is evaluated "
  "(resumable) and eval/best.json names the best.",
)
_DISTRIBUTED = flags.DEFINE_bool(
  "distributed",
  False,
  "Call jax.distributed.initialize() before anything else (multi-host). On TPU pods and under SLURM "
  "or Open MPI it finds its peers itself; elsewhere give the three flags below. See launch/.",
)
_COORDINATOR = flags.DEFINE_string(
  "coordinator_address", None, "With --distributed: host:port of process 0 (default: auto-detected)."
)
_NUM_PROCESSES = flags.DEFINE_integer(
  "num_processes", None, "With --distributed: number of processes (default: auto-detected)."
)
_PROCESS_ID = flags.DEFINE_integer(
  "process_id", None, "With --distributed: index of this process (default: auto-detected)."
)
_LOCAL_DEVICE_IDS = flags.DEFINE_string(
  "local_device_ids",
  None,
  "With --distributed: comma list of the local accelerators this process drives (e.g. 0,1,2,3,4,5,"
  "6,7). Default: JAX's choice; under SLURM that is one device per task (SLURM_LOCALID), so "
  "launch/slurm.sh, which starts one process per node, passes all the node's GPUs.",
)
_REQUIRE_BACKEND = flags.DEFINE_enum(
  "require_backend",
  None,
  ("gpu", "tpu", "cpu"),
  "Refuse to run (one line, exit 2) unless JAX's default backend is this one: a cluster job whose "
  "environment has the CPU-only jax would otherwise train on the CPU without a word. launch/slurm.sh "
  "passes gpu (SOFT_DIFFUSION_ALLOW_CPU=1 opts out).",
)
_COMPILATION_CACHE = flags.DEFINE_string(
  "compilation_cache_dir",
  None,
  "Persistent XLA compilation cache, a local folder or a bucket (gs://...): a restarted or "
  "preempted run loads the programs it compiled before instead of compiling them again. The "
  "launch scripts set one by default (SOFT_DIFFUSION_COMPILATION_CACHE overrides their folder).",
)
_VERBOSE = flags.DEFINE_bool(
  "verbose", False, "Show the traceback of input errors too (also: SOFT_DIFFUSION_VERBOSE=1)."
)

# ----------------------------------------------------------------------------------------------
# Flags: parsed and checked before anything else happens.


def _verbose(argv: list[str]) -> bool:
  env = os.environ.get("SOFT_DIFFUSION_VERBOSE", "").lower() in ("1", "true", "yes")
  return env or any(a in ("--verbose", "--verbose=true", "--verbose=1") for a in argv)


def _config_path(argv: list[str]) -> str | None:
  for i, arg in enumerate(argv):
    if arg.startswith("--config="):
      return arg.split("=", 1)[1]
    if arg == "--config" and i + 1 < len(argv):
      return argv[i + 1]
  return None


def config_first(argv: list[str]) -> list[str]:
  """`argv` with its `--config FILE` (or `--config=FILE`) moved right after the program name, so
  the file may come anywhere on the line: ml_collections refuses a `--config.x.y=v` override
  that comes before the file it overrides."""
  for i, arg in enumerate(argv[1:], start=1):
    if arg.startswith("--config="):
      return [argv[0], arg, *argv[1:i], *argv[i + 1 :]]
    if arg == "--config" and i + 1 < len(argv):
      return [argv[0], arg, argv[i + 1], *argv[1:i], *argv[i + 2 :]]
  return list(argv)


def _unquote(text: str) -> str:
  """ml_collections wraps key errors in repr()s of repr()s; unwrap them."""
  for _ in range(4):
    try:
      value = ast.literal_eval(text)
    except (ValueError, SyntaxError):
      break
    if not isinstance(value, str):
      break
    text = value
  return text


def _describe_override_error(e: BaseException, argv: list[str], path: str | None) -> str:
  """One line for an error raised while applying `--config.x.y=v` overrides (or parsing flags)."""
  if isinstance(e, (KeyError, AttributeError)):
    text = _unquote(str(e))
    names = re.findall(r"'(\w+)'", text)
    suggestion = re.search(r'Did you mean "(\w+)"', text)
    key = names[0] if names else text
    override = next(
      (a.split("=", 1)[0] for a in argv if a.startswith("--config.") and key in a.split("=", 1)[0].split(".")), None
    )
    where = override or f"--config {path}"
    hint = f"; did you mean {suggestion.group(1)!r}?" if suggestion else "; configs/default.py lists every field"
    return f"{where}: the config has no field {key!r}{hint}"
  if isinstance(e, flags.Error):
    return errors.one_line(e)
  return f"--config {path}: {type(e).__name__}: {errors.one_line(e)}"


def _check_launch_flags() -> None:
  if _STEP.value is not None:
    if _MODE.value not in ("sample", "eval", "tune_grid"):
      raise errors.ConfigError(f"--step applies to --mode sample, eval and tune_grid only, not --mode {_MODE.value}")
    if _STEP.value < 0:
      raise errors.ConfigError(f"--step must be a checkpoint step >= 0, got {_STEP.value}")
  if _STEPS.value is not None:
    if _MODE.value != "eval":
      raise errors.ConfigError(f"--steps applies to --mode eval only, not --mode {_MODE.value}")
    if _STEP.value is not None:
      raise errors.ConfigError("--step and --steps exclude each other: give one checkpoint or several")
    parts = _STEPS.value.split(",")
    if _STEPS.value != "all" and not all(p.strip().isdigit() for p in parts):
      raise errors.ConfigError(f"--steps must be 'all' or a comma list of checkpoint steps >= 0, got {_STEPS.value!r}")
  cache = _COMPILATION_CACHE.value
  if cache is not None and "://" not in cache:
    path = pathlib.Path(cache).expanduser()
    if not cache or (path.exists() and not path.is_dir()):
      raise errors.ConfigError(
        f"--compilation_cache_dir must be a folder (created if missing) or a gs:// URL, got {cache!r}"
      )
  explicit = (_COORDINATOR.value, _NUM_PROCESSES.value, _PROCESS_ID.value, _LOCAL_DEVICE_IDS.value)
  if not _DISTRIBUTED.value and any(v is not None for v in explicit):
    raise errors.ConfigError("--coordinator_address/--num_processes/--process_id/--local_device_ids need --distributed")
  ids = _LOCAL_DEVICE_IDS.value
  if ids is not None and not re.fullmatch(r"\d+(,\d+)*", ids.replace(" ", "")):
    raise errors.ConfigError(f"--local_device_ids must be a comma list of device numbers >= 0, got {ids!r}")
  if _NUM_PROCESSES.value is not None and _NUM_PROCESSES.value < 1:
    raise errors.ConfigError(f"--num_processes must be >= 1, got {_NUM_PROCESSES.value}")
  if _PROCESS_ID.value is not None:
    top = _NUM_PROCESSES.value
    if _PROCESS_ID.value < 0 or (top is not None and _PROCESS_ID.value >= top):
      allowed = f"in [0, --num_processes = {top})" if top is not None else ">= 0"
      raise errors.ConfigError(f"--process_id must be {allowed}, got {_PROCESS_ID.value}")
  address = _COORDINATOR.value
  if address is not None:
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
      raise errors.ConfigError(f"--coordinator_address must be host:port (port 1-65535), got {address!r}")


def parse(argv: list[str]) -> ConfigDict:
  """Parses and checks the flags and loads the config; raises errors.UserError (one line)."""
  path = _config_path(argv)
  if path:
    # get_config() (with its ':ARG', if any) run once on its own, so that a missing or broken file
    # is reported as such (absl would report it in terms of the overrides it could not apply).
    from soft_diffusion.run import schema

    schema.load_config(path, label="--config")
  argv = config_first(argv)
  sys.argv = list(argv)  # ml_collections looks for the config's overrides in sys.argv, not in argv
  try:
    rest = flags.FLAGS(argv)
    config = _CONFIG.value
  except Exception as e:  # absl and ml_collections raise many types
    raise errors.ConfigError(_describe_override_error(e, argv, path)) from e
  if len(rest) > 1:
    raise errors.ConfigError(f"unexpected arguments {rest[1:]}; flags are --name=value")
  for name, value in (("--config", path), ("--workdir", _WORKDIR.value)):
    if not value:
      raise errors.ConfigError(f"{name} is required (see --help)")
  _check_launch_flags()
  return config


# ----------------------------------------------------------------------------------------------
# One function per mode.


def _preamble(config: ConfigDict) -> tuple[str, Any, Any, Any]:
  """The one preamble every mode shares, in this order: the workdir (checked), the settings
  (validated, pure), jax.distributed and the backend check, the run's selected levels (read
  from its levels.json; --mode levels writes them and training selects them first when they are
  missing), then the mesh over every device of every process (none for --mode levels, whose
  pass over the data runs on the host). Returns (mode, workdir, settings, mesh)."""
  import jax

  from soft_diffusion.run import settings as settings_lib
  from soft_diffusion.run.workdir import Workdir

  mode = _MODE.value
  if _COMPILATION_CACHE.value:  # before anything compiles
    jax.config.update("jax_compilation_cache_dir", _COMPILATION_CACHE.value)
  workdir = Workdir.resolve(_WORKDIR.value)
  settings = settings_lib.load(config)
  if _DISTRIBUTED.value:
    ids = _LOCAL_DEVICE_IDS.value
    jax.distributed.initialize(
      _COORDINATOR.value,
      _NUM_PROCESSES.value,
      _PROCESS_ID.value,
      local_device_ids=[int(i) for i in ids.replace(" ", "").split(",")] if ids else None,
    )
  required = _REQUIRE_BACKEND.value
  if required is not None and jax.default_backend() != required:
    raise errors.ConfigError(
      f"--require_backend={required}: jax in {sys.executable} runs on {jax.default_backend()} "
      f"({jax.device_count()} devices); install its {required} build (pip install -c constraints.txt "
      f"-e '.[train,{required}]') or, to run anyway, drop the flag (launch scripts: SOFT_DIFFUSION_ALLOW_CPU=1)"
    )
  if mode not in ("levels", "train"):
    settings = workdir.settings(settings, resolve_grid=mode != "tune_grid")
  if mode == "tune_grid":
    from soft_diffusion.run.modes import tune_grid

    tune_grid.check(settings)
  if mode == "levels":
    return mode, workdir, settings, None
  from soft_diffusion.run import state as state_lib

  return mode, workdir, settings, state_lib.make_mesh()


def run(config: ConfigDict) -> Any:
  """The preamble, then the mode; returns its result."""
  # Imported after the flags are checked (a bad command line is answered at once), and each
  # mode's module only for that mode.
  mode, workdir, settings, mesh = _preamble(config)
  if mode == "train":
    from soft_diffusion.run.modes import train

    if _DISTRIBUTED.value:
      preemption.forward_to_jax()
    return train.run_training(settings, workdir, mesh)
  if mode == "sample":
    from soft_diffusion.run.modes import sample

    return sample.write_samples(settings, workdir, _STEP.value, mesh)
  if mode == "restore":
    from soft_diffusion.run.modes import restore

    return restore.restore(settings, workdir, mesh)
  if mode == "levels":
    from soft_diffusion.run.modes import levels

    return levels.write_levels(settings, workdir)
  if mode == "tune_grid":
    from soft_diffusion.run.modes import tune_grid

    return tune_grid.tune_grid(settings, workdir, mesh, _STEP.value)
  from soft_diffusion.run.modes import evaluate

  if mode == "stats":
    return evaluate.reference_stats(settings, workdir, mesh)
  if _STEPS.value is not None:
    return evaluate.evaluate_steps(settings, workdir, _STEPS.value.replace(" ", ""), mesh)
  return evaluate.evaluate(settings, workdir, _STEP.value, mesh)


class _QuietLibraries(logging.Filter):
  """Of what libraries log through absl, clu's progress notes and warnings get through; orbax and
  grain chatter (INFO) and TFDS's warnings about folders it is about to fill do not."""

  def filter(self, record: logging.LogRecord) -> bool:
    if f"{os.sep}clu{os.sep}platform{os.sep}" in record.pathname:
      return True
    floor = logging.ERROR if f"{os.sep}tensorflow_datasets{os.sep}" in record.pathname else logging.WARNING
    return record.levelno >= floor


def _main(config: ConfigDict) -> None:
  if _MODE.value != "train":  # SIGTERM stops the other modes at once, as usual
    preemption.release_early()
  logging.getLogger().setLevel(logging.INFO)
  absl_logger = logging.getLogger("absl")
  absl_logger.setLevel(logging.INFO)
  absl_logger.addFilter(_QuietLibraries())
  verbose = _VERBOSE.value or _verbose([])
  try:
    result = run(config)
  except errors.UserError as e:
    if verbose:
      raise
    print(f"error: {errors.one_line(e)}", file=sys.stderr)
    sys.exit(2)
  if _MODE.value != "train":
    print(result)


def _parse_or_exit(argv: list[str]) -> ConfigDict:
  try:
    return parse(argv)
  except errors.UserError as e:
    if _verbose(argv):
      raise
    print(f"error: {errors.one_line(e)}", file=sys.stderr)
    sys.exit(2)


def main(argv: list[str] | None = None) -> None:
  preemption.catch_early()  # a pre-emption notice while the run starts is kept for the train loop
  app.run(_main, argv=argv, flags_parser=_parse_or_exit)


if __name__ == "__main__":
  main()
