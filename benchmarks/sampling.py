"""Sampling throughput and sampler overhead, and Inception feature throughput.

    python benchmarks/sampling.py                                   # CPU: digits config (digits@paper: its paper form)
    python benchmarks/sampling.py --config celeba64 --batch 128 --num_steps 100 --dtype bfloat16   # a GPU/TPU
    python benchmarks/sampling.py --tables docs/results/sampling_overhead.json   # the table of a --json record

For each sampler: images/s at a fixed NFE on a batch sharded over every local device, and, in
the same run, the same number of bare network forwards chained in the same kind of loop
(x ← h_θ(x, t), no sampler arithmetic, no noise). The overhead is sampler time / bare time − 1
(target ≤ 5%: the sampler's blur and noise must be negligible next to the U-Net). Then the
JAX Inception-v3's features/s on 64×64 uint8 images (batch --inception_batch). Parameters are
the initialisation (timing does not depend on training). A benchmark, not a test.
"""

from __future__ import annotations

import argparse
import functools
import json
import pathlib
import sys

import jax
import jax.numpy as jnp
import numpy as np
from timing import corruption_for_timing, interleaved_seconds, markdown_table, seconds_per_call

from soft_diffusion import evaluation, models, preconditioning, samplers
from soft_diffusion.models import make_denoise_fn
from soft_diffusion.run import schema
from soft_diffusion.run import settings as settings_lib
from soft_diffusion.run import state as state_lib

CONFIGS = pathlib.Path(__file__).resolve().parents[1] / "configs"


