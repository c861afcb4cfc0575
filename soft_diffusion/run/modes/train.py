"""Training: the train step and the loop, `run_training(config, workdir)`.

Sections, top to bottom: step (one jit over the mesh, donated state, non-finite guard) ·
metrics · loop (checks before anything is written, input, state, resume, prior, the loop with
progress, sample grids, checkpoints and SIGTERM).

Randomness: step n uses fold_in(key(seed), n), split into t, noise and dropout keys, so a resumed
run draws exactly what an uninterrupted one would, for any device count. Everything else lives
in its own module: settings.py (config), state.py (mesh, network, optimizer, state),
checkpoints.py (Orbax), modes/sample.py (p_1, sample grids), workdir.py and files.py (the run folder).
"""

from __future__ import annotations

import json
import logging
import math
import time
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from etils import epath

from soft_diffusion import corruptions, data, errors, losses, models, preconditioning
from soft_diffusion.models import make_denoise_fn
from soft_diffusion.run import checkpoints, files, image_files, reporting
from soft_diffusion.run import preemption as preemption_lib
from soft_diffusion.run import settings as settings_lib
from soft_diffusion.run import state as state_lib
from soft_diffusion.run.modes import levels
from soft_diffusion.run.modes import sample as sample_lib
from soft_diffusion.run.settings import Settings
from soft_diffusion.run.state import TrainState
from soft_diffusion.run.workdir import Workdir

log = logging.getLogger(__name__)

GRID_IMAGES = 64  # images in the sample grids written during training

# ----------------------------------------------------------------------------------------------
# The train step.


