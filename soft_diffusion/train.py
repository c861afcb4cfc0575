"""Training: `train_and_evaluate(config, workdir)`, the only place with state, I/O and logging.

Sections, top to bottom: settings (every config block validated into typed dataclasses before
anything is compiled or written) · mesh · input · model and state (created directly with their
sharding) · train step (one jit, donated state) · prior p_1 · checkpoints (Orbax: state, EMA,
optimizer, step, data iterator, config + versions) · loop (metrics, progress, sample grids,
SIGTERM, non-finite guard).

Randomness: step n uses fold_in(key(seed), n), split into t, noise and dropout keys, so a resumed
run draws exactly what an uninterrupted one would, for any device count.
"""

from __future__ import annotations

import dataclasses
import importlib.metadata
import json
import logging
import math
import pathlib
import signal
import time
from typing import Any

import flax
import grain
import jax
import jax.numpy as jnp
import numpy as np
import optax
import orbax.checkpoint as ocp
from jax.experimental import multihost_utils
from jax.sharding import AxisType, NamedSharding, PartitionSpec

from soft_diffusion import corruptions, data, losses, priors, samplers, typed_config
from soft_diffusion.models import UNet, make_denoise_fn

# ----------------------------------------------------------------------------------------------
# Settings: typed, validated config blocks.

log = logging.getLogger(__name__)


_check = typed_config.check


def _positive_int(value: Any) -> bool:
  return typed_config.is_int_at_least(value, 1)


@dataclasses.dataclass(frozen=True)
class ModelConfig:
  channels: int = 32
  channel_mult: tuple[int, ...] = (1, 2, 2)
  num_res_blocks: int = 1
  attention_resolutions: tuple[int, ...] = (8,)
  dropout: float = 0.0
  num_heads: int = 1
  dtype: str = "float32"

  def __post_init__(self):
    _check(_positive_int(self.channels), "model.channels", "an int >= 1", self.channels)
    _check(
      len(self.channel_mult) >= 1 and all(_positive_int(m) for m in self.channel_mult),
      "model.channel_mult",
      "a non-empty sequence of ints >= 1",
      self.channel_mult,
    )
    _check(_positive_int(self.num_res_blocks), "model.num_res_blocks", "an int >= 1", self.num_res_blocks)
    _check(0.0 <= self.dropout < 1.0, "model.dropout", "in [0, 1)", self.dropout)
    _check(_positive_int(self.num_heads), "model.num_heads", "an int >= 1", self.num_heads)
    _check(self.dtype in ("float32", "bfloat16"), "model.dtype", "'float32' or 'bfloat16'", self.dtype)


@dataclasses.dataclass(frozen=True)
class OptimConfig:
  lr: float = 2e-4
  beta1: float = 0.9
  beta2: float = 0.999
  eps: float = 1e-8
  warmup_steps: int = 5000
  grad_clip: float = 1.0
  ema_decay: float = 0.999
  ema_warmup: bool = True
  decay: str = "constant"
  decay_steps: int = 0

  def __post_init__(self):
    _check(self.lr > 0, "optim.lr", "> 0", self.lr)
    _check(self.decay in ("constant", "cosine"), "optim.decay", "'constant' or 'cosine'", self.decay)
    _check(
      self.decay == "constant" or (isinstance(self.decay_steps, int) and self.decay_steps > self.warmup_steps),
      "optim.decay_steps",
      f"an int > optim.warmup_steps = {self.warmup_steps} when optim.decay = 'cosine'",
      self.decay_steps,
    )
    _check(0 <= self.beta1 < 1 and 0 <= self.beta2 < 1, "optim.beta1/beta2", "in [0, 1)", (self.beta1, self.beta2))
    _check(self.eps > 0, "optim.eps", "> 0", self.eps)
    _check(
      isinstance(self.warmup_steps, int) and self.warmup_steps >= 0,
      "optim.warmup_steps",
      "an int >= 0",
      self.warmup_steps,
    )
    _check(self.grad_clip > 0, "optim.grad_clip", "> 0", self.grad_clip)
    _check(0 <= self.ema_decay < 1, "optim.ema_decay", "in [0, 1)", self.ema_decay)


