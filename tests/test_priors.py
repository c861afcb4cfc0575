"""The start distribution p_1 (docs/method.md §4): the Gaussian fit and the exact forward marginal."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from soft_diffusion import corruptions, dct, priors


def prior_covariance(prior: priors.GaussianPrior) -> np.ndarray:
  """The prior's covariance of the flat DCT coefficients, float64 [D, D]."""
  std = np.asarray(prior.diag_std, np.float64)
  cov = np.diag(std**2)
  idx = np.asarray(prior.full_index)
  chol = np.asarray(prior.full_chol, np.float64)
  cov[np.ix_(idx, idx)] = chol @ chol.T
  return cov


def test_prior_reproduces_mean_and_covariance_of_a_gaussian(rng):
  # C_1 x_0 Gaussian with a random covariance on 3×3×2 = 18 values, s_1 = 0.2; with max_full = 6
  # only the six largest-variance DCT coefficients would be coupled, so compare the full fit.
  a = rng.standard_normal((18, 18)) / 4
  signal = (rng.standard_normal((20000, 18)) @ a.T + 0.3).reshape(-1, 3, 3, 2)
  prior = priors.fit_gaussian_prior(signal, 0.2, max_full=18)
  draws = np.asarray(jax.jit(priors.sample_prior, static_argnums=2)(prior, jax.random.key(0), 20000))
  np.testing.assert_allclose(draws.mean(0), 0.3, atol=0.04)  # 4 standard errors of fit + draw
  cov_true = a @ a.T + 0.04 * np.eye(18)
  cov = np.cov(draws.reshape(-1, 18).T)
  assert np.abs(cov - cov_true).max() < 0.05 * np.abs(cov_true).max() + 0.01


def test_prior_fit_split_over_workers_is_the_fit_of_all_samples(rng):
  """fit_gaussian_prior with `reduce`: three workers (threads meeting at a barrier, as processes
  meet in a collective) each fit on every third sample, one of them holding none, and all get
  the prior of all the samples, within float64 rounding."""
  import threading

  signal = rng.standard_normal((40, 4, 4, 2)) @ np.diag([1.0, 0.3]) + 0.1
  whole = priors.fit_gaussian_prior(signal, 0.05, max_full=9)
  workers, barrier, lock = 3, threading.Barrier(3, timeout=120), threading.Lock()
  slots: dict[int, list] = {}

  def summed(rank):
    calls = iter(range(10))

    def reduce(x):
      call = next(calls)
      with lock:
        slots.setdefault(call, []).append(np.asarray(x, np.float64))
      barrier.wait()
      return sum(slots[call])

    return reduce

  shares = [signal[0:40:2], signal[1:40:2], signal[:0]]  # the third worker holds no sample
  results = [None] * workers

  def run(rank):
    results[rank] = priors.fit_gaussian_prior(shares[rank], 0.05, max_full=9, reduce=summed(rank))

  threads = [threading.Thread(target=run, args=(r,)) for r in range(workers)]
  for t in threads:
    t.start()
  for t in threads:
    t.join()
  for got in results:
    for field in priors.GaussianPrior._fields:
      np.testing.assert_allclose(
        np.asarray(getattr(got, field)), np.asarray(getattr(whole, field)), rtol=1e-5, atol=1e-6
      )


@pytest.fixture(scope="module")
def digits_like_blur():
  """16×16 images with structure at every scale (1,617 of them, as many as the digits' train
  split), the digits config's blur to 5.75 px and s_1 = 0.1: the signal C_1 x_0, and the
  multipliers m_1 of C_1 per flat DCT coefficient."""
  corruption = corruptions.make({"name": "blur", "blur_sigma_max": 5.75})
  x0 = np.random.default_rng(3).uniform(-1, 1, (1617, 16, 16, 1)).astype(np.float32)
  x0 = np.cumsum(np.cumsum(x0, 1), 2) / 16  # a red spectrum, like natural images
  signal = np.asarray(corruption.apply(x0, np.ones(len(x0))), np.float64)
  sigma = float(corruption.operator.sigma_schedule(np.ones(1))[0])
  m1 = np.asarray(dct.blur_multipliers_2d(np.array([sigma]), 16, 16))[0].reshape(-1)
  s1 = float(corruption.noise_std(np.ones(1))[0])
  return corruption, signal, m1, s1


