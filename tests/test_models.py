"""The networks φ_θ (U-Net, NCSN++), their configs, and the denoiser wrapper h_θ = φ_θ + x_t."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from soft_diffusion import models
from soft_diffusion.models import NCSNpp, NCSNppConfig, UNet, UNetConfig, make_denoise_fn, ncsnpp, timestep_embedding

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


def test_output_scale_multiplies_the_network_output_by_the_noise_level(tiny):
  """model.output_scale = 'noise_std': h = x_t + s_t · φ (score_sde's scale_by_sigma)."""
  model, params, x, t = tiny
  params = jax.tree.map(lambda p: p + 0.05 * jnp.ones_like(p), params)
  scaled = UNet(dataclasses.replace(TINY, output_scale="noise_std"))
  noise_std = lambda t: 10.0 * t + 1.0
  phi = make_denoise_fn(model, params)(x, t) - x
  h = make_denoise_fn(scaled, params, noise_std=noise_std)(x, t)
  np.testing.assert_allclose(h - x, phi * noise_std(t)[:, None, None, None], rtol=1e-5, atol=1e-5)
  with pytest.raises(ValueError, match="needs noise_std"):
    make_denoise_fn(scaled, params)


def test_wiener_skip_is_the_linear_mmse_estimate_and_replaces_x_t(tiny):
  """model.skip = 'wiener': h = S_t x_t + φ with S_t = c v / (c² v + s²) per DCT coefficient: at
  initialisation (φ = 0) h is that estimate, which for Gaussian data of spectrum v is the exact
  posterior mean (gaussian_field.oracle_denoiser); where v = 0 it returns 0, not x_t."""
  from soft_diffusion import corruptions, dct, gaussian_field

  model, params, x, t = tiny
  wiener = UNet(dataclasses.replace(TINY, skip="wiener"))
  corruption = corruptions.make({"name": "blur", "blur_sigma_max": 2.0})
  v = gaussian_field.spectrum(8, 8)
  v[5:, :] = 0.0  # no power in the top rows of frequencies
  skip = models.wiener_skip(corruption, np.repeat(v[:, :, None], 3, axis=-1))
  h = jax.jit(make_denoise_fn(wiener, params, skip=skip))(x, t)
  oracle = gaussian_field.oracle_denoiser(corruption, np.maximum(v, 1e-9))
  np.testing.assert_allclose(h, oracle(x, t), rtol=1e-4, atol=1e-5)
  assert np.abs(np.asarray(dct.dct2(h))[:, 5:]).max() < 1e-5
  moved = jax.tree.map(lambda p: p + 0.05 * jnp.ones_like(p), params)
  phi = make_denoise_fn(model, moved)(x, t) - x
  np.testing.assert_allclose(make_denoise_fn(wiener, moved, skip=skip)(x, t) - skip(x, t), phi, rtol=1e-4, atol=1e-5)
  with pytest.raises(ValueError, match="model.skip = 'wiener' needs skip"):
    make_denoise_fn(wiener, params)
  with pytest.raises(ValueError, match="set model.skip = 'wiener'"):
    make_denoise_fn(model, params, skip=skip)


def test_bfloat16_compute_keeps_float32_params_and_output(tiny):
  _, params, x, t = tiny
  model = UNet(dataclasses.replace(TINY, dtype="bfloat16"))
  out = jax.jit(model.apply)({"params": params}, x, t)
  assert out.dtype == jnp.float32
  shapes = jax.eval_shape(model.init, jax.random.key(1), x, t)
  assert all(p.dtype == jnp.float32 for p in jax.tree.leaves(shapes))


def test_the_configs_compute_in_bfloat16_on_gpu_and_tpu_and_float32_on_cpu(tiny):
  """model.dtype = 'auto' (configs/default.py): bfloat16 compute where matrix units are fast,
  float32 on the CPU; float32 parameters everywhere."""
  from soft_diffusion import models
  from soft_diffusion.run import schema, settings

  assert schema.default_config().model.dtype == "auto"
  _, params, x, t = tiny
  auto = dataclasses.replace(TINY, dtype="auto")
  assert settings.load(schema.default_config()).model.dtype == "auto"  # resolved where the network runs
  for backend, expected in (("gpu", "bfloat16"), ("tpu", "bfloat16"), ("cpu", "float32")):
    assert models.make_network(auto, backend=backend).config.dtype == expected
  traced = jax.make_jaxpr(UNet(auto).apply)({"params": params}, x, t)  # this machine: the CPU
  assert "bf16" not in str(traced)
  traced_bf16 = jax.make_jaxpr(models.make_network(auto, backend="gpu").apply)({"params": params}, x, t)
  assert "bf16" in str(traced_bf16)


def test_timestep_embedding():
  emb = timestep_embedding(jnp.array([0.0, 0.5]), 16)
  assert emb.shape == (2, 16)
  np.testing.assert_allclose(emb[0, :8], 0.0)  # sin(0)
  np.testing.assert_allclose(emb[0, 8:], 1.0)  # cos(0)
  with pytest.raises(ValueError, match="must be even"):
    timestep_embedding(jnp.zeros(1), 7)


def test_spec_celeba64_architecture_size():
  # docs/method.md §6: 128 channels, multipliers (1, 2, 2, 2), 4 res blocks per level, attention at 16×16:
  # UNetConfig's defaults, which are configs/default.py's model block.
  model = UNet(UNetConfig())
  shapes = jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.zeros((1, 64, 64, 3)), jnp.zeros(1)))
  count = sum(v.size for v in jax.tree.leaves(shapes))
  assert count == 57_354_883, f"celeba64 U-Net has {count:,} parameters, not the 57,354,883 recorded in docs/tests.md"


