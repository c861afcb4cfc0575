"""Properties of the corruption operators (docs/method.md §1.1, §1.2) and the Corruption object."""

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest
import scipy.fft
import scipy.ndimage

from soft_diffusion import corruptions, dct

H, W, C = 12, 10, 3  # non-square on purpose

blur = jax.jit(corruptions.gaussian_blur)


def reference_blur(x: np.ndarray, sigma: np.ndarray) -> np.ndarray:
  """docs/method.md §1.1 in float64 with scipy's orthonormal DCT-II."""
  _, h, w, _ = x.shape
  k = np.arange(h)[:, None]
  l = np.arange(w)[None, :]
  out = np.empty_like(x, dtype=np.float64)
  for b in range(x.shape[0]):
    spec = scipy.fft.dctn(x[b].astype(np.float64), axes=(0, 1), norm="ortho")
    mult = np.exp(-(np.pi**2 / 2) * sigma[b] ** 2 * (k**2 / h**2 + l**2 / w**2))
    out[b] = scipy.fft.idctn(spec * mult[..., None], axes=(0, 1), norm="ortho")
  return out


def test_dct_matrix_matches_scipy(rng):
  x = rng.standard_normal(9)
  np.testing.assert_allclose(dct.dct_matrix(9) @ x, scipy.fft.dct(x, norm="ortho"), atol=1e-12)


def test_blur_matches_float64_dctn_reference(rng):
  x = rng.uniform(-1, 1, (6, H, W, C)).astype(np.float32)
  sigma = np.concatenate([[0.0, 23.0], rng.uniform(0, 23, 4)]).astype(np.float32)
  got = np.asarray(blur(x, sigma))
  want = reference_blur(x, sigma.astype(np.float64))
  err = np.abs(got - want).max()
  assert err < 1e-5, f"max |blur - float64 dctn reference| = {err:.2e} for sigma {sigma}"


def test_blur_sigma_zero_is_identity(rng):
  x = rng.standard_normal((2, H, W, C)).astype(np.float32)
  np.testing.assert_allclose(blur(x, np.zeros(2, np.float32)), x, atol=1e-5)


def test_blur_is_symmetric(rng):
  x, y = rng.standard_normal((2, 3, H, W, C)).astype(np.float32)
  sigma = np.array([0.7, 2.0, 5.0], np.float32)
  lhs = np.sum(np.asarray(blur(x, sigma)) * y, axis=(1, 2, 3))
  rhs = np.sum(x * np.asarray(blur(y, sigma)), axis=(1, 2, 3))
  np.testing.assert_allclose(lhs, rhs, rtol=1e-4, atol=1e-4)


def test_blur_semigroup(rng):
  x = rng.standard_normal((3, H, W, C)).astype(np.float32)
  a = np.array([0.5, 1.0, 3.0], np.float32)
  b = np.array([1.5, 2.0, 4.0], np.float32)
  np.testing.assert_allclose(blur(blur(x, a), b), blur(x, np.sqrt(a**2 + b**2)), atol=1e-5)


def test_blur_preserves_mean_intensity(rng):
  x = rng.uniform(-1, 1, (4, H, W, C)).astype(np.float32)
  y = np.asarray(blur(x, np.array([0.3, 2.0, 9.0, 23.0], np.float32)))
  np.testing.assert_allclose(y.mean(axis=(1, 2)), x.mean(axis=(1, 2)), atol=1e-6)


@pytest.mark.parametrize("sigma", [1.0, 2.0, 3.0])
def test_blur_matches_direct_convolution_with_reflecting_boundary(rng, sigma):
  # scipy's "reflect" is the DCT-II (half-sample symmetric) extension. The DCT multiplier is the
  # continuous Gaussian's response exp(-σ²ω²/2); a sampled kernel adds its alias at 2π - ω, at
  # most exp(-π²σ²/2) (7e-3 at σ = 1, 3e-9 at σ = 2), which bounds the difference.
  x = rng.uniform(-1, 1, (1, 40, 36, 1)).astype(np.float32)
  got = np.asarray(blur(x, np.array([sigma], np.float32)))[0, ..., 0]
  want = scipy.ndimage.gaussian_filter(x[0, ..., 0].astype(np.float64), sigma, mode="reflect", truncate=8.0)
  margin = int(np.ceil(4 * sigma))
  interior = (slice(margin, -margin), slice(margin, -margin))
  err = np.abs(got[interior] - want[interior]).max()
  bound = 2 * np.exp(-(np.pi**2) * sigma**2 / 2) + 1e-5
  assert err < bound, f"sigma={sigma}: max interior difference to direct convolution {err:.2e} > {bound:.2e}"


def test_blur_bfloat16_keeps_dtype(rng):
  x = jnp.asarray(rng.standard_normal((2, H, W, C)), jnp.bfloat16)
  assert blur(x, jnp.ones(2)).dtype == jnp.bfloat16


@pytest.mark.parametrize(
  "x_shape, x_dtype, sigma_shape, match",
  [
    ((H, W, C), np.float32, (1,), "rank 4"),
    ((2, H, W, C), np.int32, (2,), "floating dtype"),
    ((2, H, W, C), np.float32, (3,), r"sigma must be a scalar or have shape \[B\]"),
    ((2, H, W, C), np.float32, (2, 1), r"sigma must be a scalar or have shape \[B\]"),
  ],
)
def test_blur_rejects_bad_input(x_shape, x_dtype, sigma_shape, match):
  with pytest.raises(ValueError, match=match):
    corruptions.gaussian_blur(np.zeros(x_shape, x_dtype), np.ones(sigma_shape, np.float32))


# ---- masking --------------------------------------------------------------------------------


