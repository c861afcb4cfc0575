"""Networks φ_θ (each with its own config dataclass) and the denoiser wrapper h_θ = φ_θ + x_t.

    from soft_diffusion import models
    cfg = models.network_config({"name": "ncsnpp", "channels": 64})   # or a UNetConfig / NCSNppConfig
    network = models.make_network(cfg)                               # a Flax Linen module
    denoise_fn = models.make_denoise_fn(network, params)             # (x_t, t) -> x̂_0

`config.model.name` picks the network: 'ncsnpp' (NCSN++, the paper's comparison network, docs/method.md
§6; ncsnpp.py) or 'unet' (a smaller DDPM-style U-Net, the digits demo's; unet.py). The config
block holds the fields of both; a field only the other network reads must keep its default.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import flax.linen as nn

from soft_diffusion import typed_config
from soft_diffusion.models.common import resolve_dtype, timestep_embedding
from soft_diffusion.models.denoiser import make_denoise_fn, make_network_fn, wiener_skip
from soft_diffusion.models.ncsnpp import NCSNpp, NCSNppConfig
from soft_diffusion.models.unet import UNet, UNetConfig

__all__ = [
  "NETWORKS",
  "NetworkConfig",
  "NCSNpp",
  "NCSNppConfig",
  "UNet",
  "UNetConfig",
  "make_denoise_fn",
  "make_network_fn",
  "wiener_skip",
  "make_network",
  "network_config",
  "resolve_dtype",
  "timestep_embedding",
]

NetworkConfig = UNetConfig | NCSNppConfig

# model.name -> (its config dataclass, its Linen module).
NETWORKS: dict[str, tuple[type, type[nn.Module]]] = {
  "ncsnpp": (NCSNppConfig, NCSNpp),
  "unet": (UNetConfig, UNet),
}


def network_config(block: Any) -> NetworkConfig:
  """The typed config of the network `block["name"]` names (default 'ncsnpp').

  Keys of the other networks must hold their defaults (they would be ignored otherwise); unknown
  keys are an error. One-line errors name `config.model.<field>`.
  """
  if isinstance(block, tuple(cls for cls, _ in NETWORKS.values())):
    return block
  values = typed_config.as_dict(block)
  name = values.get("name", "ncsnpp")
  typed_config.check(name in NETWORKS, "model.name", f"one of {sorted(NETWORKS)}", name)
  cls = NETWORKS[name][0]
  own = {f.name for f in dataclasses.fields(cls)}
  for other, _ in NETWORKS.values():
    defaults = {f.name: f.default for f in dataclasses.fields(other) if f.name not in own and f.name != "name"}
    for field, default in defaults.items():
      value = values.pop(field, default)
      value = tuple(value) if isinstance(value, list) else value
      typed_config.check(
        value == default, f"model.{field}", f"left at {default!r}: model.name = {name!r} does not use it", value
      )
  return typed_config.from_block(cls, values, "model")


def make_network(cfg: NetworkConfig, backend: str | None = None) -> nn.Module:
  """The Linen module for a typed model config. model.dtype 'auto' computes in bfloat16 on a
  'gpu' or 'tpu' backend (`backend`, default: JAX's default backend when the network runs),
  else in float32; parameters are float32 either way."""
  if cfg.dtype == "auto" and backend is not None:  # else the network resolves it when it runs
    cfg = dataclasses.replace(cfg, dtype=resolve_dtype(cfg.dtype, backend))
  for config_cls, module_cls in NETWORKS.values():
    if isinstance(cfg, config_cls):
      return module_cls(cfg)
  raise TypeError(f"not a model config: {type(cfg).__name__}")
