"""Everything about drawing images from a network: p_1, the jitted sampler, figures, --mode sample.

* p_1 (`make_prior`): `sample.prior = 'gaussian'` is the fit of C_1 x_0 to
  `train.prior_num_images` training images plus the noise s_1² I exactly, stored in
  WORKDIR/prior.npz when training starts (`fit_missing=True`) and read by every later
  sampling; `'forward'` is the exact forward marginal over those images (no file).
  The choice is made here and nowhere else.
* Drawing (one verb): `make_draw_fn` jits (params, prior, key) -> one batch of
  `sample.batch_size` images in [-1, 1], split over the mesh's "data" axis; `draw` runs it batch
  by batch from keys fold_in(key(sample.seed), i) and returns uint8 [N, H, W, C]. The same
  checkpoint and seed give identical images, on any number of devices.
* `load_run` is what sampling needs from a trained workdir (settings, EMA parameters of a
  checkpoint, p_1, mesh); `Run.draw` draws with any sampler and step count (--mode eval uses it).
* `write_samples(config, workdir, step)` (`--mode sample`) writes under
  WORKDIR/samples/<draw>/, <draw> naming the sampler, NFE, p_1, end, other options and checkpoint
  (`draw_name`, e.g. `momentum_100_forward_denoise_step4000`), so that a second draw with other
  settings does not overwrite the first: `samples.npz` (key `images`, uint8 NHWC) and
  `samples.png`; `trajectory.png` (one reverse trajectory: x_t and the estimate x̂_0 at several
  t); `forward.png` (training images through x_t = C_t x_0 + s_t η).
"""

from __future__ import annotations

import dataclasses
import logging
import math
import time
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from etils import epath
from jax.experimental import multihost_utils

from soft_diffusion import corruptions, data, errors, evaluation, models, preconditioning, priors, samplers
from soft_diffusion.models import make_denoise_fn, wiener_skip
from soft_diffusion.run import checkpoints, figures, files, image_files, processes, reporting
from soft_diffusion.run import settings as settings_lib
from soft_diffusion.run import state as state_lib
from soft_diffusion.run.settings import SampleConfig, Settings
from soft_diffusion.run.workdir import Workdir

log = logging.getLogger(__name__)

# ----------------------------------------------------------------------------------------------
# The start distribution p_1.


def load_training_images(settings: Settings, num: int, *, shared: bool = False) -> np.ndarray:
  """The first `num` training images (in order, no flip) as float32 [n, H, W, C] in [-1, 1]; with
  `shared` on several processes, this process's share of them only (every process_count-th)."""
  d = settings.data
  index, count = (jax.process_index(), jax.process_count()) if shared else (0, 1)
  with errors.user_input("config.data"):
    batches = list(
      data.first_batches(
        d, d.train_split, num, batch_size=256, seed=settings.seed, process_index=index, process_count=count
      )
    )
    if not batches:  # an empty share (fewer images than processes): no rows, the images' shape
      first = next(iter(data.first_batches(d, d.train_split, 1, batch_size=1, seed=settings.seed)))
      return np.zeros((0, *first.shape[1:]), np.float32)
  return np.concatenate(batches)


def fit_prior(images: np.ndarray, corruption: corruptions.Corruption, reduce=None) -> priors.GaussianPrior:
  """Fits p_1 to training images [N, H, W, C]: the law of C_1 x_0 from the images, plus the
  noise s_1² I exactly (priors.fit_gaussian_prior); no random draws, so no seed. `reduce`: the
  sum over processes when each holds a share of the images (processes.sum_over_processes)."""
  apply_at_one = jax.jit(lambda x: corruption.apply(x, jnp.ones(x.shape[0])))
  signal = [np.asarray(apply_at_one(images[start : start + 256])) for start in range(0, len(images), 256)]
  signal = np.concatenate(signal) if signal else np.zeros((0, *images.shape[1:]), np.float32)
  noise_std = float(corruption.noise_std(jnp.ones(1))[0])
  return priors.fit_gaussian_prior(signal, noise_std, reduce=reduce)


def save_prior(prior: priors.GaussianPrior, workdir: Workdir) -> None:
  workdir.write_prior(prior._asdict())


def load_prior(workdir: Workdir) -> priors.GaussianPrior:
  f = workdir.read_prior(priors.GaussianPrior._fields)
  return priors.GaussianPrior(**{k: jnp.asarray(f[k]) for k in priors.GaussianPrior._fields})