@dataclasses.dataclass(frozen=True)
class TrainConfig:
  batch_size: int = 128
  num_steps: int = 1_300_000
  t_min: float = 0.0
  log_every_steps: int = 100
  sample_every_steps: int = 10_000
  loss_bins: int = 4
  prior_num_images: int = 5000

  def __post_init__(self):
    for field in ("batch_size", "num_steps", "log_every_steps", "sample_every_steps", "loss_bins", "prior_num_images"):
      _check(_positive_int(getattr(self, field)), f"train.{field}", "an int >= 1", getattr(self, field))
    _check(0.0 <= self.t_min < 1.0, "train.t_min", "in [0, 1)", self.t_min)


@dataclasses.dataclass(frozen=True)
class CheckpointConfig:
  every_steps: int = 5000
  max_to_keep: int = 3

  def __post_init__(self):
    _check(_positive_int(self.every_steps), "checkpoint.every_steps", "an int >= 1", self.every_steps)
    _check(_positive_int(self.max_to_keep), "checkpoint.max_to_keep", "an int >= 1", self.max_to_keep)


@dataclasses.dataclass(frozen=True)
class SampleConfig:
  sampler: str = "momentum"
  num_steps: int = 300
  num_images: int = 64
  seed: int = 0
  batch_size: int = 256
  prior: str = "gaussian"

  def __post_init__(self):
    _check(self.sampler in samplers.SAMPLERS, "sample.sampler", f"one of {sorted(samplers.SAMPLERS)}", self.sampler)
    for field in ("num_steps", "num_images", "batch_size"):
      _check(_positive_int(getattr(self, field)), f"sample.{field}", "an int >= 1", getattr(self, field))
    _check(self.prior in PRIORS, "sample.prior", f"one of {PRIORS}", self.prior)


PRIORS = ("gaussian", "forward")


@dataclasses.dataclass(frozen=True)
class LevelsConfig:
  num_candidates: int = 256
  num_levels: int = 32
  num_images: int = 0

  def __post_init__(self):
    _check(
      typed_config.is_int_at_least(self.num_candidates, 2), "levels.num_candidates", "an int >= 2", self.num_candidates
    )
    _check(
      typed_config.is_int_at_least(self.num_levels, 2) and self.num_levels <= self.num_candidates,
      "levels.num_levels",
      f"an int in [2, levels.num_candidates = {self.num_candidates}]",
      self.num_levels,
    )
    _check(
      typed_config.is_int_at_least(self.num_images, 0), "levels.num_images", "an int >= 0 (0 = all)", self.num_images
    )


@dataclasses.dataclass(frozen=True)
class EvalConfig:
  split: str = "train"
  ref_num_images: int = 0
  num_images: int = 10_000
  samplers: tuple[str, ...] = ("momentum", "naive")
  nfe: tuple[int, ...] = (50, 100, 200, 300)
  batch_size: int = 64
  kid_subset_size: int = 1000
  kid_num_subsets: int = 100
  kid_ref_features: int = 10_000

  def __post_init__(self):
    _check(isinstance(self.split, str) and bool(self.split), "eval.split", "a split name", self.split)
    _check(
      typed_config.is_int_at_least(self.ref_num_images, 0), "eval.ref_num_images", "an int >= 0", self.ref_num_images
    )
    for field in ("num_images", "batch_size", "kid_subset_size", "kid_num_subsets", "kid_ref_features"):
      _check(
        typed_config.is_int_at_least(getattr(self, field), 2), f"eval.{field}", "an int >= 2", getattr(self, field)
      )
    _check(
      len(self.samplers) >= 1 and all(s in samplers.SAMPLERS for s in self.samplers),
      "eval.samplers",
      f"a non-empty tuple of {sorted(samplers.SAMPLERS)}",
      self.samplers,
    )
    _check(
      len(self.nfe) >= 1 and all(_positive_int(n) for n in self.nfe),
      "eval.nfe",
      "a non-empty tuple of ints >= 1",
      self.nfe,
    )


@dataclasses.dataclass(frozen=True)
class Settings:
  """Every config block, typed and validated."""

  seed: int
  data: data.DataConfig
  corruption: corruptions.CorruptionConfig
  loss_weighting: str
  model: ModelConfig
  optim: OptimConfig
  train: TrainConfig
  checkpoint: CheckpointConfig
  sample: SampleConfig
  levels: LevelsConfig
  eval: EvalConfig