def table(record: dict) -> str:
  """A --json record as a markdown table: seconds per batch, images/s, overhead over bare forwards."""
  batch, bare = record["batch"], record["seconds_per_batch"]["bare forwards"]
  return markdown_table(
    f"{record['device']}; config {record['config']}, batch {batch}, NFE {record['nfe']}, median of {record['repeats']}",
    ("what", "s/batch", "images/s", "overhead over bare forwards"),
    [
      (name, f"{s:.2f}", f"{batch / s:.1f}", "—" if name == "bare forwards" else f"{100 * (s / bare - 1):+.1f}%")
      for name, s in record["seconds_per_batch"].items()
    ],
    "|---|---:|---:|---:|",
  )


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--config", default="digits")
  parser.add_argument("--batch", type=int, default=None, help="images per sampler call (default: sample.batch_size)")
  parser.add_argument("--num_steps", type=int, default=100, help="network evaluations per sample (NFE)")
  parser.add_argument("--dtype", default=None, help="model compute dtype override")
  parser.add_argument("--repeats", type=int, default=3)
  parser.add_argument(
    "--samplers", nargs="+", default=sorted(samplers.SAMPLERS), help="names; 'multistep@FORM' for a multistep form"
  )
  parser.add_argument("--inception_batch", type=int, default=64)
  parser.add_argument("--inception_repeats", type=int, default=3)
  parser.add_argument("--no_inception", action="store_true", help="skip the Inception throughput")
  parser.add_argument(
    "--inception_weights",
    choices=("auto", "cached", "random"),
    default="auto",
    help="the FID weights from the cache, or random ones of the same shapes (the same cost; no download, "
    "for a machine without network); auto: cached when present",
  )
  parser.add_argument("--json", type=pathlib.Path, default=None, help="also write the numbers to this JSON file")
  parser.add_argument("--tables", type=pathlib.Path, default=None, help="only print the table of this --json file")
  args = parser.parse_args(argv)
  if args.tables:
    print(table(json.loads(args.tables.read_text())))
    return 0

  module, _, form = args.config.partition("@")  # FILE@FORM: the config's recipe (schema.apply_form)
  config = schema.load_config(str(CONFIGS / f"{module}.py") + (f":{form}" if form else ""))
  if args.dtype:
    config.model.dtype = args.dtype
  settings = settings_lib.load(config)  # 'selected' levels are not read: timing does not depend on them
  batch = args.batch or settings.sample.batch_size
  size = settings.data.image_size
  channels = 1 if settings.data.name == "digits" else 3
  mesh = state_lib.make_mesh()
  replicated, sharded = state_lib.replicated(mesh), state_lib.batch_sharding(mesh)
  model = models.make_network(settings.model)
  corruption = corruption_for_timing(settings.corruption)
  precond = None
  if settings.model.precond != "none":  # a call's cost does not depend on the spectrum: ones for the data's
    spectrum = preconditioning.spectrum_for(
      np.ones((size, size, channels), np.float32), settings.model.precond_spectrum
    )
    precond = preconditioning.Preconditioner(corruption, spectrum, c_in=settings.model.precond_c_in)
  params = jax.jit(
    lambda: model.init(jax.random.key(0), jnp.zeros((1, size, size, channels)), jnp.zeros((1,)))["params"],
    out_shardings=replicated,
  )()
  x = jax.device_put(jax.random.normal(jax.random.key(1), (batch, size, size, channels)), sharded)
  key = jax.random.key(2)
  nfe = args.num_steps
  device = f"{jax.device_count()} x {jax.devices()[0].device_kind}"
  print(
    f"{device}; config {args.config} ({settings.model.dtype}), batch {batch} of {size}x{size}x{channels}, NFE {nfe}"
  )

  def bare(params, x):
    denoise_fn = make_denoise_fn(model, params, noise_std=corruption.noise_std, precond=precond)

    def body(i, x):
      t = jnp.full((x.shape[0],), (nfe - i) / nfe, x.dtype)
      return denoise_fn(x, t).astype(x.dtype)

    return jax.lax.fori_loop(0, nfe, body, x)

  calls = {"bare forwards": functools.partial(jax.jit(bare, out_shardings=sharded), params, x)}
  for name in args.samplers:
    sampler_name, _, form = name.partition("@")  # 'multistep@midpoint': the multistep sampler in that form
    sampler = samplers.get(sampler_name, **({"form": form} if form else {}))
    fn = jax.jit(
      lambda params, x, sampler=sampler: sampler(
        make_denoise_fn(model, params, noise_std=corruption.noise_std, precond=precond),
        x,
        corruption,
        num_steps=nfe,
        key=key,
      ),
      out_shardings=sharded,
    )
    calls[name] = functools.partial(fn, params, x)
  seconds = interleaved_seconds(calls, repeats=args.repeats)  # in rounds: a drift falls on all alike
  bare_s = seconds["bare forwards"]
  print(f"{'bare forwards':16s} {bare_s:8.3f} s/batch  {batch / bare_s:9.1f} images/s  (baseline)")
  for name in args.samplers:
    s = seconds[name]
    print(f"{name:16s} {s:8.3f} s/batch  {batch / s:9.1f} images/s  overhead {100 * (s / bare_s - 1):+6.2f}%")
  record = {"device": device, "config": args.config, "batch": batch, "nfe": nfe, "repeats": args.repeats}
  record["seconds_per_batch"] = seconds
  record["overhead"] = {k: v / bare_s - 1 for k, v in record["seconds_per_batch"].items() if k != "bare forwards"}
  if args.json:
    args.json.write_text(json.dumps(record, indent=1) + "\n")
  if args.no_inception:
    return 0

  inception_params = inception_params_for(args.inception_weights)
  images = np.random.default_rng(0).integers(0, 256, (args.inception_batch, 64, 64, 3), dtype=np.uint8)
  feature_fn = lambda images: evaluation.inception_features(
    images, params=inception_params, batch_size=args.inception_batch, mesh=mesh
  )
  s = seconds_per_call(feature_fn, images, repeats=args.inception_repeats)
  print(f"{'inception':16s} {s:8.3f} s/batch  {args.inception_batch / s:9.1f} images/s  (64x64 uint8 -> 299 -> 2048)")
  return 0


def inception_params_for(choice: str):
  """The FID Inception weights ('cached'), or random ones of the same shapes ('random'): a
  throughput does not depend on the values. 'auto': cached when the file is there."""
  from soft_diffusion.evaluation import inception, weights

  if choice == "auto":
    choice = "cached" if weights.default_path().is_file() else "random"
  if choice == "cached":
    return evaluation.load_inception_params()
  print("inception: random weights of the FID network's shapes (throughput only)", flush=True)
  zeros = jnp.zeros((1, inception.SIZE, inception.SIZE, 3), jnp.float32)
  return jax.jit(inception.InceptionV3().init)(jax.random.key(0), zeros)["params"]


if __name__ == "__main__":
  sys.exit(main())
