"""The VE twin of configs/gaussian_field.py: the CelebA VE baseline's recipe scaled to this data.

    python -m soft_diffusion.main --config configs/gaussian_field_ve.py --workdir runs/gaussian_field_ve

As configs/celeba64_ve.py (score_sde's CelebA VE recipe): C_t = I, geometric noise from 0.02 (in
our [-1, 1] units) to σ_max, `inverse_noise_var` weighting, the network's output scaled by s_t, and
score_sde's predictor-corrector sampler ('pc', snr 0.17) beside ours. σ_max follows the rule that
gave score_sde its CelebA value (Song & Ermon 2020, technique 1: σ_max ≈ the largest distance
between two training images): 30 here (measured on 3,000 fields: max 29.9, median 23.4). The
network, optimizer, steps and batch are those of configs/gaussian_field.py.
"""

from configs import default, gaussian_field
from configs.celeba64_ve import apply_ve_recipe


def get_config(form: str = "score_sde"):
  """form (`--config configs/gaussian_field_ve.py:FORM`): 'score_sde' (score_sde's VE recipe) or
  'edm' (EDM's: the preconditioning and the log-normal training-time density)."""
  config = apply_ve_recipe(gaussian_field.get_config("paper"), noise_std_max=30.0)
  config.eval.samplers = ("momentum", "naive", "deterministic", "pc")
  return default.apply_form(config, form, default.VE_FORMS)
