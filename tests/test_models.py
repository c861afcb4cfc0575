"""The U-Net φ_θ, its config, and the denoiser wrapper h_θ = φ_θ + x_t."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from soft_diffusion.models import UNet, UNetConfig, make_denoise_fn, timestep_embedding

TINY = UNetConfig(channels=8, channel_mult=(1, 2), num_res_blocks=1, attention_resolutions=(4,), dropout=0.5)


@pytest.fixture(scope="module")
def tiny():
  model = UNet(TINY)
  x = jax.random.normal(jax.random.key(0), (2, 8, 8, 3))
  t = jnp.array([0.1, 0.9])
  params = jax.jit(model.init)(jax.random.key(1), x, t)["params"]
  return model, params, x, t


def test_output_shape_and_zero_initialised_residual(tiny):
  model, params, x, t = tiny
  out = jax.jit(make_denoise_fn(model, params))(x, t)
  assert out.shape == x.shape and out.dtype == jnp.float32
  # the output conv starts at zero, so h = x_t at initialisation
  np.testing.assert_array_equal(out, x)


def test_network_depends_on_t_and_dropout_only_in_training(tiny):
  model, params, x, t = tiny
  params = jax.tree.map(lambda p: p + 0.05 * jnp.ones_like(p), params)  # leave the zero init
  eval_fn = jax.jit(make_denoise_fn(model, params))
  assert not np.allclose(eval_fn(x, t), eval_fn(x, t[::-1]))
  np.testing.assert_array_equal(eval_fn(x, t), eval_fn(x, t))
  train_fn = jax.jit(lambda key: make_denoise_fn(model, params, train=True, dropout_key=key)(x, t))
  a, b = train_fn(jax.random.key(2)), train_fn(jax.random.key(3))
  assert not np.allclose(a, b)
  with pytest.raises(ValueError, match="dropout_key is required"):
    make_denoise_fn(model, params, train=True)


def test_bfloat16_compute_keeps_float32_params_and_output(tiny):
  _, params, x, t = tiny
  model = UNet(dataclasses.replace(TINY, dtype="bfloat16"))
  out = jax.jit(model.apply)({"params": params}, x, t)
  assert out.dtype == jnp.float32
  shapes = jax.eval_shape(model.init, jax.random.key(1), x, t)
  assert all(p.dtype == jnp.float32 for p in jax.tree.leaves(shapes))


def test_timestep_embedding():
  emb = timestep_embedding(jnp.array([0.0, 0.5]), 16)
  assert emb.shape == (2, 16)
  np.testing.assert_allclose(emb[0, :8], 0.0)  # sin(0)
  np.testing.assert_allclose(emb[0, 8:], 1.0)  # cos(0)
  with pytest.raises(ValueError, match="must be even"):
    timestep_embedding(jnp.zeros(1), 7)


def test_spec_celeba64_architecture_size():
  # SPEC §6: 128 channels, multipliers (1, 2, 2, 2), 4 res blocks per level, attention at 16×16:
  # UNetConfig's defaults, which are configs/default.py's model block.
  model = UNet(UNetConfig())
  shapes = jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.zeros((1, 64, 64, 3)), jnp.zeros(1)))
  count = sum(v.size for v in jax.tree.leaves(shapes))
  assert count == 57_354_883, f"celeba64 U-Net has {count:,} parameters, not the 57,354,883 recorded in README.md"


@pytest.mark.parametrize(
  "field, value, match",
  [
    ("channels", 0, "config.model.channels must be an int >= 1"),
    ("channel_mult", (), "config.model.channel_mult must be a non-empty tuple"),
    ("dropout", 1.0, r"config.model.dropout must be in \[0, 1\)"),
    ("dtype", "float16", "config.model.dtype must be 'float32' or 'bfloat16'"),
  ],
)
def test_config_rejects_bad_values(field, value, match):
  with pytest.raises(ValueError, match=match):
    UNetConfig(**{field: value})


def test_config_takes_lists_as_tuples():
  assert UNetConfig(channel_mult=[1, 2], attention_resolutions=[]) == UNetConfig(
    channel_mult=(1, 2), attention_resolutions=()
  )
