"""The public API of DESIGN.md: names, call forms, and duck-typed user corruptions."""

import dataclasses
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np

import soft_diffusion
from soft_diffusion import corruptions, level_selection, losses, samplers, schedules


def test_design_md_calls():
  x = jnp.asarray(np.random.default_rng(0).uniform(-1, 1, (2, 8, 8, 3)), jnp.float32)
  t = jnp.array([0.2, 0.8])
  noise = jax.random.normal(jax.random.key(0), x.shape)
  assert corruptions.gaussian_blur(x, jnp.array([0.0, 2.0])).shape == x.shape
  corruption = corruptions.make(corruptions.CorruptionConfig())
  assert corruption.apply(x, t).shape == x.shape
  assert corruption.noise_std(t).shape == (2,)
  assert corruption.corrupt(x, t, noise).shape == x.shape
  denoise_fn = lambda x_t, t: x_t
  assert losses.soft_score_matching_loss(denoise_fn, x, t, noise, corruption).shape == ()
  for sampler in (samplers.momentum_sampler, samplers.naive_sampler):
    assert sampler(denoise_fn, x, corruption, num_steps=2, key=jax.random.key(1)).shape == x.shape
  assert set(samplers.SAMPLERS) == {
    "momentum",
    "naive",
    "deterministic",
    "ancestral",
    "pc",
    "multistep",
    "multistep_sde",
  }
  assert set(corruptions.REGISTRY) == {"blur", "mask", "identity"}
  assert callable(level_selection.select_blur_levels) and callable(schedules.make_blur_schedule)
  assert soft_diffusion.__version__


@dataclasses.dataclass(frozen=True)
class Downsample:
  """A user's own linear corruption, not registered anywhere: average-pool-then-upsample mixed
  with the identity, with constant noise."""

  def apply(self, x, t):
    b, h, w, c = x.shape
    pooled = x.reshape(b, h // 2, 2, w // 2, 2, c).mean(axis=(2, 4))
    up = jnp.repeat(jnp.repeat(pooled, 2, axis=1), 2, axis=2)
    a = t[:, None, None, None]
    return (1 - a) * x + a * up

  def noise_std(self, t):
    return jnp.full_like(t, 0.05)

  def corrupt(self, x0, t, noise):
    return self.apply(x0, t) + 0.05 * noise


def test_loss_and_samplers_take_any_object_with_the_three_methods():
  corruption = Downsample()
  x0 = jnp.asarray(np.random.default_rng(1).uniform(-1, 1, (2, 4, 4, 1)), jnp.float32)
  t = jnp.array([0.5, 1.0])
  noise = jax.random.normal(jax.random.key(0), x0.shape)
  assert float(losses.soft_score_matching_loss(lambda x_t, t: x0, x0, t, noise, corruption)) == 0.0
  out = jax.jit(
    lambda x: samplers.momentum_sampler(lambda x_t, t: x_t, x, corruption, num_steps=3, key=jax.random.key(2))
  )(x0)
  assert out.shape == x0.shape and bool(jnp.all(jnp.isfinite(out)))


TRAINING_EXTRAS = (
  "optax",
  "orbax",
  "grain",
  "clu",
  "ml_collections",
  "tensorflow",
  "tensorflow_datasets",
  "sklearn",
  "matplotlib",
  "PIL",
)

_LIGHT_IMPORT = """
import importlib.abc, sys
BLOCKED = set(sys.argv[1].split(","))
class Block(importlib.abc.MetaPathFinder):
  def find_spec(self, name, path=None, target=None):
    if name.split(".")[0] in BLOCKED:
      raise ImportError(f"{name} is not installed (a base install has no training extras)")
sys.meta_path.insert(0, Block())
for name in BLOCKED:  # the blocker works (these are installed here)
  try:
    __import__(name)
  except ImportError:
    continue
  raise SystemExit(f"{name} imported despite the blocker")
import jax, jax.numpy as jnp, numpy as np
import soft_diffusion
from soft_diffusion import corruptions, dct, evaluation, gaussian_field, level_selection, losses, models
from soft_diffusion import priors, samplers, schedules
from soft_diffusion.evaluation import exact
blur = corruptions.make(corruptions.CorruptionConfig(name="blur", blur_sigma_max=2.0))
x = jnp.zeros((2, 8, 8, 3))
y = blur.apply(x, jnp.array([0.5, 1.0]))
cfg = {"name": "unet", "channels": 4, "channel_mult": (1, 2), "attention_resolutions": ()}
net = models.make_network(models.network_config(cfg))
print("ok", y.shape, type(net).__name__, evaluation.fid.__name__, exact.frechet_distance.__name__)
"""


def test_the_functional_api_needs_no_training_extras():
  """The base install (jax, flax, numpy) is enough for the functional API: it imports and runs with
  every training/data/figure package made unimportable."""
  proc = subprocess.run(
    [sys.executable, "-c", _LIGHT_IMPORT, ",".join(TRAINING_EXTRAS)],
    capture_output=True,
    text=True,
    timeout=300,
    env={**os.environ, "JAX_PLATFORMS": "cpu"},
  )
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert proc.stdout.startswith("ok (2, 8, 8, 3) UNet fid frechet_distance"), proc.stdout
