"""The multistep exponential integrator (multistep.py) and the samplers' time grids (time_grids.py).

The reference is exact: on a zero-mean Gaussian field the probability-flow ODE maps x_1 to
x_0 = x_1 · std_0/std_1 per DCT coefficient (std_t² = c_t² v + s_t²), and with the exact posterior
mean as the denoiser the solver's only error is its discretisation.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from soft_diffusion import corruptions, dct, gaussian_field, samplers, schedules, time_grids
from soft_diffusion.corruptions import base

H = W = 8
# Smooth schedules (no kinks), so the observed order is the solver's.
BLUR = base.Corruption(
  corruptions.BlurOperator(schedules.LogBlurSchedule(0.01, 3.0)), schedules.geometric_noise(0.01, 0.1)
)
V = gaussian_field.spectrum(H, W)


def _field_start_and_exact_end(corruption, batch=4):
  """x_1 ~ p_1 of the field and the exact ODE solution x_0 it maps to."""

  def std(t):
    c = gaussian_field.dct_multipliers(corruption, jnp.full((1,), t), H, W)[0]
    return jnp.sqrt(jnp.square(c) * V + jnp.square(corruption.noise_std(jnp.float32(t))))

  z = jax.random.normal(jax.random.key(0), (batch, H, W, 1))
  x1 = dct.dct2(z * std(1.0)[None, :, :, None], inverse=True)
  x0 = dct.dct2(z * std(0.0)[None, :, :, None], inverse=True)
  return x1, x0


def _run(x, corruption, num_steps, **options):
  denoise_fn = options.pop("denoise_fn", None) or gaussian_field.oracle_denoiser(corruption, V)
  sampler = samplers.get(options.pop("name", "multistep"), **options)
  return sampler(denoise_fn, x, corruption, num_steps=num_steps, key=jax.random.key(1))


@pytest.mark.parametrize("name", ["blur", "mask"])
def test_first_order_is_the_deterministic_sampler(name):
  corruption = corruptions.make({"name": name})
  x = jax.random.normal(jax.random.key(0), (2, H, W, 3))
  denoise_fn = lambda x_t, t: jnp.tanh(x_t) * (1.0 - 0.5 * t[:, None, None, None])
  for grid in ("uniform", time_grids.make("edm", corruption, 6, H, W)):
    a = _run(x, corruption, 6, denoise_fn=denoise_fn, order=1, time_grid=grid)
    b = _run(x, corruption, 6, denoise_fn=denoise_fn, name="deterministic", time_grid=grid)
    np.testing.assert_allclose(a, b, atol=2e-5)


@pytest.mark.parametrize("order", [1, 2, 3])
def test_exact_for_a_denoiser_that_returns_a_fixed_image(order):
  # x̂_0 constant: (1) integrates exactly, x_0 = (s_0/s_1) x_1 + s_0 (ρ_0 - ρ_1) x̂ per coefficient,
  # whatever the number of steps and the grid.
  fixed = jax.random.normal(jax.random.key(3), (2, H, W, 1))
  x1 = jax.random.normal(jax.random.key(4), (2, H, W, 1))

  def rho(t):
    return gaussian_field.dct_multipliers(BLUR, jnp.full((1,), t), H, W)[0] / BLUR.noise_std(jnp.float32(t))

  s0, s1 = BLUR.noise_std(jnp.float32(0.0)), BLUR.noise_std(jnp.float32(1.0))
  exact = (s0 / s1) * x1 + s0 * dct.dct2(dct.dct2(fixed) * (rho(0.0) - rho(1.0))[None, :, :, None], inverse=True)
  out = _run(x1, BLUR, 3, denoise_fn=lambda x, t: fixed, order=order, time_grid="logsnr")
  np.testing.assert_allclose(out, exact, atol=2e-5)


def test_second_order_convergence_on_the_exact_field_denoiser():
  x1, exact = _field_start_and_exact_end(BLUR)
  err = {}
  for order in (1, 2):
    for n in (8, 16, 32):
      err[order, n] = float(jnp.sqrt(jnp.mean(jnp.square(_run(x1, BLUR, n, order=order) - exact))))
  first = [err[1, 8] / err[1, 16], err[1, 16] / err[1, 32]]
  second = [err[2, 8] / err[2, 16], err[2, 16] / err[2, 32]]
  assert all(1.4 < r < 2.6 for r in first), first  # first order: error ∝ h
  assert second[1] > 3.5, second  # second order: error ∝ h² (measured 5.0 and 5.4)
  assert err[2, 32] < 0.2 * err[1, 32]


def test_a_corruption_that_is_not_diagonal_gets_one_line():
  class Rotate:  # linear, but diagonal in no basis the solver knows
    def apply(self, x, t):
      return jnp.flip(x, axis=1)

  corruption = base.Corruption(Rotate(), schedules.constant_noise(0.1))
  with pytest.raises(ValueError, match="not diagonal") as err:
    _run(jnp.zeros((1, 4, 4, 1)), corruption, 2, denoise_fn=lambda x, t: x)
  assert "\n" not in str(err.value)


def test_order_must_be_1_2_or_3():
  with pytest.raises(ValueError, match="order must be one of"):
    _run(jnp.zeros((1, 4, 4, 1)), BLUR, 2, denoise_fn=lambda x, t: x, order=4)


@pytest.mark.parametrize("family", time_grids.FAMILIES)
@pytest.mark.parametrize("name", ["blur", "mask", "identity"])
def test_grid_families_run_from_t_start_to_zero(family, name):
  corruption = corruptions.make({"name": name})
  for t_start in (1.0, 0.6):
    times = time_grids.make(family, corruption, 7, 16, 16, t_start=t_start)
    assert times.shape == (8,) and times[0] == t_start and times[-1] == 0.0
    assert np.all(np.diff(times) < 0), times


def test_ve_grids_are_uniform_in_log_snr_and_edms():
  # C_t = I, s_t geometric: λ = -log s_t is affine in t, so 'logsnr' is the uniform grid, and
  # 'edm' puts s at EDM's ρ-spaced levels between s_max and s_min.
  ve = corruptions.make(
    {"name": "identity", "noise_schedule": "geometric", "noise_std_min": 0.01, "noise_std_max": 50.0}
  )
  np.testing.assert_allclose(time_grids.make("logsnr", ve, 10, 4, 4), np.linspace(1, 0, 11), atol=1e-3)
  times = time_grids.make("edm", ve, 10, 4, 4, rho=7.0)
  steps = np.arange(11) / 10
  edm = (50.0 ** (1 / 7) + steps * (0.01 ** (1 / 7) - 50.0 ** (1 / 7))) ** 7
  np.testing.assert_allclose(np.asarray(ve.noise_std(jnp.asarray(times, jnp.float32))), edm, rtol=2e-3)


def test_every_sampler_visits_the_grid_it_is_given():
  seen = []

  def denoise_fn(x_t, t):
    jax.debug.callback(lambda tt: seen.append(float(tt[0])), t, ordered=True)
    return x_t

  grid = [1.0, 0.7, 0.2, 0.05, 0.0]
  corruption = corruptions.make({"name": "blur"})
  for name in sorted(set(samplers.SAMPLERS) - {"pc"}):
    seen.clear()
    _run(jnp.zeros((2, 4, 4, 1)), corruption, 4, denoise_fn=denoise_fn, name=name, time_grid=grid)
    jax.effects_barrier()
    np.testing.assert_allclose(seen, grid[:-1], atol=1e-6, err_msg=name)
  seen.clear()  # pc: two calls per level, L = 3 levels of a 2-step grid
  _run(jnp.zeros((2, 4, 4, 1)), corruption, 6, denoise_fn=denoise_fn, name="pc", time_grid=[1.0, 0.3, 0.0])
  jax.effects_barrier()
  np.testing.assert_allclose(seen, [1, 1, 0.3, 0.3, 0, 0], atol=1e-6)


@pytest.mark.parametrize(
  "grid, match",
  [
    ("cosine", "time_grid must be one of"),
    ([1.0, 0.5, 0.1], "num_steps \\+ 1 = 4"),
    ([1.0, 0.5, 0.6, 0.0], "decrease strictly"),
    ([1.0, 0.5, 0.2, 0.1], "exactly 0"),
  ],
)
def test_bad_grids_get_one_line(grid, match):
  with pytest.raises(ValueError, match=match) as err:
    time_grids.resolve(grid, BLUR, 3, 4, 4)
  assert "\n" not in str(err.value)


@pytest.mark.parametrize("name", ["blur", "mask"])
def test_stochastic_first_order_is_the_ancestral_sampler(name):
  corruption = corruptions.make({"name": name})
  x = jax.random.normal(jax.random.key(0), (2, H, W, 3))
  denoise_fn = lambda x_t, t: jnp.tanh(x_t) * (1.0 - 0.5 * t[:, None, None, None])
  a = _run(x, corruption, 5, denoise_fn=denoise_fn, name="multistep_sde", order=1)
  b = _run(x, corruption, 5, denoise_fn=denoise_fn, name="ancestral")
  np.testing.assert_allclose(a, b, atol=1e-4)  # measured 6e-5 (masks: c/c' against ρ/ρ' in float32)


def test_stochastic_variant_is_exact_in_law_for_a_fixed_image():
  # x̂_0 constant: (3) is exact, so x_0 ~ N((s_0/s_1)(ρ_1/ρ_0) x_1 + c_0 (1 - (ρ_1/ρ_0)²) x̂, s_0² (1 - (ρ_1/ρ_0)²))
  # per coefficient, whatever the steps: check the mean and variance over 4,096 draws.
  fixed = jax.random.normal(jax.random.key(3), (1, H, W, 1))
  x1 = jnp.broadcast_to(jax.random.normal(jax.random.key(4), (1, H, W, 1)), (4096, H, W, 1))
  out = _run(x1, BLUR, 3, denoise_fn=lambda x, t: jnp.broadcast_to(fixed, x.shape), name="multistep_sde", order=2)

  def c_and_rho(t):
    c = gaussian_field.dct_multipliers(BLUR, jnp.full((1,), t), H, W)[0]
    return c, c / BLUR.noise_std(jnp.float32(t))

  (c0, rho0), (_, rho1) = c_and_rho(0.0), c_and_rho(1.0)
  s0, s1 = BLUR.noise_std(jnp.float32(0.0)), BLUR.noise_std(jnp.float32(1.0))
  r = (rho1 / rho0)[None, :, :, None]
  mean = (s0 / s1) * r * dct.dct2(x1[:1]) + c0[None, :, :, None] * (1 - r**2) * dct.dct2(fixed)
  coeffs = dct.dct2(out)
  np.testing.assert_allclose(coeffs.mean(0, keepdims=True), mean, atol=4 * s0 / 64 + 1e-5)
  np.testing.assert_allclose(coeffs.var(0), (s0**2 * (1 - r**2))[0], rtol=0.1, atol=1e-7)


# ---------------------------------------------------------------------------------------------
# The 2M forms. For C_t = I the step is DPM-Solver++(2M) (Lu et al., 2022); the reference below
# is its update written from the paper's Algorithm 2 in σ, in numpy float64, independent of ours.

VE = corruptions.make({"name": "identity", "noise_schedule": "geometric", "noise_std_min": 0.02, "noise_std_max": 20.0})


def _dpmpp_2m_reference(denoise, x, sigmas, times, stochastic=False, seed_noise=None):
  """DPM-Solver++(2M) (ODE) or SDE-DPM-Solver++(2M) with η = 1 (midpoint), over sigmas[0] > … > sigmas[-1] > 0."""
  old = None
  for i in range(len(sigmas) - 1):
    d = denoise(x, times[i])
    lam, lam_next = -np.log(sigmas[i]), -np.log(sigmas[i + 1])
    h = lam_next - lam
    if old is None:
      d_hat = d
    else:
      r = (lam - (-np.log(sigmas[i - 1]))) / h
      d_hat = (1 + 1 / (2 * r)) * d - (1 / (2 * r)) * old
    if not stochastic:
      x = (sigmas[i + 1] / sigmas[i]) * x + (1 - np.exp(-h)) * d_hat
    else:
      x = (sigmas[i + 1] / sigmas[i]) * np.exp(-h) * x + (1 - np.exp(-2 * h)) * d_hat
      x = x + sigmas[i + 1] * np.sqrt(1 - np.exp(-2 * h)) * seed_noise[i]
    old = d
  return x


@pytest.mark.parametrize("form", ["midpoint", "midpoint_logsnr"])
def test_2m_forms_are_dpm_solver_pp_2m_for_the_identity(form):
  x = np.asarray(jax.random.normal(jax.random.key(0), (2, H, W, 1)), np.float64) * 20.0
  fn = lambda x_t, t: np.tanh(x_t / 4.0) * (1.0 - 0.3 * t)  # any smooth, nonlinear denoiser
  denoise_fn = lambda x_t, t: jnp.tanh(x_t / 4.0) * (1.0 - 0.3 * t[:, None, None, None])
  for grid in (time_grids.make("edm", VE, 7, H, W), np.array([1.0, 0.8, 0.55, 0.4, 0.2, 0.1, 0.0])):
    n = len(grid) - 1
    sigmas = np.asarray(VE.noise_std(jnp.asarray(grid, jnp.float32)), np.float64)
    ours = _run(jnp.asarray(x, jnp.float32), VE, n, denoise_fn=denoise_fn, form=form, time_grid=grid)
    ref = _dpmpp_2m_reference(fn, x, sigmas, np.asarray(jnp.asarray(grid, jnp.float32), np.float64))
    np.testing.assert_allclose(ours, ref, rtol=2e-5, atol=2e-5 * np.abs(ref).max())


def test_sde_2m_is_sde_dpm_solver_pp_2m_for_the_identity():
  x = np.asarray(jax.random.normal(jax.random.key(0), (2, H, W, 1)), np.float64) * 20.0
  grid = time_grids.make("edm", VE, 5, H, W)
  key = jax.random.key(1)
  noise = [
    np.asarray(jax.random.normal(jax.random.fold_in(key, i), x.shape, jnp.float32), np.float64) for i in range(5)
  ]
  fn = lambda x_t, t: np.tanh(x_t / 4.0) * (1.0 - 0.3 * t)
  denoise_fn = lambda x_t, t: jnp.tanh(x_t / 4.0) * (1.0 - 0.3 * t[:, None, None, None])
  sigmas = np.asarray(VE.noise_std(jnp.asarray(grid, jnp.float32)), np.float64)
  ours = _run(
    jnp.asarray(x, jnp.float32), VE, 5, denoise_fn=denoise_fn, name="multistep_sde", form="midpoint", time_grid=grid
  )
  ref = _dpmpp_2m_reference(fn, x, sigmas, np.asarray(jnp.asarray(grid, jnp.float32), np.float64), True, noise)
  np.testing.assert_allclose(ours, ref, rtol=2e-5, atol=2e-5 * np.abs(ref).max())


@pytest.mark.parametrize("family", time_grids.FAMILIES)
@pytest.mark.parametrize("name", ["blur", "mask", "identity"])
def test_grids_converge_their_largest_step_shrinks_as_n_grows(family, name):
  # The defaults: for identity the noise is clipped at its maximum beyond clip_t, where λ is flat.
  corruption = corruptions.make({"name": name})
  largest = [np.max(-np.diff(time_grids.make(family, corruption, n, 16, 16))) for n in (8, 32, 128)]
  assert largest[0] > largest[1] > largest[2], largest
  assert largest[2] < 0.1, largest  # 1/128 for 'uniform'; a flat clock left 1 -> ~0.78 here
