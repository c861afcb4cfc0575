"""The NCSN++ (VE SDE) baseline on CelebA 64×64: score_sde's CelebA VE recipe in our units
(`--config configs/celeba64_ve.py:score_sde`, the paper's baseline), by default trained with
EDM's recipe instead (form 'edm': measured better on the digits and the fields).

    python -m soft_diffusion.main --config configs/celeba64_ve.py --workdir runs/celeba64_ve --config.data.path=DATA

score_sde's `configs/ve/celeba_ncsnpp.py`, translated: C_t = I; σ geometric from 0.01 to 90 in
its [0, 1] pixel units is s_t = 0.02 · 9000^t in our [-1, 1]; its loss (the ε-error summed over
pixels) is our `inverse_noise_var` weighting of the x̂₀-error up to a constant; the network's
output is scaled by s_t (`model.output_scale = 'noise_std'`, score_sde's scale_by_sigma); the
same NCSN++ as configs/celeba64.py; sampled with its predictor-corrector sampler ('pc': 1,000
noise levels, each a Langevin corrector step at snr 0.17 and a reverse-diffusion predictor step,
so 2,000 network evaluations, and no noise in the last step).
Not yet matched: score_sde's discrete-time noise levels are 1,000 fixed σ_i, ours continuous
t ~ U(0, 1). (The loss is summed over pixels, as score_sde's, through configs/celeba64.py.)

Expected result (paper, NCSN++ VE; the `:score_sde` form): FID 3.25. Runtime and our FID: not measured yet; training
costs what configs/celeba64.py costs (same network, same steps), sampling twice the network
evaluations of a 1,000-step sampler.
"""

from configs import celeba64, default


def apply_ve_recipe(config, noise_std_max: float):
  """score_sde's VE recipe in our units on any config (also used by the VE twins of the small
  studies): C_t = I, geometric s_t from 0.02 to `noise_std_max`, inverse-noise-variance
  weighting, the network's output scaled by s_t, and the PC sampler."""
  config.corruption.name = "identity"
  config.corruption.blur_schedule = "log"  # no blur here; 'selected' applies to blur only
  config.corruption.blur_sigma_table = None
  config.corruption.noise_schedule = "geometric"
  config.corruption.noise_std_min = 0.02
  config.corruption.noise_std_max = noise_std_max
  config.loss.weighting = "inverse_noise_var"
  config.model.output_scale = "noise_std"
  config.sample.sampler = "pc"
  return config


def get_config(form: str = "edm"):
  """form (`--config configs/celeba64_ve.py:FORM`, configs/default.py apply_form): 'edm' (EDM's recipe:
  the preconditioning, the log-normal density and the denoised end; the default since the
  preconditioning study) or 'score_sde' (score_sde's VE recipe, the paper's baseline)."""
  config = apply_ve_recipe(celeba64.get_config(), noise_std_max=180.0)
  config.sample.num_steps = 2000  # network evaluations: 1,000 levels × (corrector + predictor)
  config.eval.samplers = ("pc", "momentum")  # score_sde's sampler, and its predictor alone
  config.eval.num_steps = (200, 1000, 2000)
  return default.apply_form(config, form, default.VE_FORMS)