def make_train_step(
  network, corruption, optimizer, lr_schedule, settings: Settings, skip=None, precond=None, t_sampler=None
):
  """(state, batch [B,H,W,C]) -> (state, metrics). A step with a non-finite loss or gradient
  leaves the state unchanged and records its number (1-based: the n-th step, the numbering of the
  log and of checkpoints) in `first_nonfinite_step`.

  With `train.grad_accum_steps = k > 1` the batch is processed as k micro-batches of B/k in a
  `lax.scan` (activations of one micro-batch live at a time) and their mean gradient makes one
  optimizer step: t and the noise are drawn for the whole batch with the same keys as without
  accumulation, so (without dropout) the step equals one over the whole batch up to float
  rounding. Micro-batch j holds rows j, k + j, 2k + j, ...: each device's rows stay on it.
  The learning rate, EMA, step counter and non-finite guard act once per optimizer step.
  `skip`: the denoiser's skip S_t for model.skip = 'wiener' (sample.make_skip); `precond`: the
  preconditioning for model.precond = 'spectral' (sample.make_precond), which brings its own loss
  (`losses.preconditioned_loss`). `t_sampler`: (key, batch) -> t for train.t_density =
  'lognormal' (`make_t_sampler`); None draws t ~ U(t_min, 1).
  """
  t_min = settings.train.t_min
  num_bins = settings.train.loss_bins
  accum = settings.train.grad_accum_steps
  ema_decay, ema_warmup = settings.optim.ema_decay, settings.optim.ema_warmup

  def loss_fn(params, x0, t, noise, dropout_key):
    if precond is not None:
      network_fn = models.make_network_fn(network, params, train=True, dropout_key=dropout_key)
      per_example = losses.preconditioned_loss_per_example(
        network_fn, x0, t, noise, precond, reduction=settings.loss.reduction
      )
      return per_example.mean(), per_example
    denoise_fn = make_denoise_fn(
      network, params, noise_std=corruption.noise_std, skip=skip, train=True, dropout_key=dropout_key
    )
    per_example = losses.soft_score_matching_per_example(
      denoise_fn,
      x0,
      t,
      noise,
      corruption,
      weighting=settings.loss.weighting,
      reduction=settings.loss.reduction,
      floor=settings.loss.floor,
      lag=settings.loss.lag,
    )
    return per_example.mean(), per_example

  grad_fn = jax.value_and_grad(loss_fn, has_aux=True)

  def accumulated(params, batch, t, noise, dropout_key):
    """The mean loss, per-example losses (in micro-batch order) and mean gradient over k micro-batches."""
    split = lambda a: jnp.swapaxes(a.reshape(a.shape[0] // accum, accum, *a.shape[1:]), 0, 1)  # noqa: E731

    def micro(grad_sum, inputs):
      j, x0, t_j, noise_j = inputs
      (loss, per_example), grads = grad_fn(params, x0, t_j, noise_j, jax.random.fold_in(dropout_key, j))
      return jax.tree.map(jnp.add, grad_sum, grads), (loss, per_example)

    zeros = jax.tree.map(jnp.zeros_like, params)
    t_micro = split(t)
    grad_sum, (loss, per_example) = jax.lax.scan(micro, zeros, (jnp.arange(accum), split(batch), t_micro, split(noise)))
    grads = jax.tree.map(lambda g: g / accum, grad_sum)
    return loss.mean(), per_example.reshape(-1), t_micro.reshape(-1), grads

  def train_step(state: TrainState, batch: jax.Array):
    key = jax.random.fold_in(jax.random.key(settings.seed), state.step)
    k_t, k_noise, k_dropout = jax.random.split(key, 3)
    if t_sampler is None:
      t = jax.random.uniform(k_t, (batch.shape[0],), minval=t_min, maxval=1.0)
    else:
      t = t_sampler(k_t, batch.shape[0])
    noise = jax.random.normal(k_noise, batch.shape)

    if accum == 1:
      (loss, per_example), grads = grad_fn(state.params, batch, t, noise, k_dropout)
    else:
      loss, per_example, t, grads = accumulated(state.params, batch, t, noise, k_dropout)
    grad_norm = optax.tree.norm(grads)
    updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    decay = jnp.minimum(ema_decay, (1.0 + state.step) / (10.0 + state.step)) if ema_warmup else ema_decay
    ema = jax.tree.map(lambda e, p: decay * e + (1.0 - decay) * p, state.ema_params, params)
    finite = jnp.isfinite(loss) & jnp.isfinite(grad_norm)
    new = TrainState(
      step=state.step + 1,
      params=params,
      ema_params=ema,
      opt_state=opt_state,
      first_nonfinite_step=state.first_nonfinite_step,
    )
    new = jax.tree.map(lambda a, b: jnp.where(finite, a, b), new, state)
    first_bad = jnp.where((state.first_nonfinite_step < 0) & ~finite, state.step + 1, state.first_nonfinite_step)
    new = new.replace(first_nonfinite_step=first_bad)
    bins = jnp.clip((t * num_bins).astype(jnp.int32), 0, num_bins - 1)
    metrics = {
      "loss": loss,
      "grad_norm": grad_norm,
      "lr": lr_schedule(state.step),
      "bin_sum": jax.ops.segment_sum(per_example, bins, num_bins),
      "bin_count": jax.ops.segment_sum(jnp.ones_like(per_example), bins, num_bins),
    }
    return new, metrics

  return train_step


def jit_train_step(
  network,
  corruption,
  optimizer,
  lr_schedule,
  settings: Settings,
  state: TrainState,
  mesh,
  skip=None,
  precond=None,
  t_sampler=None,
):
  """`make_train_step`, jitted over `mesh`: state replicated and donated, batch split."""
  replicated = state_lib.replicated(mesh)
  state_shardings = jax.tree.map(lambda _: replicated, state)
  return jax.jit(
    make_train_step(network, corruption, optimizer, lr_schedule, settings, skip, precond, t_sampler),
    in_shardings=(state_shardings, state_lib.batch_sharding(mesh)),
    out_shardings=(state_shardings, replicated),
    donate_argnums=(0,),
  )


def make_t_sampler(settings: Settings, corruption, workdir):
  """The training-time density's sampler for train.t_density = 'lognormal'
  (`preconditioning.lognormal_time_sampler` over the data's DCT power, WORKDIR/spectrum.npz,
  written first when missing); None for 'uniform'."""
  cfg = settings.train
  if cfg.t_density == "uniform":
    return None
  power = sample_lib.data_power(settings, workdir, fit_missing=True, needed_by="train.t_density = 'lognormal'")
  try:
    return preconditioning.lognormal_time_sampler(
      corruption, power, mean=cfg.t_lognormal_mean, std=cfg.t_lognormal_std, t_min=cfg.t_min
    )
  except ValueError as e:
    raise errors.ConfigError(f"config.train.t_lognormal_mean: {e}") from None


# ----------------------------------------------------------------------------------------------
# Metrics.


def summarize(fetched: list[dict[str, np.ndarray]], num_bins: int) -> dict[str, float]:
  """Metrics of the steps since the last log: mean loss and gradient norm, the last learning
  rate, and the mean loss in each of `num_bins` equal bins of t (bins no t fell into are left out)."""
  bin_sum = np.sum([m["bin_sum"] for m in fetched], axis=0)
  bin_count = np.sum([m["bin_count"] for m in fetched], axis=0)
  metrics = {
    "loss": float(np.mean([m["loss"] for m in fetched])),
    "grad_norm": float(np.mean([m["grad_norm"] for m in fetched])),
    "lr": float(fetched[-1]["lr"]),
  }
  for b in range(num_bins):
    if bin_count[b]:
      metrics[f"loss_t{b / num_bins:.2f}-{(b + 1) / num_bins:.2f}"] = float(bin_sum[b] / bin_count[b])
  return metrics


# ----------------------------------------------------------------------------------------------
# The loop.


PROFILE_WARMUP_STEPS = 10  # steps after (re)start before a trace begins: compilation stays out of it


class _Profiler:
  """A `jax.profiler` trace of `num_steps` steps from step `start` into the run's logs (TensorBoard's
  profile plugin reads `Workdir.profile`/<run>/); off when `num_steps` is 0."""

  def __init__(self, workdir: Workdir, start: int, num_steps: int):
    self.logdir, self.profile, self.start, self.end = workdir.logs, workdir.profile, start, start + num_steps
    self.active = False
    self.enabled = num_steps > 0

  def before(self, step: int) -> None:
    if self.enabled and not self.active and step == self.start:
      jax.profiler.start_trace(str(self.logdir))
      self.active = True

  def after(self, step: int, state: TrainState) -> None:
    if self.active and step >= self.end:
      jax.block_until_ready(state)  # the traced steps' device work belongs in the trace
      self.stop()
      log.info("profile of steps %d-%d written under %s", self.start + 1, self.end, self.profile)

  def stop(self) -> None:
    if self.active:
      jax.profiler.stop_trace()
      self.active, self.enabled = False, False


class RunLog:
  """Where the loop's numbers and pictures go, besides the log lines every process writes: on the
  primary process WORKDIR/logs/metrics.jsonl (`workdir_lib.MetricsLog`: segments on a bucket) and,
  with train.tensorboard, TensorBoard (clu's writer: scalars, and sample grids as images). Only
  that writer imports TensorFlow, so the other processes, and runs without TensorBoard, start
  without it."""

  def __init__(self, workdir, start_step: int, *, tensorboard: bool):
    primary = jax.process_index() == 0
    self.metrics = Workdir.of(workdir).metrics_log(start_step) if primary else None
    self.tensorboard = None
    if primary and tensorboard:
      from clu import metric_writers

      self.tensorboard = metric_writers.SummaryWriter(str(Workdir.of(workdir).logs))

  def scalars(self, step: int, values: dict[str, float]) -> None:
    if self.metrics is not None:
      self.metrics.write({"step": step, **values})
    if self.tensorboard is not None:
      self.tensorboard.write_scalars(step, values)

  def images(self, step: int, images: dict[str, np.ndarray]) -> None:
    """uint8 [N, H, W, C] batches, each shown in TensorBoard as one grid (image_files.image_grid)."""
    if self.tensorboard is not None:
      self.tensorboard.write_images(step, {k: image_files.image_grid(np.asarray(v))[None] for k, v in images.items()})

  def flush(self) -> None:
    if self.metrics is not None:
      self.metrics.flush()
    if self.tensorboard is not None:
      self.tensorboard.flush()

  def close(self) -> None:
    self.flush()
    if self.tensorboard is not None:
      self.tensorboard.close()


class InTrainingEval:
  """eval.every_steps > 0: KID and FID of `eval.train_num_images` samples drawn with the EMA
  parameters and the sample block (sampler, steps, p_1), against the reference statistics of
  `--mode stats` (computed here first when WORKDIR has none). Sampling and the Inception network
  run sharded over every process's devices, as `--mode eval` does; the lowest FID so far is
  recorded in WORKDIR/eval/best_in_training.json."""

  def __init__(self, settings: Settings, workdir, mesh):
    from soft_diffusion import evaluation
    from soft_diffusion.run.modes import evaluate_fid

    self.settings, self.mesh = settings, mesh
    state_lib.check_batch_split("eval.batch_size", settings.eval.batch_size, mesh)
    with errors.user_input("Inception weights"):  # missing weights fail here, before any compile
      self.params = evaluation.load_inception_params()
    path = evaluate_fid.stats_path(workdir, settings)
    if not path.exists():
      log.info("eval.every_steps: no reference statistics in %s yet; computing them (as --mode stats)", path)
      evaluate_fid.reference_stats(settings, workdir, mesh, self.params)
    self.ref_stats, self.ref_kid, _ = evaluate_fid.load_reference(path, settings, f"--config ... --workdir {workdir}")
    self.best_path = Workdir.of(workdir).best_in_training
    self.best = json.loads(self.best_path.read_text())["fid"] if self.best_path.exists() else math.inf

  def __call__(self, step: int, draw_fn, ema_params, prior) -> dict[str, float]:
    from soft_diffusion import evaluation

    cfg, start = self.settings.eval, time.perf_counter()
    images = sample_lib.draw(draw_fn, ema_params, prior, self.settings.sample, cfg.train_num_images)
    feats = evaluation.inception_features(images, params=self.params, batch_size=cfg.batch_size, mesh=self.mesh)
    kid_mean, kid_std = evaluation.kid(
      feats, self.ref_kid, num_subsets=cfg.kid_num_subsets, subset_size=cfg.kid_subset_size, seed=self.settings.seed
    )
    measured = {"fid": evaluation.fid(feats, self.ref_stats), "kid": kid_mean, "kid_std": kid_std}
    log.info(
      "eval at step %d: FID %.3f  KID %.5f ± %.5f  (%d images, %s %d steps, %.0f s)",
      step,
      measured["fid"],
      kid_mean,
      kid_std,
      len(images),
      self.settings.sample.sampler,
      self.settings.sample.num_steps,
      time.perf_counter() - start,
    )
    if measured["fid"] < self.best:
      self.best = measured["fid"]
      if jax.process_index() == 0:
        files.write_json(self.best_path, {"step": step, "num_images": len(images), **measured})
    return measured


def _check_batches(settings: Settings, mesh: jax.sharding.Mesh) -> int:
  """Checks how the batches split over the devices; returns this process's share of a batch."""
  state_lib.check_batch_split("sample.batch_size", settings.sample.batch_size, mesh)
  micro = settings.train.batch_size // settings.train.grad_accum_steps
  if micro % mesh.size:
    raise errors.ConfigError(
      f"config.train.grad_accum_steps: each micro-batch (train.batch_size / grad_accum_steps = {micro}) must "
      f"be a multiple of the {mesh.size} devices"
    )
  with errors.user_input():
    return data.local_batch_size(settings.train.batch_size, jax.device_count(), jax.process_count())


def _open_training_data(settings: Settings, local_batch: int) -> tuple[Any, tuple[int, ...]]:
  """(the training iterator, the image shape), read from one peeked batch: a missing dataset fails
  here, before anything compiles. The iterator is a fresh one, so the stream does not depend on
  the peek."""
  with errors.user_input("config.data"):
    dataset = data.make_dataset(
      settings.data,
      split=settings.data.train_split,
      batch_size=local_batch,
      seed=settings.seed,
      train=True,
      process_index=jax.process_index(),
      process_count=jax.process_count(),
    )
    peek = iter(dataset)
    image_shape = next(peek).shape[1:]
  if hasattr(peek, "close"):  # stops its worker processes
    peek.close()
  return iter(dataset), image_shape


def run_training(settings: Settings, workdir: epath.Path, mesh: jax.sharding.Mesh | None = None) -> dict[str, Any]:
  """Trains (or resumes) in `workdir`, with in-training evaluation when `eval.every_steps` is set;
  returns the last logged metrics and the final step.

  Args:
    settings: from `Workdir.of(workdir).settings(config, resolve_levels=False)` (or with the levels
      resolved): 'selected' blur levels are read here, and selected first when missing.
    workdir: the run's folder (`Workdir.resolve`).
    mesh: the devices to train on (default: every device, `state.make_mesh`).
  """
  # -- checks: everything is validated before anything is compiled or written
  given = settings_lib.require(settings, "run_training")  # recorded with the checkpoints as given
  workdir = Workdir.of(workdir)
  settings = levels.select_missing_levels(given, workdir)
  corruption = corruptions.make(settings.corruption)
  preemption_lib.check_service()
  mesh = mesh if mesh is not None else state_lib.make_mesh()
  local_batch = _check_batches(settings, mesh)

  # -- input (opens the source: a missing dataset fails here, before any compile)
  iterator, image_shape = _open_training_data(settings, local_batch)
  state_lib.log_devices()

  # -- in-training evaluation (missing Inception weights fail here, before any compile)
  evaluator = InTrainingEval(settings, workdir, mesh) if settings.eval.every_steps else None

  # -- state, step, checkpoints (resume if there is one)
  network = models.make_network(settings.model)
  optimizer, lr_schedule = state_lib.make_optimizer(settings.optim)
  manager = checkpoints.training_manager(workdir, settings.checkpoint, keep_best=evaluator is not None)
  if manager.latest_step() is not None:  # a resumed run keeps the parameterisation it was trained with
    checkpoints.check_recipe(workdir, manager.latest_step(), settings)
  # A resumed run never computes the initial state: its shapes are the restore target (no init
  # compile, which on a pod costs every process minutes at every restart).
  init = state_lib.abstract_state if manager.latest_step() is not None else state_lib.create_state
  state = init(network, optimizer, image_shape, settings.seed, state_lib.replicated(mesh))
  skip = sample_lib.make_skip(settings, corruption, workdir, fit_missing=True)  # model.skip = 'wiener' only
  precond = sample_lib.make_precond(settings, corruption, workdir, fit_missing=True)  # model.precond only
  t_sampler = make_t_sampler(settings, corruption, workdir)
  train_step = jit_train_step(
    network, corruption, optimizer, lr_schedule, settings, state, mesh, skip, precond, t_sampler
  )
  state, resumed = checkpoints.restore_training(manager, state, iterator)
  if resumed is not None:
    log.info("resumed from step %d", int(state.step))
  meta = checkpoints.run_metadata(given)

  # -- prior p_1 (written once per workdir, reused on resume and by --mode sample) and grids
  prior = sample_lib.make_prior(settings, corruption, workdir, fit_missing=True)
  draw_fn = sample_lib.make_draw_fn(network, corruption, settings.sample, mesh, skip=skip, precond=precond)

  def stop_if_nonfinite() -> None:
    bad = int(state.first_nonfinite_step)
    if bad >= 0:
      raise FloatingPointError(
        f"non-finite loss or gradient at step {bad}; last good checkpoint: {manager.latest_step()}"
      )

  watcher = checkpoints.SaveWatcher(manager)

  def save(step: int, metrics: dict[str, float] | None = None) -> None:
    stop_if_nonfinite()  # never checkpoint a state that met a non-finite step
    watcher.poll()  # the previous save, if it failed, is reported before a new one starts
    checkpoints.save(manager, step, state, iterator, meta, metrics)
    watcher.started(step)
    run_log.flush()  # the metrics of a bucket workdir reach it at least with every checkpoint

  # -- loop
  primary = jax.process_index() == 0
  step = int(state.step)
  total = settings.train.total_steps
  start_step = step
  run_log = RunLog(workdir, step, tensorboard=settings.train.tensorboard)
  pending: list[dict[str, jax.Array]] = []
  last_metrics: dict[str, Any] = {}
  interval_start, interval_step = time.perf_counter(), step
  profiler = _Profiler(workdir, start=step + PROFILE_WARMUP_STEPS, num_steps=settings.train.profile_steps)
  failed = True
  try:
    with preemption_lib.Preemption(start_step=step) as preemption:
      while step < total:
        profiler.before(step)
        batch = data.to_global_array(next(iterator), mesh)
        state, metrics = train_step(state, batch)
        pending.append(metrics)
        step += 1
        if step == start_step + 1:
          jax.block_until_ready(state)
          log.info("first step done in %.1f s (compiling included); training", time.perf_counter() - interval_start)
        profiler.after(step, state)
        watcher.poll()
        if preemption.should_stop(step):
          log.info("SIGTERM: process %d saves step %d and exits", jax.process_index(), step)
          save(step)
          watcher.finish()
          break
        if step % settings.train.log_every_steps == 0 or step == total:
          stop_if_nonfinite()
          now = time.perf_counter()
          images_per_s = (step - interval_step) / (now - interval_start) * settings.train.batch_size
          last_metrics = {**summarize(jax.device_get(pending), settings.train.loss_bins), "images_per_s": images_per_s}
          pending = []
          run_log.scalars(step, last_metrics)
          eta = reporting.format_duration((total - step) * (now - interval_start) / (step - interval_step))
          log.info("step %d/%d  loss %.5f  %.0f images/s  ETA %s", step, total, last_metrics["loss"], images_per_s, eta)
          interval_start, interval_step = now, step
        if step % settings.train.sample_every_steps == 0:
          num = min(GRID_IMAGES, settings.sample.num_images)
          images = sample_lib.draw(draw_fn, state.ema_params, prior, settings.sample, num)
          if primary:
            image_files.write_png(images, workdir.training_grid(step))
          run_log.images(step, {"samples": images})
        measured = None
        if evaluator is not None and step % settings.eval.every_steps == 0:
          stop_if_nonfinite()
          measured = evaluator(step, draw_fn, state.ema_params, prior)
          run_log.scalars(step, {f"eval_{k}": v for k, v in measured.items()})
        if step % settings.checkpoint.every_steps == 0 or step == total or measured is not None:
          save(step, measured)
    failed = False
  finally:  # also on errors: finish pending saves (the last good checkpoint), stop workers
    profiler.stop()
    if failed:  # the error on its way out is the one to report
      manager.wait_until_finished()
    else:
      watcher.finish()
    run_log.close()
    if hasattr(iterator, "close"):
      iterator.close()
  return {"step": step, **last_metrics}
