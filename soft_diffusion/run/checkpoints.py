"""Orbax checkpoints of a run: WORKDIR/checkpoints/<step>/{state, data, meta}.

* `state`: the whole `TrainState` (params, EMA params, optimizer state, step, non-finite flag);
  `data`: the grain iterator, so a resumed run reads exactly the next batch; `meta`: the config
  and package versions as JSON.
* Saves are asynchronous and atomic (Orbax writes a temporary folder and renames it when
  complete), so a half-written step is never read; `save` refuses a state that met a
  non-finite step.
* A checkpoint that cannot be read into this config's state (another network or optimizer, or
  damaged files) is a one-line `errors.CheckpointError` saying what to do; a missing one is an
  `errors.MissingError` naming the available steps or the command to run first.
* `load_ema_params`: what sampling and evaluation need, restored onto the mesh (replicated).
"""

from __future__ import annotations

import importlib.metadata
import json
from typing import Any

import grain
import jax
import orbax.checkpoint as ocp
from etils import epath

from soft_diffusion import errors, typed_config
from soft_diffusion.run import state as state_lib
from soft_diffusion.run.settings import CheckpointConfig, Settings
from soft_diffusion.run.workdir import Workdir


def directory(workdir: Workdir | epath.Path) -> epath.Path:
  """WORKDIR/checkpoints (`workdir`: a Workdir or its path)."""
  return Workdir.of(workdir).checkpoints


def preservation_policy(cfg: CheckpointConfig, keep_best: bool = False) -> Any:
  """Keep the newest `max_to_keep` checkpoints, with `keep_every_steps` > 0 every step that is a
  multiple of it (permanently: the candidates for choosing the best checkpoint by FID), and with
  `keep_best` the one saved with the lowest in-training FID (`save(..., metrics={"fid": ...})`)."""
  from orbax.checkpoint import checkpoint_managers as policies

  kept = [policies.LatestN(n=cfg.max_to_keep)]
  if cfg.keep_every_steps:
    kept.append(policies.EveryNSteps(interval_steps=cfg.keep_every_steps))
  if keep_best:
    best = policies.BestN(get_metric_fn=lambda m: m["fid"], reverse=True, n=1, keep_checkpoints_without_metrics=False)
    kept.append(best)
  return kept[0] if len(kept) == 1 else policies.AnyPreservationPolicy(kept)


def training_manager(workdir: epath.Path, cfg: CheckpointConfig, keep_best: bool = False) -> ocp.CheckpointManager:
  """The manager the train loop saves with (async; retention: `preservation_policy`)."""
  options = ocp.CheckpointManagerOptions(
    preservation_policy=preservation_policy(cfg, keep_best), enable_async_checkpointing=True, create=True
  )
  return ocp.CheckpointManager(
    directory(workdir),
    options=options,
    item_handlers={
      "state": ocp.StandardCheckpointHandler(),
      "data": grain.checkpoint.CheckpointHandler(),
      "meta": ocp.JsonCheckpointHandler(),
    },
  )


def restore(manager: ocp.CheckpointManager, step: int, args: ocp.args.Composite) -> Any:
  """`manager.restore`, with a one-line error saying what to do when the step cannot be read
  into this config's state (another network or optimizer config, or damaged files)."""
  try:
    return manager.restore(step, args=args)
  except Exception as e:  # Orbax/TensorStore raise many types; all mean the same to the user
    detail = errors.one_line(str(e).strip().splitlines()[0] if str(e).strip() else "")[:300]
    raise errors.CheckpointError(
      f"checkpoint {step} in {manager.directory} cannot be restored into this config's state "
      f"({type(e).__name__}: {detail}). Was it trained with another config (its own is in "
      f"{step}/meta)? Use that config or a new workdir; if the files are damaged, move the folder "
      f"{step} away to resume from an earlier checkpoint."
    ) from e


def restore_training(
  manager: ocp.CheckpointManager, state: state_lib.TrainState, iterator: Any
) -> tuple[state_lib.TrainState, int | None]:
  """The latest checkpoint's state (and the data iterator, restored in place); unchanged state
  and None when there is none yet."""
  step = manager.latest_step()
  if step is None:
    return state, None
  args = ocp.args.Composite(
    state=ocp.args.StandardRestore(jax.tree.map(ocp.utils.to_shape_dtype_struct, state)),
    data=grain.checkpoint.CheckpointRestore(iterator),
  )
  return restore(manager, step, args)["state"], step


def save(
  manager: ocp.CheckpointManager,
  step: int,
  state: state_lib.TrainState,
  iterator: Any,
  meta: dict[str, Any],
  metrics: dict[str, float] | None = None,
) -> None:
  """Starts an asynchronous save of `state`, the iterator and `meta` as checkpoint `step`
  (`metrics`: the in-training evaluation's, which rank it for `preservation_policy`)."""
  manager.save(
    step,
    args=ocp.args.Composite(
      state=ocp.args.StandardSave(state),
      data=grain.checkpoint.CheckpointSave(iterator),
      meta=ocp.args.JsonSave(meta),
    ),
    metrics=metrics,
  )


