"""The start distribution p_1 (SPEC §4): the Gaussian fit and the exact forward marginal."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from soft_diffusion import corruptions, priors


def test_prior_reproduces_mean_and_covariance_of_a_gaussian(rng):
  # x1 Gaussian with a random covariance on 3×3×2 = 18 values; with max_full = 6 only the six
  # largest-variance DCT coefficients are coupled, so compare the full fit (max_full = 18).
  a = rng.standard_normal((18, 18)) / 4
  x1 = (rng.standard_normal((20000, 18)) @ a.T + 0.3).reshape(-1, 3, 3, 2)
  prior = priors.fit_gaussian_prior(x1, max_full=18)
  draws = np.asarray(jax.jit(priors.sample_prior, static_argnums=2)(prior, jax.random.key(0), 20000))
  np.testing.assert_allclose(draws.mean(0), 0.3, atol=0.04)  # 4 standard errors of fit + draw
  cov_true = a @ a.T
  cov = np.cov(draws.reshape(-1, 18).T)
  assert np.abs(cov - cov_true).max() < 0.05 * np.abs(cov_true).max() + 0.01


def test_blur_prior_keeps_low_frequencies_coupled(rng):
  corruption = corruptions.make({"name": "blur", "blur_sigma_max": 3.0})
  x0 = rng.uniform(-1, 1, (512, 8, 8, 1)).astype(np.float32)
  x1 = np.asarray(corruption.corrupt(x0, np.ones(512), rng.standard_normal(x0.shape).astype(np.float32)))
  prior = priors.fit_gaussian_prior(x1, max_full=4)
  assert sorted(np.asarray(prior.full_index).tolist()) == [0, 1, 8, 9]  # DC and the first frequencies
  std = np.asarray(prior.diag_std)
  assert np.allclose(std[std > 0], 0.1, rtol=0.15)  # the rest is the noise s_1 = 0.1
  assert priors.sample_prior(prior, jax.random.key(1), 3).shape == (3, 8, 8, 1)


def test_prior_rejects_bad_input():
  with pytest.raises(ValueError, match=r"x1 must be \[N >= 2, H, W, C\]"):
    priors.fit_gaussian_prior(np.zeros((1, 4, 4, 1)))


def test_forward_prior_draws_the_exact_forward_marginal():
  corruption = corruptions.make({"name": "blur"})
  x0 = jax.random.uniform(jax.random.key(0), (1, 8, 8, 1), minval=-1, maxval=1)
  num = 4000
  draws = priors.sample_forward(priors.ForwardPrior(x0), corruption, jax.random.key(1), num)
  mean_target = corruption.apply(x0, jnp.ones(1))[0]
  s1 = float(corruption.noise_std(jnp.ones(1))[0])
  np.testing.assert_allclose(draws.mean(0), mean_target, atol=4 * s1 / np.sqrt(num))
  np.testing.assert_allclose(draws.std(0), s1, rtol=0.1)
