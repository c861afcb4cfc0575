"""Restoration (soft_diffusion/restoration.py) and its exact reference (gaussian_field.posterior,
evaluation/posterior.py), on small Gaussian fields with the oracle denoiser."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from soft_diffusion import corruptions, dct, gaussian_field, restoration, samplers, schedules
from soft_diffusion.evaluation import posterior as posterior_metrics
from soft_diffusion.run.workdir import Workdir

SIZE = (6, 5)


def blur_corruption():
  return corruptions.Corruption(
    corruptions.BlurOperator(schedules.LogBlurSchedule(0.05, 3.0)), schedules.clipped_geometric_noise(0.01, 0.2, 0.5)
  )


def mask_corruption():
  return corruptions.Corruption(corruptions.MaskOperator("random", 0.25, 1.0, 3), schedules.constant_noise(0.05))


def pixel_prior(v):
  """The field's covariance over row-major pixels (one channel), by the dense DCT matrix."""
  d2 = np.kron(dct.dct_matrix(v.shape[0]), dct.dct_matrix(v.shape[1]))
  return d2.T @ np.diag(v.reshape(-1)) @ d2


def dense(degradation):
  """A as a dense matrix over row-major pixels, by applying it to every unit image."""
  h, w = degradation.shape
  units = np.eye(h * w).reshape(h * w, h, w, 1)
  return np.asarray(degradation.apply(jnp.asarray(units, jnp.float32)), np.float64).reshape(h * w, h * w).T


def condition(sigma, a, noise_var, y):
  """Textbook Gaussian conditioning of x ~ N(0, sigma) on y = a x + noise: (mean, cov)."""
  gain = sigma @ a.T @ np.linalg.inv(a @ sigma @ a.T + noise_var * np.eye(a.shape[0]))
  return gain @ y, sigma - gain @ a @ sigma


DEGRADATIONS = {
  "blur": lambda: restoration.gaussian_blur(1.2, *SIZE),
  "box": lambda: restoration.box_blur(3, *SIZE),
  "random_mask": lambda: restoration.random_mask(0.5, *SIZE, seed=1),
  "lower_half": lambda: restoration.box_mask((3, 6), (0, 5), *SIZE),
}


@pytest.mark.parametrize("name", sorted(DEGRADATIONS))
def test_exact_posterior_is_brute_force_gaussian_conditioning(name):
  degradation = DEGRADATIONS[name]()
  v = gaussian_field.spectrum(*SIZE, k0=1.5)
  rng = np.random.default_rng(0)
  y = rng.standard_normal((3, *SIZE, 2)) * 0.3
  post = gaussian_field.posterior(v, degradation, 0.05, y)
  a = dense(degradation)
  sigma = pixel_prior(v)
  d2 = np.kron(dct.dct_matrix(SIZE[0]), dct.dct_matrix(SIZE[1]))
  for b in range(3):
    for c in range(2):
      mean, cov = condition(sigma, a, 0.05**2, y[b, :, :, c].reshape(-1))
      np.testing.assert_allclose(post.mean[b, :, :, c].reshape(-1), mean, atol=2e-6)
  np.testing.assert_allclose(d2.T @ post.cov @ d2, cov, atol=1e-6)
  np.testing.assert_allclose(post.pixel_std().reshape(-1), np.sqrt(np.diag(cov)), rtol=1e-5)
  assert post.mmse() == pytest.approx(np.trace(cov) / cov.shape[0])


def test_box_blur_is_the_symmetric_convolution_it_claims():
  x = np.random.default_rng(1).standard_normal((1, *SIZE, 1))
  padded = np.pad(x[0, :, :, 0], 1, mode="symmetric")
  direct = sum(padded[i : i + SIZE[0], j : j + SIZE[1]] for i in range(3) for j in range(3)) / 9
  np.testing.assert_allclose(
    np.asarray(restoration.box_blur(3, *SIZE).apply(jnp.asarray(x, jnp.float32)))[0, :, :, 0], direct, atol=1e-5
  )