class SaveWatcher:
  """Reports a failed asynchronous save at the step of the loop where it failed.

  Orbax finishes a save in a background thread and only logs a failure there (the next save or
  `wait_until_finished` may never come, or come hours later). The loop calls `started(step)` after
  each save and `poll()` every step: once the save is no longer in progress, the step must be a
  finalized checkpoint on disk, or `poll` raises `errors.CheckpointError` naming the step, the
  cause and the last good checkpoint. `finish()` waits for the pending save and checks it.
  """

  def __init__(self, manager: ocp.CheckpointManager):
    self.manager = manager
    self.pending: int | None = None

  def started(self, step: int) -> None:
    self.pending = step

  def poll(self) -> None:
    if self.pending is None or self.manager.is_saving_in_progress():
      return
    step, self.pending = self.pending, None
    cause = ""
    try:
      self.manager.check_for_errors()
    except Exception as e:  # the background thread's error, whatever its type
      cause = f" ({type(e).__name__}: {errors.one_line(str(e))[:300]})"
    path = self.manager.directory / str(step)
    if cause or not (path.exists() and ocp.path.step.is_checkpoint_finalized(path)):
      good = [s for s in self.manager.all_steps() if s != step]
      raise errors.CheckpointError(
        f"asynchronous save of checkpoint {step} to {self.manager.directory} failed{cause}; last good "
        f"checkpoint: {max(good) if good else None}. Free space or fix permissions, then rerun to resume."
      )

  def finish(self) -> None:
    try:
      self.manager.wait_until_finished()
    finally:
      self.poll()


def run_metadata(settings: Any) -> dict[str, Any]:
  """The settings (as plain JSON) and the versions of the packages that computed the run."""
  versions = {}
  for pkg in ("soft_diffusion", "jax", "jaxlib", "flax", "optax", "orbax-checkpoint", "grain", "numpy"):
    try:
      versions[pkg] = importlib.metadata.version(pkg)
    except importlib.metadata.PackageNotFoundError:
      versions[pkg] = None
  return {"config": json.loads(json.dumps(typed_config.as_dict(settings), default=str)), "versions": versions}


# The fields that say what the network's input and output mean (its parameterisation): a checkpoint
# read under other values loads without error and samples garbage. Each with the value a run
# recorded before the field existed.
RECIPE_FIELDS = {
  "model.precond": "none",
  "model.precond_c_in": "scalar",
  "model.precond_spectrum": "data",
  "model.skip": "identity",
  "model.output_scale": "none",
}


def check_recipe(workdir: epath.Path, step: int, settings: Settings) -> None:
  """Raises a one-line `errors.ConfigError` naming the first field of RECIPE_FIELDS whose value in
  the config differs from the one checkpoint `step` was trained with (its `meta`, as `save`
  wrote it), e.g. a run trained with configs/digits.py's 'preconditioned' form read with ':paper'.
  Says nothing when the checkpoint has no readable meta (the restore reports damaged files)."""
  path = directory(workdir) / str(step) / "meta" / "metadata"
  try:
    trained = json.loads(path.read_text())["config"]
  except Exception:  # noqa: BLE001  (missing or unreadable: nothing to compare)
    return
  given = typed_config.as_dict(settings)
  for field, before in RECIPE_FIELDS.items():
    block, name = field.split(".")
    was, now = trained.get(block, {}).get(name, before), given[block][name]
    if was != now:
      raise errors.ConfigError(
        f"config.{field}: checkpoint {step} in {directory(workdir)} was trained with {was!r}, this config has "
        f"{now!r}; load the config in the form the run was trained with (--config FILE.py:FORM, e.g. "
        f"configs/digits.py:paper) or set the field; the run's config is in {path}"
      )


def _reader(workdir: epath.Path) -> ocp.CheckpointManager:
  return ocp.CheckpointManager(directory(workdir), item_handlers={"state": ocp.StandardCheckpointHandler()})


def available_steps(workdir: epath.Path) -> list[int]:
  """The complete checkpoint steps in WORKDIR/checkpoints, ascending ([] if none)."""
  return sorted(_reader(workdir).all_steps()) if directory(workdir).is_dir() else []


def resolve_step(workdir: epath.Path, step: int | None = None) -> int:
  """`step` if WORKDIR holds that checkpoint, else the latest complete one; one-line errors
  naming the command to run or the steps available."""
  root = directory(workdir)
  if not root.is_dir():
    raise errors.MissingError(
      f"no checkpoints in {root}; train first: python -m soft_diffusion.main --config ... --workdir {workdir}"
    )
  available = available_steps(workdir)
  if step is None:
    if not available:
      raise errors.MissingError(f"no complete checkpoint in {root}; train first (or until the first checkpoint)")
    return available[-1]
  if step not in available:
    raise errors.MissingError(f"--step {step}: no checkpoint for step {step} in {root}; available: {available}")
  return step


def load_ema_params(
  workdir: epath.Path, settings: Settings, network: Any, mesh: jax.sharding.Mesh, channels: int, step: int
) -> Any:
  """The EMA parameters of `model` in checkpoint `step` (see `resolve_step`), replicated over `mesh`;
  a config whose parameterisation differs from the run's is refused first (`check_recipe`)."""
  check_recipe(workdir, step, settings)
  optimizer, _ = state_lib.make_optimizer(settings.optim)
  size = settings.data.image_size
  abstract = state_lib.abstract_state(
    network, optimizer, (size, size, channels), settings.seed, state_lib.replicated(mesh)
  )
  restored = restore(_reader(workdir), step, ocp.args.Composite(state=ocp.args.StandardRestore(abstract)))
  return restored["state"].ema_params
