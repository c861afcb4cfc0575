"""Where a trained network's clean-image estimate departs from the exact posterior mean, on the
Gaussian-field testbed: per time t and frequency band, the error of x̂₀ = h_θ(x_t, t) against
x₀ next to that of the oracle E[x₀ | x_t], in two metrics:

* `loss`: E Σ (c_t (x̂₀ − x₀))² over the band's DCT coefficients, what Soft Score Matching trains
  (frequencies that C_t removes carry little weight);
* `plain`: E Σ (x̂₀ − x₀)², what the sampler's C_{t−Δ} x̂₀ also sees at frequencies C_t suppresses.

    python studies/field_denoiser_error.py runs/reproduce_small/gaussian_field --config configs/gaussian_field.py

A diagnostic script (not a test): prints one row per t with the network/oracle ratio per band.
"""

from __future__ import annotations

import argparse

import jax
import jax.numpy as jnp
import numpy as np

from soft_diffusion import dct, gaussian_field
from soft_diffusion.evaluation import exact
from soft_diffusion.run.modes import sample as sample_lib
from soft_diffusion.run.schema import load_config
from soft_diffusion.run.workdir import Workdir


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("workdir")
  parser.add_argument("--config", required=True)
  parser.add_argument("--num_images", type=int, default=512)
  parser.add_argument("--times", type=float, nargs="+", default=[0.02, 0.1, 0.2, 0.3, 0.45, 0.6, 0.75, 0.9, 1.0])
  args = parser.parse_args()
  workdir = Workdir.resolve(args.workdir)
  run = sample_lib.load_run(Workdir.of(workdir).settings(load_config(args.config)), workdir)
  d = run.settings.data
  v = gaussian_field.spectrum(d.image_size, d.image_size, d.field_k0, d.field_pixel_std)
  x0 = gaussian_field.field_images(np.sqrt(v), [np.random.default_rng([123, i]) for i in range(args.num_images)])
  x0 = jnp.asarray(x0)
  net = jax.jit(run.denoise_fn())
  oracle = jax.jit(gaussian_field.oracle_denoiser(run.corruption, v))
  masks = exact.bands(d.image_size, d.image_size)
  print(f"step {run.step}; per band: network / oracle error ({args.num_images} images)")
  print(f"{'t':>5} {'s_t':>7} | " + " | ".join(f"loss {b:>4} plain {b:>4}" for b in masks))
  for t in args.times:
    tt = jnp.full((args.num_images,), t, jnp.float32)
    noise = jax.random.normal(jax.random.fold_in(jax.random.key(0), int(t * 1000)), x0.shape)
    x_t = run.corruption.corrupt(x0, tt, noise)
    c = np.asarray(gaussian_field.dct_multipliers(run.corruption, tt[:1], d.image_size, d.image_size))[0]
    errors = {}
    for name, fn in (("net", net), ("oracle", oracle)):
      e = dct.dct2_host(np.asarray(fn(x_t, tt)) - np.asarray(x0))  # [N, H, W, C]
      power = np.mean(e**2, axis=(0, 3))
      errors[name] = {b: (float((power * c**2)[m].sum()), float(power[m].sum())) for b, m in masks.items()}
    cells = []
    for b in masks:
      (nl, npl), (ol, opl) = errors["net"][b], errors["oracle"][b]
      ratio = lambda a, b: f"{a / b:.2f}" if b > 1e-12 else "-"  # noqa: E731  (C_t removes the whole band)
      cells.append(f"{ratio(nl, ol):>9} {ratio(npl, opl):>10}")
    s_t = float(run.corruption.noise_std(tt[:1])[0])
    print(f"{t:5.2f} {s_t:7.3f} | " + " | ".join(cells))


if __name__ == "__main__":
  main()