def test_bad_operators_and_observations_are_one_line_errors():
  with pytest.raises(ValueError, match="odd int"):
    restoration.box_blur(2, *SIZE)
  with pytest.raises(ValueError, match="fraction"):
    restoration.random_mask(0.0, *SIZE)
  with pytest.raises(ValueError, match="rows"):
    restoration.box_mask((4, 2), (0, 5), *SIZE)
  with pytest.raises(ValueError, match=r"y must be \[B, 6, 5, C\]"):
    restoration.restore_native(
      samplers.momentum_sampler, None, jnp.zeros((1, 4, 4, 1)), blur_corruption(), DEGRADATIONS["blur"](), 0.05,
      num_steps=2, key=jax.random.key(0),
    )  # fmt: skip


def test_native_level_matches_the_models_own_level_and_refuses_what_it_cannot_use():
  corruption = blur_corruption()
  t0 = 0.4
  sigma_b = float(corruption.operator.sigma_schedule(jnp.float32(t0)))
  s_t0 = float(corruption.noise_std(jnp.float32(t0)))
  own = restoration.gaussian_blur(sigma_b, *SIZE)
  start = restoration.native_level(corruption, own, s_t0)  # A = C_t0 and σ_y = s_t0: nothing lost
  assert start.t == pytest.approx(t0, abs=1e-4)
  np.testing.assert_allclose(start.scale, 1.0, atol=1e-3)
  np.testing.assert_allclose(start.noise_std, 0.0, atol=0.01 * s_t0)
  # Less noise: an earlier level qualifies, less blurred (b = c_t/a > 1 amplifies y, and its noise
  # σ_y b still fits under s_t), so less of y is lost than by topping up the noise at t0.
  start = restoration.native_level(corruption, own, 0.5 * s_t0)
  assert start.t < t0 - 0.01 and start.scale.max() > 1
  # More noise than s_t0: a later level, where s_t is large enough (and the blur is stronger).
  later = restoration.native_level(corruption, own, 1.5 * s_t0)
  assert later.t > t0 + 0.01
  # x_{t*} = b y + extra has mean c x_0 and variance s² in every coefficient: the forward law.
  for sigma_y, st in ((0.5 * s_t0, start), (1.5 * s_t0, later)):
    _, c = corruption.diagonal(jnp.full((1,), st.t), *SIZE)
    np.testing.assert_allclose(st.scale * own.multipliers, np.asarray(c[0]), rtol=1e-4, atol=1e-7)
    s = float(corruption.noise_std(jnp.float32(st.t)))
    np.testing.assert_allclose((sigma_y * st.scale) ** 2 + st.noise_std**2, s**2, rtol=1e-5)
  with pytest.raises(ValueError, match="sigma_y <= s_t"):
    restoration.native_level(corruption, own, 0.5)  # s_1 = 0.2
  with pytest.raises(ValueError, match="use the guided method"):
    restoration.native_level(corruption, DEGRADATIONS["random_mask"](), 0.01)  # pixel operator, DCT model
  # A random mask removes pixels the model's own masks keep until t ≈ 1: native sees almost nothing.
  assert restoration.native_level(mask_corruption(), DEGRADATIONS["random_mask"](), 0.01).t > 0.9
  masked = mask_corruption()
  m = np.asarray(masked.diagonal(jnp.full((1,), 0.5), *SIZE)[1][0])
  start = restoration.native_level(masked, restoration.Degradation("pixel", m, "own mask"), 0.05)
  assert start.t == pytest.approx(0.5, abs=1e-4)


def test_reverse_process_starts_at_t_start():
  def denoise(x, t):  # reports the level it was called at
    return jnp.broadcast_to(t[:, None, None, None], x.shape).astype(x.dtype)

  corruption = blur_corruption()
  x = jnp.zeros((2, *SIZE, 1))
  key = jax.random.key(0)
  x0_hats = samplers.naive_sampler(denoise, x, corruption, num_steps=4, key=key, trace=True, t_start=0.5).x0_hats
  np.testing.assert_allclose(np.asarray(x0_hats)[:, 0, 0, 0, 0], [0.5, 0.375, 0.25, 0.125], rtol=1e-6)
  a = samplers.momentum_sampler(denoise, x, corruption, num_steps=4, key=key)
  b = samplers.momentum_sampler(denoise, x, corruption, num_steps=4, key=key, t_start=1.0)
  np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
  with pytest.raises(ValueError, match="t_start"):
    samplers.momentum_sampler(denoise, x, corruption, num_steps=4, key=key, t_start=0.0)