def settings_from_config(config: Any) -> Settings:
  """Validates the whole config (one-line errors naming the field) before anything runs."""
  blocks = typed_config.as_dict(config)
  allowed = {"seed", "data", "corruption", "loss", "model", "optim", "train", "checkpoint", "sample", "levels", "eval"}
  unknown = sorted(set(blocks) - allowed)
  if unknown:
    raise ValueError(f"config has unknown block(s) {unknown}; allowed: {sorted(allowed)}")
  missing = sorted(allowed - set(blocks))
  if missing:
    raise ValueError(f"config lacks block(s) {missing}")
  _check(isinstance(blocks["seed"], int), "seed", "an int", blocks["seed"])
  loss = dict(blocks["loss"])
  weighting = loss.pop("weighting", "uniform")
  _check(not loss, "loss", "only {'weighting'}", sorted(loss))
  _check(weighting in losses.WEIGHTINGS, "loss.weighting", f"one of {losses.WEIGHTINGS}", weighting)
  settings = Settings(
    seed=blocks["seed"],
    data=typed_config.from_block(data.DataConfig, blocks["data"], "data"),
    corruption=typed_config.from_block(corruptions.CorruptionConfig, blocks["corruption"], "corruption"),
    loss_weighting=weighting,
    model=typed_config.from_block(ModelConfig, blocks["model"], "model"),
    optim=typed_config.from_block(OptimConfig, blocks["optim"], "optim"),
    train=typed_config.from_block(TrainConfig, blocks["train"], "train"),
    checkpoint=typed_config.from_block(CheckpointConfig, blocks["checkpoint"], "checkpoint"),
    sample=typed_config.from_block(SampleConfig, blocks["sample"], "sample"),
    levels=typed_config.from_block(LevelsConfig, blocks["levels"], "levels"),
    eval=typed_config.from_block(EvalConfig, blocks["eval"], "eval"),
  )
  # Validates names and ranges; 'selected' levels come from schedule.json (`with_selected_levels`).
  selected = settings.corruption.blur_schedule == "selected"
  _check(
    not selected or settings.corruption.name == "blur",
    "corruption.blur_schedule",
    "'log' or 'table' unless corruption.name = 'blur' ('selected' is level selection for blur)",
    settings.corruption.blur_schedule,
  )
  if selected and settings.corruption.blur_sigma_table is None:
    corruptions.make(dataclasses.replace(settings.corruption, blur_sigma_table=(1.0, 2.0)))
  else:
    corruptions.make(settings.corruption)
  levels = len(settings.model.channel_mult) - 1
  _check(
    settings.data.image_size % (2**levels) == 0,
    "data.image_size",
    f"divisible by 2^(len(model.channel_mult) - 1) = {2**levels}",
    settings.data.image_size,
  )
  return settings


# ----------------------------------------------------------------------------------------------
# Mesh, model, optimizer, state.


def make_mesh() -> jax.sharding.Mesh:
  """1-D ("data",) mesh over every device of every process."""
  return jax.make_mesh((jax.device_count(),), ("data",), axis_types=(AxisType.Auto,))


def make_model(cfg: ModelConfig) -> UNet:
  return UNet(
    channels=cfg.channels,
    channel_mult=tuple(cfg.channel_mult),
    num_res_blocks=cfg.num_res_blocks,
    attention_resolutions=tuple(cfg.attention_resolutions),
    dropout=cfg.dropout,
    num_heads=cfg.num_heads,
    dtype=jnp.bfloat16 if cfg.dtype == "bfloat16" else jnp.float32,
  )


def make_optimizer(cfg: OptimConfig) -> tuple[optax.GradientTransformation, optax.Schedule]:
  """Adam with linear warm-up and global-norm clipping (SPEC §6); optionally cosine decay to 0."""
  if cfg.decay == "cosine":
    schedule = optax.warmup_cosine_decay_schedule(0.0, cfg.lr, cfg.warmup_steps, cfg.decay_steps, 0.0)
  elif cfg.warmup_steps:
    schedule = optax.linear_schedule(0.0, cfg.lr, cfg.warmup_steps)
  else:
    schedule = optax.constant_schedule(cfg.lr)
  optimizer = optax.chain(
    optax.clip_by_global_norm(cfg.grad_clip), optax.adam(schedule, b1=cfg.beta1, b2=cfg.beta2, eps=cfg.eps)
  )
  return optimizer, schedule


