"""FID and KID on feature vectors: against float64 references and closed forms."""

import numpy as np
import pytest
import scipy.linalg

from soft_diffusion import data, evaluation

SPLITS = ("train", "validation")


def gaussian(rng, n, d, shift=0.0, scale=1.0):
  basis = rng.standard_normal((d, d)) / np.sqrt(d)
  return (rng.standard_normal((n, d)) @ basis) * scale + shift


def reference_fid(a, b):
  """The textbook formula with scipy's general matrix square root."""
  mu_a, mu_b = a.mean(0), b.mean(0)
  ca, cb = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
  root = scipy.linalg.sqrtm(ca @ cb).real
  return float(np.sum((mu_a - mu_b) ** 2) + np.trace(ca + cb - 2 * root))


def test_streaming_statistics_equal_numpy(rng):
  x = rng.standard_normal((500, 16)) * 3 + 1
  stats = evaluation.FeatureStats(16)
  for chunk in np.array_split(x, 7):
    stats.update(chunk.astype(np.float32))
  np.testing.assert_allclose(stats.mean, x.astype(np.float32).mean(0), rtol=1e-6, atol=1e-6)
  np.testing.assert_allclose(stats.cov, np.cov(x.astype(np.float32).astype(np.float64), rowvar=False), rtol=1e-9)
  with pytest.raises(ValueError, match=r"features must be \[N, 16\]"):
    stats.update(np.zeros((3, 15)))


def test_fid_matches_a_float64_reference_and_closed_forms(rng):
  a = gaussian(rng, 2000, 32)
  b = gaussian(rng, 1500, 32, shift=0.3, scale=1.5)
  np.testing.assert_allclose(evaluation.fid(a, b), reference_fid(a, b), rtol=1e-8)
  assert evaluation.fid(a, a) == pytest.approx(0.0, abs=1e-9)
  # Same covariance, shifted mean: FID = |shift|^2 exactly.
  assert evaluation.fid(a, a + 0.5) == pytest.approx(32 * 0.25, rel=1e-9)
  # Streaming statistics give the same number as the arrays.
  stats = evaluation.FeatureStats(32)
  for chunk in np.array_split(b, 5):
    stats.update(chunk)
  assert evaluation.fid(a, stats) == pytest.approx(evaluation.fid(a, b), rel=1e-10)


def test_fid_grows_with_the_difference(rng):
  a, b = np.split(gaussian(rng, 4000, 16), 2)
  values = [evaluation.fid(a, b * s) for s in (1.0, 1.2, 1.5, 2.0)]
  assert values == sorted(values) and values[0] < values[-1]


def test_kid_is_unbiased_near_zero_for_one_distribution_and_positive_otherwise(rng):
  a, b = np.split(gaussian(rng, 2400, 16), 2)  # one distribution, two independent halves
  same_mean, same_std = evaluation.kid(a, b, num_subsets=20, subset_size=500)
  assert abs(same_mean) < 3 * same_std + 1e-3
  diff_mean, diff_std = evaluation.kid(a, b + 0.5, num_subsets=20, subset_size=500)
  assert diff_mean > 10 * max(diff_std, 1e-6) and diff_mean > same_mean
  with pytest.raises(ValueError, match="at least 2"):
    evaluation.kid(a[:1], b)


def test_statistics_round_trip_through_their_moments(rng):
  x = rng.standard_normal((300, 8)) + 2
  stats = evaluation.FeatureStats.of(x)
  again = evaluation.FeatureStats.from_moments(stats.mean, stats.cov, stats.count)
  np.testing.assert_allclose(again.mean, stats.mean, rtol=1e-12)
  np.testing.assert_allclose(again.cov, stats.cov, rtol=1e-9, atol=1e-12)
  assert evaluation.fid(again, stats) == pytest.approx(0.0, abs=1e-9)


def test_fid_sanity_ladder(tfds_dir):
  """Train vs held-out digits is the smallest FID; blurring the held-out set raises it.

  With 24 images a set FID carries a large small-sample bias (n = 180 gives 31 for the first
  row, see docs/evaluation.md), so "small" is checked with the unbiased KID."""
  cfg = data.DataConfig(name="digits", path=tfds_dir, image_size=16)
  train, held_out = (
    np.concatenate(list(data.first_batches(cfg, split, 24, batch_size=24))) for split in ("train", "validation")
  )
  rows = evaluation.blur_ladder(train, held_out, [1.0, 3.0])
  fids = [fid for _, fid, _ in rows]
  kids = [kid for _, _, kid in rows]
  assert fids[0] < fids[1] < fids[2] and kids[0] < kids[1] < kids[2], rows
  assert abs(kids[0]) < 0.2 * kids[1], rows


