"""The VE twin of configs/digits.py: the CelebA VE baseline's recipe scaled to the 16×16 digits.

    python -m soft_diffusion.main --config configs/digits_ve.py --workdir runs/digits_ve

For the blur-vs-VE comparison on real images at equal training compute (the same U-Net,
optimizer, steps and batch as configs/digits.py; `studies/reproduce_small.py --stages digits`).
As configs/celeba64_ve.py: C_t = I, geometric noise from 0.02 to σ_max, score_sde's
predictor-corrector sampler ('pc', snr 0.17), and by default EDM's recipe (measured best on the
digits and the fields, docs/results.md "Training that learns what the samplers read"); the form
`:score_sde` is score_sde's CelebA VE recipe (`inverse_noise_var` weighting, the network's output
scaled by s_t). σ_max = 17, the largest distance between two
training digits (Song & Ermon 2020, technique 1; measured over the 1,617: max 17.08, median 9.44).
"""

from soft_diffusion.run import schema

digits = schema.sibling(__file__, "digits")


def get_config(form: str = "edm"):
  """form (`--config configs/digits_ve.py:FORM`, schema.apply_form): 'edm' (EDM's recipe:
  the preconditioning, the log-normal density and the denoised end; the default since the
  preconditioning study) or 'score_sde' (score_sde's VE recipe, the paper's baseline)."""
  config = schema.apply_ve_recipe(digits.get_config(), noise_std_max=17.0)
  config.eval.samplers = ("momentum", "naive", "deterministic", "pc")
  config.eval.num_steps = (20, 50, 100, 200, 300)
  return schema.apply_form(config, form, schema.VE_FORMS)