@flax.struct.dataclass
class TrainState:
  step: jax.Array
  params: Any
  ema_params: Any
  opt_state: Any
  first_nonfinite_step: jax.Array  # -1 until step n (1-based, as logged) meets a non-finite loss or gradient


def create_state(model: UNet, optimizer, image_shape, seed: int, sharding) -> TrainState:
  """Initial state, created directly with `sharding` (replicated) on every device."""

  def init():
    x = jnp.zeros((1, *image_shape), jnp.float32)
    params = model.init(jax.random.fold_in(jax.random.key(seed), -1 % 2**31), x, jnp.zeros((1,)))["params"]
    return TrainState(
      step=jnp.zeros((), jnp.int32),
      params=params,
      ema_params=params,
      opt_state=optimizer.init(params),
      first_nonfinite_step=jnp.full((), -1, jnp.int32),
    )

  abstract = jax.eval_shape(init)
  shardings = jax.tree.map(lambda _: sharding, abstract)
  return jax.jit(init, out_shardings=shardings)()


def make_train_step(model: UNet, corruption, optimizer, schedule, settings: Settings):
  """(state, batch [B,H,W,C]) -> (state, metrics). A step with a non-finite loss or gradient
  leaves the state unchanged and records its number (1-based: the n-th step, the numbering of the
  log and of checkpoints) in `first_nonfinite_step`."""
  t_min = settings.train.t_min
  num_bins = settings.train.loss_bins
  ema_decay, ema_warmup = settings.optim.ema_decay, settings.optim.ema_warmup

  def train_step(state: TrainState, batch: jax.Array):
    key = jax.random.fold_in(jax.random.key(settings.seed), state.step)
    k_t, k_noise, k_dropout = jax.random.split(key, 3)
    t = jax.random.uniform(k_t, (batch.shape[0],), minval=t_min, maxval=1.0)
    noise = jax.random.normal(k_noise, batch.shape)

    def loss_fn(params):
      denoise_fn = make_denoise_fn(model, params, train=True, dropout_key=k_dropout)
      per_example = losses.soft_score_matching_per_example(
        denoise_fn, batch, t, noise, corruption, weighting=settings.loss_weighting
      )
      return per_example.mean(), per_example

    (loss, per_example), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
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
      "lr": schedule(state.step),
      "bin_sum": jax.ops.segment_sum(per_example, bins, num_bins),
      "bin_count": jax.ops.segment_sum(jnp.ones_like(per_example), bins, num_bins),
    }
    return new, metrics

  return train_step


# ----------------------------------------------------------------------------------------------
# Prior p_1 and sampling.


def fit_prior(images: np.ndarray, corruption, seed: int) -> priors.GaussianPrior:
  """Fits p_1 to C_1 x_0 + s_1 η over training images [N, H, W, C] (noise keys from `seed`)."""
  corrupt_at_one = jax.jit(lambda x, key: corruption.corrupt(x, jnp.ones(x.shape[0]), jax.random.normal(key, x.shape)))
  key = jax.random.key(seed + 1)
  x1 = [
    np.asarray(corrupt_at_one(images[start : start + 256], jax.random.fold_in(key, i)))
    for i, start in enumerate(range(0, len(images), 256))
  ]
  return priors.fit_gaussian_prior(np.concatenate(x1))


def save_prior(prior: priors.GaussianPrior, path: pathlib.Path) -> None:
  save_npz(path, **prior._asdict())


def load_training_images(settings: Settings, num: int) -> np.ndarray:
  """The first `num` training images (in order, no flip) as float32 [n, H, W, C] in [-1, 1]."""
  ds = data.make_dataset(
    settings.data, split=settings.data.train_split, batch_size=256, seed=settings.seed, train=False
  )
  chunks, count = [], 0
  for batch in ds:
    chunks.append(np.asarray(batch))
    count += len(batch)
    if count >= num:
      break
  return np.concatenate(chunks)[:num]


def sampling_prior(settings: Settings, workdir: pathlib.Path):
  """p_1 as `sample.prior` says: the stored Gaussian fit, or the forward marginal over
  `train.prior_num_images` training images."""
  if settings.sample.prior == "forward":
    return priors.ForwardPrior(jnp.asarray(load_training_images(settings, settings.train.prior_num_images)))
  return load_prior(workdir / "prior.npz")