def prior_is_current(workdir: Workdir) -> bool:
  """Whether the run's prior file holds a prior of the current format. Files written before p_1's
  noise was added exactly (no `noise_std` field) hold a noisy sample covariance and are refitted."""
  path = workdir.prior_file
  return path.exists() and "noise_std" in files.load_npz(path)


def make_prior(
  settings: Settings, corruption: corruptions.Corruption, workdir: epath.Path, *, fit_missing: bool = False
) -> priors.GaussianPrior | priors.ForwardPrior:
  """p_1 as `sample.prior` says. With `fit_missing` (training), a missing WORKDIR/prior.npz is
  fitted and written (by process 0) first, whichever prior sampling uses. A prior.npz of the
  earlier format (a sample covariance of noisy draws) is refitted and rewritten in any mode."""
  workdir = Workdir.of(workdir)
  path = workdir.prior_file
  forward = settings.sample.prior == "forward"
  exists = path.exists()
  stale = exists and not prior_is_current(workdir)
  if stale:
    log.warning("%s was fitted to noisy draws (earlier format); refitting it with the noise added exactly", path)
  fit = (fit_missing and not exists) or (stale and not forward)
  processes.barrier("prior checked")  # every process has decided before process 0 writes the file
  num = settings.train.prior_num_images
  images = load_training_images(settings, num) if forward else None  # every process samples from all
  gaussian = None
  if fit:  # each process reads and transforms its share; the fit's sums are added over processes
    multi = jax.process_count() > 1
    if images is not None:  # already read whole (the forward p₁): this process's rows of them
      share = images[jax.process_index() :: jax.process_count()]
    else:
      share = load_training_images(settings, num, shared=True)
    gaussian = fit_prior(share, corruption, reduce=processes.sum_over_processes if multi else None)
    if jax.process_index() == 0:
      save_prior(gaussian, workdir)
  if forward:
    return priors.ForwardPrior(jnp.asarray(images))
  return gaussian if gaussian is not None else load_prior(workdir)


def data_power(settings: Settings, workdir: epath.Path, *, fit_missing: bool = False, needed_by: str) -> np.ndarray:
  """The data's mean DCT power [H, W, C] (one channel's [H, W] is broadcast to C = 1), which
  training computes once (one pass over the training split, `levels.power_spectrum`; the exact
  spectrum for a dataset whose law is known) into WORKDIR/spectrum.npz (key `power`) and
  sampling reads back. `needed_by` names the setting that needs it, for the error."""
  from soft_diffusion.run.modes import levels

  workdir = Workdir.of(workdir)
  fit = fit_missing and not workdir.spectrum_file.exists()
  processes.barrier("spectrum checked")
  if fit:
    power, _ = levels.power_spectrum(settings)
    if jax.process_index() == 0:
      workdir.write_spectrum(power)
  else:
    power = workdir.read_spectrum(needed_by)
  return power[:, :, None] if power.ndim == 2 else power  # the fields' exact spectrum: one channel's


def make_skip(
  settings: Settings, corruption: corruptions.Corruption, workdir: epath.Path, *, fit_missing: bool = False
):
  """The denoiser's skip S_t for `model.skip` (models/denoiser.py): None for 'identity'; for
  'wiener', `wiener_skip` over the data's mean DCT power spectrum (`data_power`)."""
  if settings.model.skip == "identity":
    return None
  power = data_power(settings, workdir, fit_missing=fit_missing, needed_by="model.skip = 'wiener'")
  return wiener_skip(corruption, power)


def make_precond(
  settings: Settings, corruption: corruptions.Corruption, workdir: epath.Path, *, fit_missing: bool = False
) -> preconditioning.Preconditioner | None:
  """The per-coefficient preconditioning for `model.precond` (preconditioning.py): None for
  'none'; for 'spectral', over the data's mean DCT power (`data_power`), or the deliberately
  wrong spectrum `model.precond_spectrum` names, with `model.precond_c_in`'s input scaling."""
  cfg = settings.model
  if cfg.precond == "none":
    return None
  power = data_power(settings, workdir, fit_missing=fit_missing, needed_by="model.precond = 'spectral'")
  return preconditioning.Preconditioner(
    corruption, preconditioning.spectrum_for(power, cfg.precond_spectrum), c_in=cfg.precond_c_in
  )


