"""The per-coefficient preconditioning (soft_diffusion/preconditioning.py, docs/method.md §2.4):
EDM's for C_t = I and a flat spectrum, a unit-variance target per coefficient on the fields, F = 0
exact for Gaussian data, its loss, its checks, and a tiny training run through the program."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from soft_diffusion import corruptions, dct, gaussian_field, losses, preconditioning
from soft_diffusion.run.workdir import Workdir

H = W = 8


def toy_network(x, t):
  """A fixed nonlinear F(input, t): any function works for the identities tested here."""
  return jnp.sin(1.3 * x) + 0.2 * t[:, None, None, None] * x**2


def edm_reference(sigma, sigma_data):
  """EDM's preconditioning (Karras et al. 2022, Table 1) written out for one σ per example:
  D = c_skip x + c_out F(c_in x), λ = (σ² + σ_d²)/(σ σ_d)², loss λ · mean (D - y)²."""
  sigma = np.asarray(sigma, np.float64)[:, None, None, None]
  c_skip = sigma_data**2 / (sigma**2 + sigma_data**2)
  c_out = sigma * sigma_data / np.sqrt(sigma**2 + sigma_data**2)
  c_in = 1.0 / np.sqrt(sigma**2 + sigma_data**2)
  weight = (sigma**2 + sigma_data**2) / (sigma * sigma_data) ** 2
  return c_skip, c_out, c_in, weight


@pytest.mark.parametrize("c_in", preconditioning.C_IN_FORMS)
def test_identity_with_a_flat_spectrum_is_edm(c_in, rng):
  sigma_data = 0.5
  corruption = corruptions.make(
    {"name": "identity", "noise_schedule": "geometric", "noise_std_min": 0.002, "noise_std_max": 80.0}
  )
  precond = preconditioning.Preconditioner(corruption, np.full((H, W), sigma_data**2), c_in=c_in)
  t = np.array([0.0, 0.2, 0.5, 0.9, 1.0], np.float32)
  y = rng.uniform(-1, 1, (5, H, W, 3)).astype(np.float32)
  noise = rng.standard_normal(y.shape).astype(np.float32)
  sigma = np.asarray(corruption.noise_std(t), np.float64)
  ref_skip, ref_out, ref_in, ref_weight = edm_reference(sigma, sigma_data)

  _, c_skip, c_out, c_in_value = precond.coefficients(jnp.asarray(t), y.shape)
  np.testing.assert_allclose(np.broadcast_to(c_skip, y.shape), np.broadcast_to(ref_skip, y.shape), rtol=2e-6)
  np.testing.assert_allclose(np.broadcast_to(c_out, y.shape), np.broadcast_to(ref_out, y.shape), rtol=2e-6)
  np.testing.assert_allclose(np.broadcast_to(c_in_value, y.shape), np.broadcast_to(ref_in, y.shape), rtol=2e-6)

  x = y + sigma[:, None, None, None] * noise  # EDM's noised input
  d_edm = ref_skip * x + ref_out * np.asarray(toy_network(jnp.asarray(ref_in * x, jnp.float32), jnp.asarray(t)))
  d_ours = np.asarray(precond.denoise_fn(toy_network)(jnp.asarray(x, jnp.float32), jnp.asarray(t)))
  np.testing.assert_allclose(d_ours, d_edm, rtol=1e-4, atol=1e-4 * np.abs(d_edm).max())

  edm_loss = np.mean(ref_weight[:, 0, 0, 0] * np.mean((d_edm - y) ** 2, axis=(1, 2, 3)))
  ours = losses.preconditioned_loss(toy_network, y, t, noise, precond)
  np.testing.assert_allclose(float(ours), edm_loss, rtol=2e-4)


def test_the_loss_weighs_each_coefficient_by_one_over_c_out_squared(rng):
  """The loss equals mean_k ((B x̂_0 - B x_0)(k)/c_out(k))², the estimate's error weighted by
  1/c_out² in the corruption's basis (blur: the DCT)."""
  corruption = corruptions.make({"name": "blur", "blur_sigma_max": 3.0})
  power = gaussian_field.spectrum(H, W)
  precond = preconditioning.Preconditioner(corruption, power, c_in="coefficient")
  x0 = rng.standard_normal((3, H, W, 2)).astype(np.float32) * 0.3
  noise = rng.standard_normal(x0.shape).astype(np.float32)
  t = np.array([0.1, 0.5, 0.95], np.float32)
  x_t = corruption.corrupt(x0, t, noise)
  x0_hat = precond.denoise_fn(toy_network)(x_t, jnp.asarray(t))
  _, _, c_out, _ = precond.coefficients(jnp.asarray(t), x0.shape)
  weighted = (dct.dct2_host(np.asarray(x0_hat)) - dct.dct2_host(x0)) / np.asarray(c_out, np.float64)
  expected = np.mean(weighted**2)
  got = losses.preconditioned_loss(toy_network, x0, t, noise, precond)
  np.testing.assert_allclose(float(got), expected, rtol=1e-4)


