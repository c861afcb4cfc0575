"""soft_diffusion: JAX/Flax reference implementation of Soft Diffusion (Daras et al., 2022).

The functional core, importable on its own:

    from soft_diffusion import corruptions, schedules, losses, samplers
    from soft_diffusion import level_selection  # docs/method.md §3, on a power spectrum
    from soft_diffusion import gaussian_field   # docs/method.md §7: a law known exactly, its posterior mean
    from soft_diffusion import restoration      # posterior samples for y = A x_0 + σ_y n
    from soft_diffusion import grid_tuning      # time grids fitted to the exact law or to a model

`import soft_diffusion` is cheap: the submodules (and JAX) load on first use, so that the command
line (`python -m soft_diffusion.main`) can take over SIGTERM before JAX is imported.
"""

import importlib

__all__ = [
  "corruptions",
  "dct",
  "gaussian_field",
  "grid_tuning",
  "level_selection",
  "losses",
  "restoration",
  "samplers",
  "schedules",
]
__version__ = "0.1.0"


def __getattr__(name: str):
  if name in __all__:
    return importlib.import_module(f"soft_diffusion.{name}")
  raise AttributeError(f"module 'soft_diffusion' has no attribute {name!r}")


def __dir__():
  return sorted([*globals(), *__all__])
