"""Throughput of `gaussian_blur` (matmul form, docs/method.md §1.1) against the dctn formulation.

    python benchmarks/blur.py [--batch 128] [--size 64] [--repeats 20]

Prints images/s of both on a [B, S, S, 3] batch with per-example σ, the achieved FLOP/s of the
matmul form (XLA cost analysis), and the machine's float32 matmul FLOP/s measured in the same
run, with the ratios between them. A benchmark, not a test: numbers depend on the machine.
"""

from __future__ import annotations

import argparse

import jax
import jax.numpy as jnp
import numpy as np
from timing import matmul_flops_per_second, seconds_per_call, xla_flops

from soft_diffusion import corruptions, dct


def dctn_blur(x: jax.Array, sigma: jax.Array) -> jax.Array:
  """The same operator through jax.scipy.fft.dctn / idctn (the test reference form)."""
  _, height, width, _ = x.shape
  mult = dct.blur_multipliers_1d(sigma, height)[:, :, None] * dct.blur_multipliers_1d(sigma, width)[:, None, :]
  spec = jax.scipy.fft.dctn(x, axes=(1, 2), norm="ortho")
  return jax.scipy.fft.idctn(spec * mult[..., None], axes=(1, 2), norm="ortho")


def separable_dct_blur(x: jax.Array, sigma: jax.Array) -> jax.Array:
  """The same operator as four GEMMs with the shared DCT matrices (more FLOPs, bigger GEMMs)."""
  _, height, width, _ = x.shape
  hi = jax.lax.Precision.HIGHEST
  d_h = jnp.asarray(dct.dct_matrix(height), x.dtype)
  d_w = jnp.asarray(dct.dct_matrix(width), x.dtype)
  mult = dct.blur_multipliers_1d(sigma, height)[:, :, None] * dct.blur_multipliers_1d(sigma, width)[:, None, :]
  spec = jnp.einsum("ki,bijc->bkjc", d_h, x, precision=hi)
  spec = jnp.einsum("lj,bkjc->bklc", d_w, spec, precision=hi) * mult[..., None]
  y = jnp.einsum("ki,bklc->bilc", d_h, spec, precision=hi)
  return jnp.einsum("lj,bilc->bijc", d_w, y, precision=hi)


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--batch", type=int, default=128)
  parser.add_argument("--size", type=int, default=64)
  parser.add_argument("--repeats", type=int, default=20)
  parser.add_argument("--matmul_size", type=int, default=2048)
  args = parser.parse_args()
  if args.batch < 1 or args.size < 1 or args.repeats < 1:
    parser.error("--batch, --size and --repeats must be >= 1")

  rng = np.random.default_rng(0)
  x = jnp.asarray(rng.uniform(-1, 1, (args.batch, args.size, args.size, 3)), jnp.float32)
  sigma = jnp.asarray(rng.uniform(0, 23, args.batch), jnp.float32)
  ours = jax.jit(corruptions.gaussian_blur)
  reference = jax.jit(dctn_blur)
  err = float(jnp.max(jnp.abs(ours(x, sigma) - reference(x, sigma))))

  t_ours = seconds_per_call(ours, x, sigma, repeats=args.repeats)
  t_ref = seconds_per_call(reference, x, sigma, repeats=args.repeats)
  t_sep = seconds_per_call(jax.jit(separable_dct_blur), x, sigma, repeats=args.repeats)
  flops = xla_flops(ours, x, sigma)
  peak = matmul_flops_per_second(args.matmul_size, args.repeats)

  print(f"device: {jax.devices()[0].device_kind} ({jax.default_backend()}), jax {jax.__version__}")
  print(
    f"batch [{args.batch}, {args.size}, {args.size}, 3], per-example sigma in [0, 23] px; max |ours - dctn| = {err:.1e}"
  )
  print(f"gaussian_blur (matmul form): {args.batch / t_ours:12.1f} images/s  ({t_ours * 1e3:.2f} ms/batch)")
  print(f"dctn/idctn formulation:      {args.batch / t_ref:12.1f} images/s  ({t_ref * 1e3:.2f} ms/batch)")
  print(f"4 shared-DCT GEMMs:          {args.batch / t_sep:12.1f} images/s  ({t_sep * 1e3:.2f} ms/batch)")
  print(f"speed-up matmul form / dctn: {t_ref / t_ours:.2f}x; / 4 shared-DCT GEMMs: {t_sep / t_ours:.2f}x")
  print(f"matmul form: {flops / args.batch / 1e6:.2f} MFLOP/image (XLA), achieved {flops / t_ours / 1e9:.2f} GFLOP/s")
  print(f"float32 matmul {args.matmul_size}^2 (HIGHEST): {peak / 1e9:.2f} GFLOP/s")
  print(f"ratio achieved / matmul FLOP/s: {flops / t_ours / peak:.3f}")


if __name__ == "__main__":
  main()