def check_batch_split(field: str, batch_size: int, mesh: jax.sharding.Mesh) -> None:
  """A batch split over the mesh must divide evenly: one-line error naming `config.<field>`."""
  _check(batch_size % mesh.size == 0, field, f"a multiple of the {mesh.size} devices", batch_size)


def load_prior(path: pathlib.Path) -> priors.GaussianPrior:
  if not path.exists():
    raise FileNotFoundError(f"no prior at {path}; it is written when training starts in that workdir")
  with np.load(path) as f:
    return priors.GaussianPrior(**{k: jnp.asarray(f[k]) for k in priors.GaussianPrior._fields})


def make_sample_fn(model: UNet, corruption, sample: SampleConfig, mesh: jax.sharding.Mesh | None = None):
  """jitted (params, prior, key) -> x_0 images [sample.batch_size, H, W, C] in [-1, 1].

  With `mesh`, the batch is split over its "data" axis (sample.batch_size must divide evenly).
  """
  sampler = samplers.get(sample.sampler)
  if mesh is not None:
    check_batch_split("sample.batch_size", sample.batch_size, mesh)

  def sample_fn(params, prior, key):
    k_prior, k_sampler = jax.random.split(key)
    x_init = priors.sample_p1(prior, corruption, k_prior, sample.batch_size)
    if mesh is not None:
      x_init = jax.lax.with_sharding_constraint(x_init, NamedSharding(mesh, PartitionSpec("data")))
    x0 = sampler(make_denoise_fn(model, params), x_init, corruption, num_steps=sample.num_steps, key=k_sampler)
    return jnp.clip(x0, -1.0, 1.0)

  return jax.jit(sample_fn)


class Progress:
  """Logs `what: done/total  rate images/s  ETA` each time it is called with the count done."""

  def __init__(self, what: str, total: int, note: str = ""):
    self.what, self.total, self.note, self.start = what, total, note, time.perf_counter()

  def __call__(self, done: int) -> None:
    rate = done / max(time.perf_counter() - self.start, 1e-9)
    eta = time.strftime("%H:%M:%S", time.gmtime((self.total - done) / rate)) if rate > 0 else "?"
    log.info("%s: %d/%d  %.1f images/s%s  ETA %s", self.what, done, self.total, rate, self.note, eta)


def draw_samples(sample_fn, params, prior, sample: SampleConfig, num: int, progress: bool = False) -> np.ndarray:
  """`num` images as uint8 [num, H, W, C], batch by batch from fixed keys fold_in(seed, i);
  with `progress`, a log line per batch with the rate and ETA."""
  out = []
  report = Progress("sampled", num, " (first batch includes compiling)") if progress else None
  for i in range(math.ceil(num / sample.batch_size)):
    x = to_uint8(sample_fn(params, prior, jax.random.fold_in(jax.random.key(sample.seed), i)))
    if not x.is_fully_addressable:  # batch split over several processes: every process gets all
      x = multihost_utils.process_allgather(x, tiled=True)
    out.append(np.asarray(x))
    if report:
      report(min(num, (i + 1) * sample.batch_size))
  return np.concatenate(out)[:num]


def to_uint8(x) -> jax.Array:
  """Images in [-1, 1] -> uint8 [0, 255] (rounded), as samples and reference images are stored."""
  return jnp.round((jnp.asarray(x) + 1.0) * 127.5).clip(0, 255).astype(jnp.uint8)


def image_grid(images: np.ndarray) -> np.ndarray:
  """uint8 [N, H, W, C] -> one uint8 [rows*H, cols*W, C] grid (square-ish, 1 px gaps)."""
  n, h, w, c = images.shape
  cols = math.ceil(math.sqrt(n))
  rows = math.ceil(n / cols)
  grid = np.full((rows * (h + 1) + 1, cols * (w + 1) + 1, c), 255, np.uint8)
  for i, img in enumerate(images):
    r, q = divmod(i, cols)
    grid[1 + r * (h + 1) : 1 + r * (h + 1) + h, 1 + q * (w + 1) : 1 + q * (w + 1) + w] = img
  return grid


