"""Soft Score Matching loss (docs/method.md §2)."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from soft_diffusion import corruptions, losses

B, H, W, C = 4, 8, 8, 2


@pytest.fixture
def batch(rng):
  x0 = rng.uniform(-1, 1, (B, H, W, C)).astype(np.float32)
  noise = rng.standard_normal((B, H, W, C)).astype(np.float32)
  t = np.array([0.05, 0.3, 0.6, 0.95], np.float32)
  return x0, t, noise


@pytest.mark.parametrize("name", sorted(corruptions.REGISTRY))
def test_perfect_denoiser_has_zero_loss(batch, name):
  x0, t, noise = batch
  loss = losses.soft_score_matching_loss(lambda x_t, t: jnp.asarray(x0), x0, t, noise, corruptions.make({"name": name}))
  assert float(loss) == 0.0


def test_loss_value_matches_the_formula(batch, rng):
  x0, t, noise = batch
  corruption = corruptions.make({"name": "blur"})
  offset = rng.standard_normal(x0.shape).astype(np.float32)

  def denoise_fn(x_t, t):
    return 0.5 * x_t + offset

  x_t = np.asarray(corruption.corrupt(x0, t, noise))
  residual = np.asarray(corruption.apply(denoise_fn(x_t, t) - x0, t))
  s = np.asarray(corruption.noise_std(t))
  per_example = np.mean(residual.astype(np.float64) ** 2, axis=(1, 2, 3))
  got = losses.soft_score_matching_loss(denoise_fn, x0, t, noise, corruption)
  np.testing.assert_allclose(got, per_example.mean(), rtol=1e-5)
  got_w = losses.soft_score_matching_loss(denoise_fn, x0, t, noise, corruption, weighting="inverse_noise_var")
  np.testing.assert_allclose(got_w, np.mean(per_example / s**2), rtol=1e-5)


def test_loss_ignores_what_the_corruption_removes(batch, rng):
  # At t = 0.6 the central mask has removed the middle pixels entirely (m_t = 0 there), so
  # changing the estimate on those pixels cannot change the loss; changing a visible one does.
  x0, _, noise = batch
  t = np.full(B, 0.6, np.float32)
  op = corruptions.MaskOperator("center", ramp_width=0.1)
  corruption = corruptions.make({"name": "mask", "mask_ramp_width": 0.1})
  removed = np.asarray(op.mask(jnp.asarray(t), H, W))[..., None] == 0.0
  assert removed.any() and not removed.all()
  base_estimate = rng.uniform(-1, 1, x0.shape).astype(np.float32)
  bump = rng.standard_normal(x0.shape).astype(np.float32)
  loss = lambda est: float(losses.soft_score_matching_loss(lambda x_t, t: jnp.asarray(est), x0, t, noise, corruption))
  assert loss(base_estimate + np.where(removed, bump, 0.0)) == pytest.approx(loss(base_estimate), rel=1e-6)
  assert loss(base_estimate + np.where(removed, 0.0, bump)) != pytest.approx(loss(base_estimate), rel=1e-3)


def test_floor_weighs_what_the_corruption_removes(batch, rng):
  """loss.floor = f compares A_t (h − x0) with A_t = (1 − f) C_t + f I: the formula holds, and an
  error on pixels the mask has removed now costs f² per pixel instead of nothing."""
  x0, _, noise = batch
  t = np.full(B, 0.6, np.float32)
  corruption = corruptions.make({"name": "mask", "mask_ramp_width": 0.1})
  removed = np.asarray(corruptions.MaskOperator("center", ramp_width=0.1).mask(jnp.asarray(t), H, W))[..., None] == 0
  estimate = rng.uniform(-1, 1, x0.shape).astype(np.float32)
  error = estimate - x0
  applied = np.asarray(corruption.apply(error, t)).astype(np.float64)
  for floor in (0.0, 0.3):
    want = np.mean(((1 - floor) * applied + floor * error) ** 2)
    got = losses.soft_score_matching_loss(lambda x_t, t: jnp.asarray(estimate), x0, t, noise, corruption, floor=floor)
    np.testing.assert_allclose(got, want, rtol=1e-5)
  bumped = estimate + np.where(removed, 1.0, 0.0)
  loss = lambda est, f: float(  # noqa: E731
    losses.soft_score_matching_loss(lambda x_t, t: jnp.asarray(est), x0, t, noise, corruption, floor=f)
  )
  assert loss(bumped, 0.0) == pytest.approx(loss(estimate, 0.0), rel=1e-6)
  assert loss(bumped, 0.3) > loss(estimate, 0.3) * 1.01
  with pytest.raises(ValueError, match=r"floor must be in \[0, 1\)"):
    loss(estimate, 1.0)


def test_lag_compares_with_the_operator_of_an_earlier_time(batch, rng):
  """loss.lag = δ compares C_{max(t − δ, 0)} (h − x0): the formula holds for blur (also where
  t < δ, clamped to 0), and a high-frequency error that C_t all but removes costs more with
  the lag, since the earlier operator blurs less."""
  x0, _, noise = batch
  corruption = corruptions.make({"name": "blur", "blur_sigma_max": 3.0})
  t = np.array([0.6, 0.02, 0.9, 0.3][:B], np.float32)
  estimate = rng.uniform(-1, 1, x0.shape).astype(np.float32)
  error = estimate - x0
  for lag in (0.0, 0.05):
    applied = np.asarray(corruption.apply(error, np.maximum(t - lag, 0.0))).astype(np.float64)
    got = losses.soft_score_matching_loss(lambda x_t, t: jnp.asarray(estimate), x0, t, noise, corruption, lag=lag)
    np.testing.assert_allclose(got, np.mean(applied**2), rtol=1e-5)
  checker = np.where((np.arange(H)[:, None] + np.arange(W)[None, :]) % 2 == 0, 0.5, -0.5)[None, :, :, None]
  wiggle = lambda lag: float(  # noqa: E731
    losses.soft_score_matching_loss(
      lambda x_t, t: jnp.asarray(x0 + checker, jnp.float32), x0, np.full(B, 0.8, np.float32), noise, corruption, lag=lag
    )
  )
  assert wiggle(0.1) > 10 * wiggle(0.0)  # σ_B 0.96 -> 0.54 px at t = 0.8: measured 17×
  with pytest.raises(ValueError, match="floor and lag are two alternatives"):
    losses.soft_score_matching_loss(lambda x_t, t: x_t, x0, t, noise, corruption, floor=0.1, lag=0.1)


@pytest.mark.parametrize("weighting", losses.WEIGHTINGS)
def test_identity_corruption_reduces_to_denoising_score_matching(batch, weighting):
  x0, t, noise = batch
  corruption = corruptions.make({"name": "identity", "noise_schedule": "geometric", "noise_std_max": 5.0})

  def denoise_fn(x_t, t):
    return jnp.tanh(x_t) * (1 - t[:, None, None, None])

  ssm = losses.soft_score_matching_loss(denoise_fn, x0, t, noise, corruption, weighting=weighting)
  dsm = losses.denoising_score_matching_loss(denoise_fn, x0, t, noise, corruption.noise_std, weighting=weighting)
  np.testing.assert_allclose(ssm, dsm, rtol=1e-4)


def test_loss_is_jittable_and_differentiable(batch):
  x0, t, noise = batch
  corruption = corruptions.make({"name": "blur"})

  def loss_fn(scale):
    return losses.soft_score_matching_loss(lambda x_t, t: scale * x_t, x0, t, noise, corruption)

  eager = loss_fn(0.9)
  value, grad = jax.jit(jax.value_and_grad(loss_fn))(0.9)
  np.testing.assert_allclose(value, eager, rtol=1e-6)
  assert np.isfinite(grad) and grad != 0


@dataclasses.dataclass(frozen=True)
class ZeroNoise:
  """A user-supplied corruption with s_t = 0, which Soft Score Matching cannot train."""

  def apply(self, x, t):
    return x

  def noise_std(self, t):
    return jnp.zeros_like(t)

  def corrupt(self, x0, t, noise):
    return x0


def test_loss_rejects_zero_noise_and_bad_weighting(batch):
  x0, t, noise = batch
  with pytest.raises(ValueError, match=r"noise_std\(t\) must be > 0"):
    losses.soft_score_matching_loss(lambda x_t, t: x_t, x0, t, noise, ZeroNoise())
  with pytest.raises(ValueError, match="weighting must be one of"):
    losses.soft_score_matching_loss(lambda x_t, t: x_t, x0, t, noise, corruptions.make({}), weighting="snr")
  with pytest.raises(ValueError, match="denoise_fn must return the shape of x0"):
    losses.soft_score_matching_loss(lambda x_t, t: x_t[..., :1], x0, t, noise, corruptions.make({}))


def test_sum_reduction_is_the_mean_times_the_pixel_count():
  corruption = corruptions.make({"name": "blur"})
  x0 = jax.random.uniform(jax.random.key(0), (3, 6, 5, 2), minval=-1, maxval=1)
  t = jnp.array([0.1, 0.5, 0.9])
  noise = jax.random.normal(jax.random.key(1), x0.shape)
  denoise_fn = lambda x_t, t: 0.8 * x_t
  mean = losses.soft_score_matching_loss(denoise_fn, x0, t, noise, corruption)
  total = losses.soft_score_matching_loss(denoise_fn, x0, t, noise, corruption, reduction="sum")
  np.testing.assert_allclose(total, mean * 6 * 5 * 2, rtol=1e-5)
  with pytest.raises(ValueError, match="reduction must be one of"):
    losses.soft_score_matching_loss(denoise_fn, x0, t, noise, corruption, reduction="max")