@pytest.mark.parametrize("name", ["blur", "lower_half", "random_mask"])
def test_guided_denoiser_with_the_oracle_is_the_conditional_mean(name):
  """For Gaussian data and a blur corruption Σ_t is exact, so the guided denoiser is E[x_0 | x_t, y]
  (brute-force conditioning on both): closed form for a DCT-diagonal A, by conjugate gradients
  for a pixel mask."""
  corruption = blur_corruption()
  degradation = DEGRADATIONS[name]()
  v = gaussian_field.spectrum(*SIZE, k0=1.5)
  rng = np.random.default_rng(2)
  x0 = dct.idct2_host(np.sqrt(v)[None, :, :, None] * rng.standard_normal((2, *SIZE, 1)))
  t = jnp.full((2,), 0.3)
  c_op = dense(restoration.gaussian_blur(float(corruption.operator.sigma_schedule(jnp.float32(0.3))), *SIZE))
  s = float(corruption.noise_std(jnp.float32(0.3)))
  x_t = np.einsum("ij,bj->bi", c_op, x0.reshape(2, -1)) + s * rng.standard_normal((2, np.prod(SIZE)))
  y = np.asarray(degradation.apply(jnp.asarray(x0, jnp.float32)), np.float64) + 0.05 * rng.standard_normal(x0.shape)
  oracle = gaussian_field.oracle_denoiser(corruption, v)
  guided = restoration.guided_denoiser(oracle, jnp.asarray(y, jnp.float32), corruption, degradation, 0.05, v)
  got = np.asarray(guided(jnp.asarray(x_t.reshape(2, *SIZE, 1), jnp.float32), t), np.float64).reshape(2, -1)
  a = dense(degradation)
  joint_op = np.concatenate([c_op, a])
  noise = np.diag(np.concatenate([np.full(len(c_op), s**2), np.full(len(a), 0.05**2)]))
  sigma = pixel_prior(v)
  gain = sigma @ joint_op.T @ np.linalg.inv(joint_op @ sigma @ joint_op.T + noise)
  want = np.einsum("ij,bj->bi", gain, np.concatenate([x_t, y.reshape(2, -1)], axis=1))
  error = np.sqrt(np.mean((got - want) ** 2)) / np.sqrt(np.mean(want**2))
  assert error < 1e-4, error


@pytest.fixture(scope="module")
def field_problem():
  """8×8 fields, one channel, blurred by the model's own C_t0 with σ_y = s_t0 (nothing lost)."""
  corruption = blur_corruption()
  size = (8, 8)
  v = gaussian_field.spectrum(*size, k0=1.5)
  t0 = 0.5
  degradation = restoration.gaussian_blur(float(corruption.operator.sigma_schedule(jnp.float32(t0))), *size)
  sigma_y = float(corruption.noise_std(jnp.float32(t0)))
  rng = np.random.default_rng(3)
  truth = dct.idct2_host(np.sqrt(v)[None, :, :, None] * rng.standard_normal((16, *size, 1)))
  y = np.asarray(degradation.observe(jnp.asarray(truth, jnp.float32), sigma_y, jax.random.key(4)), np.float64)
  return corruption, v, degradation, sigma_y, truth, y, gaussian_field.posterior(v, degradation, sigma_y, y)


def test_exact_posterior_samples_score_as_documented(field_problem):
  *_, truth, _, post = field_problem
  samples = posterior_metrics.exact_samples(post, 64, np.random.default_rng(5))
  m = posterior_metrics.restoration_metrics(samples, truth, post)
  print(m)
  assert m["estimate_mse_ratio"] == pytest.approx(1 + 1 / 64, rel=0.15)
  assert m["sample_mse_ratio"] == pytest.approx(1.0, rel=0.1)
  assert m["coverage"] == pytest.approx(0.9 * 63 / 65, abs=0.02)
  overconfident = post.mean[None] + 0.5 * (samples - post.mean[None])
  m_bad = posterior_metrics.restoration_metrics(overconfident, truth, post)
  assert m_bad["coverage"] < 0.7 and m_bad["residual_fd"] > 3 * m["residual_fd"]


