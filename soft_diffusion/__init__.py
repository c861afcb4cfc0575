"""soft_diffusion: JAX/Flax reference implementation of Soft Diffusion (Daras et al., 2022).

The functional core, importable on its own:

    from soft_diffusion import corruptions, schedules, losses, samplers
    from soft_diffusion import level_selection  # SPEC §3, on a power spectrum
"""

from soft_diffusion import corruptions, dct, level_selection, losses, samplers, schedules

__all__ = ["corruptions", "dct", "level_selection", "losses", "samplers", "schedules"]
__version__ = "0.1.0"