def write_atomic(path: pathlib.Path, write: Any) -> None:
  """`write(tmp)` into a sibling temporary file, then rename it to `path` (atomic on POSIX): a
  crash never leaves a half-written `path`."""
  path = pathlib.Path(path)
  tmp = path.with_name(f"{path.stem}.tmp{path.suffix}")
  write(tmp)
  tmp.replace(path)


def write_json(path: pathlib.Path, record: dict[str, Any]) -> None:
  write_atomic(path, lambda tmp: tmp.write_text(json.dumps(record, indent=1)))


def save_npz(path: pathlib.Path, **arrays: Any) -> None:
  write_atomic(path, lambda tmp: np.savez(tmp, **{k: np.asarray(v) for k, v in arrays.items()}))


def pyplot():
  """matplotlib.pyplot on the file-only Agg backend (no display needed)."""
  import matplotlib

  matplotlib.use("Agg")
  import matplotlib.pyplot as plt

  return plt


def save_figure(fig: Any, path: pathlib.Path, dpi: int = 110) -> None:
  write_atomic(path, lambda tmp: fig.savefig(tmp, dpi=dpi))
  pyplot().close(fig)


def write_png(images: np.ndarray, path: pathlib.Path, scale: int = 1) -> None:
  from PIL import Image

  grid = image_grid(images)
  img = Image.fromarray(grid[..., 0] if grid.shape[-1] == 1 else grid)
  if scale > 1:
    img = img.resize((img.width * scale, img.height * scale), Image.NEAREST)
  write_atomic(path, img.save)


# ----------------------------------------------------------------------------------------------
# Checkpoints.


def checkpoint_manager(workdir: pathlib.Path, cfg: CheckpointConfig) -> ocp.CheckpointManager:
  options = ocp.CheckpointManagerOptions(max_to_keep=cfg.max_to_keep, enable_async_checkpointing=True, create=True)
  return ocp.CheckpointManager(
    workdir / "checkpoints",
    options=options,
    item_handlers={
      "state": ocp.StandardCheckpointHandler(),
      "data": grain.checkpoint.CheckpointHandler(),
      "meta": ocp.JsonCheckpointHandler(),
    },
  )


def restore_checkpoint(manager: ocp.CheckpointManager, step: int, args: ocp.args.Composite) -> Any:
  """`manager.restore`, with a one-line error saying what to do when the step cannot be read
  into this config's state (another model or optimizer config, or damaged files)."""
  try:
    return manager.restore(step, args=args)
  except Exception as e:  # Orbax/TensorStore raise many types; all mean the same to the user
    detail = (str(e).strip().splitlines() or [""])[0][:300]
    raise RuntimeError(
      f"checkpoint {step} in {manager.directory} cannot be restored into this config's state "
      f"({type(e).__name__}: {detail}). Was it trained with another config (its own is in "
      f"{step}/meta)? Use that config or a new workdir; if the files are damaged, move the folder "
      f"{step} away to resume from an earlier checkpoint."
    ) from e


def append_jsonl(path: pathlib.Path, record: dict[str, Any]) -> None:
  """One JSON line per logged step (after a resume, a step may appear twice: the last one counts)."""
  path.parent.mkdir(parents=True, exist_ok=True)
  with path.open("a") as f:
    f.write(json.dumps(record) + "\n")


def run_metadata(config: Any) -> dict[str, Any]:
  versions = {}
  for pkg in ("soft_diffusion", "jax", "jaxlib", "flax", "optax", "orbax-checkpoint", "grain", "numpy"):
    try:
      versions[pkg] = importlib.metadata.version(pkg)
    except importlib.metadata.PackageNotFoundError:
      versions[pkg] = None
  return {"config": json.loads(json.dumps(typed_config.as_dict(config), default=str)), "versions": versions}


# ----------------------------------------------------------------------------------------------
# The loop.


class _Preemption:
  """Turns SIGTERM into a flag the loop polls (restored on exit)."""

  def __init__(self):
    self.requested = False
    self._previous = None

  def __enter__(self):
    try:
      self._previous = signal.signal(signal.SIGTERM, self._handle)
    except ValueError:  # not the main thread: no handler
      self._previous = None
    return self

  def _handle(self, signum, frame):
    del signum, frame
    self.requested = True

  def __exit__(self, *exc):
    if self._previous is not None:
      signal.signal(signal.SIGTERM, self._previous)


