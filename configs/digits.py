"""The embedded default: Soft Diffusion (blur) on scikit-learn's digits at 16×16, CPU-friendly.

    python -m soft_diffusion.main --config configs/digits.py --workdir runs/digits
    python -m soft_diffusion.main --config configs/digits.py --workdir runs/digits --mode sample

Runtime (measured, 2 CPU cores, no accelerator): training 11 min 39 s on a busy machine (151.8 ms
per step of 64, the same as the paper's form), sampling 256 images 19 s. Result (the default
form), printed by `make demo` or by `python tools/digits_quality.py
runs/digits/samples/momentum_100_forward_denoise_step4000/samples.npz`: a nearest-neighbour share
of 0.867 (target >= 0.80; the paper's form 0.910), 10/10 classes, a fine-detail variance ratio
of 1.04 and 0.0042 of excess noise in the top rings (0.0114 in the paper's form, which ends
with the last step's noise); training is deterministic.
Details: docs/results.md, "The digits demo" and "Sample quality on the digits".
"""

from soft_diffusion.run import schema

# The 32 levels of the level selection (`--mode levels`, level_selection.select_blur_levels: mean
# DCT power of the 16×16 train digits, 256 log-spaced candidates in [0.01, 5.75] px) with
# levels.pairing = 'candidate' (candidate i carries the noise s(i/255) of its own index; ε = 0.447).
# Its first four levels (0.01-0.045 px) barely blur while the noise ramps 0.01 -> 0.024: about a
# tenth of training is plain fine-scale denoising, which the Momentum Sampler needs to remove
# the noise from the finest frequencies at the end (docs/results.md, "Sample quality on the digits").
DIGITS_BLUR_LEVELS = (
  0.01, 0.0239, 0.0348, 0.0446, 0.3617, 0.539, 0.6915, 0.8233, 0.956, 1.0829, 1.2266, 1.3551, 1.4972, 1.6541,
  1.7825, 1.9208, 2.0699, 2.2306, 2.4038, 2.5903, 2.7914, 3.0081, 3.1618, 3.3234, 3.4932, 3.6717, 3.8593,
  4.1589, 4.4817, 4.8296, 5.2045, 5.75,
)  # fmt: skip

# The same selection with levels.pairing = 'joint' (level k carries s(t_k); ε = 0.434): one hop
# from 0.01 to 0.35 px. This config's table from 4ce04ed until the quality study: the network
# then never learns to denoise the finest frequencies and Momentum samples keep that noise.
DIGITS_BLUR_LEVELS_JOINT = (
  0.01, 0.3528, 0.5128, 0.6579, 0.7832, 0.9095, 1.0049, 1.0829, 1.1669, 1.2892, 1.4244, 1.5737, 1.6958,
  1.8274, 1.9693, 2.1222, 2.2869, 2.4644, 2.6557, 2.7914, 2.9341, 3.084, 3.2416, 3.4072, 3.5813, 3.7643,
  3.9567, 4.1589, 4.4817, 4.8296, 5.2045, 5.75,
)  # fmt: skip


def get_config(form: str = "preconditioned"):
  """form (`--config configs/digits.py:FORM`, schema.apply_form): 'preconditioned' (the
  per-coefficient preconditioning and the denoised end; the default since the preconditioning
  study, docs/results.md) or 'paper' (the paper's residual form, loss and end)."""
  config = schema.default_config()
  config.data.name = "digits"
  config.data.image_size = 16  # stored at 8×8; see data.DataConfig.image_size for why 16
  config.data.cache = True  # 1,617 images: decode once, not every epoch

  # σ_B up to 23 px on 64×64 scales to 5.75 px on 16×16; the levels: DIGITS_BLUR_LEVELS above.
  # With the plain log schedule, half of training went to σ_B < 0.24 px, where blur does nothing.
  config.corruption.blur_sigma_max = 5.75
  config.corruption.blur_schedule = "table"
  config.corruption.blur_sigma_table = DIGITS_BLUR_LEVELS

  config.model.name = "unet"  # the small DDPM-style U-Net: a 2-core CPU trains it in minutes
  config.model.channels = 16
  config.model.channel_mult = (1, 2, 2)
  config.model.num_res_blocks = 1
  config.model.attention_resolutions = ()  # the middle block's 4×4 attention only: 8×8 attention cost 17% of a step
  config.model.dropout = 0.0

  config.optim.lr = 3e-3
  config.optim.warmup_steps = 200
  config.optim.decay = "cosine"  # a short run ends with small steps
  config.optim.decay_steps = 4000

  config.train.batch_size = 64
  config.train.total_steps = 4000
  config.train.log_every_steps = 100
  config.train.sample_every_steps = 4000  # one grid, at the end
  config.train.prior_num_images = 1617  # the whole train split (p_1 = their forward marginal)

  config.checkpoint.every_steps = 2000
  config.sample.num_steps = 100
  config.sample.num_images = 256
  config.sample.batch_size = 256

  # --mode stats / eval on a 2-core CPU, where the Inception runs at about 4 images/s: the whole
  # train split as reference, 256 samples per point (FID is biased upward at small N; compare
  # points of one table, not with other N).
  config.eval.num_images = 256
  config.eval.num_steps = (20, 50, 100, 200)
  config.eval.kid_subset_size = 256
  return schema.apply_form(config, form)