def test_noise_part_of_the_prior_is_exactly_s1_squared(digits_like_blur):
  """In the directions C_1 removes (multiplier < 1e-3: 243 of the 256 coefficients), every
  eigenvalue of the prior's covariance is s_1² within 1%. Fitting a sample covariance to noisy
  draws instead (the earlier method, here as a fit of noisy draws with noise_std = 0) spreads
  them over 0.38–1.89× s_1² here (Marchenko–Pastur: (1 ± √(256/1617))²); the test checks that too, so it
  would catch that method coming back."""
  corruption, signal, m1, s1 = digits_like_blur
  removed = m1 < 1e-3
  assert removed.sum() > 200

  def eigenvalue_range(prior):
    cov = prior_covariance(prior)[np.ix_(removed, removed)]
    eig = np.linalg.eigvalsh(cov) / s1**2
    return eig.min(), eig.max()

  low, high = eigenvalue_range(priors.fit_gaussian_prior(signal, s1))
  assert 0.99 <= low and high <= 1.01, f"noise eigenvalues span {low:.3f}-{high:.3f} × s_1², want 1 ± 0.01"
  noisy = signal + s1 * np.random.default_rng(4).standard_normal(signal.shape)
  low, high = eigenvalue_range(priors.fit_gaussian_prior(noisy, 0.0))
  assert low < 0.6 and high > 1.5, f"the noisy-draw fit was expected to spread, got {low:.3f}-{high:.3f}"


def test_signal_part_of_the_prior_is_the_fitted_law_of_c1_x0(digits_like_blur):
  """Where C_1 keeps the signal (multiplier > 0.1), the prior's covariance minus s_1² I is the
  sample covariance of C_1 x_0 and its mean is the signal's mean (what the noisy-draw fit
  estimated, without the noise's sampling error; checked against that fit too); the low
  frequencies are the coupled ones."""
  corruption, signal, m1, s1 = digits_like_blur
  prior = priors.fit_gaussian_prior(signal, s1, max_full=24)
  kept = np.flatnonzero(m1 > 0.1)
  coeffs = dct.dct2_host(signal).reshape(len(signal), -1)
  assert set(kept.tolist()) <= set(np.asarray(prior.full_index).tolist())
  cov = prior_covariance(prior)[np.ix_(kept, kept)] - s1**2 * np.eye(len(kept))
  want = np.cov(coeffs[:, kept].T)
  np.testing.assert_allclose(cov, want, rtol=1e-4, atol=1e-6 * np.abs(want).max())
  np.testing.assert_allclose(np.asarray(prior.mean).reshape(-1), coeffs.mean(0), atol=1e-5)
  noisy = signal + s1 * np.random.default_rng(5).standard_normal(signal.shape)
  before = prior_covariance(priors.fit_gaussian_prior(noisy, 0.0, max_full=24))[np.ix_(kept, kept)]
  assert np.abs(before - s1**2 * np.eye(len(kept)) - want).max() < 0.1 * np.abs(want).max()
  assert priors.sample_prior(prior, jax.random.key(1), 3).shape == (3, 16, 16, 1)


@pytest.mark.parametrize(
  "kwargs, match",
  [
    (dict(signal=np.zeros((1, 4, 4, 1)), noise_std=0.1), r"signal must be \[N >= 2, H, W, C\]"),
    (dict(signal=np.zeros((3, 4, 4, 1)), noise_std=-0.1), "noise_std must be a finite s_1 >= 0"),
  ],
)
def test_prior_rejects_bad_input(kwargs, match):
  with pytest.raises(ValueError, match=match):
    priors.fit_gaussian_prior(**kwargs)


def test_forward_prior_draws_the_exact_forward_marginal():
  corruption = corruptions.make({"name": "blur"})
  x0 = jax.random.uniform(jax.random.key(0), (1, 8, 8, 1), minval=-1, maxval=1)
  num = 4000
  draws = priors.sample_forward(priors.ForwardPrior(x0), corruption, jax.random.key(1), num)
  mean_target = corruption.apply(x0, jnp.ones(1))[0]
  s1 = float(corruption.noise_std(jnp.ones(1))[0])
  np.testing.assert_allclose(draws.mean(0), mean_target, atol=4 * s1 / np.sqrt(num))
  np.testing.assert_allclose(draws.std(0), s1, rtol=0.1)