@pytest.mark.parametrize(
  "field, value, match",
  [
    ("channels", 0, "config.model.channels must be an int >= 1"),
    ("channel_mult", (), "config.model.channel_mult must be a non-empty tuple"),
    ("dropout", 1.0, r"config.model.dropout must be in \[0, 1\)"),
    ("dtype", "float16", "config.model.dtype must be 'auto', 'float32' or 'bfloat16'"),
  ],
)
def test_config_rejects_bad_values(field, value, match):
  with pytest.raises(ValueError, match=match):
    UNetConfig(**{field: value})


def test_config_takes_lists_as_tuples():
  assert UNetConfig(channel_mult=[1, 2], attention_resolutions=[]) == UNetConfig(
    channel_mult=(1, 2), attention_resolutions=()
  )


# ---- NCSN++ ------------------------------------------------------------------------------------

NCSNPP_TINY = NCSNppConfig(channels=8, channel_mult=(1, 2), num_res_blocks=1, attention_resolutions=(4,), dropout=0.0)


def numpy_fir_1d(x: np.ndarray, taps, *, up: bool) -> np.ndarray:
  """float64 reference along axis 1 of [B, N, ...]: StyleGAN2's upfirdn, written out.

  down: y[i] = Σ_j k_j x[2i + j - (K-2)/2] / Σk;  up: y[m] = 2 Σ_j k_j u[m + j - K/2] / Σk with
  u[2i] = x[i] and zeros between (k symmetric here)."""
  k = np.asarray(taps, np.float64) / np.sum(taps)
  n, size = x.shape[1], len(taps)
  if up:
    u = np.zeros((x.shape[0], 2 * n, *x.shape[2:]))
    u[:, ::2] = x
    out = np.zeros_like(u)
    for m in range(2 * n):
      for j in range(size):
        if 0 <= m + j - size // 2 < 2 * n:
          out[:, m] += 2 * k[j] * u[:, m + j - size // 2]
    return out
  out = np.zeros((x.shape[0], n // 2, *x.shape[2:]))
  for i in range(n // 2):
    for j in range(size):
      if 0 <= 2 * i + j - (size - 2) // 2 < n:
        out[:, i] += k[j] * x[:, 2 * i + j - (size - 2) // 2]
  return out


@pytest.mark.parametrize("up", [False, True], ids=["down", "up"])
def test_fir_resampling_matches_a_float64_reference(up, rng):
  x = rng.standard_normal((2, 6, 4, 3))
  taps = (1, 3, 3, 1)
  fn = ncsnpp.fir_upsample if up else ncsnpp.fir_downsample
  got = np.asarray(jax.jit(fn, static_argnums=1)(jnp.asarray(x, jnp.float32), taps), np.float64)
  want = numpy_fir_1d(np.swapaxes(numpy_fir_1d(x, taps, up=up), 1, 2), taps, up=up).swapaxes(1, 2)
  assert got.shape == want.shape == ((2, 12, 8, 3) if up else (2, 3, 2, 3))
  np.testing.assert_allclose(got, want, atol=1e-6)
  if up:  # per axis y[2i] = (x[i-1] + 3 x[i]) / 4 and y[2i+1] = (3 x[i] + x[i+1]) / 4, spelled out
    row = np.asarray(fn(jnp.asarray([0.0, 4.0, 0.0])[None, :, None, None] * jnp.ones((1, 3, 2, 1)), taps))[0, :, 2, 0]
    np.testing.assert_allclose(row, [0.0, 1.0, 3.0, 3.0, 1.0, 0.0], atol=1e-6)  # x = [0, 4, 0]


def test_ncsnpp_output_shape_near_zero_start_and_bfloat16():
  x = jax.random.normal(jax.random.key(0), (2, 8, 8, 3))
  t = jnp.array([0.1, 0.9])
  out, variables = jax.jit(NCSNpp(NCSNPP_TINY).init_with_output)(jax.random.key(1), x, t)
  params = variables["params"]
  assert out.shape == x.shape and out.dtype == jnp.float32
  assert float(jnp.abs(out).max()) < 1e-3  # init_scale 0: the output conv starts at ~1e-10 scale
  half = NCSNpp(dataclasses.replace(NCSNPP_TINY, dtype="bfloat16"))
  assert jax.jit(half.apply)({"params": params}, x, t).dtype == jnp.float32
  assert all(p.dtype == jnp.float32 for p in jax.tree.leaves(jax.eval_shape(half.init, jax.random.key(1), x, t)))


def test_ncsnpp_celeba64_size_and_flops_are_score_sdes():
  """docs/method.md §6 / score_sde's CelebA NCSN++ (nf 128, (1, 2, 2, 2), 4 blocks, attention at 16):
  62.69M parameters and 81.5 GFLOP per 64×64 image (XLA's count, 2 FLOP per multiply-add)."""
  cfg = models.network_config({"name": "ncsnpp"})  # the defaults: configs/default.py's model block
  model = models.make_network(cfg)
  x, t = jnp.zeros((1, 64, 64, 3)), jnp.zeros(1)
  params = jax.eval_shape(model.init, jax.random.key(0), x, t)
  count = sum(v.size for v in jax.tree.leaves(params))
  assert abs(count / 62.69e6 - 1) <= 0.005, f"NCSN++ has {count:,} parameters, score_sde's 62.69M"
  cost = jax.jit(model.apply).lower(params, x, t).cost_analysis()  # before optimisation: no compile
  flops = (cost[0] if isinstance(cost, (list, tuple)) else cost)["flops"]
  assert abs(flops / 81.5e9 - 1) <= 0.03, f"NCSN++ forward is {flops / 1e9:.2f} GFLOP per image, score_sde's 81.5"


def test_network_config_picks_the_network_and_guards_the_other_fields():
  assert isinstance(models.network_config({"name": "unet", "num_heads": 2}), UNetConfig)
  assert isinstance(models.network_config({"name": "ncsnpp", "num_heads": 1}), NCSNppConfig)  # at its default
  with pytest.raises(ValueError, match="config.model.fir_kernel must be left at"):
    models.network_config({"name": "unet", "fir_kernel": (1, 1)})
  with pytest.raises(ValueError, match="config.model.name must be one of"):
    models.network_config({"name": "resnet"})
  with pytest.raises(ValueError, match="config.model has unknown field"):
    models.network_config({"name": "unet", "chanels": 3})