# ---- exact distances to a Gaussian law diagonal in the DCT basis (evaluation/exact.py) --------


def field_samples(n, size=8, seed=0, scale=None):
  from soft_diffusion import gaussian_field

  v = gaussian_field.spectrum(size, size)
  root = np.sqrt(v) if scale is None else np.sqrt(v) * scale
  return gaussian_field.field_images(root, [np.random.default_rng([seed, i]) for i in range(n)]), v


@pytest.mark.parametrize("n", [40, 400])  # N < D = 192 (the Gram-matrix path) and N > D
def test_exact_fd_equals_the_textbook_formula(n):
  from soft_diffusion import dct
  from soft_diffusion.evaluation import exact

  x, v = field_samples(n, scale=np.linspace(0.7, 1.2, 8)[None, :])  # a spectrum off the truth
  coeffs = dct.dct2_host(x).reshape(n, -1)
  mu, cov = coeffs.mean(0), np.cov(coeffs, rowvar=False)
  true_cov = np.diag(np.repeat(v[:, :, None], 3, axis=-1).reshape(-1))
  root = scipy.linalg.sqrtm(cov @ true_cov).real
  expected = float(mu @ mu + np.trace(cov + true_cov - 2 * root))
  np.testing.assert_allclose(exact.frechet_distance(x, v), expected, rtol=1e-6)
  truth = evaluation.FeatureStats.from_moments(np.zeros(len(mu)), true_cov, 2)
  np.testing.assert_allclose(exact.frechet_distance(x, v), evaluation.fid(coeffs, truth), rtol=1e-6)
  var = coeffs.var(0, ddof=1)
  spectral = float(mu @ mu + np.sum((np.sqrt(var) - np.sqrt(np.diag(true_cov))) ** 2))
  np.testing.assert_allclose(exact.spectral_frechet_distance(x, v), spectral, rtol=1e-10)


def test_exact_metrics_on_the_truth_sit_at_their_finite_sample_bias():
  """Samples of the truth: ratios ≈ 1 in every band and ring; spectral FD ≈ 1.5 tr(v)/N (the
  bias the docstring states), and both FDs shrink as N grows."""
  from soft_diffusion.evaluation import exact

  for n in (1000, 4000):
    x, v = field_samples(n, size=16, seed=n)
    m = exact.exact_metrics(x, v)
    expected_bias = 1.5 * 3 * v.sum() / n
    assert 0.7 * expected_bias < m["spectral_fd"] < 1.3 * expected_bias, (n, m["spectral_fd"], expected_bias)
    assert all(abs(m[f"ratio_{b}"] - 1) < 0.06 for b in ("low", "mid", "high"))
    assert np.abs(np.asarray(m["ring_ratios"]) - 1).max() < 0.15 and len(m["ring_ratios"]) == 31
    if n == 1000:
      first = m
  assert m["spectral_fd"] < first["spectral_fd"] and m["fd"] < first["fd"]


def test_exact_metrics_see_lost_detail_and_shrinkage():
  """Blurred samples lose variance at high frequencies first; samples shrunk by 0.8 keep 0.64 of
  it everywhere; both distances grow well above the truth's."""
  from soft_diffusion import corruptions
  from soft_diffusion.evaluation import exact

  n = 2000
  x, v = field_samples(n, size=16, seed=1)
  truth = exact.exact_metrics(x, v)
  blurred = np.asarray(corruptions.gaussian_blur(x, np.full(n, 0.8, np.float32)))
  m = exact.exact_metrics(blurred, v)
  assert m["ratio_high"] < m["ratio_mid"] < m["ratio_low"] < 1.0 and m["ratio_high"] < 0.2
  ring = np.asarray(m["ring_ratios"])
  assert np.all(np.diff(ring) < 0.02)  # decreasing with frequency, up to sampling noise
  assert m["spectral_fd"] > 20 * truth["spectral_fd"] and m["fd"] > truth["fd"] + 1.0
  shrunk = exact.exact_metrics(0.8 * x, v)
  assert all(abs(shrunk[f"ratio_{b}"] - 0.64) < 0.04 for b in ("low", "mid", "high"))
  np.testing.assert_allclose(shrunk["spectral_fd"], 0.04 * 3 * v.sum(), rtol=0.15)


def test_exact_metrics_refuse_bad_shapes():
  from soft_diffusion.evaluation import exact

  x, v = field_samples(4)
  with pytest.raises(ValueError, match="v must be"):
    exact.exact_metrics(x, v[:4])
  with pytest.raises(ValueError, match=r"samples must be \[N >= 2"):
    exact.exact_metrics(x[:1], v)
