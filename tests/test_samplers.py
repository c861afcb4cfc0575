"""Samplers (docs/method.md §4), checked against the exact posterior mean of Gaussian data.

If x_0 ~ N(0, Σ) and x_t = C_t x_0 + s_t η for any linear C_t, then
E[x_0 | x_t] = Σ C_tᵀ (C_t Σ C_tᵀ + s_t² I)⁻¹ x_t exactly. With that oracle as `denoise_fn`, a
correct Momentum Sampler must reproduce the data covariance, while the naive sampler loses
high-frequency variance (the paper's "lacking detail" failure).
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from soft_diffusion import corruptions, dct, samplers

H = W = 8
N_PIX = H * W
NUM_SAMPLES = 4096
D2 = np.kron(dct.dct_matrix(H), dct.dct_matrix(W))  # 2-D orthonormal DCT on row-major vec(x)
K = np.arange(H)[:, None] + np.arange(W)[None, :]
HIGH_FREQ = K >= 8  # the upper half of the DCT spectrum (k + l >= 8)


def power_law_covariance() -> np.ndarray:
  """Σ with a 1/f² DCT power spectrum, scaled to a mean pixel variance of 0.25."""
  k = np.arange(H)[:, None]
  l = np.arange(W)[None, :]
  lam = 1.0 / (1.0 + k**2 + l**2)
  lam *= 0.25 / lam.mean()
  return D2.T @ np.diag(lam.reshape(-1)) @ D2


SIGMA = power_law_covariance()


def operator_matrix(corruption, t: float) -> jax.Array:
  """The N_PIX × N_PIX matrix of C_t, column j = C_t e_j."""
  basis = jnp.eye(N_PIX, dtype=jnp.float32).reshape(N_PIX, H, W, 1)
  return corruption.apply(basis, jnp.full((N_PIX,), t)).reshape(N_PIX, N_PIX).T


def gaussian_oracle(corruption, data_cov: np.ndarray = SIGMA):
  """denoise_fn(x_t, t) = E[x_0 | x_t] for x_0 ~ N(0, data_cov); t must be equal across the batch."""
  sigma = jnp.asarray(data_cov, jnp.float32)

  def denoise_fn(x_t, t):
    c = operator_matrix(corruption, t[0])
    s = corruption.noise_std(t[:1])[0]
    gain = sigma @ c.T @ jnp.linalg.inv(c @ sigma @ c.T + s**2 * jnp.eye(N_PIX))
    return (x_t.reshape(x_t.shape[0], N_PIX) @ gain.T).reshape(x_t.shape)

  return denoise_fn


def dct_variances(x: np.ndarray) -> np.ndarray:
  coeffs = np.asarray(x, np.float64).reshape(x.shape[0], N_PIX) @ D2.T
  return coeffs.var(axis=0).reshape(H, W)


CASES = {
  # σ_B up to 23 px on 64×64 is 2.9 px on 8×8.
  "blur": (dict(name="blur", blur_sigma_max=23.0 * H / 64), 100),
  "mask": (dict(name="mask", mask_order="center"), 200),
}


@pytest.fixture(scope="module", params=sorted(CASES))
def oracle_run(request):
  cfg, num_steps = CASES[request.param]
  corruption = corruptions.make(cfg)
  x0 = np.random.default_rng(0).standard_normal((NUM_SAMPLES, N_PIX)) @ np.linalg.cholesky(SIGMA).T
  x0 = jnp.asarray(x0.reshape(NUM_SAMPLES, H, W, 1), jnp.float32)
  ones = jnp.ones((NUM_SAMPLES,))
  x_init = corruption.corrupt(x0, ones, jax.random.normal(jax.random.key(1), x0.shape))  # exact p_1
  # Target: the law of x_0 as the samplers return it, C_0 x_0 + s_0 η.
  c0 = np.asarray(operator_matrix(corruption, 0.0), np.float64)
  s0 = float(corruption.noise_std(jnp.zeros(1))[0])
  target = np.diag(D2 @ (c0 @ SIGMA @ c0.T + s0**2 * np.eye(N_PIX)) @ D2.T).reshape(H, W)
  oracle = gaussian_oracle(corruption)
  out = {}
  for name in ("momentum", "naive"):
    run = jax.jit(lambda x, key, name=name: samplers.get(name)(oracle, x, corruption, num_steps=num_steps, key=key))
    out[name] = dct_variances(np.asarray(run(x_init, jax.random.key(2))))
  return request.param, num_steps, target, out


def test_momentum_sampler_reproduces_the_data_covariance(oracle_run):
  name, num_steps, target, out = oracle_run
  rel = np.abs(out["momentum"] / target - 1.0)
  print(f"{name}: momentum sampler, {num_steps} steps: mean relative error of DCT variances {rel.mean():.3f}")
  assert rel.mean() <= 0.10, f"{name}: momentum sampler variance error {rel.mean():.3f} > 0.10 at {num_steps} steps"


def test_naive_sampler_loses_high_frequency_variance(oracle_run):
  name, num_steps, target, out = oracle_run
  naive = (out["naive"][HIGH_FREQ] / target[HIGH_FREQ]).mean()
  momentum = (out["momentum"][HIGH_FREQ] / target[HIGH_FREQ]).mean()
  print(f"{name}: high-frequency variance kept: naive {naive:.3f}, momentum {momentum:.3f}")
  assert naive < 0.7, f"{name}: naive sampler kept {naive:.2f} of the high-frequency variance"
  assert momentum > 0.9, f"{name}: momentum sampler kept only {momentum:.2f} of the high-frequency variance"


# ---- structure of the loop -------------------------------------------------------------------


def network_call_times(name, num_steps):
  """The t of every denoise_fn call a sampler makes, in order."""
  corruption = corruptions.make({"name": "blur"})
  seen = []

  def denoise_fn(x_t, t):
    jax.debug.callback(lambda tt: seen.append(float(tt[0])), t, ordered=True)
    return x_t

  x = jnp.zeros((2, 4, 4, 1))
  jax.block_until_ready(samplers.get(name)(denoise_fn, x, corruption, num_steps=num_steps, key=jax.random.key(0)))
  jax.effects_barrier()
  return seen


@pytest.mark.parametrize("name", sorted(set(samplers.SAMPLERS) - {"pc"}))
def test_one_network_call_per_step_at_the_right_times(name):
  np.testing.assert_allclose(network_call_times(name, 5), [1.0, 0.8, 0.6, 0.4, 0.2], atol=1e-6)


def test_pc_makes_num_steps_calls_corrector_and_predictor_at_each_level():
  # 6 calls: 3 levels (t = 1, 1/2, 0: score_sde's grid ends at the smallest noise), each corrector
  # then predictor; 5 calls: the first level has the predictor only.
  np.testing.assert_allclose(network_call_times("pc", 6), [1, 1, 0.5, 0.5, 0, 0], atol=1e-6)
  np.testing.assert_allclose(network_call_times("pc", 5), [1, 0.5, 0.5, 0, 0], atol=1e-6)


def test_pc_corrector_is_score_sdes_langevin_step_and_the_last_step_denoises():
  """With h = x/2 on identity corruption the score is (x/2 - x)/s². N = 4: two levels (t = 1, 0).
  The corrector at t = 1 is x + ε g + √(2ε) z with ε = 2 (snr ‖z‖/‖g‖)² (the trajectory's second
  entry); the last predictor call (t = 0) returns its estimate h(x, 0) = x/2 with no noise."""
  corruption = corruptions.make({"name": "identity", "noise_schedule": "geometric", "noise_std_max": 4.0})
  x = jax.random.normal(jax.random.key(0), (3, 4, 4, 1)) * 4.0
  key = jax.random.key(5)
  half = lambda x_t, t: 0.5 * x_t
  trace = samplers.pc_sampler(half, x, corruption, num_steps=4, key=key, snr=0.2, trace=True)
  got, x_ts = trace.x0, trace.x_t
  s1 = float(corruption.noise_std(jnp.ones(1))[0])
  z = jax.random.normal(jax.random.split(jax.random.fold_in(key, 0))[0], x.shape)
  g = -0.5 * x / s1**2
  norm = lambda v: jnp.sqrt(jnp.sum(v**2, axis=(1, 2, 3)))[:, None, None, None]
  eps = 2 * (0.2 * norm(z) / norm(g)) ** 2
  np.testing.assert_allclose(x_ts[1], x + eps * g + jnp.sqrt(2 * eps) * z, rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(got, 0.5 * x_ts[3], rtol=1e-6, atol=1e-6)


def test_momentum_with_identity_is_the_ve_reverse_diffusion_predictor(rng):
  corruption = corruptions.make({"name": "identity", "noise_schedule": "geometric", "noise_std_max": 50.0})
  x_t = jnp.asarray(rng.standard_normal((3, 4, 4, 2)), jnp.float32) * 50.0
  x0_hat = jnp.asarray(rng.standard_normal(x_t.shape), jnp.float32)
  noise = jnp.asarray(rng.standard_normal(x_t.shape), jnp.float32)
  t, t_next = jnp.full(3, 0.7), jnp.full(3, 0.6)
  s, s_next = corruption.noise_std(t)[0], corruption.noise_std(t_next)[0]
  score = (x0_hat - x_t) / s**2  # VE: s_θ = (x̂_0 - x_t)/σ²
  want = x_t + (s**2 - s_next**2) * score + jnp.sqrt(s**2 - s_next**2) * noise
  got = samplers.momentum_update(corruption, x_t, x0_hat, t, t_next, noise)
  np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-4)


def test_momentum_with_constant_noise_is_cold_diffusion_improved_sampler(rng):
  # s_t constant: x_{t-Δt} = x_t - C_t x̂_0 + C_{t-Δt} x̂_0 (Bansal et al.'s Algorithm 2).
  corruption = corruptions.make({"name": "blur", "noise_schedule": "constant", "noise_std_min": 0.05})
  x_t, x0_hat, noise = (jnp.asarray(a, jnp.float32) for a in rng.standard_normal((3, 2, 6, 6, 1)))
  t, t_next = jnp.full(2, 0.5), jnp.full(2, 0.45)
  got = samplers.momentum_update(corruption, x_t, x0_hat, t, t_next, noise)
  want = x_t - corruption.apply(x0_hat, t) + corruption.apply(x0_hat, t_next)
  np.testing.assert_allclose(got, want, atol=1e-5)


def test_deterministic_sampler_ignores_the_key_and_stochastic_ones_do_not():
  corruption = corruptions.make({"name": "blur"})
  x = jax.random.normal(jax.random.key(0), (2, 6, 6, 1))
  denoise_fn = lambda x_t, t: 0.9 * x_t
  for name in samplers.SAMPLERS:
    run = jax.jit(lambda key, name=name: samplers.get(name)(denoise_fn, x, corruption, num_steps=4, key=key))
    a, b = run(jax.random.key(1)), run(jax.random.key(2))
    if name in ("deterministic", "multistep"):
      np.testing.assert_array_equal(a, b)
    else:
      assert not np.allclose(a, b), f"{name} sampler gave the same output for two keys"


def test_trace_and_jit_equals_eager():
  corruption = corruptions.make({"name": "mask"})
  x = jax.random.normal(jax.random.key(0), (2, 6, 6, 3))
  denoise_fn = lambda x_t, t: jnp.tanh(x_t) * (1.0 - 0.5 * t[:, None, None, None])
  eager = samplers.momentum_sampler(denoise_fn, x, corruption, num_steps=3, key=jax.random.key(1), trace=True)
  jitted = jax.jit(
    lambda x: samplers.momentum_sampler(denoise_fn, x, corruption, num_steps=3, key=jax.random.key(1), trace=True)
  )(x)
  assert isinstance(eager, samplers.Trace) and isinstance(jitted, samplers.Trace)
  for a, b in zip(eager, jitted, strict=True):
    np.testing.assert_allclose(a, b, atol=1e-6)
  assert eager.x0_hat.shape == x.shape
  np.testing.assert_allclose(eager.times, [1, 2 / 3, 1 / 3], atol=1e-6)  # the grid it used


@pytest.mark.parametrize("bad", [0, -3, 2.5, True])
def test_bad_num_steps(bad):
  with pytest.raises(ValueError, match="num_steps must be a Python int >= 1"):
    samplers.naive_sampler(
      lambda x, t: x, jnp.zeros((1, 4, 4, 1)), corruptions.make({}), num_steps=bad, key=jax.random.key(0)
    )


def test_unknown_sampler_name():
  with pytest.raises(ValueError, match="sampler must be one of"):
    samplers.get("ddim")


def test_pc_trajectory_has_one_entry_per_network_call():
  corruption = corruptions.make({"name": "identity", "noise_schedule": "geometric"})
  x = jax.random.normal(jax.random.key(0), (2, 4, 4, 1))
  denoise_fn = lambda x_t, t: 0.5 * x_t
  kwargs = dict(num_steps=5, key=jax.random.key(3))
  plain = samplers.pc_sampler(denoise_fn, x, corruption, **kwargs)
  x0, _, times, x_ts, x0_hats = samplers.pc_sampler(denoise_fn, x, corruption, trace=True, **kwargs)
  np.testing.assert_allclose(x0, plain, atol=1e-6)
  assert x_ts.shape == x0_hats.shape == (5, 2, 4, 4, 1)
  np.testing.assert_allclose(times, [1, 0.5, 0.5, 0, 0], atol=1e-6)  # odd: a predictor alone first
  np.testing.assert_array_equal(x_ts[0], x)


def test_trajectory_records_every_step_and_leaves_x0_unchanged():
  corruption = corruptions.make({"name": "blur"})
  x = jax.random.normal(jax.random.key(0), (2, 8, 8, 1))
  denoise_fn = lambda x_t, t: jnp.tanh(x_t) * (1.0 - 0.5 * t[:, None, None, None])
  kwargs = dict(num_steps=4, key=jax.random.key(3))
  plain = samplers.momentum_sampler(denoise_fn, x, corruption, **kwargs)
  x0, _, times, x_ts, x0_hats = samplers.momentum_sampler(denoise_fn, x, corruption, trace=True, **kwargs)
  np.testing.assert_allclose(times, [1, 0.75, 0.5, 0.25], atol=1e-6)
  np.testing.assert_allclose(x0, plain, atol=1e-6)
  assert x_ts.shape == x0_hats.shape == (4, 2, 8, 8, 1)
  np.testing.assert_array_equal(x_ts[0], x)  # step 0 starts from x_init at t = 1
  # Each recorded estimate is the network's output at that step's input and time.
  t2 = jnp.full((2,), 0.5)
  np.testing.assert_allclose(x0_hats[2], denoise_fn(x_ts[2], t2), atol=1e-6)


# ---- score_sde's predictor-corrector sampler on the VE SDE ---------------------------------------


def ve_oracle_outputs(sigma: np.ndarray, runs: list[tuple[str, int]]) -> tuple[dict, float]:
  """DCT variances [H, W] of each (sampler, NFE) of `runs` on the VE SDE (C_t = I, s_t 0.01 -> 5,
  geometric) with the exact posterior mean of N(0, sigma) as h and the exact p_1; and s_0."""
  corruption = corruptions.make({"name": "identity", "noise_schedule": "geometric", "noise_std_max": 5.0})
  x0 = (
    np.random.default_rng(0).standard_normal((NUM_SAMPLES, N_PIX)) @ np.linalg.cholesky(sigma + 1e-12 * np.eye(N_PIX)).T
  )
  x0 = jnp.asarray(x0.reshape(NUM_SAMPLES, H, W, 1), jnp.float32)
  x_init = corruption.corrupt(x0, jnp.ones(NUM_SAMPLES), jax.random.normal(jax.random.key(1), x0.shape))
  oracle = gaussian_oracle(corruption, sigma)
  out = {}
  for name, num_steps in runs:
    run = jax.jit(
      lambda x, n=name, k=num_steps: samplers.get(n)(oracle, x, corruption, num_steps=k, key=jax.random.key(2))
    )
    out[name, num_steps] = dct_variances(np.asarray(run(x_init)))
  return out, float(corruption.noise_std(jnp.zeros(1))[0])


def test_pc_sampler_on_the_gaussian_oracle_with_the_ve_sde():
  """The exact posterior mean as h: the Langevin corrector helps at an equal number of noise
  levels (PC with 2L calls beats the predictor alone with L; measured at L = 50: 0.104 vs 0.128
  mean relative error of the DCT variances), and PC stays within 15% of the true variances (PC
  returns the denoised estimate, so its truth is Σ; the predictor's is Σ + s_0² I). At an equal
  number of network calls the predictor alone is closer beyond ~50 calls (measured: 0.062 vs
  0.104 at 100): with an exact score, the corrector's fixed signal-to-noise ratio leaves a
  variance excess, highest at high frequencies, that more steps do not remove (at 2,000 calls:
  mean 0.094, up to 0.28 at the highest frequency; 0.069 with snr 0.08). Printed with -s."""
  levels = 50
  out, s0 = ve_oracle_outputs(SIGMA, [("pc", 2 * levels), ("momentum", levels)])
  truth = np.diag(D2 @ SIGMA @ D2.T).reshape(H, W)
  pc = float(np.abs(out["pc", 2 * levels] / truth - 1.0).mean())
  predictor = float(np.abs(out["momentum", levels] / (truth + s0**2) - 1.0).mean())
  print(
    f"VE oracle, {levels} levels: PC ({2 * levels} calls) {pc:.3f}, predictor alone ({levels} calls) {predictor:.3f}"
  )
  assert pc < predictor, f"the corrector did not help: PC {pc:.3f} vs predictor {predictor:.3f} at {levels} levels"
  assert pc <= 0.15, f"PC's DCT variances are off by {pc:.3f} on average"


def test_pc_removes_the_last_noise_where_the_data_has_no_power():
  """Data with no power at k + l >= 8: PC's samples must have none there either (score_sde's noise
  removal returns the denoised estimate). Keeping the last state instead leaves variance s_0²
  (1e-4) at those frequencies; the Momentum Sampler, which does, shows it (measured 1.29 s_0²)."""
  lam = np.where(K < 8, 1.0 / (1.0 + K.astype(float) ** 2), 0.0)
  sigma = D2.T @ np.diag(lam.reshape(-1)) @ D2
  out, s0 = ve_oracle_outputs(sigma, [("pc", 100), ("momentum", 50)])
  pc, momentum = out["pc", 100][HIGH_FREQ].mean() / s0**2, out["momentum", 50][HIGH_FREQ].mean() / s0**2
  print(f"variance at the empty frequencies / s_0²: PC {pc:.4f}, Momentum {momentum:.3f}")
  assert pc < 0.01, f"PC left variance {pc:.3f} × s_0² where the data has none"
  assert momentum > 0.8, f"the Momentum Sampler was expected to keep about s_0², got {momentum:.3f} × s_0²"


# ---- the end of a sampler (final) ------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(samplers.SAMPLERS))
def test_final_denoise_returns_the_last_estimate_and_noise_the_last_update(name):
  """final = 'denoise' returns the last step's x̂_0 (the same network calls and keys, so the
  trajectory is unchanged); 'noise' returns the last update's x, which still holds noise."""
  corruption = corruptions.make({"name": "blur"})
  x = jax.random.normal(jax.random.key(0), (2, 6, 6, 1))
  denoise_fn = lambda x_t, t: jnp.tanh(x_t) * (1.0 - 0.5 * t[:, None, None, None])  # noqa: E731
  run = (
    lambda final: samplers.get(name, final=final)(  # noqa: E731
      denoise_fn, x, corruption, num_steps=4, key=jax.random.key(3), trace=True
    )[:2]
  )
  x_noise, last_noise = run("noise")
  x_denoise, last_denoise = run("denoise")
  np.testing.assert_array_equal(last_noise, last_denoise)
  np.testing.assert_array_equal(x_denoise, last_denoise)
  traced = lambda final: samplers.get(name, final=final)(  # noqa: E731  the scan path
    denoise_fn, x, corruption, num_steps=4, key=jax.random.key(3), trace=True
  )
  (x_scan, _, _, x_ts, hats), (_, _, _, x_ts_noise, hats_noise) = traced("denoise"), traced("noise")
  plain = samplers.get(name, final="denoise")(denoise_fn, x, corruption, num_steps=4, key=jax.random.key(3))
  np.testing.assert_allclose(plain, x_scan, atol=1e-6)  # the sample is the same with and without trace
  np.testing.assert_array_equal(x_scan, hats[-1])  # the end is the last estimate
  np.testing.assert_array_equal(x_ts, x_ts_noise)  # and the trajectory is the same
  np.testing.assert_array_equal(hats, hats_noise)
  assert float(jnp.max(jnp.abs(x_noise - last_noise))) > 1e-3
  default_end = "denoise" if name == "pc" else "noise"
  np.testing.assert_array_equal(
    samplers.get(name, final="auto")(denoise_fn, x, corruption, num_steps=4, key=jax.random.key(3)),
    x_denoise if default_end == "denoise" else x_noise,
  )


def test_bad_final_is_one_line():
  corruption = corruptions.make({"name": "blur"})
  for name in ("momentum", "pc", "multistep"):
    with pytest.raises(ValueError, match=r"final must be one of \('noise', 'denoise'\)") as info:
      samplers.get(name, final="clean")(
        lambda x, t: x, jnp.zeros((1, 4, 4, 1)), corruption, num_steps=2, key=jax.random.key(0)
      )
    assert "\n" not in str(info.value)


def test_a_sampler_without_final_refuses_an_explicit_end():
  """A registered sampler that has no `final` argument (a user's own) must not silently ignore
  sample.final = 'denoise'; 'auto' keeps its own end."""

  def own_sampler(denoise_fn, x_init, corruption, *, num_steps, key):
    return x_init

  samplers.SAMPLERS["own"] = own_sampler
  try:
    assert samplers.get("own", final="auto") is own_sampler
    with pytest.raises(ValueError, match="sampler 'own' does not take final"):
      samplers.get("own", final="denoise")
    assert (
      not samplers.ends_denoised("own") and samplers.ends_denoised("pc") and samplers.ends_denoised("own", "denoise")
    )
  finally:
    del samplers.SAMPLERS["own"]