def test_native_restoration_with_the_oracle_samples_the_exact_posterior(field_problem):
  corruption, v, degradation, sigma_y, truth, y, post = field_problem
  oracle = gaussian_field.oracle_denoiser(corruption, v)
  start = restoration.native_level(corruption, degradation, sigma_y)
  k = 48
  y_k = jnp.asarray(np.tile(y, (k, 1, 1, 1)), jnp.float32)

  @jax.jit
  def run(key):
    return restoration.restore_native(
      samplers.ancestral_sampler, oracle, y_k, corruption, degradation, sigma_y, num_steps=100, key=key, start=start
    )

  samples = np.asarray(run(jax.random.key(6)), np.float64).reshape(k, *truth.shape)
  m = posterior_metrics.restoration_metrics(samples, truth, post)
  exact = posterior_metrics.restoration_metrics(
    posterior_metrics.exact_samples(post, k, np.random.default_rng(7)), truth, post
  )
  print(f"native (ancestral), oracle, 100 NFE: {m}\nexact samples: {exact}")
  assert m["estimate_mse_ratio"] <= 1.1 * exact["estimate_mse_ratio"]
  assert m["sample_mse_ratio"] == pytest.approx(1.0, abs=0.1)
  assert m["coverage"] == pytest.approx(exact["coverage"], abs=0.04)
  assert m["residual_fd"] <= 2.0 * exact["residual_fd"]


def test_mode_restore_writes_samples_figures_and_scores_and_answers_bad_input_in_one_line(
  trained_run, tiny_config, tmp_path
):
  """--mode restore (in this process) on the 2-step tiny run: the validation digits degraded here,
  then the same observations given back as an .npz (no truth); errors name the field."""
  import shutil

  from soft_diffusion import errors
  from soft_diffusion.run.modes import restore

  workdir = tmp_path / "run"
  shutil.copytree(trained_run, workdir)
  r = tiny_config.restore
  r.num_images, r.num_samples, r.num_steps, r.batch_size, r.sigma_y = 3, 2, 3, 8, 0.05
  out = restore.restore(Workdir.of(str(workdir)).settings(tiny_config), str(workdir))
  assert out.name == "gaussian_blur_1_s0.05_native"
  with np.load(out / "restorations.npz") as f:
    assert f["samples_trained"].shape == (2, 3, 8, 8, 1) and f["truth"].shape == (3, 8, 8, 1)
    np.testing.assert_allclose(f["estimate_trained"], f["samples_trained"].mean(axis=0), rtol=1e-6, atol=1e-6)
    y = f["y"]
  metrics = __import__("json").loads((out / "metrics.json").read_text())
  assert 0 < metrics["t_start"] < 1 and {"observation", "wiener"} <= set(metrics["baselines"])
  assert np.isfinite(metrics["trained"]["estimate"]["psnr"]) and (out / "restore_trained.png").exists()

  np.savez(tmp_path / "y.npz", y=y)
  r.input, r.method = str(tmp_path / "y.npz"), "guided"
  out = restore.restore(Workdir.of(str(workdir)).settings(tiny_config), str(workdir))
  with np.load(out / "restorations.npz") as f:
    assert "truth" not in f and f["samples_trained"].shape == (2, 3, 8, 8, 1)
  assert "baselines" not in __import__("json").loads((out / "metrics.json").read_text())

  np.savez(tmp_path / "wrong.npz", y=np.zeros((2, 16, 16, 1), np.float32))
  bad = {
    "sigma_y <= s_t": {"input": "", "method": "native", "sigma_y": 0.9},
    r"images must be \[N, 8, 8, 1\]": {"input": str(tmp_path / "wrong.npz")},
    "does not exist": {"input": str(tmp_path / "nope.npz")},
    "multiple of the 1 devices|batch_size": {"input": "", "batch_size": 0},
  }
  for message, overrides in bad.items():
    for key, value in overrides.items():
      r[key] = value
    with pytest.raises((errors.UserError, ValueError), match=message):
      restore.restore(Workdir.of(str(workdir)).settings(tiny_config), str(workdir))
    r.batch_size, r.sigma_y = 8, 0.05


