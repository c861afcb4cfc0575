"""Settings: every config block as a typed, validated frozen dataclass, before anything runs. Pure:
config in, typed settings out, no files.

    from soft_diffusion.run import settings
    s = settings.load(config)            # config: ml_collections ConfigDict, Mapping, or Settings
    s = Workdir.of(workdir).settings(config)   # the same, with a run's selected levels (workdir.py)

* One dataclass per config block. Blocks the library owns keep their dataclass there
  (`data.DataConfig`, `corruptions.CorruptionConfig`, and `models.network_config`, which types
  the model block as the config of the network `model.name` names); the program's blocks
  are below. Every default is the value in configs/default.py, which documents each field
  (tests/test_settings.py keeps the two equal).
* Errors are `errors.ConfigError` (a ValueError) naming the field and what is allowed; unknown
  blocks and keys are errors too. Cross-block rules (the image size against the U-Net's
  downsamplings, the corruption's schedules) are checked here as well.
* `corruption.blur_schedule = 'selected'`: a table in the config is ignored; the levels of a run
  are read from its levels.json (`Workdir.settings`, which refuses a file selected for other
  settings: `levels_fingerprint`) and become `corruption.blur_sigma_table`, so the corruption is
  built from the real levels. Without them (validating a config on its own) the range the levels
  are selected from, [blur_sigma_min, blur_sigma_max], is checked instead.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

from soft_diffusion import (
  corruptions,
  data,
  errors,
  level_selection,
  losses,
  models,
  multistep,
  samplers,
  time_grids,
  typed_config,
)

check = typed_config.check
at_least = typed_config.is_int_at_least

PRIORS = ("gaussian", "forward")


def _ints_at_least(block: Any, prefix: str, fields: tuple[str, ...], minimum: int) -> None:
  for field in fields:
    value = getattr(block, field)
    check(at_least(value, minimum), f"{prefix}.{field}", f"an int >= {minimum}", value)


@dataclasses.dataclass(frozen=True)
class LossConfig:
  weighting: str = "uniform"
  reduction: str = "mean"
  floor: float = 0.0
  lag: float = 0.0

  def __post_init__(self):
    check(isinstance(self.floor, (int, float)) and 0.0 <= self.floor < 1.0, "loss.floor", "in [0, 1)", self.floor)
    check(isinstance(self.lag, (int, float)) and 0.0 <= self.lag < 1.0, "loss.lag", "in [0, 1)", self.lag)
    check(not (self.floor and self.lag), "loss.lag", "0 when loss.floor > 0 (two alternatives)", self.lag)
    check(self.weighting in losses.WEIGHTINGS, "loss.weighting", f"one of {losses.WEIGHTINGS}", self.weighting)
    check(self.reduction in losses.REDUCTIONS, "loss.reduction", f"one of {losses.REDUCTIONS}", self.reduction)


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
    check(self.lr > 0, "optim.lr", "> 0", self.lr)
    check(self.decay in ("constant", "cosine"), "optim.decay", "'constant' or 'cosine'", self.decay)
    check(
      self.decay == "constant" or (isinstance(self.decay_steps, int) and self.decay_steps > self.warmup_steps),
      "optim.decay_steps",
      f"an int > optim.warmup_steps = {self.warmup_steps} when optim.decay = 'cosine'",
      self.decay_steps,
    )
    check(0 <= self.beta1 < 1 and 0 <= self.beta2 < 1, "optim.beta1/beta2", "in [0, 1)", (self.beta1, self.beta2))
    check(self.eps > 0, "optim.eps", "> 0", self.eps)
    check(at_least(self.warmup_steps, 0), "optim.warmup_steps", "an int >= 0", self.warmup_steps)
    check(self.grad_clip > 0, "optim.grad_clip", "> 0", self.grad_clip)
    check(0 <= self.ema_decay < 1, "optim.ema_decay", "in [0, 1)", self.ema_decay)
    check(isinstance(self.ema_warmup, bool), "optim.ema_warmup", "True or False", self.ema_warmup)


T_DENSITIES = ("uniform", "lognormal")  # train.t_density


@dataclasses.dataclass(frozen=True)
class TrainConfig:
  batch_size: int = 128
  num_steps: int = 1_300_000
  t_min: float = 0.0
  log_every_steps: int = 100
  sample_every_steps: int = 10_000
  loss_bins: int = 4
  prior_num_images: int = 5000
  grad_accum_steps: int = 1
  profile_steps: int = 0
  tensorboard: bool = True
  t_density: str = "uniform"
  t_lognormal_mean: float = -0.5
  t_lognormal_std: float = 1.2

  def __post_init__(self):
    fields = ("batch_size", "num_steps", "log_every_steps", "sample_every_steps", "loss_bins", "prior_num_images")
    _ints_at_least(self, "train", fields, 1)
    _ints_at_least(self, "train", ("grad_accum_steps",), 1)
    _ints_at_least(self, "train", ("profile_steps",), 0)
    check(
      self.batch_size % self.grad_accum_steps == 0,
      "train.grad_accum_steps",
      f"a divisor of train.batch_size = {self.batch_size}",
      self.grad_accum_steps,
    )
    check(0.0 <= self.t_min < 1.0, "train.t_min", "in [0, 1)", self.t_min)
    check(isinstance(self.tensorboard, bool), "train.tensorboard", "True or False", self.tensorboard)
    check(self.t_density in T_DENSITIES, "train.t_density", f"one of {T_DENSITIES}", self.t_density)
    mean, std = self.t_lognormal_mean, self.t_lognormal_std
    number = lambda x: isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)  # noqa: E731
    check(number(mean), "train.t_lognormal_mean", "a finite number", mean)
    check(number(std) and std > 0, "train.t_lognormal_std", "a finite number > 0", std)


@dataclasses.dataclass(frozen=True)
class CheckpointConfig:
  every_steps: int = 5000
  max_to_keep: int = 3
  keep_every_steps: int = 0

  def __post_init__(self):
    _ints_at_least(self, "checkpoint", ("every_steps", "max_to_keep"), 1)
    keep = self.keep_every_steps
    check(
      at_least(keep, 0) and keep % self.every_steps == 0,
      "checkpoint.keep_every_steps",
      f"0 (off) or a multiple of checkpoint.every_steps = {self.every_steps}",
      keep,
    )


@dataclasses.dataclass(frozen=True)
class SampleConfig:
  sampler: str = "momentum"
  num_steps: int = 300
  num_images: int = 64
  seed: int = 0
  batch_size: int = 256
  prior: str = "forward"
  snr: float = 0.17
  time_grid: str = "auto"
  rho: float = 7.0
  order: int = 2
  final: str = "auto"

  def __post_init__(self):
    check(isinstance(self.snr, (int, float)) and self.snr > 0, "sample.snr", "> 0", self.snr)
    finals = ("auto", *samplers.FINALS)
    check(self.final in finals, "sample.final", f"one of {finals}", self.final)
    grids = ("auto", *time_grids.FAMILIES)
    check(self.time_grid in grids, "sample.time_grid", f"one of {grids}", self.time_grid)
    check(isinstance(self.rho, (int, float)) and self.rho > 0, "sample.rho", "a number > 0", self.rho)
    good_order = not isinstance(self.order, bool) and self.order in multistep.ORDERS
    check(good_order, "sample.order", f"one of {multistep.ORDERS}", self.order)
    check(self.sampler in samplers.SAMPLERS, "sample.sampler", f"one of {sorted(samplers.SAMPLERS)}", self.sampler)
    _ints_at_least(self, "sample", ("num_steps", "num_images", "batch_size"), 1)
    check(at_least(self.seed, 0), "sample.seed", "an int >= 0", self.seed)
    check(self.prior in PRIORS, "sample.prior", f"one of {PRIORS}", self.prior)


@dataclasses.dataclass(frozen=True)
class LevelsConfig:
  num_candidates: int = 256
  num_levels: int = 32
  num_images: int = 0
  pairing: str = "candidate"
  min_blur_share: float = 0.5

  def __post_init__(self):
    check(at_least(self.num_candidates, 2), "levels.num_candidates", "an int >= 2", self.num_candidates)
    check(
      at_least(self.num_levels, 2) and self.num_levels <= self.num_candidates,
      "levels.num_levels",
      f"an int in [2, levels.num_candidates = {self.num_candidates}]",
      self.num_levels,
    )
    check(at_least(self.num_images, 0), "levels.num_images", "an int >= 0 (0 = all)", self.num_images)
    pairings = level_selection.PAIRINGS
    check(self.pairing in pairings, "levels.pairing", f"one of {pairings}", self.pairing)
    share = self.min_blur_share
    check(isinstance(share, (int, float)) and 0 < share < 1, "levels.min_blur_share", "in (0, 1)", share)


@dataclasses.dataclass(frozen=True)
class EvalConfig:
  split: str = "train"
  ref_num_images: int = 0
  num_images: int = 10_000
  samplers: tuple[str, ...] = ("momentum", "naive")
  num_steps: tuple[int, ...] = (50, 100, 200, 300)
  batch_size: int = 64
  kid_subset_size: int = 1000
  kid_num_subsets: int = 100
  kid_ref_features: int = 10_000
  oracle: bool = True
  every_steps: int = 0
  train_num_images: int = 1000

  def __post_init__(self):
    check(isinstance(self.split, str) and bool(self.split), "eval.split", "a split name", self.split)
    check(
      at_least(self.every_steps, 0),
      "eval.every_steps",
      "an int >= 0 (0 = no evaluation while training)",
      self.every_steps,
    )
    check(at_least(self.train_num_images, 2), "eval.train_num_images", "an int >= 2", self.train_num_images)
    check(isinstance(self.oracle, bool), "eval.oracle", "True or False", self.oracle)
    check(at_least(self.ref_num_images, 0), "eval.ref_num_images", "an int >= 0 (0 = all)", self.ref_num_images)
    fields = ("num_images", "batch_size", "kid_subset_size", "kid_num_subsets", "kid_ref_features")
    _ints_at_least(self, "eval", fields, 2)
    names = self.samplers
    check(
      isinstance(names, tuple) and len(names) >= 1 and all(s in samplers.SAMPLERS for s in names),
      "eval.samplers",
      f"a non-empty tuple of {sorted(samplers.SAMPLERS)}",
      self.samplers,
    )
    check(
      isinstance(self.num_steps, tuple) and len(self.num_steps) >= 1 and all(at_least(n, 1) for n in self.num_steps),
      "eval.num_steps",
      "a non-empty tuple of ints >= 1 (network evaluations per sample)",
      self.num_steps,
    )


RESTORE_OPERATORS = ("gaussian_blur", "box_blur", "random_mask", "lower_half", "model")
RESTORE_METHODS = ("native", "guided")
RESTORE_SAMPLERS = ("ancestral", "momentum", "naive", "deterministic")  # those that can start at t* < 1


@dataclasses.dataclass(frozen=True)
class RestoreConfig:
  operator: str = "gaussian_blur"
  size: float = 1.0
  sigma_y: float = 0.02
  method: str = "native"
  input: str = ""
  split: str = "validation"
  num_images: int = 16
  num_samples: int = 8
  num_steps: int = 100
  sampler: str = "ancestral"
  batch_size: int = 64
  seed: int = 0
  mask_seed: int = 0

  def __post_init__(self):
    ops = RESTORE_OPERATORS
    check(self.operator in ops, "restore.operator", f"one of {ops}", self.operator)
    size = self.size
    number = isinstance(size, (int, float)) and not isinstance(size, bool)
    if self.operator == "gaussian_blur":
      check(number and 0 < size <= 32, "restore.size", "the blur sigma in px, in (0, 32], for gaussian_blur", size)
    elif self.operator == "box_blur":
      ok = number and float(size).is_integer() and int(size) % 2 == 1 and 1 <= size <= 31
      check(ok, "restore.size", "the box width, an odd integer in [1, 31], for box_blur", size)
    elif self.operator == "random_mask":
      check(number and 0 < size < 1, "restore.size", "the fraction of pixels kept, in (0, 1), for random_mask", size)
    elif self.operator == "model":
      check(number and 0 < size < 1, "restore.size", "the level t in (0, 1) of the model's own C_t, for model", size)
    sigma_y = self.sigma_y
    check(isinstance(sigma_y, (int, float)) and 0 < sigma_y <= 1, "restore.sigma_y", "in (0, 1]", sigma_y)
    check(self.method in RESTORE_METHODS, "restore.method", f"one of {RESTORE_METHODS}", self.method)
    check(self.sampler in RESTORE_SAMPLERS, "restore.sampler", f"one of {RESTORE_SAMPLERS}", self.sampler)
    check(
      isinstance(self.input, str), "restore.input", "'' (the split, degraded here) or a folder/.npz path", self.input
    )
    check(isinstance(self.split, str) and bool(self.split), "restore.split", "a split name", self.split)
    _ints_at_least(self, "restore", ("num_images", "num_steps", "batch_size"), 1)
    check(at_least(self.num_samples, 2), "restore.num_samples", "an int >= 2 (the spread needs two)", self.num_samples)
    check(at_least(self.seed, 0), "restore.seed", "an int >= 0", self.seed)
    check(at_least(self.mask_seed, 0), "restore.mask_seed", "an int >= 0", self.mask_seed)


@dataclasses.dataclass(frozen=True)
class Settings:
  """Every config block, typed and validated."""

  seed: int
  data: data.DataConfig
  corruption: corruptions.CorruptionConfig
  loss: LossConfig
  model: models.NetworkConfig
  optim: OptimConfig
  train: TrainConfig
  checkpoint: CheckpointConfig
  sample: SampleConfig
  levels: LevelsConfig
  eval: EvalConfig
  restore: RestoreConfig = RestoreConfig()


# Block name -> its dataclass (`seed` is a plain int; `model` is typed by models.network_config).
BLOCKS: dict[str, type] = {
  "data": data.DataConfig,
  "corruption": corruptions.CorruptionConfig,
  "loss": LossConfig,
  "optim": OptimConfig,
  "train": TrainConfig,
  "checkpoint": CheckpointConfig,
  "sample": SampleConfig,
  "levels": LevelsConfig,
  "eval": EvalConfig,
  "restore": RestoreConfig,
}
OPTIONAL_BLOCKS = ("restore",)  # configs written before the block existed still load


def _from_config(config: Any) -> Settings:
  blocks = typed_config.as_dict(config)
  allowed = {"seed", "model", *BLOCKS}
  unknown = sorted(set(blocks) - allowed)
  if unknown:
    raise errors.ConfigError(f"config has unknown block(s) {unknown}; allowed: {sorted(allowed)}")
  missing = sorted(allowed - set(blocks) - set(OPTIONAL_BLOCKS))
  if missing:
    raise errors.ConfigError(f"config lacks block(s) {missing}; start from configs/default.py")
  check(at_least(blocks["seed"], 0), "seed", "an int >= 0", blocks["seed"])
  typed = {name: typed_config.from_block(cls, blocks[name], name) for name, cls in BLOCKS.items() if name in blocks}
  typed["model"] = models.network_config(blocks["model"])
  if typed["corruption"].blur_schedule == "selected":  # the levels come from WORKDIR/levels.json
    typed["corruption"] = dataclasses.replace(typed["corruption"], blur_sigma_table=None)
  return Settings(seed=blocks["seed"], **typed)


def _check_corruption(cfg: corruptions.CorruptionConfig) -> None:
  """Builds the corruption once to validate its names and schedules (one-line errors)."""
  check(
    cfg.blur_schedule != "selected" or cfg.name == "blur",
    "corruption.blur_schedule",
    "'log' or 'table' unless corruption.name = 'blur' ('selected' is level selection for blur)",
    cfg.blur_schedule,
  )
  if cfg.blur_schedule == "selected" and cfg.blur_sigma_table is None:
    # Levels not read yet: check the log-spaced range the selection chooses them from.
    cfg = dataclasses.replace(cfg, blur_schedule="log")
  try:
    corruptions.make(cfg)
  except errors.UserError:
    raise
  except ValueError as e:
    raise errors.ConfigError(f"config.corruption: {errors.one_line(e)}") from None


# ----------------------------------------------------------------------------------------------
# The selected blur levels of a run (the file itself: workdir.py).


def pairing_label(pairing: str, min_blur_share: float) -> str:
  """The fingerprint's name of a noise pairing ('joint' keeps the name that level files of
  earlier versions carry, so they stay valid)."""
  if pairing == "joint":
    return "level k carries s(t_k)"
  return f"{pairing} {min_blur_share}" if pairing == "joint_min_blur" else pairing


def levels_fingerprint(settings: Settings) -> dict[str, Any]:
  """What selected levels depend on; a levels file must match it to be used."""
  c = settings.corruption
  return {
    "dataset": settings.data.name,
    "train_split": settings.data.train_split,
    "image_size": settings.data.image_size,
    "crop_size": settings.data.crop_size,
    **data.fingerprint_extra(settings.data),
    "blur_sigma_min": c.blur_sigma_min,
    "blur_sigma_max": c.blur_sigma_max,
    "noise": [c.noise_schedule, c.noise_std_min, c.noise_std_max, c.noise_clip_t],
    "noise_pairing": pairing_label(settings.levels.pairing, settings.levels.min_blur_share),
    "num_candidates": settings.levels.num_candidates,
    "num_levels": settings.levels.num_levels,
  }


def needs_levels(settings: Settings) -> bool:
  """True when the corruption's blur levels are 'selected' and not read yet."""
  c = settings.corruption
  return c.name == "blur" and c.blur_schedule == "selected" and c.blur_sigma_table is None