def prior_channels(prior: priors.GaussianPrior | priors.ForwardPrior) -> int:
  return int((prior.images if isinstance(prior, priors.ForwardPrior) else prior.mean).shape[-1])


# ----------------------------------------------------------------------------------------------
# Drawing.


def sampler_of(cfg: SampleConfig) -> Any:
  """The sampler of the sample block, with its options (snr, time_grid, rho, order, form, final)
  bound; time_grid = 'tuned' binds the tuned grid of cfg.num_steps (`tuned_grid`)."""
  grid = tuned_grid(cfg) if cfg.time_grid == "tuned" else cfg.time_grid
  options = {"snr": cfg.snr, "time_grid": grid, "rho": cfg.rho, "order": cfg.order, "form": cfg.form}
  return samplers.get(cfg.sampler, final=cfg.final, **options)


def tuned_grid(cfg: SampleConfig) -> tuple[float, ...]:
  """The tuned grid of cfg.num_steps steps among cfg.tuned_grids (`Workdir.settings` reads them);
  refused in one line when there is none."""
  for times in cfg.tuned_grids:
    if len(times) == cfg.num_steps + 1:
      return times
  have = ", ".join(str(len(t) - 1) for t in cfg.tuned_grids) or "none"
  raise errors.ConfigError(
    f"sample.time_grid = 'tuned' has no grid for sample.num_steps = {cfg.num_steps} (tuned: {have}); run "
    f"--mode tune_grid with --config.tune.num_steps='({cfg.num_steps},)'"
  )


def sample_options(cfg: SampleConfig) -> dict[str, Any]:
  """The sample block's sampler options that change the images and differ from their defaults,
  as {'sample_<field>': value}: what an evaluation record's header must hold so that points drawn
  with other options are not reused (defaults are left out, so older headers stay valid)."""
  defaults = SampleConfig()
  fields = ("final", "time_grid", "rho", "order", "form", "snr", "tuned_grids")
  return {f"sample_{f}": getattr(cfg, f) for f in fields if getattr(cfg, f) != getattr(defaults, f)}


def make_draw_fn(
  network: Any,
  corruption: Any,
  cfg: SampleConfig,
  mesh: jax.sharding.Mesh | None = None,
  *,
  raw: bool = False,
  denoise_fn: Any = None,
  skip: Any = None,
  precond: Any = None,
):
  """jitted (params, prior, key) -> x_0 images [cfg.batch_size, H, W, C] in [-1, 1], drawn with
  `cfg.sampler` in `cfg.num_steps` network evaluations.

  With `mesh`, the batch is split over its "data" axis (cfg.batch_size must divide evenly).
  `raw`: the sampler's output unclipped (for exact metrics). `denoise_fn`: sample with this
  h(x_t, t) instead of the network (e.g. `gaussian_field.oracle_denoiser`); params are unused.
  `skip`: the denoiser's skip S_t (`make_skip`), for model.skip = 'wiener'; `precond`: the
  preconditioning (`make_precond`), for model.precond = 'spectral'.
  """
  sampler = sampler_of(cfg)
  if mesh is not None:
    state_lib.check_batch_split("sample.batch_size", cfg.batch_size, mesh)

  def draw_fn(params, prior, key):
    k_prior, k_sampler = jax.random.split(key)
    x_init = priors.sample_p1(prior, corruption, k_prior, cfg.batch_size)
    if mesh is not None:
      x_init = jax.lax.with_sharding_constraint(x_init, state_lib.batch_sharding(mesh))
    h = denoise_fn or make_denoise_fn(network, params, noise_std=corruption.noise_std, skip=skip, precond=precond)
    x0 = sampler(h, x_init, corruption, num_steps=cfg.num_steps, key=k_sampler)
    return x0 if raw else jnp.clip(x0, -1.0, 1.0)

  return jax.jit(draw_fn)


def draw(
  draw_fn, params: Any, prior: Any, cfg: SampleConfig, num_images: int, *, progress: bool = False, raw: bool = False
) -> np.ndarray:
  """`num_images` uint8 images [N, H, W, C] from `draw_fn` (see `make_draw_fn`), batch i from
  key fold_in(key(cfg.seed), i); with `progress`, a log line per batch with the rate and ETA.
  `raw`: float32 images as `draw_fn` returns them (no rounding to uint8)."""
  out = []
  report = reporting.Progress("drawn", num_images, note=" (first batch includes compiling)") if progress else None
  for i in range(math.ceil(num_images / cfg.batch_size)):
    x = draw_fn(params, prior, jax.random.fold_in(jax.random.key(cfg.seed), i))
    x = x if raw else evaluation.to_uint8(x)
    if not x.is_fully_addressable:  # batch split over several processes: every process gets all
      x = multihost_utils.process_allgather(x, tiled=True)
    out.append(np.asarray(x))
    if report:
      report(min(num_images, (i + 1) * cfg.batch_size))
  return np.concatenate(out)[:num_images]