def schedule_fingerprint(settings: Settings) -> dict[str, Any]:
  """What a selected schedule depends on; schedule.json must match it to be used."""
  c = settings.corruption
  return {
    "dataset": settings.data.name,
    "train_split": settings.data.train_split,
    "image_size": settings.data.image_size,
    "crop_size": settings.data.crop_size,
    "blur_sigma_min": c.blur_sigma_min,
    "blur_sigma_max": c.blur_sigma_max,
    "noise": [c.noise_schedule, c.noise_std_min, c.noise_std_max, c.noise_clip_t],
    "num_candidates": settings.levels.num_candidates,
    "num_levels": settings.levels.num_levels,
  }


def with_selected_levels(settings: Settings, workdir: pathlib.Path) -> Settings:
  """For corruption.blur_schedule = 'selected': the levels from WORKDIR/schedule.json."""
  if settings.corruption.blur_schedule != "selected":
    return settings
  path = pathlib.Path(workdir) / "schedule.json"
  hint = f"run: python -m soft_diffusion.main --mode schedule --config ... --workdir {workdir}"
  if not path.is_file():
    raise FileNotFoundError(f"corruption.blur_schedule = 'selected' but {path} does not exist; {hint}")
  try:
    record = json.loads(path.read_text())
    sigmas, made_for = tuple(float(s) for s in record["sigmas"]), record["fingerprint"]
  except (ValueError, KeyError, TypeError) as e:
    raise ValueError(f"{path} is not a schedule written by --mode schedule ({e}); delete it and {hint}") from None
  expected = json.loads(json.dumps(schedule_fingerprint(settings)))
  differ = sorted(k for k in expected if made_for.get(k) != expected[k])
  if differ:
    raise ValueError(f"{path} was selected for other settings (differ: {', '.join(differ)}); {hint}")
  return dataclasses.replace(settings, corruption=dataclasses.replace(settings.corruption, blur_sigma_table=sigmas))