def with_levels(settings: Settings, levels: tuple[float, ...]) -> Settings:
  """`settings` with the selected levels as the corruption's table."""
  return dataclasses.replace(settings, corruption=dataclasses.replace(settings.corruption, blur_sigma_table=levels))


def require(settings: Any, who: str) -> Settings:
  """`settings` if it is Settings; the modes take the Settings that the preamble made once."""
  if not isinstance(settings, Settings):
    raise TypeError(f"{who} takes Settings (Workdir.settings(config)), got {type(settings).__name__}")
  return settings


def load(config: Any) -> Settings:
  """Validates `config` (a ConfigDict, Mapping or Settings) into Settings; pure (no files).

  With `corruption.blur_schedule = 'selected'` and no levels yet, the range they are selected
  from is checked; a run's levels come from its folder (`Workdir.settings`, which reads
  levels.json and validates again with them: `with_levels`).
  Raises:
    errors.ConfigError naming the field.
  """
  settings = config if isinstance(config, Settings) else _from_config(config)
  _check_corruption(settings.corruption)
  check(
    settings.eval.every_steps == 0 or not data.has_exact_law(settings.data),
    "eval.every_steps",
    f"0 for data.name = {settings.data.name!r} (its exact distances: --mode eval)",
    settings.eval.every_steps,
  )
  factor = 2**settings.model.downsamplings
  check(
    settings.data.image_size % factor == 0,
    "data.image_size",
    f"divisible by 2^(len(model.channel_mult) - 1) = {factor}",
    settings.data.image_size,
  )
  check(
    settings.model.skip == "identity" or settings.corruption.name in ("blur", "identity"),
    "model.skip",
    "'identity' unless corruption.name is 'blur' or 'identity' ('wiener' needs C_t diagonal in the DCT basis)",
    settings.model.skip,
  )
  check(
    settings.train.t_density == "uniform" or settings.corruption.name in ("blur", "identity"),
    "train.t_density",
    "'uniform' unless corruption.name is 'blur' or 'identity' ('lognormal' uses the data's DCT power spectrum)",
    settings.train.t_density,
  )
  if settings.model.precond != "none":
    check(
      settings.corruption.name in ("blur", "identity"),
      "model.precond",
      "'none' unless corruption.name is 'blur' or 'identity' ('spectral' uses the data's DCT power spectrum)",
      settings.model.precond,
    )
    loss = settings.loss
    check(
      loss.weighting == "uniform",
      "loss.weighting",
      "'uniform' with model.precond = 'spectral' (its loss weighs each coefficient by 1/c_out²)",
      loss.weighting,
    )
    why = "0 with model.precond = 'spectral' (its loss weighs every coefficient)"
    check(loss.floor == 0.0, "loss.floor", why, loss.floor)
    check(loss.lag == 0.0, "loss.lag", why, loss.lag)
  return settings
