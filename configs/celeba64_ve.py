"""The NCSN++ (VE SDE) baseline on CelebA 64×64: identity corruption, geometric noise 0.01 → 90.

    python -m soft_diffusion.main --config configs/celeba64_ve.py --workdir runs/celeba64_ve --config.data.path=DATA

Same network and optimizer as configs/celeba64.py; C_t = I, s_t = 0.01·(9000)^t (score_sde's
CelebA VE range). Expected result (paper, NCSN++ VE): FID 3.25. Runtime and our FID: not
measured yet; the expected runtime is that of configs/celeba64.py (same network, same
steps).
"""

from configs import celeba64


def get_config():
  config = celeba64.get_config()
  config.corruption.name = "identity"
  config.corruption.noise_schedule = "geometric"
  config.corruption.noise_std_min = 0.01
  config.corruption.noise_std_max = 90.0
  config.sample.num_steps = 1000
  return config
