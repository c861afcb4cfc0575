"""The NCSN++ (VE SDE) baseline on CelebA 64×64: identity corruption, geometric noise 0.01 → 90.

    python -m soft_diffusion.main --config configs/celeba64_ve.py --workdir runs/celeba64_ve --config.data.path=DATA

Same network (NCSN++) and optimizer as configs/celeba64.py; C_t = I, s_t = 0.01·(9000)^t.
Not yet score_sde's recipe (open work): its σ range 0.01 → 90 is in [0, 1] pixel units, i.e.
0.02 → 180 in our [-1, 1]; score_sde also weights the loss by 1/s_t², divides the network's
output by σ, and samples with a predictor-corrector sampler, none of which this config does yet.
Expected result (paper, NCSN++ VE): FID 3.25. Runtime and our FID: not measured yet; the
expected runtime is that of configs/celeba64.py (same network, same steps).
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