@pytest.mark.parametrize("order", corruptions.MASK_ORDERS)
def test_mask_starts_at_one_stays_in_unit_interval_and_never_increases(order):
  op = corruptions.MaskOperator(order=order, ramp_width=0.25, seed=3)
  t = jnp.linspace(0.0, 1.0, 41)
  m = np.asarray(op.mask(t, H, W))
  np.testing.assert_array_equal(m[0], 1.0)
  assert m.min() >= 0.0 and m.max() <= 1.0
  assert np.all(np.diff(m, axis=0) <= 0), "m_t(p) increased with t"
  np.testing.assert_array_equal(m[-1], 0.0)  # fraction = 1: everything masked at t = 1
  # soft: some pixels are part-way through their ramp at an intermediate t
  assert np.any((m[20] > 0) & (m[20] < 1))


def test_center_mask_grows_from_the_centre():
  m = np.asarray(corruptions.MaskOperator("center", 0.1).mask(jnp.array([0.4]), 16, 16))[0]
  assert m[8, 8] == 0.0 and m[0, 0] == 1.0


def test_mask_fraction_keeps_the_last_pixels():
  m = np.asarray(corruptions.MaskOperator("random", 0.1, fraction=0.5).mask(jnp.array([1.0]), 8, 8))[0]
  assert 0.3 < np.mean(m == 0) < 0.7


def test_mask_operator_rejects_bad_values():
  with pytest.raises(ValueError, match="mask_order"):
    corruptions.MaskOperator(order="spiral")
  with pytest.raises(ValueError, match="mask_ramp_width"):
    corruptions.MaskOperator(ramp_width=0.0)
  with pytest.raises(ValueError, match="mask_fraction"):
    corruptions.MaskOperator(fraction=1.5)


# ---- the Corruption object and make() -------------------------------------------------------


@pytest.mark.parametrize("name", sorted(corruptions.REGISTRY))
def test_corrupt_is_apply_plus_scaled_noise_and_jit_matches_eager(rng, name):
  corruption = corruptions.make({"name": name})
  x0 = rng.uniform(-1, 1, (3, H, W, C)).astype(np.float32)
  noise = rng.standard_normal(x0.shape).astype(np.float32)
  t = np.array([0.0, 0.3, 1.0], np.float32)
  eager = np.asarray(corruption.corrupt(x0, t, noise))
  jitted = np.asarray(jax.jit(corruption.corrupt)(x0, t, noise))
  np.testing.assert_allclose(jitted, eager, atol=1e-6)
  want = np.asarray(corruption.apply(x0, t)) + np.asarray(corruption.noise_std(t))[:, None, None, None] * noise
  np.testing.assert_allclose(eager, want, atol=1e-6)


def test_t_zero_is_identity_for_every_corruption(rng):
  x = rng.uniform(-1, 1, (2, H, W, C)).astype(np.float32)
  for name in corruptions.REGISTRY:
    y = corruptions.make({"name": name}).apply(x, np.zeros(2, np.float32))
    # blur's σ_B(0) = 0.01 px: a change below 1e-3 of the signal
    np.testing.assert_allclose(y, x, atol=1e-3, err_msg=name)


def test_corruptions_are_linear(rng):
  x, y = rng.standard_normal((2, 2, H, W, C)).astype(np.float32)
  t = np.array([0.4, 0.9], np.float32)
  for name in corruptions.REGISTRY:
    op = corruptions.make({"name": name})
    np.testing.assert_allclose(op.apply(2.0 * x - y, t), 2.0 * op.apply(x, t) - op.apply(y, t), atol=1e-5)


def test_make_accepts_config_dict_dataclass_and_mapping():
  cfg = ml_collections.ConfigDict({"name": "blur", "blur_schedule": "table", "blur_sigma_table": [0.0, 1.0, 4.0]})
  a = corruptions.make(cfg)
  b = corruptions.make(
    corruptions.CorruptionConfig(name="blur", blur_schedule="table", blur_sigma_table=(0.0, 1.0, 4.0))
  )
  assert a == b and hash(a) == hash(b)
  np.testing.assert_allclose(a.operator.sigma_schedule(jnp.array([0.25, 0.75])), [0.5, 2.5], rtol=1e-6)


@pytest.mark.parametrize(
  "cfg, match",
  [
    ({"name": "swirl"}, "corruption name must be one of"),
    ({"name": "blur", "blur_sigma": 1.0}, r"unknown field\(s\) \['blur_sigma'\]"),
    ({"noise_schedule": "cosine"}, "noise_schedule must be one of"),
    ({"noise_std_min": 0.0}, "std_min must be a finite number > 0"),
    ({"noise_std_min": 0.2, "noise_std_max": 0.1}, "std_max must be finite and >= std_min"),
    ({"blur_schedule": "cubic"}, "blur_schedule must be one of"),
    ({"blur_schedule": "table"}, "blur_sigma_table must be a sequence"),
    ({"blur_schedule": "table", "blur_sigma_table": [2.0, 1.0]}, "non-decreasing"),
  ],
)
def test_make_rejects_bad_config(cfg, match):
  with pytest.raises(ValueError, match=match):
    corruptions.make(cfg)


def test_corrupt_rejects_mismatched_noise_and_t():
  corruption = corruptions.make({"name": "identity"})
  x0 = np.zeros((2, 4, 4, 1), np.float32)
  with pytest.raises(ValueError, match="noise must have the shape of x0"):
    corruption.corrupt(x0, np.zeros(2), np.zeros((2, 4, 4, 3), np.float32))
  with pytest.raises(ValueError, match=r"t must be a scalar or have shape \[B\]"):
    corruption.corrupt(x0, np.zeros(3), x0)
