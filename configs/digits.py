"""The embedded default: Soft Diffusion (blur) on scikit-learn's digits at 16×16, CPU-friendly.

    python -m soft_diffusion.main --config configs/digits.py --workdir runs/digits
    python -m soft_diffusion.main --config configs/digits.py --workdir runs/digits --mode sample

Runtime and result: see the README's main-job section (measured on 2 CPU cores).
"""

from configs import default


def get_config():
  config = default.get_config()
  config.data.name = "digits"
  config.data.image_size = 16  # stored at 8×8; see configs/default.py for why 16

  # σ_B up to 23 px on 64×64 scales to 5.75 px on 16×16.
  config.corruption.blur_sigma_max = 5.75

  config.model.channels = 16
  config.model.channel_mult = (1, 2, 2)
  config.model.num_res_blocks = 1
  config.model.attention_resolutions = (8,)
  config.model.dropout = 0.0

  config.optim.lr = 2e-3
  config.optim.warmup_steps = 200

  config.train.batch_size = 64
  config.train.num_steps = 1500
  config.train.log_every_steps = 100
  config.train.sample_every_steps = 500
  config.train.prior_num_images = 1617  # the whole train split

  config.checkpoint.every_steps = 500
  config.sample.num_steps = 100
  config.sample.num_images = 64
  config.sample.batch_size = 64
  return config