@pytest.mark.parametrize("name", ["blur", "random_mask"])
def test_guided_init_draws_x1_given_y_exactly_for_gaussian_data(name):
  """Matheron's rule with the true spectrum: x_1 ~ N(C_1 μ(y), C_1 Σ C_1ᵀ + s_1² I), checked on
  4,000 draws for one observation (mean to 4 standard errors, variances to 8 %)."""
  corruption = blur_corruption()
  degradation = DEGRADATIONS[name]()
  v = gaussian_field.spectrum(*SIZE, k0=1.5)
  y = np.random.default_rng(8).standard_normal((1, *SIZE, 1)) * 0.3
  post = gaussian_field.posterior(v, degradation, 0.05, y)
  n = 4000
  x1 = restoration.guided_init(
    jnp.asarray(np.repeat(y, n, axis=0), jnp.float32), corruption, degradation, 0.05, np.zeros((*SIZE, 1)), v,
    jax.random.key(9),
  )  # fmt: skip
  coeffs = dct.dct2_host(np.asarray(x1, np.float64))[..., 0].reshape(n, -1)
  c = np.asarray(corruption.diagonal(jnp.ones(1), *SIZE)[1][0], np.float64).reshape(-1)
  s1 = float(corruption.noise_std(jnp.float32(1.0)))
  mean = c * dct.dct2_host(post.mean)[0, :, :, 0].reshape(-1)
  var = c**2 * np.diag(post.cov) + s1**2
  assert np.all(np.abs(coeffs.mean(axis=0) - mean) <= 4 * np.sqrt(var / n) + 1e-6)
  np.testing.assert_allclose(coeffs.var(axis=0), var, rtol=0.08)


def test_ancestral_step_is_momentums_mean_with_ddpms_variance_for_ve_and_random_under_constant_noise():
  ve = corruptions.Corruption(corruptions.IdentityOperator(), schedules.geometric_noise(0.01, 1.0))
  rng = np.random.default_rng(10)
  x_t, x0_hat, noise = (jnp.asarray(rng.standard_normal((2, *SIZE, 1)), jnp.float32) for _ in range(3))
  t, u = jnp.full((2,), 0.6), jnp.full((2,), 0.5)
  zero = jnp.zeros_like(noise)
  np.testing.assert_allclose(
    np.asarray(samplers.ancestral_update(ve, x_t, x0_hat, t, u, zero)),
    np.asarray(samplers.momentum_update(ve, x_t, x0_hat, t, u, zero)),
    rtol=1e-5, atol=1e-6,
  )  # fmt: skip
  s_t, s_u = float(ve.noise_std(jnp.float32(0.6))), float(ve.noise_std(jnp.float32(0.5)))
  spread = samplers.ancestral_update(ve, x_t, x0_hat, t, u, noise) - samplers.ancestral_update(
    ve, x_t, x0_hat, t, u, zero
  )
  np.testing.assert_allclose(
    np.asarray(spread), np.asarray(noise) * s_u * np.sqrt(s_t**2 - s_u**2) / s_t, rtol=1e-4, atol=1e-6
  )
  # Blur under constant noise: the Momentum step ignores its noise, the ancestral one does not.
  blur = corruptions.Corruption(
    corruptions.BlurOperator(schedules.LogBlurSchedule(0.05, 3.0)), schedules.constant_noise(0.1)
  )
  for update, random in ((samplers.momentum_update, False), (samplers.ancestral_update, True)):
    moved = update(blur, x_t, x0_hat, t, u, noise) - update(blur, x_t, x0_hat, t, u, zero)
    assert (float(jnp.max(jnp.abs(moved))) > 1e-3) == random, update.__name__
