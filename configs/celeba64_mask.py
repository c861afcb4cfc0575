"""Soft Diffusion with soft masking on CelebA 64×64 (docs/method.md §1.2: a growing central square).

    python -m soft_diffusion.main --config configs/celeba64_mask.py --workdir runs/celeba64_mask --config.data.path=DATA

The paper reports no number for masking; this config exists to run the corruption at scale.
Level selection (docs/method.md §3) is not applied here: the soft mask's levels are set by its removal order
and ramp width (`corruption.mask_*`), not by a table of levels, and `--mode levels` selects blur
levels only.
Runtime and result: not measured yet; expected runtime as
configs/celeba64.py (same network and steps).
"""

from soft_diffusion.run import schema

celeba64 = schema.sibling(__file__, "celeba64")


def get_config():
  return schema.use_soft_masks(celeba64.get_config("paper"))  # masks: the paper's form (no preconditioning)
