"""Soft Diffusion with soft masking (a growing central square, corruptions/masking.py) on the
digits: the model that restores its own masks natively (docs/restoration.md).

    python -m soft_diffusion.main --config configs/digits_mask.py --workdir runs/digits_mask
    python -m soft_diffusion.main --config configs/digits_mask.py --workdir runs/digits_mask --mode restore \\
        --config.restore.operator=model --config.restore.size=0.5

Everything but the corruption is configs/digits.py in its paper form (network, steps, optimiser,
prior; the preconditioning needs a corruption diagonal in the DCT basis, which masks are not). Runtime
as configs/digits.py (about 9 min on 2 CPU cores); studies/restoration.py trains it when missing.
"""

from soft_diffusion.run import schema

digits = schema.sibling(__file__, "digits")


def get_config():
  config = schema.use_soft_masks(digits.get_config("paper"))
  config.restore.operator = "model"
  config.restore.size = 0.5
  return config