# ----------------------------------------------------------------------------------------------
# A trained run.


@dataclasses.dataclass
class Run:
  """What sampling needs from a trained workdir."""

  settings: Settings
  workdir: Workdir
  network: Any
  corruption: corruptions.Corruption
  params: Any  # EMA parameters, replicated over the mesh
  prior: Any  # priors.GaussianPrior or priors.ForwardPrior
  step: int
  mesh: jax.sharding.Mesh
  skip: Any = None  # the denoiser's skip S_t (make_skip); None for model.skip = 'identity'
  precond: Any = None  # the preconditioning (make_precond); None for model.precond = 'none'

  def denoise_fn(self):
    """h_θ(x_t, t) of this checkpoint (EMA parameters, the run's skip and output scale)."""
    return make_denoise_fn(
      self.network, self.params, noise_std=self.corruption.noise_std, skip=self.skip, precond=self.precond
    )

  def draw(
    self,
    cfg: SampleConfig | None = None,
    num_images: int | None = None,
    *,
    progress: bool = True,
    raw: bool = False,
    denoise_fn: Any = None,
  ):
    """uint8 images drawn with `cfg` (default: the run's sample block) from this checkpoint.

    `raw`: float32 images, unclipped; `denoise_fn`: sample with it in place of the network."""
    cfg = cfg or self.settings.sample
    draw_fn = make_draw_fn(
      self.network,
      self.corruption,
      cfg,
      self.mesh,
      raw=raw,
      denoise_fn=denoise_fn,
      skip=self.skip,
      precond=self.precond,
    )
    return draw(draw_fn, self.params, self.prior, cfg, num_images or cfg.num_images, progress=progress, raw=raw)


def load_run(
  settings: Settings, workdir: epath.Path, step: int | None = None, *, mesh: jax.sharding.Mesh | None = None
) -> Run:
  """Checks the run, then loads the checkpoint's EMA params and p_1 (one-line errors).

  Args:
    settings: from `Workdir.of(workdir).settings(config)` (once per mode).
    workdir: the run's folder (`Workdir.resolve`).
  """
  settings = settings_lib.require(settings, "load_run")
  workdir = Workdir.of(workdir)
  mesh = mesh or state_lib.make_mesh()
  state_lib.check_batch_split("sample.batch_size", settings.sample.batch_size, mesh)
  step = checkpoints.resolve_step(workdir, step)
  corruption = corruptions.make(settings.corruption)
  prior = make_prior(settings, corruption, workdir)
  skip = make_skip(settings, corruption, workdir)
  precond = make_precond(settings, corruption, workdir)
  network = models.make_network(settings.model)
  params = checkpoints.load_ema_params(workdir, settings, network, mesh, prior_channels(prior), step)
  state_lib.log_devices()
  return Run(settings, workdir, network, corruption, params, prior, step, mesh, skip, precond)


# ----------------------------------------------------------------------------------------------
# Figures.


def _level_title(corruption, t: float) -> str:
  tt = jnp.asarray([t], jnp.float32)
  text = f"t={t:.2f}\ns={float(corruption.noise_std(tt)[0]):.3g}"
  schedule = getattr(corruption.operator, "sigma_schedule", None)
  if schedule is not None:
    text += f" σ={float(schedule(tt)[0]):.2g}"
  return text