def train_and_evaluate(config: Any, workdir: str) -> dict[str, Any]:
  """Trains (or resumes) in `workdir`; returns the last logged metrics and the final step."""
  # -- settings: validate everything before compiling or writing anything
  workdir = pathlib.Path(workdir).resolve()  # Orbax needs absolute paths
  settings = with_selected_levels(settings_from_config(config), workdir)
  corruption = corruptions.make(settings.corruption)

  # -- mesh
  mesh = make_mesh()
  check_batch_split("sample.batch_size", settings.sample.batch_size, mesh)
  replicated = NamedSharding(mesh, PartitionSpec())
  batch_sharding = NamedSharding(mesh, PartitionSpec("data"))
  local_batch = data.local_batch_size(settings.train.batch_size, jax.device_count(), jax.process_count())

  # -- input (opens the source: a missing dataset fails here, before any compile)
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
  iterator = iter(dataset)  # a fresh iterator: the stream must not depend on the peek

  workdir.mkdir(parents=True, exist_ok=True)
  (workdir / "samples").mkdir(exist_ok=True)

  # -- model, optimizer, state
  model = make_model(settings.model)
  optimizer, schedule = make_optimizer(settings.optim)
  state = create_state(model, optimizer, image_shape, settings.seed, replicated)
  state_shardings = jax.tree.map(lambda _: replicated, state)

  # -- step
  train_step = jax.jit(
    make_train_step(model, corruption, optimizer, schedule, settings),
    in_shardings=(state_shardings, batch_sharding),
    out_shardings=(state_shardings, replicated),
    donate_argnums=(0,),
  )

  # -- checkpoints: resume if there is one
  manager = checkpoint_manager(workdir, settings.checkpoint)
  if manager.latest_step() is not None:
    restored = restore_checkpoint(
      manager,
      manager.latest_step(),
      ocp.args.Composite(
        state=ocp.args.StandardRestore(jax.tree.map(ocp.utils.to_shape_dtype_struct, state)),
        data=grain.checkpoint.CheckpointRestore(iterator),
      ),
    )
    state = restored["state"]
    log.info("resumed from step %d", int(state.step))
  meta = run_metadata(config)

  # -- prior p_1 (written once per workdir, reused on resume and by --mode sample)
  prior_path = workdir / "prior.npz"
  forward = settings.sample.prior == "forward"
  images = None
  if forward or not prior_path.exists():
    images = load_training_images(settings, settings.train.prior_num_images)
  if prior_path.exists():
    prior = load_prior(prior_path)
  else:
    prior = fit_prior(images, corruption, settings.seed)
    if jax.process_index() == 0:
      save_prior(prior, prior_path)
  if forward:  # sample grids start from the exact forward marginal instead
    prior = priors.ForwardPrior(jnp.asarray(images))
  sample_fn = make_sample_fn(model, corruption, settings.sample, mesh)

  def stop_if_nonfinite() -> None:
    bad = int(state.first_nonfinite_step)
    if bad >= 0:
      raise FloatingPointError(
        f"non-finite loss or gradient at step {bad}; last good checkpoint: {manager.latest_step()}"
      )

  def save(step: int) -> None:
    stop_if_nonfinite()  # never checkpoint a state that met a non-finite step
    manager.save(
      step,
      args=ocp.args.Composite(
        state=ocp.args.StandardSave(state),
        data=grain.checkpoint.CheckpointSave(iterator),
        meta=ocp.args.JsonSave(meta),
      ),
    )

  # -- loop
  from clu import metric_writers

  writer = metric_writers.create_default_writer(str(workdir / "logs"), just_logging=jax.process_index() > 0)
  step = int(state.step)
  total = settings.train.num_steps
  pending: list[dict[str, jax.Array]] = []
  last_metrics: dict[str, Any] = {}
  interval_start, interval_step = time.perf_counter(), step
  run_start, run_start_step = time.perf_counter(), step
  try:
    with _Preemption() as preemption:
      while step < total:
        batch = data.to_global_array(next(iterator), mesh)
        state, metrics = train_step(state, batch)
        pending.append(metrics)
        step += 1
        if preemption.requested:
          log.info("SIGTERM: saving step %d and exiting", step)
          save(step)
          manager.wait_until_finished()
          break
        if step % settings.train.log_every_steps == 0 or step == total:
          stop_if_nonfinite()
          fetched = jax.device_get(pending)
          pending = []
          now = time.perf_counter()
          steps_per_s = (step - interval_step) / (now - interval_start)
          bin_sum = np.sum([m["bin_sum"] for m in fetched], axis=0)
          bin_count = np.sum([m["bin_count"] for m in fetched], axis=0)
          last_metrics = {
            "loss": float(np.mean([m["loss"] for m in fetched])),
            "grad_norm": float(np.mean([m["grad_norm"] for m in fetched])),
            "lr": float(fetched[-1]["lr"]),
            "images_per_s": steps_per_s * settings.train.batch_size,
          }
          nb = settings.train.loss_bins
          for b in range(nb):
            if bin_count[b]:
              last_metrics[f"loss_t{b / nb:.2f}-{(b + 1) / nb:.2f}"] = float(bin_sum[b] / bin_count[b])
          writer.write_scalars(step, last_metrics)
          if jax.process_index() == 0:
            append_jsonl(workdir / "logs" / "metrics.jsonl", {"step": step, **last_metrics})
          overall = (step - run_start_step) / (now - run_start)
          eta = (total - step) / overall if overall > 0 else float("inf")
          log.info(
            "step %d/%d  loss %.5f  %.2f steps/s (%.0f images/s)  ETA %s",
            step,
            total,
            last_metrics["loss"],
            steps_per_s,
            last_metrics["images_per_s"],
            time.strftime("%H:%M:%S", time.gmtime(eta)),
          )
          interval_start, interval_step = now, step
        if step % settings.train.sample_every_steps == 0:
          images = draw_samples(
            sample_fn, state.ema_params, prior, settings.sample, min(64, settings.sample.num_images)
          )
          if jax.process_index() == 0:
            write_png(images, workdir / "samples" / f"grid_step{step:08d}.png", scale=4 if images.shape[1] <= 32 else 1)
        if step % settings.checkpoint.every_steps == 0 or step == total:
          save(step)
  finally:  # also on errors: finish pending saves (the last good checkpoint), stop workers
    manager.wait_until_finished()
    writer.flush()
    if hasattr(iterator, "close"):
      iterator.close()
  return {"step": step, **last_metrics}
