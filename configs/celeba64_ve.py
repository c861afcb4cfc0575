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

from soft_diffusion.run import schema

celeba64 = schema.sibling(__file__, "celeba64")


def get_config(form: str = "edm"):
  """form (`--config configs/celeba64_ve.py:FORM`, schema.apply_form): 'edm' (EDM's recipe:
  the preconditioning, the log-normal density and the denoised end; the default since the
  preconditioning study) or 'score_sde' (score_sde's VE recipe, the paper's baseline)."""
  config = schema.apply_ve_recipe(celeba64.get_config(), noise_std_max=180.0)
  config.sample.num_steps = 2000  # network evaluations: 1,000 levels × (corrector + predictor)
  config.eval.samplers = ("pc", "momentum")  # score_sde's sampler, and its predictor alone
  config.eval.num_steps = (200, 1000, 2000)
  return schema.apply_form(config, form, schema.VE_FORMS)
