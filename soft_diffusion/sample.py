"""Sampling from a trained run: `sample(config, workdir)` (the `--mode sample` of main.py).

Loads the EMA parameters of the latest checkpoint (or of `step`), p_1 as `sample.prior` says
(the Gaussian fit stored in WORKDIR/prior.npz, or the exact forward marginal over training
images), draws `config.sample.num_images` images with `config.sample.sampler` in
`config.sample.num_steps` network evaluations from keys fold_in(key(sample.seed), batch),
sharded over all devices, and writes under `WORKDIR/samples/`:

* `samples.npz` (key `images`, uint8 NHWC) and `samples.png` (grid);
* `trajectory.png`: one reverse trajectory, x_t and the estimate x̂_0 at several t;
* `forward.png`: real training images through the forward corruption x_t = C_t x_0 + s_t η.

The same checkpoint and seed give identical images. `load_run` and `draw` are shared with
--mode eval (evaluate.py).
"""

from __future__ import annotations

import dataclasses
import logging
import pathlib
import time
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
from jax.sharding import NamedSharding, PartitionSpec

from soft_diffusion import corruptions, priors, samplers, train

log = logging.getLogger(__name__)


@dataclasses.dataclass
class Run:
  """What sampling needs from a trained workdir."""

  settings: train.Settings
  workdir: pathlib.Path
  model: Any
  corruption: corruptions.Corruption
  params: Any  # EMA parameters, replicated over the mesh
  prior: Any  # priors.GaussianPrior or priors.ForwardPrior
  step: int
  mesh: jax.sharding.Mesh


def load_run(config: Any, workdir: str, step: int | None = None) -> Run:
  """Validates the config and loads the checkpoint's EMA params and p_1 (one-line errors)."""
  workdir = pathlib.Path(workdir).resolve()  # Orbax needs absolute paths
  settings = train.with_selected_levels(train.settings_from_config(config), workdir)
  checkpoints = workdir / "checkpoints"
  if not checkpoints.is_dir():
    raise FileNotFoundError(
      f"no checkpoints in {checkpoints}; train first: python -m soft_diffusion.main --workdir {workdir}"
    )
  mesh = train.make_mesh()
  train.check_batch_split("sample.batch_size", settings.sample.batch_size, mesh)
  prior = train.sampling_prior(settings, workdir)
  channels = int((prior.images if isinstance(prior, priors.ForwardPrior) else prior.mean).shape[-1])
  corruption = corruptions.make(settings.corruption)
  model = train.make_model(settings.model)
  optimizer, _ = train.make_optimizer(settings.optim)
  replicated = NamedSharding(mesh, PartitionSpec())
  size = settings.data.image_size
  abstract = jax.eval_shape(
    lambda: train.create_state(model, optimizer, (size, size, channels), settings.seed, replicated)
  )
  abstract = jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=replicated), abstract)
  manager = ocp.CheckpointManager(checkpoints, item_handlers={"state": ocp.StandardCheckpointHandler()})
  available = manager.all_steps()
  if step is None:
    step = manager.latest_step()
    if step is None:
      raise FileNotFoundError(f"no complete checkpoint in {checkpoints}")
  elif step not in available:
    raise FileNotFoundError(f"no checkpoint for step {step} in {checkpoints}; available: {sorted(available)}")
  args = ocp.args.Composite(state=ocp.args.StandardRestore(abstract))
  state = train.restore_checkpoint(manager, step, args)["state"]
  return Run(settings, workdir, model, corruption, state.ema_params, prior, int(step), mesh)


def draw(run: Run, sampler: str, num_steps: int, num_images: int, *, progress: bool = True) -> np.ndarray:
  """`num_images` uint8 samples with `sampler` in `num_steps` steps (the run's sample seed)."""
  cfg = dataclasses.replace(run.settings.sample, sampler=sampler, num_steps=num_steps)
  sample_fn = train.make_sample_fn(run.model, run.corruption, cfg, run.mesh)
  return train.draw_samples(sample_fn, run.params, run.prior, cfg, num_images, progress=progress)


def _to_display(x) -> np.ndarray:
  x = np.asarray(x, np.float32)
  x = np.clip((x + 1.0) / 2.0, 0.0, 1.0)
  return x[..., 0] if x.shape[-1] == 1 else x


