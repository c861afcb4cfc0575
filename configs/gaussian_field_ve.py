"""The VE twin of configs/gaussian_field.py: C_t = I with the best recipe we measured (EDM's).

    python -m soft_diffusion.main --config configs/gaussian_field_ve.py --workdir runs/gaussian_field_ve
    python -m soft_diffusion.main --config configs/gaussian_field_ve.py:score_sde --workdir runs/ve_score_sde

C_t = I, geometric noise from 0.02 (in our [-1, 1] units) to σ_max and score_sde's
predictor-corrector sampler ('pc', snr 0.17) beside ours. The default form 'edm' trains with the
per-coefficient preconditioning (EDM's for C_t = I, with the data's spectrum in place of one
σ_data) and EDM's log-normal training-time density; ':score_sde' is configs/celeba64_ve.py's
recipe (score_sde's CelebA VE: `inverse_noise_var` weighting, the output scaled by s_t), what this
config was before the preconditioning study (5.9× its oracle at 100 NFE against 1.0×). σ_max follows the rule that
gave score_sde its CelebA value (Song & Ermon 2020, technique 1: σ_max ≈ the largest distance
between two training images): 30 here (measured on 3,000 fields: max 29.9, median 23.4). The
network, optimizer, steps and batch are those of configs/gaussian_field.py.
"""

from soft_diffusion.run import schema

gaussian_field = schema.sibling(__file__, "gaussian_field")


def get_config(form: str = "edm"):
  """form (`--config configs/gaussian_field_ve.py:FORM`): 'edm' (EDM's recipe: the preconditioning
  with the data's spectrum and the log-normal training-time density; the default since the
  preconditioning study, docs/results.md "Training that learns what the samplers read") or
  'score_sde' (score_sde's VE recipe, this config before that study)."""
  config = schema.apply_ve_recipe(gaussian_field.get_config("paper"), noise_std_max=30.0)
  config.eval.samplers = ("momentum", "naive", "deterministic", "pc")
  return schema.apply_form(config, form, schema.VE_FORMS)