@pytest.mark.parametrize("name", ["blur", "identity"])
def test_a_zero_network_is_the_exact_posterior_mean_for_gaussian_data(name, rng):
  corruption = corruptions.make({"name": name, "blur_sigma_max": 3.0})
  v = gaussian_field.spectrum(H, W)
  precond = preconditioning.Preconditioner(corruption, v)
  x_t = jnp.asarray(rng.standard_normal((4, H, W, 3)).astype(np.float32))
  t = jnp.array([0.0, 0.3, 0.7, 1.0])
  ours = precond.denoise_fn(lambda x, t: jnp.zeros_like(x))(x_t, t)
  exact = gaussian_field.oracle_denoiser(corruption, v)(x_t, t)
  np.testing.assert_allclose(ours, exact, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("c_in", preconditioning.C_IN_FORMS)
def test_the_target_has_unit_variance_at_every_coefficient_on_the_fields(c_in):
  """Gaussian fields (mean 0) with the true spectrum: the target (B x_0 - c_skip B x_t)/c_out has
  variance 1 at every DCT coefficient and time, and the whitened input ('coefficient') too."""
  corruption = corruptions.make({"name": "blur", "blur_sigma_max": 3.0})
  v = gaussian_field.spectrum(H, W)
  precond = preconditioning.Preconditioner(corruption, v, c_in=c_in)
  n = 4096
  gens = [np.random.default_rng(i) for i in range(n)]
  x0 = jnp.asarray(gaussian_field.field_images(np.sqrt(v), gens, channels=1))
  noise = jax.random.normal(jax.random.key(0), x0.shape)
  for time in (0.05, 0.4, 0.8, 1.0):
    t = jnp.full((n,), time)
    x_t = corruption.corrupt(x0, t, noise)
    target = precond.target(x0, x_t, t)
    np.testing.assert_allclose(precond.target_from_noise(x0, noise, t), target, rtol=1e-3, atol=1e-3)
    variance = np.var(dct.dct2_host(np.asarray(target)), axis=0)
    # the variance of a variance estimate of N = 4096 normal draws: √(2/N) = 0.022; 64 coefficients
    np.testing.assert_allclose(variance, 1.0, atol=0.1, err_msg=f"t = {time}")
    inputs = np.var(dct.dct2_host(np.asarray(precond.network_input(x_t, t))), axis=0)
    if c_in == "coefficient":
      np.testing.assert_allclose(inputs, 1.0, atol=0.1, err_msg=f"t = {time}")
    else:  # the total power of the input is 1
      assert abs(inputs.mean() - 1.0) < 0.05


def test_a_zero_network_scores_a_loss_of_one_on_any_data(tiny_config):
  """E[T(k)²] = 1 needs only that v is the data's second moment (docs/method.md §2.4): with v
  measured on a batch of real digits (not Gaussian, not centred), F = 0 scores a loss of 1
  averaged over the noise, at every time, for both corruptions the preconditioning serves."""
  from soft_diffusion.run import settings as settings_lib
  from soft_diffusion.run.modes import sample

  images = sample.load_training_images(settings_lib.load(tiny_config), 256)
  power = np.mean(dct.dct2_host(images.astype(np.float64)) ** 2, axis=0)
  x0 = jnp.asarray(np.tile(images, (8, 1, 1, 1)))
  noise = jax.random.normal(jax.random.key(1), x0.shape)
  zero = lambda x, t: jnp.zeros_like(x)  # noqa: E731
  for name in ("blur", "identity"):
    corruption = corruptions.make({"name": name, "blur_sigma_max": 3.0})
    precond = preconditioning.Preconditioner(corruption, power)
    for time in (0.1, 0.5, 0.9):
      t = jnp.full((x0.shape[0],), time)
      loss = float(losses.preconditioned_loss(zero, x0, t, noise, precond))
      assert abs(loss - 1.0) < 0.03, (name, time, loss)


def test_the_wrong_spectra_of_the_study():
  v = gaussian_field.spectrum(16, 16)
  flat = preconditioning.spectrum_for(v, "flat")
  assert np.allclose(flat, v.mean()) and flat.shape == (16, 16, 1)
  tilted = preconditioning.spectrum_for(v, "tilted")[..., 0]
  assert tilted.mean() == pytest.approx(v.mean())
  ratio = tilted / v  # ×2 per octave of the frequency radius
  assert ratio[0, 4] / ratio[0, 2] == pytest.approx(2.0) and ratio[6, 8] / ratio[3, 4] == pytest.approx(2.0)
  assert np.allclose(preconditioning.spectrum_for(v, "data")[..., 0], v)
  floored = preconditioning.spectrum_for(np.where(np.arange(16) < 8, 1.0, 0.0)[None].repeat(16, 0))
  assert floored.min() == pytest.approx(preconditioning.RELATIVE_FLOOR * 0.5)


def test_bad_input_is_one_line():
  blur = corruptions.make({"name": "blur"})
  v = gaussian_field.spectrum(H, W)
  with pytest.raises(ValueError, match=r"c_in must be one of \('scalar', 'coefficient'\)"):
    preconditioning.Preconditioner(blur, v, c_in="vector")
  with pytest.raises(ValueError, match="power must be a positive"):
    preconditioning.Preconditioner(blur, np.zeros((H, W)))
  with pytest.raises(ValueError, match="spectrum kind must be one of"):
    preconditioning.spectrum_for(v, "pink")
  with pytest.raises(ValueError, match=r"images \(2, 4, 4, 1\) do not match"):
    preconditioning.Preconditioner(blur, v).network_input(jnp.zeros((2, 4, 4, 1)), jnp.zeros(2))


def test_the_config_refuses_what_the_preconditioning_replaces(tiny_config):
  from soft_diffusion import errors
  from soft_diffusion.run import settings as settings_lib

  tiny_config.model.precond = "spectral"
  settings_lib.load(tiny_config)  # blur, uniform weighting: accepted
  cases = {
    ("loss", "floor", 0.3): "config.loss.floor",
    ("loss", "weighting", "inverse_noise_var"): "config.loss.weighting",
    ("model", "skip", "wiener"): "config.model.skip",
    ("corruption", "name", "mask"): "config.model.precond",
  }
  cases.update(
    {
      ("model", "output_scale", "noise_std"): "config.model.output_scale",
      ("loss", "lag", 0.02): "config.loss.lag",
      ("train", "t_lognormal_std", 0.0): "config.train.t_lognormal_std",
      ("train", "t_lognormal_mean", float("nan")): "config.train.t_lognormal_mean",
      ("sample", "final", "clean"): "config.sample.final",
    }
  )
  for (block, field, value), name in cases.items():
    config = tiny_config.copy_and_resolve_references()
    config[block][field] = value
    if field == "name":
      config.corruption.blur_schedule = "log"
    with pytest.raises(errors.ConfigError, match=name) as info:
      settings_lib.load(config)
    assert "\n" not in str(info.value)


def test_a_preconditioned_run_trains_and_samples(tiny_config, tmp_path):
  """model.precond = 'spectral' through the program: training writes the spectrum and learns with
  the preconditioned loss; sampling reads the spectrum back and draws finite images."""
  from soft_diffusion.run import settings as settings_lib
  from soft_diffusion.run.modes import sample, train

  tiny_config.model.precond = "spectral"
  tiny_config.model.precond_c_in = "coefficient"
  tiny_config.train.t_density = "lognormal"
  tiny_config.train.total_steps = 2
  tiny_config.sample.final = "denoise"
  metrics = train.run_training(Workdir.of(tmp_path).settings(tiny_config, resolve_levels=False), tmp_path)
  # the network's last layer starts at 0, so the first steps score the preconditioned loss of F = 0: about 1
  assert 0.7 < metrics["loss"] < 1.3 and (tmp_path / "spectrum.npz").exists()
  run = sample.load_run(Workdir.of(tmp_path).settings(tiny_config), tmp_path)
  assert isinstance(run.precond, preconditioning.Preconditioner) and run.precond.c_in == "coefficient"
  images = run.draw(num_images=8, progress=False)
  assert images.shape == (8, 8, 8, 1) and images.dtype == np.uint8
  # the run read (or resumed) with another parameterisation: one line naming the field, before any compile
  from soft_diffusion import errors

  paper = settings_lib.load({**tiny_config.to_dict(), "model": {**tiny_config.model.to_dict(), "precond": "none"}})
  for read in (lambda: sample.load_run(paper, tmp_path), lambda: train.run_training(paper, tmp_path)):
    with pytest.raises(errors.ConfigError, match="config.model.precond: checkpoint 2 in .* trained with 'spectral'"):
      read()
  # train.t_density = 'lognormal' with a mean no level reaches: one line naming the field
  tiny_config.train.t_lognormal_mean = 50.0
  tiny_config.train.total_steps = 4
  with pytest.raises(errors.ConfigError, match="config.train.t_lognormal_mean: the log-normal density has no mass"):
    train.run_training(Workdir.of(tmp_path).settings(tiny_config, resolve_levels=False), tmp_path)


def test_the_lognormal_density_draws_log_noise_to_signal_from_a_truncated_normal():
  """train.t_density = 'lognormal': for C_t = I (r = s_t/σ_data) ln r(t) of the drawn t follows
  N(mean, std²) truncated to [ln r(0), ln r(1)]: its mean and std match the truncated normal's."""
  from scipy import stats as scipy_stats

  corruption = corruptions.make(
    {"name": "identity", "noise_schedule": "geometric", "noise_std_min": 0.02, "noise_std_max": 20.0}
  )
  v = np.full((H, W), 0.25)  # σ_data = 0.5
  ratio = preconditioning.noise_to_signal(corruption, v, np.array([0.0, 0.5, 1.0]))
  np.testing.assert_allclose(ratio, np.asarray(corruption.noise_std(jnp.array([0.0, 0.5, 1.0]))) / 0.5, rtol=1e-5)
  draw = preconditioning.lognormal_time_sampler(corruption, v, mean=-0.5, std=1.2)
  t = np.asarray(jax.jit(draw, static_argnums=1)(jax.random.key(0), 200_000))
  assert t.min() >= 0.0 and t.max() <= 1.0
  log_r = np.log(np.asarray(corruption.noise_std(jnp.asarray(t))) / 0.5)
  lo, hi = np.log(0.02 / 0.5), np.log(20.0 / 0.5)
  law = scipy_stats.truncnorm((lo + 0.5) / 1.2, (hi + 0.5) / 1.2, loc=-0.5, scale=1.2)
  assert abs(log_r.mean() - law.mean()) < 0.01 and abs(log_r.std() - law.std()) < 0.01
  with pytest.raises(ValueError, match="std must be > 0"):
    preconditioning.lognormal_time_sampler(corruption, v, mean=0.0, std=0.0)
