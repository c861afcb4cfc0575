"""Command line: train, sample, select corruption levels, reference statistics, evaluate.

    python -m soft_diffusion.main --config configs/digits.py --workdir runs/digits [--config.train.num_steps=100]
    python -m soft_diffusion.main --mode sample --config configs/digits.py --workdir runs/digits [--step N]
    python -m soft_diffusion.main --mode schedule --config configs/digits.py --workdir runs/digits
    python -m soft_diffusion.main --mode stats --config configs/digits.py --workdir runs/digits
    python -m soft_diffusion.main --mode eval --config configs/digits.py --workdir runs/digits [--step N]
    python -m soft_diffusion.main --distributed [--coordinator_address=host:port --num_processes=N --process_id=i] ...

Overrides (`--config.x.y=v`) are checked against the config's schema (locked: a misspelled key
is an error) and every value is validated before anything is compiled or written.
"""

from __future__ import annotations

import logging

import jax
from absl import app, flags
from ml_collections import config_flags

from soft_diffusion import evaluate, levels, train
from soft_diffusion import sample as sample_lib

_CONFIG = config_flags.DEFINE_config_file("config", None, "Path to an ml_collections config file.", lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Directory for checkpoints, logs and samples.")
_MODE = flags.DEFINE_enum(
  "mode",
  "train",
  ["train", "sample", "schedule", "stats", "eval"],
  "train | sample (images + figures) | schedule (level selection, SPEC §3) | stats (FID reference "
  "statistics) | eval (FID/KID vs NFE).",
)
_STEP = flags.DEFINE_integer("step", None, "--mode sample/eval: checkpoint step to load (default: the latest).")
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
flags.mark_flags_as_required(["config", "workdir"])


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  logging.getLogger().setLevel(logging.INFO)
  logging.getLogger("absl").setLevel(logging.WARNING)  # orbax/grain chatter; our own lines stay
  log = logging.getLogger("soft_diffusion")
  config = _CONFIG.value
  train.settings_from_config(config)  # fail fast, before jax.distributed or any compile
  explicit = (_COORDINATOR.value, _NUM_PROCESSES.value, _PROCESS_ID.value)
  if _STEP.value is not None and _MODE.value not in ("sample", "eval"):
    raise app.UsageError("--step applies to --mode sample and --mode eval only")
  if not _DISTRIBUTED.value and any(v is not None for v in explicit):
    raise app.UsageError("--coordinator_address/--num_processes/--process_id need --distributed")
  if _DISTRIBUTED.value:
    jax.distributed.initialize(*explicit)
  log.info("devices: %d (%s), processes: %d", jax.device_count(), jax.default_backend(), jax.process_count())
  if _MODE.value == "train":
    train.train_and_evaluate(config, _WORKDIR.value)
    return
  if _MODE.value == "sample":
    path = sample_lib.sample(config, _WORKDIR.value, _STEP.value)
  elif _MODE.value == "schedule":
    path = levels.select_schedule(config, _WORKDIR.value)
  elif _MODE.value == "stats":
    path = evaluate.reference_stats(config, _WORKDIR.value)
  else:
    path = evaluate.evaluate(config, _WORKDIR.value, _STEP.value)
  print(path)


if __name__ == "__main__":
  app.run(main)
