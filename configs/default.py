"""Default configuration: the schema, with a comment per field. Variants import it and override.

Every [choice] of docs/method.md is a field here, so it can be ablated from the command line. The values
here are the defaults of the typed blocks in soft_diffusion (settings.py, data.DataConfig,
corruptions.CorruptionConfig, models.UNetConfig); tests/test_settings.py keeps them equal.
"""

import ml_collections


def get_config() -> ml_collections.ConfigDict:
  config = ml_collections.ConfigDict()
  config.seed = 0  # one seed for everything; per-step keys are fold_in(key(seed), step)

  # Input pipeline (soft_diffusion/data). Fields mirror soft_diffusion.data.DataConfig.
  config.data = d = ml_collections.ConfigDict()
  # 'digits' (embedded, 8×8 scikit-learn digits) | 'celeb_a' (TFDS) | 'folder' (your images) |
  # 'gaussian_field' (generated stationary Gaussian fields with a known law: docs/method.md §7, exact metrics)
  d.name = "digits"
  d.path = ml_collections.config_dict.placeholder(str)  # folder for 'folder'; TFDS data_dir otherwise (None = default)
  # Digits are stored at 8×8; 16×16 leaves room for a U-Net with three resolutions (16, 8, 4) and
  # for blur levels between "sharp" and "one blob", while staying cheap enough for a 2-core CPU.
  d.image_size = 16  # side of the square training images, pixels
  d.crop_size = ml_collections.config_dict.placeholder(int)  # central crop before resizing; None = largest square
  d.random_flip = False  # random horizontal flip in training (digits: no, faces: yes)
  d.train_split = "train"  # split read for training
  d.folder_holdout_every = 10  # 'folder': every n-th file (sorted by path) is the validation split; 0 = none
  d.cache = False  # decode + resize the whole training split once, into memory (small datasets only)
  d.num_workers = 0  # grain worker processes decoding in the background (0 = in the main process)
  d.read_threads = 4  # grain threads reading records
  d.prefetch_buffer_size = 64  # elements grain reads ahead
  # 'gaussian_field' only: spectrum v(k, l) = a / (1 + (k² + l²)/k0²) in the DCT basis, a set so the
  # pixel std is field_pixel_std (docs/method.md §7)
  d.field_k0 = 2.0
  d.field_pixel_std = 0.3

  # x_t = C_t x_0 + s_t η (docs/method.md §1). Fields mirror soft_diffusion.corruptions.CorruptionConfig.
  config.corruption = c = ml_collections.ConfigDict()
  c.name = "blur"  # C_t: 'blur' (Gaussian, DCT-exact) | 'mask' (soft mask) | 'identity' (VE SDE)
  c.noise_schedule = "clipped_geometric"  # s_t: 'clipped_geometric' | 'geometric' (VE) | 'constant'
  c.noise_std_min = 0.01  # s_0 (> 0); images are in [-1, 1]
  c.noise_std_max = 0.1  # s_t for t >= noise_clip_t (VE baseline: up to 90)
  c.noise_clip_t = 0.25  # t_c of the clipped geometric schedule, in (0, 1]
  # σ_B(t): 'log' (log-spaced) | 'table' (piecewise linear) | 'selected' (WORKDIR/levels.json, --mode levels)
  c.blur_schedule = "log"
  c.blur_sigma_min = 0.01  # σ_B(0), pixels (log schedule)
  c.blur_sigma_max = 23.0  # σ_B(1), pixels (log schedule); paper range on 64×64: [0.01, 23]
  c.blur_sigma_table = ml_collections.config_dict.placeholder(tuple)  # K levels at t_k = k/(K-1); 'table' only
  c.mask_order = "center"  # pixel removal order: 'center' (growing central square) | 'random'
  c.mask_ramp_width = 0.25  # width in t over which a pixel fades out, in (0, 1]
  c.mask_fraction = 1.0  # share of pixels fully masked by t = 1, in (0, 1]
  c.mask_seed = 0  # permutation seed for mask_order = 'random'

  # Soft Score Matching (docs/method.md §2).
  config.loss = ml_collections.ConfigDict()
  config.loss.weighting = "uniform"  # w(t): 'uniform' (1) | 'inverse_noise_var' (1/s_t²)
  # over an example's pixel values: 'mean' | 'sum' (score_sde: a loss H·W·C times larger, so its
  # gradient clip at optim.grad_clip = 1.0 acts on most steps)
  config.loss.reduction = "mean"
  # > 0 (extension, not the paper): C_t in the loss becomes (1 - floor) C_t + floor I, so the
  # network is also taught at the frequencies C_t removes; the minimiser is unchanged
  config.loss.floor = 0.0
  # > 0 (extension, not the paper): C_t in the loss becomes C_{max(t - lag, 0)}, the operator the
  # Momentum step reads one step later, so every frequency its deblurring move reads is taught;
  # the minimiser is unchanged (for blur); at least one sampler step (1/NFE); 0 with loss.floor > 0
  config.loss.lag = 0.0

  # Network φ_θ (soft_diffusion/models/); defaults: docs/method.md §6, score_sde's NCSN++ CelebA-64 recipe.
  config.model = m = ml_collections.ConfigDict()
  m.name = "ncsnpp"  # 'ncsnpp' (NCSN++, the paper's comparison network) | 'unet' (DDPM-style U-Net)
  m.channels = 128  # base channel count (NCSN++'s nf)
  m.channel_mult = (1, 2, 2, 2)  # channels per resolution level = channels * mult
  m.num_res_blocks = 4  # residual blocks per level
  m.attention_resolutions = (16,)  # feature-map sides with self-attention
  m.dropout = 0.1
  m.num_heads = 1  # attention heads ('unet' only; NCSN++ attention has one head)
  m.fir_kernel = (1, 3, 3, 1)  # FIR resampling filter, separable taps ('ncsnpp' only)
  # h = x_t + φ ('none') or x_t + s_t·φ ('noise_std': score_sde's scale_by_sigma; see models/denoiser.py)
  m.output_scale = "none"
  # h = S_t x_t + c·φ with S_t = I ('identity', the paper's residual form) or the linear MMSE
  # (Wiener) estimate per DCT frequency ('wiener', extension: blur/identity; see models/denoiser.py)
  m.skip = "identity"
  # 'none': the residual form above with the loss of config.loss (the paper's) | 'spectral'
  # (extension, blur/identity): EDM's preconditioning per DCT coefficient, x̂_0 = c_skip x_t +
  # c_out F(c_in x_t) with the data's power spectrum, and its loss (weight 1/c_out² per
  # coefficient; loss.weighting 'uniform', no floor or lag): docs/method.md §2.4
  m.precond = "none"
  m.precond_c_in = "scalar"  # 'spectral' only: c_in = 1/√(total power of x_t) | 'coefficient' (x_t whitened)
  # 'spectral' only: the v it uses: 'data' | 'flat' (its mean everywhere) | 'tilted' (× the
  # frequency radius: ×2 per octave); the last two are deliberately wrong, for the field study
  m.precond_spectrum = "data"
  # compute dtype: 'auto' (bfloat16 on GPU/TPU, float32 on CPU) | 'float32' | 'bfloat16'; the
  # parameters, optimizer state, corruption and loss stay float32 either way
  m.dtype = "auto"
  # recompute each residual block's activations in the backward pass instead of storing them
  # (less memory for about one more forward pass; parameters and checkpoints are unchanged)
  m.remat = False

  # Optimizer (docs/method.md §6).
  config.optim = o = ml_collections.ConfigDict()
  o.lr = 2e-4  # Adam learning rate after warm-up
  o.beta1 = 0.9
  o.beta2 = 0.999
  o.eps = 1e-8
  o.warmup_steps = 5000  # linear learning-rate warm-up
  o.grad_clip = 1.0  # global-norm gradient clipping
  o.ema_decay = 0.999  # EMA of the parameters, used for sampling
  o.ema_warmup = True  # decay min(ema_decay, (1+step)/(10+step)): short runs are not dominated by the init
  o.decay = "constant"  # learning rate after warm-up: 'constant' (docs/method.md §6) | 'cosine' (to 0 at decay_steps)
  o.decay_steps = 0  # end of the cosine decay (> warmup_steps); unused for 'constant'

  # Training loop.
  config.train = tr = ml_collections.ConfigDict()
  tr.batch_size = 128  # global batch (all devices, all hosts)
  tr.num_steps = 1_300_000  # optimizer steps
  tr.t_min = 0.0  # t ~ U(t_min, 1), or the density below on [t_min, 1]
  # training-time density: 'uniform' (t ~ U(t_min, 1), the paper's) | 'lognormal' (extension,
  # blur/identity: EDM's, ln r ~ N(mean, std²) for the noise-to-signal ratio r(t) of x_t,
  # truncated to the levels t covers; docs/method.md §2.5)
  tr.t_density = "uniform"
  tr.t_lognormal_mean = -0.5  # EDM's P_mean = -1.2 for σ, with σ_data = 0.5: -1.2 - ln 0.5
  tr.t_lognormal_std = 1.2  # EDM's P_std
  tr.log_every_steps = 100  # metrics + progress line
  tr.sample_every_steps = 10_000  # sample grid from fixed seeds (EMA params) into WORKDIR/samples
  tr.loss_bins = 4  # loss is also reported in this many equal bins of t
  tr.prior_num_images = 5000  # training images behind the sampler's prior p_1 (forward marginal or Gaussian fit)
  # micro-batches per optimizer step: each device step sees batch_size / grad_accum_steps images
  # (trades time for memory; the optimizer, EMA, learning rate and checkpoints see one step)
  tr.grad_accum_steps = 1
  # > 0: a jax.profiler trace of this many steps, from the 10th step after (re)start, into
  # WORKDIR/logs/plugins/profile (TensorBoard's profile plugin)
  tr.profile_steps = 0
  # TensorBoard event files in WORKDIR/logs (through tf.io.gfile, so any path TensorFlow reads);
  # False: metrics go to the log and WORKDIR/logs/metrics.jsonl only
  tr.tensorboard = True

  config.checkpoint = ml_collections.ConfigDict()
  config.checkpoint.every_steps = 5000  # Orbax checkpoint interval (async, atomic)
  config.checkpoint.max_to_keep = 3  # the newest checkpoints kept (older ones are deleted)
  # > 0: also keep every checkpoint whose step is a multiple of this, forever (for choosing the
  # best by FID: `--mode eval --steps all`); a multiple of every_steps
  config.checkpoint.keep_every_steps = 0

  # Sampling (docs/method.md §4).
  config.sample = ml_collections.ConfigDict()
  # 'momentum' (Algorithm 2) | 'naive' (Algorithm 1) | 'deterministic' (extension) | 'ancestral' (extension,
  # for diagonal corruptions: samplers.py) | 'pc' (score_sde's) | 'multistep' (extension, for diagonal
  # corruptions: the exponential integrator of multistep.py, for few steps) | 'multistep_sde' (extension:
  # the same integrator for the reverse SDE)
  config.sample.sampler = "momentum"
  config.sample.num_steps = 300  # network evaluations per sample
  config.sample.num_images = 64  # images drawn by --mode sample
  config.sample.seed = 0  # same checkpoint + same seed -> identical images
  config.sample.batch_size = 256  # images per sampler call
  # p_1: 'forward' (the exact forward marginal: train.prior_num_images real training images x_0,
  # corrupted to t = 1 with fresh noise; the default, measured best on the digits: docs/results.md "Sample
  # quality on the digits") | 'gaussian' (a Gaussian fit of C_1 x_0 plus s_1² I exactly, stored in
  # WORKDIR/prior.npz)
  config.sample.prior = "forward"
  config.sample.snr = 0.17  # 'pc' only: the Langevin corrector's signal-to-noise ratio (score_sde's CelebA value)
  # Levels the sampler visits: 'auto' (the sampler's default: 'uniform', and for 'multistep' its
  # measured default) | 'uniform' (equal steps in t) | 'logsnr' (equal steps in the mid frequency's
  # log-SNR) | 'edm' (EDM's rho-spacing of that frequency's noise-to-signal ratio): time_grids.py
  config.sample.time_grid = "auto"
  config.sample.rho = 7.0  # time_grid = 'edm' only: EDM's rho
  config.sample.order = 2  # 'multistep' only: 1 (= the deterministic sampler), 2 or 3
  # the sampler's end: 'auto' (its own: 'denoise' for 'pc', 'noise' for the others) | 'noise' (x at
  # t = 0, still holding about s_0 of noise: the paper's end) | 'denoise' (the last step's estimate
  # x̂_0, score_sde's and EDM's end); the same number of network evaluations (samplers.py)
  config.sample.final = "auto"

  # Level selection, --mode levels (docs/method.md §3): writes WORKDIR/levels.json + levels.png;
  # training and sampling use it when corruption.blur_schedule = 'selected'.
  config.levels = lv = ml_collections.ConfigDict()
  lv.num_candidates = 256  # log-spaced candidate blur levels in [blur_sigma_min, blur_sigma_max]
  lv.num_levels = 32  # levels kept, at t_k = k/(K-1)
  lv.num_images = 0  # training images in the mean DCT power spectrum; 0 = the whole split
  # how the noise s(t) enters the distance (level_selection.py): 'joint' ((σ_B, s(t_k)) pairs) |
  # 'joint_min_blur' (joint, every hop at least min_blur_share blur) | 'candidate' (candidate i
  # carries s(i/(M-1))) | 'blur' (the blur term alone)
  lv.pairing = "candidate"  # measured best on the digits (docs/results.md "Sample quality on the digits")
  lv.min_blur_share = 0.5  # 'joint_min_blur' only: d_blur >= this share of each hop, in (0, 1)

  # Evaluation, --mode stats and --mode eval (FID/KID with the JAX Inception-v3; see docs/evaluation.md).
  config.eval = ev = ml_collections.ConfigDict()
  ev.split = "train"  # reference split for --mode stats (the paper's CelebA FIDs use the train split)
  ev.ref_num_images = 0  # reference images; 0 = the whole split
  ev.num_images = 10_000  # samples per (sampler, NFE) point of --mode eval (the paper: 50k)
  ev.samplers = ("momentum", "naive")  # samplers compared
  ev.num_steps = (50, 100, 200, 300)  # network evaluations per sample (NFE), as sample.num_steps
  ev.batch_size = 64  # images per Inception call (a multiple of the device count)
  ev.kid_subset_size = 1000  # KID subset size (capped at the smaller set)
  ev.kid_num_subsets = 100
  ev.kid_ref_features = 10_000  # reference feature vectors kept in the stats file for KID
  # data.name = 'gaussian_field': no Inception; exact distances to the known law (evaluation/exact.py),
  # and with oracle=True every point also with the exact posterior mean as denoiser (the floor)
  ev.oracle = True
  # While training: every `every_steps` steps (0 = never) draw `train_num_images` samples with the
  # EMA parameters and the sample block's sampler, log their KID and FID against the reference
  # statistics (computed first if missing) to metrics.jsonl and TensorBoard, and save a checkpoint
  # with them; the best of those (lowest FID) is kept whatever checkpoint.max_to_keep says.
  ev.every_steps = 0
  ev.train_num_images = 1000

  # Restoration, --mode restore (soft_diffusion/restoration.py; docs/restoration.md): posterior
  # samples for y = A x_0 + sigma_y n with this run's model.
  config.restore = rs = ml_collections.ConfigDict()
  # A: 'gaussian_blur' (size = sigma in px) | 'box_blur' (size = odd width in px) | 'random_mask'
  # (size = fraction of pixels kept) | 'lower_half' (the lower half removed; size unused) |
  # 'model' (the model's own corruption C_t at t = size, e.g. its masks: native restoration's home ground)
  rs.operator = "gaussian_blur"
  rs.size = 1.0
  rs.sigma_y = 0.02  # observation noise std, images in [-1, 1]
  # 'native': start the reverse process at the model's own level of y (A within the model's
  # corruption family) | 'guided': from p_1 with a conditional denoiser (any operator above)
  rs.method = "native"
  # '' = the first num_images images of `split`, degraded here and scored against the originals;
  # else a folder of PNGs or an .npz (array 'y' [N, H, W, C] in [-1, 1], or uint8) of degraded images
  rs.input = ""
  rs.split = "validation"  # the digits', CelebA's and the fields' held-out split
  rs.num_images = 16  # observations restored
  rs.num_samples = 8  # posterior samples per observation (their mean: the MMSE estimate)
  rs.num_steps = 100  # network evaluations per sample (native: from t* to 0)
  # 'ancestral' (random at every step: from a fixed start it samples p(x_0 | x_t*); the Momentum
  # Sampler adds no noise while s_t is constant, so native restoration with it has almost no
  # spread: docs/restoration.md) | 'momentum' | 'naive' | 'deterministic'
  rs.sampler = "ancestral"
  rs.batch_size = 64  # images per sampler call
  rs.seed = 0
  rs.mask_seed = 0  # the random mask's pixels
  return config


