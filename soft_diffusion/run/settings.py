"""Settings: every config block as a typed, validated frozen dataclass, before anything runs. Pure:
config in, typed settings out, no files.

    from soft_diffusion.run import settings
    s = settings.load(config)            # config: ml_collections ConfigDict, Mapping, or Settings
    s = Workdir.of(workdir).settings(config)   # the same, with a run's selected levels (workdir.py)

* One dataclass per config block. Blocks the library owns keep their dataclass there
  (`data.DataConfig`, `corruptions.CorruptionConfig`, and `models.network_config`, which types
  the model block as the config of the network `model.name` names); the program's blocks
  are below. The dataclasses are the config schema: each field's default and comment are written
  there once; run/schema.py builds configs/default.py's config from them and lists them
  (`python -m soft_diffusion.run.schema`, docs/config.md).
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
  """The `loss` block: Soft Score Matching (docs/method.md §2).

  The config schema: each field's comment is its documentation (`python -m soft_diffusion.run.schema`
  lists every field, docs/config.md shows them).
  """

  weighting: str = "uniform"  # w(t): 'uniform' (1) | 'inverse_noise_var' (1/s_t²)
  # over an example's pixel values: 'mean' | 'sum' (score_sde: a loss H·W·C times larger, so its
  # gradient clip at optim.grad_clip = 1.0 acts on most steps)
  reduction: str = "mean"
  # > 0 (extension, not the paper): C_t in the loss becomes (1 - floor) C_t + floor I, so the
  # network is also taught at the frequencies C_t removes; the minimiser is unchanged
  floor: float = 0.0
  # > 0 (extension, not the paper): C_t in the loss becomes C_{max(t - lag, 0)}, the operator the
  # Momentum step reads one step later, so every frequency its deblurring move reads is taught;
  # the minimiser is unchanged (for blur); at least one sampler step (1/NFE); 0 with loss.floor > 0
  lag: float = 0.0

  def __post_init__(self):
    check(isinstance(self.floor, (int, float)) and 0.0 <= self.floor < 1.0, "loss.floor", "in [0, 1)", self.floor)
    check(isinstance(self.lag, (int, float)) and 0.0 <= self.lag < 1.0, "loss.lag", "in [0, 1)", self.lag)
    check(not (self.floor and self.lag), "loss.lag", "0 when loss.floor > 0 (two alternatives)", self.lag)
    check(self.weighting in losses.WEIGHTINGS, "loss.weighting", f"one of {losses.WEIGHTINGS}", self.weighting)
    check(self.reduction in losses.REDUCTIONS, "loss.reduction", f"one of {losses.REDUCTIONS}", self.reduction)


@dataclasses.dataclass(frozen=True)
class OptimConfig:
  """The `optim` block: the optimizer (docs/method.md §6).

  The config schema: each field's comment is its documentation (`python -m soft_diffusion.run.schema`
  lists every field, docs/config.md shows them).
  """

  lr: float = 2e-4  # Adam learning rate after warm-up
  beta1: float = 0.9  # Adam's β1 (first-moment decay)
  beta2: float = 0.999  # Adam's β2 (second-moment decay)
  eps: float = 1e-8  # Adam's ε
  warmup_steps: int = 5000  # linear learning-rate warm-up
  grad_clip: float = 1.0  # global-norm gradient clipping
  ema_decay: float = 0.999  # EMA of the parameters, used for sampling
  ema_warmup: bool = True  # decay min(ema_decay, (1+step)/(10+step)): short runs are not dominated by the init
  # learning rate after warm-up: 'constant' (docs/method.md §6) | 'cosine' (to 0 at decay_steps)
  decay: str = "constant"
  decay_steps: int = 0  # end of the cosine decay (> warmup_steps); unused for 'constant'

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
  """The `train` block: the training loop.

  The config schema: each field's comment is its documentation (`python -m soft_diffusion.run.schema`
  lists every field, docs/config.md shows them).
  """

  batch_size: int = 128  # global batch (all devices, all hosts)
  total_steps: int = 1_300_000  # optimizer steps
  t_min: float = 0.0  # t ~ U(t_min, 1), or the density t_density on [t_min, 1]
  log_every_steps: int = 100  # metrics + progress line
  sample_every_steps: int = 10_000  # sample grid from fixed seeds (EMA params) into WORKDIR/samples
  loss_bins: int = 4  # loss is also reported in this many equal bins of t
  prior_num_images: int = 5000  # training images behind the sampler's prior p_1 (forward marginal or Gaussian fit)
  # micro-batches per optimizer step: each device step sees batch_size / grad_accum_steps images
  # (trades time for memory; the optimizer, EMA, learning rate and checkpoints see one step)
  grad_accum_steps: int = 1
  # > 0: a jax.profiler trace of this many steps, from the 10th step after (re)start, into
  # WORKDIR/logs/plugins/profile (TensorBoard's profile plugin)
  profile_steps: int = 0
  # TensorBoard event files in WORKDIR/logs (through tf.io.gfile, so any path TensorFlow reads);
  # False: metrics go to the log and WORKDIR/logs/metrics.jsonl only
  tensorboard: bool = True
  # training-time density: 'uniform' (t ~ U(t_min, 1), the paper's) | 'lognormal' (extension,
  # blur/identity: EDM's, ln r ~ N(mean, std²) for the noise-to-signal ratio r(t) of x_t,
  # truncated to the levels t covers; docs/method.md §2.5)
  t_density: str = "uniform"
  t_lognormal_mean: float = -0.5  # EDM's P_mean = -1.2 for σ, with σ_data = 0.5: -1.2 - ln 0.5
  t_lognormal_std: float = 1.2  # EDM's P_std

  def __post_init__(self):
    fields = ("batch_size", "total_steps", "log_every_steps", "sample_every_steps", "loss_bins", "prior_num_images")
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
  """The `checkpoint` block: Orbax checkpoints in WORKDIR.

  The config schema: each field's comment is its documentation (`python -m soft_diffusion.run.schema`
  lists every field, docs/config.md shows them).
  """

  every_steps: int = 5000  # Orbax checkpoint interval (async, atomic)
  max_to_keep: int = 3  # the newest checkpoints kept (older ones are deleted)
  # > 0: also keep every checkpoint whose step is a multiple of this, forever (for choosing the
  # best by FID: `--mode eval --steps all`); a multiple of every_steps
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
  """The `sample` block: sampling (docs/method.md §4).

  The config schema: each field's comment is its documentation (`python -m soft_diffusion.run.schema`
  lists every field, docs/config.md shows them).
  """

  # 'momentum' (Algorithm 2) | 'naive' (Algorithm 1) | 'deterministic' (extension) | 'ancestral' (extension,
  # for diagonal corruptions: samplers.py) | 'pc' (score_sde's) | 'multistep' (extension, for diagonal
  # corruptions: the exponential integrator of multistep.py, for few steps) | 'multistep_sde' (extension:
  # the same integrator for the reverse SDE)
  sampler: str = "momentum"
  num_steps: int = 300  # network evaluations per sample
  num_images: int = 64  # images drawn by --mode sample
  seed: int = 0  # same checkpoint + same seed -> identical images
  batch_size: int = 256  # images per sampler call
  # p_1: 'forward' (the exact forward marginal: train.prior_num_images real training images x_0,
  # corrupted to t = 1 with fresh noise; the default, measured best on the digits: docs/results.md "Sample
  # quality on the digits") | 'gaussian' (a Gaussian fit of C_1 x_0 plus s_1² I exactly, stored in
  # WORKDIR/prior.npz)
  prior: str = "forward"
  snr: float = 0.17  # 'pc' only: the Langevin corrector's signal-to-noise ratio (score_sde's CelebA value)
  # Levels the sampler visits: 'auto' (the sampler's default: 'uniform', and for 'multistep' its
  # measured default) | 'uniform' (equal steps in t) | 'logsnr' (equal steps in a clock of the whole
  # image's log-SNR and t) | 'edm' (EDM's rho-spacing of that image's noise-to-signal ratio):
  # time_grids.py | 'tuned' ('multistep' only: the grid --mode tune_grid fitted to this model for
  # this sampler, order, form and num_steps, read from WORKDIR/time_grid.json)
  time_grid: str = "auto"
  rho: float = 7.0  # time_grid = 'edm' only: EDM's rho
  order: int = 2  # 'multistep' only: 1 (= the deterministic sampler), 2 or 3
  # 'multistep' only, order 2: how the step uses the last two estimates: 'auto' (the measured default,
  # multistep.DEFAULT_FORM) | 'exact' (their line integrated exactly) | 'midpoint' (DPM-Solver++(2M)'s
  # form: the line read at the step's midpoint) | 'midpoint_logsnr' (the same in each coefficient's log-SNR)
  form: str = "auto"
  # time_grid = 'tuned' only, filled from WORKDIR/time_grid.json when the run is read (leave empty): the
  # tuned grids of this sampler, order and form, one per number of steps
  tuned_grids: tuple[tuple[float, ...], ...] = ()
  # the sampler's end: 'auto' (its own: 'denoise' for 'pc', 'noise' for the others) | 'noise' (x at
  # t = 0, still holding about s_0 of noise: the paper's end) | 'denoise' (the last step's estimate
  # x̂_0, score_sde's and EDM's end); the same number of network evaluations (samplers.py)
  final: str = "auto"

  def __post_init__(self):
    check(isinstance(self.snr, (int, float)) and self.snr > 0, "sample.snr", "> 0", self.snr)
    finals = ("auto", *samplers.FINALS)
    check(self.final in finals, "sample.final", f"one of {finals}", self.final)
    grids = ("auto", *time_grids.FAMILIES, "tuned")
    check(self.time_grid in grids, "sample.time_grid", f"one of {grids}", self.time_grid)
    forms = ("auto", *multistep.FORMS)
    check(self.form in forms, "sample.form", f"one of {forms}", self.form)
    if self.time_grid == "tuned":
      what = "'multistep' (the sampler --mode tune_grid fits a grid for)"
      check(self.sampler == "multistep", "sample.sampler", what + " with sample.time_grid = 'tuned'", self.sampler)
    check(isinstance(self.rho, (int, float)) and self.rho > 0, "sample.rho", "a number > 0", self.rho)
    good_order = not isinstance(self.order, bool) and self.order in multistep.ORDERS
    check(good_order, "sample.order", f"one of {multistep.ORDERS}", self.order)
    if self.order == 3:
      check(self.form in ("auto", "exact"), "sample.form", "'auto' or 'exact' with sample.order = 3", self.form)
    check(self.sampler in samplers.SAMPLERS, "sample.sampler", f"one of {sorted(samplers.SAMPLERS)}", self.sampler)
    _ints_at_least(self, "sample", ("num_steps", "num_images", "batch_size"), 1)
    check(at_least(self.seed, 0), "sample.seed", "an int >= 0", self.seed)
    check(self.prior in PRIORS, "sample.prior", f"one of {PRIORS}", self.prior)


@dataclasses.dataclass(frozen=True)
class LevelsConfig:
  """The `levels` block: level selection, --mode levels (docs/method.md §3): writes
  WORKDIR/levels.json + levels.png; training and sampling use it when corruption.blur_schedule =
  'selected'.

  The config schema: each field's comment is its documentation (`python -m soft_diffusion.run.schema`
  lists every field, docs/config.md shows them).
  """

  num_candidates: int = 256  # log-spaced candidate blur levels in [blur_sigma_min, blur_sigma_max]
  num_levels: int = 32  # levels kept, at t_k = k/(K-1)
  num_images: int = 0  # training images in the mean DCT power spectrum; 0 = the whole split
  # how the noise s(t) enters the distance (level_selection.py): 'joint' ((σ_B, s(t_k)) pairs) |
  # 'joint_min_blur' (joint, every hop at least min_blur_share blur) | 'candidate' (candidate i
  # carries s(i/(M-1))) | 'blur' (the blur term alone)
  pairing: str = "candidate"  # measured best on the digits (docs/results.md "Sample quality on the digits")
  min_blur_share: float = 0.5  # 'joint_min_blur' only: d_blur >= this share of each hop, in (0, 1)

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
  """The `eval` block: evaluation, --mode stats and --mode eval (FID/KID with the JAX Inception-v3;
  see docs/evaluation.md).

  The config schema: each field's comment is its documentation (`python -m soft_diffusion.run.schema`
  lists every field, docs/config.md shows them).
  """

  split: str = "train"  # reference split for --mode stats (the paper's CelebA FIDs use the train split)
  ref_num_images: int = 0  # reference images; 0 = the whole split
  num_images: int = 10_000  # samples per (sampler, NFE) point of --mode eval (the paper: 50k)
  samplers: tuple[str, ...] = ("momentum", "naive")  # samplers compared
  num_steps: tuple[int, ...] = (50, 100, 200, 300)  # network evaluations per sample (NFE), as sample.num_steps
  batch_size: int = 64  # images per Inception call (a multiple of the device count)
  kid_subset_size: int = 1000  # KID subset size (capped at the smaller set)
  kid_num_subsets: int = 100  # KID subsets averaged
  kid_ref_features: int = 10_000  # reference feature vectors kept in the stats file for KID
  # data.name = 'gaussian_field': no Inception; exact distances to the known law (evaluation/exact.py),
  # and with oracle=True every point also with the exact posterior mean as denoiser (the floor)
  oracle: bool = True
  # While training: every `every_steps` steps (0 = never) draw `train_num_images` samples with the
  # EMA parameters and the sample block's sampler, log their KID and FID against the reference
  # statistics (computed first if missing) to metrics.jsonl and TensorBoard, and save a checkpoint
  # with them; the best of those (lowest FID) is kept whatever checkpoint.max_to_keep says.
  every_steps: int = 0
  train_num_images: int = 1000  # samples drawn at each evaluation while training (see every_steps)

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


def restore_samplers() -> tuple[str, ...]:
  """The samplers restoration can use: those that start from a level t* < 1 (they take `t_start`),
  read from the samplers themselves (registered extensions included)."""
  return tuple(name for name in samplers.SAMPLERS if samplers.starts_below_one(name))


@dataclasses.dataclass(frozen=True)
class TuneConfig:
  """The `tune` block: --mode tune_grid (soft_diffusion/grid_tuning.py): a time grid fitted to this
  run's model for the sample block's 'multistep' sampler (its order, form and final), written to
  WORKDIR/time_grid.json and used with sample.time_grid = 'tuned'.

  The config schema: each field's comment is its documentation (`python -m soft_diffusion.run.schema`
  lists every field, docs/config.md shows them).
  """

  num_steps: tuple[int, ...] = ()  # the grids' numbers of steps; () = (sample.num_steps,)
  num_images: int = 128  # starts x_1 ~ p_1 the grid is fitted on
  # the reference each N-step solution is brought close to: the same sampler on the uniform grid in this
  # many steps, from the same starts
  reference_steps: int = 100
  iterations: int = 30  # Adam updates of the grid per number of steps (the digits' fit settles in about 10)
  learning_rate: float = 0.05  # Adam's, on the grid's logits (grid_tuning.py)
  start: str = "uniform"  # the grid the fit starts from: a time_grids family
  seed: int = 1  # of the starts; not sample.seed, so that what is measured there was not fitted on

  def __post_init__(self):
    steps_ok = isinstance(self.num_steps, (tuple, list)) and all(at_least(n, 1) for n in self.num_steps)
    check(steps_ok, "tune.num_steps", "a tuple of ints >= 1 (() = sample.num_steps)", self.num_steps)
    _ints_at_least(self, "tune", ("num_images", "reference_steps"), 1)
    check(at_least(self.iterations, 0), "tune.iterations", "an int >= 0", self.iterations)
    lr_ok = isinstance(self.learning_rate, (int, float)) and not isinstance(self.learning_rate, bool)
    check(lr_ok and self.learning_rate > 0, "tune.learning_rate", "a number > 0", self.learning_rate)
    check(self.start in time_grids.FAMILIES, "tune.start", f"one of {time_grids.FAMILIES}", self.start)
    check(at_least(self.seed, 0), "tune.seed", "an int >= 0", self.seed)


@dataclasses.dataclass(frozen=True)
class RestoreConfig:
  """The `restore` block: restoration, --mode restore (soft_diffusion/restoration.py;
  docs/restoration.md): posterior samples for y = A x_0 + sigma_y n with this run's model.

  The config schema: each field's comment is its documentation (`python -m soft_diffusion.run.schema`
  lists every field, docs/config.md shows them).
  """

  # A: 'gaussian_blur' (size = sigma in px) | 'box_blur' (size = odd width in px) | 'random_mask'
  # (size = fraction of pixels kept) | 'lower_half' (the lower half removed; size unused) |
  # 'model' (the model's own corruption C_t at t = size, e.g. its masks: native restoration's home ground)
  operator: str = "gaussian_blur"
  size: float = 1.0  # the operator's size (its meaning: operator above)
  sigma_y: float = 0.02  # observation noise std, images in [-1, 1]
  # 'native': start the reverse process at the model's own level of y (A within the model's
  # corruption family) | 'guided': from p_1 with a conditional denoiser (any operator above)
  method: str = "native"
  # '' = the first num_images images of `split`, degraded here and scored against the originals;
  # else a folder of PNGs or an .npz (array 'y' [N, H, W, C] in [-1, 1], or uint8) of degraded images
  input: str = ""
  split: str = "validation"  # the digits', CelebA's and the fields' held-out split
  num_images: int = 16  # observations restored
  num_samples: int = 8  # posterior samples per observation (their mean: the MMSE estimate)
  num_steps: int = 100  # network evaluations per sample (native: from t* to 0)
  # 'ancestral' (random at every step: from a fixed start it samples p(x_0 | x_t*); the Momentum
  # Sampler adds no noise while s_t is constant, so native restoration with it has almost no
  # spread: docs/restoration.md) | 'momentum' | 'naive' | 'deterministic' | 'multistep' | 'multistep_sde'
  # (any sampler that starts below t = 1: samplers.starts_below_one)
  sampler: str = "ancestral"
  batch_size: int = 64  # images per sampler call
  seed: int = 0  # the observation noise's and the samplers' seed
  mask_seed: int = 0  # the random mask's pixels

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
    restarting = restore_samplers()
    check(self.sampler in restarting, "restore.sampler", f"one of {restarting}", self.sampler)
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

  seed: int  # one seed for everything; per-step keys are fold_in(key(seed), step)
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
  tune: TuneConfig = TuneConfig()


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
  "tune": TuneConfig,
}
OPTIONAL_BLOCKS = ("restore", "tune")  # configs written before the block existed still load


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


def _check_corruption(cfg: corruptions.CorruptionConfig) -> str | None:
  """Builds the corruption once to validate its names and schedules (one-line errors); returns the
  basis its operator is diagonal in ('dct', 'pixel'), or None."""
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
    corruption = corruptions.make(cfg)
  except errors.UserError:
    raise
  except ValueError as e:
    raise errors.ConfigError(f"config.corruption: {errors.one_line(e)}") from None
  return getattr(corruption.operator, "basis", None)


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


def grid_key(sample: SampleConfig, num_steps: int | None) -> str:
  """The name of a tuned grid in time_grid.json: what it was fitted for (order, resolved form, end, N);
  with num_steps None, the prefix every N of those settings shares."""
  form = multistep.resolve_form(sample.order, sample.form)
  end = "denoise" if samplers.ends_denoised(sample.sampler, sample.final) else "noise"
  return f"order{sample.order}/{form}/final_{end}/N" + ("" if num_steps is None else str(num_steps))


def grid_fingerprint(settings: Settings) -> dict[str, Any]:
  """What a tuned grid depends on besides its key: the corruption (its levels included)."""
  return {"corruption": dataclasses.asdict(settings.corruption)}


def with_tuned_grids(settings: Settings, grids: tuple[tuple[float, ...], ...]) -> Settings:
  """`settings` with the tuned grids of its sample block (read from time_grid.json)."""
  return dataclasses.replace(settings, sample=dataclasses.replace(settings.sample, tuned_grids=grids))


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
  basis = _check_corruption(settings.corruption)
  # What needs C_t diagonal in the DCT basis (blur, identity) is read from the operator itself.
  dct_diagonal = basis == "dct"
  operator = f"corruption.name = {settings.corruption.name!r} is diagonal in the {basis or 'no known'} basis"
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
    settings.model.skip == "identity" or dct_diagonal,
    "model.skip",
    f"'identity' unless C_t is diagonal in the DCT basis ('wiener' needs it; {operator})",
    settings.model.skip,
  )
  check(
    settings.train.t_density == "uniform" or dct_diagonal,
    "train.t_density",
    f"'uniform' unless C_t is diagonal in the DCT basis ('lognormal' uses the data's DCT power spectrum; {operator})",
    settings.train.t_density,
  )
  if settings.model.precond != "none":
    check(
      dct_diagonal,
      "model.precond",
      f"'none' unless C_t is diagonal in the DCT basis ('spectral' uses the data's DCT power spectrum; {operator})",
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
