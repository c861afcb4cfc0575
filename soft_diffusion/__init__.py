"""soft_diffusion: JAX/Flax reference implementation of Soft Diffusion (Daras et al., 2022).

The functional core, importable on its own:

    from soft_diffusion import corruptions, schedules, losses, samplers
    from soft_diffusion import level_selection  # SPEC §3, on a power spectrum
    from soft_diffusion import gaussian_field   # SPEC §7: a law known exactly, its posterior mean
"""

from soft_diffusion import corruptions, dct, gaussian_field, level_selection, losses, samplers, schedules

__all__ = ["corruptions", "dct", "gaussian_field", "level_selection", "losses", "samplers", "schedules"]
__version__ = "0.1.0"