def use_soft_masks(config):
  """Switches `config` to the soft masking corruption (a central square growing with t, ramp
  0.25) in place, as configs/celeba64_mask.py and configs/digits_mask.py do; returns it."""
  config.corruption.name = "mask"
  config.corruption.blur_schedule = "log"  # no blur here; 'selected' applies to blur only
  config.corruption.mask_order = "center"
  config.corruption.mask_ramp_width = 0.25
  return config


# The recipes (parameterisation, loss, training-time density) a config can be loaded with:
# `--config configs/FILE.py:FORM` passes FORM to the file's get_config (docs/results.md, "Training
# that learns what the samplers read", measured them). Blur configs take 'preconditioned' or
# 'paper', the VE configs 'edm' or 'score_sde'; the mask configs are the paper's form (the
# preconditioning needs a corruption diagonal in the DCT basis).
BLUR_FORMS = ("preconditioned", "paper")
VE_FORMS = ("edm", "score_sde")


def apply_form(config, form: str, allowed=BLUR_FORMS):
  """Sets `config`'s recipe to `form` in place (one of `allowed`) and returns it:

  * 'paper': the paper's residual form h = x_t + φ with the loss weight c_t² (model.precond =
    'none'), t ~ U(t_min, 1) and each sampler's own end (sample.final = 'auto');
  * 'preconditioned': the per-coefficient preconditioning with the data's spectrum and its loss
    (model.precond = 'spectral', c_in scalar; docs/method.md §2.4), t ~ U(t_min, 1), and samplers
    that end with the denoised estimate (sample.final = 'denoise');
  * 'score_sde' (C_t = I): score_sde's VE recipe, σ²-weighted loss and the output scaled by s_t;
  * 'edm' (C_t = I): EDM's, the preconditioning (with the data's spectrum in place of one σ_data),
    the log-normal training-time density (docs/method.md §2.5) and the denoised end.
  """
  if form not in allowed:
    raise ValueError(f"the config's form (the ':FORM' after the file name) must be one of {allowed}, got {form!r}")
  config.loss.floor = 0.0
  config.loss.lag = 0.0
  config.model.skip = "identity"
  config.model.precond_c_in = "scalar"
  config.model.precond_spectrum = "data"
  spectral = form in ("preconditioned", "edm")
  config.model.precond = "spectral" if spectral else "none"
  config.loss.weighting = "inverse_noise_var" if form == "score_sde" else "uniform"
  config.model.output_scale = "noise_std" if form == "score_sde" else "none"
  config.train.t_density = "lognormal" if form == "edm" else "uniform"
  # the sampler's end: the preconditioned forms end with the last step's estimate x̂_0, the paper's
  # and score_sde's with each sampler's own ('noise' for Momentum, 'denoise' for PC)
  config.sample.final = "denoise" if spectral else "auto"
  return config