def _figure_grid(path: pathlib.Path, rows: list[tuple[str, list[np.ndarray]]], titles: list[str], suptitle: str):
  plt = train.pyplot()
  cols = len(titles)
  fig, axes = plt.subplots(len(rows), cols, figsize=(1.5 * cols, 1.6 * len(rows) + 0.6), squeeze=False)
  for r, (label, images) in enumerate(rows):
    for c, image in enumerate(images):
      ax = axes[r, c]
      ax.imshow(image, cmap="gray" if image.ndim == 2 else None, vmin=0, vmax=1, interpolation="nearest")
      ax.set_xticks([])
      ax.set_yticks([])
      if r == 0:
        ax.set_title(titles[c], fontsize=7)
      if c == 0:
        ax.set_ylabel(label, fontsize=8)
  fig.suptitle(suptitle, fontsize=9)
  fig.tight_layout()
  train.save_figure(fig, path)


def _level_title(corruption, t: float) -> str:
  tt = jnp.asarray([t], jnp.float32)
  text = f"t={t:.2f}\ns={float(corruption.noise_std(tt)[0]):.3g}"
  schedule = getattr(corruption.operator, "sigma_schedule", None)
  if schedule is not None:
    text += f" σ={float(schedule(tt)[0]):.2g}"
  return text


def trajectory_figure(run: Run, path: pathlib.Path, num_frames: int = 8) -> None:
  """One reverse trajectory with the configured sampler: x_t (top) and x̂_0 (bottom)."""
  cfg = run.settings.sample
  denoise_fn = train.make_denoise_fn(run.model, run.params)
  key = jax.random.fold_in(jax.random.key(cfg.seed), 10_000)  # apart from the sample batches' keys
  k_prior, k_sampler = jax.random.split(key)
  x_init = priors.sample_p1(run.prior, run.corruption, k_prior, 1)
  sampler = samplers.get(cfg.sampler)
  x0, (x_ts, x0_hats) = jax.jit(
    lambda x: sampler(denoise_fn, x, run.corruption, num_steps=cfg.num_steps, key=k_sampler, return_trajectory=True)
  )(x_init)
  frames = np.unique(np.linspace(0, cfg.num_steps - 1, num_frames).round().astype(int))
  times = [(cfg.num_steps - i) / cfg.num_steps for i in frames]
  titles = [_level_title(run.corruption, t) for t in times] + ["t=0\nfinal"]
  rows = [
    ("x_t", [_to_display(x_ts[i, 0]) for i in frames] + [_to_display(x0[0])]),
    ("x̂_0 = h(x_t, t)", [_to_display(x0_hats[i, 0]) for i in frames] + [_to_display(x0[0])]),
  ]
  _figure_grid(
    path, rows, titles, f"reverse trajectory: {cfg.sampler} sampler, {cfg.num_steps} steps (step {run.step})"
  )


def forward_figure(run: Run, path: pathlib.Path, num_images: int = 3, num_levels: int = 8) -> None:
  """Real training images through the forward corruption: C_t x_0 and x_t = C_t x_0 + s_t η."""
  x0 = jnp.asarray(train.load_training_images(run.settings, num_images))
  times = np.linspace(0.0, 1.0, num_levels)
  key = jax.random.key(run.settings.seed + 2)
  rows = [("C_t x_0", []), *[(f"x_t (image {i})", []) for i in range(len(x0))]]
  for j, t in enumerate(times):
    tt = jnp.full((len(x0),), t, jnp.float32)
    clean = run.corruption.apply(x0, tt)
    noisy = run.corruption.corrupt(x0, tt, jax.random.normal(jax.random.fold_in(key, j), x0.shape))
    rows[0][1].append(_to_display(clean[0]))
    for i in range(len(x0)):
      rows[1 + i][1].append(_to_display(noisy[i]))
  titles = [_level_title(run.corruption, float(t)) for t in times]
  _figure_grid(path, rows, titles, f"forward corruption ({run.settings.corruption.name})")


def sample(config: Any, workdir: str, step: int | None = None) -> pathlib.Path:
  """Writes samples.npz, samples.png, trajectory.png and forward.png; returns the .npz path."""
  run = load_run(config, workdir, step)
  cfg = run.settings.sample
  start = time.perf_counter()
  images = draw(run, cfg.sampler, cfg.num_steps, cfg.num_images)
  log.info(
    "%d images with the %s sampler, %d steps, %s prior, in %.1f s (checkpoint step %d)",
    len(images),
    cfg.sampler,
    cfg.num_steps,
    cfg.prior,
    time.perf_counter() - start,
    run.step,
  )
  out = run.workdir / "samples"
  out.mkdir(parents=True, exist_ok=True)
  if jax.process_index() == 0:
    train.save_npz(out / "samples.npz", images=images)
    train.write_png(images, out / "samples.png", scale=4 if images.shape[1] <= 32 else 1)
  if jax.process_count() == 1:  # the figures run small jitted programs on one process's devices
    trajectory_figure(run, out / "trajectory.png")
    forward_figure(run, out / "forward.png")
  return out / "samples.npz"
