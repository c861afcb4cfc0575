"""Networks: the raw U-Net φ_θ and the denoiser wrapper h_θ = φ_θ + x_t."""

from soft_diffusion.models.denoiser import make_denoise_fn
from soft_diffusion.models.unet import UNet, UNetConfig, timestep_embedding

__all__ = ["UNet", "UNetConfig", "make_denoise_fn", "timestep_embedding"]