def trajectory_figure(run: Run, path: epath.Path, num_frames: int = 8) -> None:
  """One reverse trajectory with the configured sampler: x_t (top) and x̂_0 (bottom)."""
  cfg = run.settings.sample
  denoise_fn = run.denoise_fn()
  key = jax.random.fold_in(jax.random.key(cfg.seed), 10_000)  # apart from the sample batches' keys
  k_prior, k_sampler = jax.random.split(key)
  x_init = priors.sample_p1(run.prior, run.corruption, k_prior, 1)
  sampler = sampler_of(cfg)
  trace = jax.jit(lambda x: sampler(denoise_fn, x, run.corruption, num_steps=cfg.num_steps, key=k_sampler, trace=True))(
    x_init
  )
  x0 = trace.x0
  frames = np.unique(np.linspace(0, cfg.num_steps - 1, num_frames).round().astype(int))
  times = np.asarray(trace.times)[frames].tolist()  # the grid the sampler used ('pc': two calls per level)
  end = "x̂_0 of the last step" if samplers.ends_denoised(cfg.sampler, cfg.final) else "t=0"
  titles = [_level_title(run.corruption, t) for t in times] + [f"{end}\nfinal"]
  rows = [
    ("x_t", [figures.to_display(trace.x_t[i, 0]) for i in frames] + [figures.to_display(x0[0])]),
    ("x̂_0 = h(x_t, t)", [figures.to_display(trace.x0_hats[i, 0]) for i in frames] + [figures.to_display(x0[0])]),
  ]
  figures.image_rows(
    path, rows, titles, f"reverse trajectory: {cfg.sampler} sampler, {cfg.num_steps} steps (step {run.step})"
  )


def forward_figure(run: Run, path: epath.Path, num_images: int = 3, num_levels: int = 8) -> None:
  """Real training images through the forward corruption: C_t x_0 and x_t = C_t x_0 + s_t η."""
  x0 = jnp.asarray(load_training_images(run.settings, num_images))
  times = np.linspace(0.0, 1.0, num_levels)
  key = jax.random.key(run.settings.seed + 2)
  rows = [("C_t x_0", []), *[(f"x_t (image {i})", []) for i in range(len(x0))]]
  for j, t in enumerate(times):
    tt = jnp.full((len(x0),), t, jnp.float32)
    clean = run.corruption.apply(x0, tt)
    noisy = run.corruption.corrupt(x0, tt, jax.random.normal(jax.random.fold_in(key, j), x0.shape))
    rows[0][1].append(figures.to_display(clean[0]))
    for i in range(len(x0)):
      rows[1 + i][1].append(figures.to_display(noisy[i]))
  titles = [_level_title(run.corruption, float(t)) for t in times]
  figures.image_rows(path, rows, titles, f"forward corruption ({run.settings.corruption.name})")


# ----------------------------------------------------------------------------------------------
# --mode sample.


def draw_name(cfg: SampleConfig, step: int) -> str:
  """The folder under WORKDIR/samples/ for a draw with the sample block `cfg` from checkpoint
  `step`: sampler, NFE, p_1 and end (what `sample.final` resolves to), then the options that
  differ from their defaults and a sample seed other than 0, e.g.
  'momentum_100_forward_denoise_step4000' or 'multistep_20_forward_noise_order-3_seed1_step4000'."""
  end = "denoise" if samplers.ends_denoised(cfg.sampler, cfg.final) else "noise"
  parts = [cfg.sampler, str(cfg.num_steps), cfg.prior, end]
  parts += [
    f"{k.removeprefix('sample_')}-{v:g}" if isinstance(v, float) else f"{k.removeprefix('sample_')}-{v}"
    for k, v in sample_options(cfg).items()
    if k != "sample_final"
  ]
  if cfg.seed:
    parts.append(f"seed{cfg.seed}")
  return "_".join([*parts, f"step{step}"])


def write_samples(
  settings: Settings, workdir: epath.Path, step: int | None = None, mesh: jax.sharding.Mesh | None = None
) -> epath.Path:
  """--mode sample: writes samples.npz, samples.png, trajectory.png and forward.png into
  WORKDIR/samples/<draw_name>/; returns the .npz path."""
  run = load_run(settings, workdir, step, mesh=mesh)
  cfg = run.settings.sample
  start = time.perf_counter()
  images = run.draw(cfg, cfg.num_images)
  log.info(
    "%d images with the %s sampler, %d steps, %s prior, in %.1f s (checkpoint step %d)",
    len(images),
    cfg.sampler,
    cfg.num_steps,
    cfg.prior,
    time.perf_counter() - start,
    run.step,
  )
  out = run.workdir.draw(draw_name(cfg, run.step))
  if jax.process_index() == 0:
    files.save_npz(out.arrays, images=images)
    image_files.write_png(images, out.grid)
  if jax.process_count() == 1:  # the figures run small jitted programs on one process's devices
    trajectory_figure(run, out.trajectory)
    forward_figure(run, out.forward)
  return out.arrays
