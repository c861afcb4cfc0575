"""Reverse samplers for x_t = C_t x_0 + s_t η (docs/method.md §4); `num_steps` network evaluations each.

Every sampler has the signature

    sampler(denoise_fn, x_init, corruption, *, num_steps, key, trace=False) -> x_0, or a Trace

(plus `time_grid` and `rho` for all, and options with defaults, such as `snr` for 'pc' and
`order` for 'multistep'). The one-call-per-step samplers run from t = 1 to t = 0 in `num_steps`
steps, by default of Δt = 1/num_steps: step i evaluates x̂_0 = denoise_fn(x_t, t) at
t = 1 - i/num_steps (never at t < 0) and moves to t - Δt with an update rule
`update(corruption, x_t, x0_hat, t, t_next, noise)` run by `reverse_process` (which can also
start below t = 1, `t_start`, as restoration does from an observation's level, and visit any
grid of `time_grids.py`: `time_grid`); adding one is a new update function,
`sampler_from_update`, and one `SAMPLERS` entry. `integrate` is that loop on a resolved grid
(`time_grids.table`: the N+1 times as an array). With `trace=True` every sampler returns a
`Trace` (the sample, the last estimate, and each network call's time, input and estimate)
instead of the sample: one form for all, which the trajectory figure reads. `pc_sampler` makes two calls per level and
`multistep.multistep_sampler` remembers earlier estimates: each has its own loop.

* `momentum_sampler`: the paper's Algorithm 2 (Momentum Sampler):
      ŷ = C_t x̂_0,  ε̂ = ŷ - x_t,
      z = x_t - ((s_{t-Δt}² - s_t²)/s_t²) ε̂ + sqrt(s_t² - s_{t-Δt}²) η,
      x_{t-Δt} = z + (C_{t-Δt} x̂_0 - ŷ).
  With C_t = I it is score_sde's VE reverse-diffusion predictor.
* `naive_sampler`: Algorithm 1, re-corrupt the estimate: x_{t-Δt} = C_{t-Δt} x̂_0 + s_{t-Δt} η.
* `deterministic_sampler`: an EXTENSION, not the paper's method (DDIM-like):
      x_{t-Δt} = C_{t-Δt} x̂_0 + (s_{t-Δt}/s_t)(x_t - C_t x̂_0).
* `ancestral_sampler`: an EXTENSION for corruptions diagonal in a basis (blur, masks, identity):
  DDPM's ancestral step for the Markov chain with Soft Diffusion's marginals (`ancestral_update`);
  random at every step, so it samples p(x_0 | x_t) from a fixed x_t (restoration's native method).
  For unconditional sampling from p_1 it measured worse than Momentum (exact fields, oracle
  denoiser, the same NFE), so it is not the `sample.sampler` default.
* `multistep` / `multistep_sde` (multistep.py): an EXTENSION for corruptions diagonal in a basis:
  a multistep exponential integrator of the probability-flow ODE / reverse SDE in that basis,
  order 1–3; order 1 is `deterministic` / `ancestral`. Measured for few steps (docs/results.md,
  "Few-step sampling").
* `pc_sampler`: score_sde's predictor-corrector sampler (the VE baseline's): a Langevin
  corrector step and a Momentum (reverse-diffusion) predictor step per level, two network
  evaluations per level; the last step returns the denoised estimate (score_sde's noise
  removal). Not the paper's method for Soft Diffusion.

The end (`final`, every sampler): 'noise' returns the last update's x at t = 0, which for
s_0 > 0 still holds noise of about s_0 (the paper's end, the default of every sampler but 'pc');
'denoise' returns the last step's estimate x̂_0 instead (score_sde's noise removal and EDM's last
Euler step to σ = 0; 'pc''s default). The number of network evaluations is the same.

All are `lax.fori_loop`s, jit-able, and work unchanged on a batch sharded over a mesh.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

from soft_diffusion import dct, multistep, time_grids
from soft_diffusion.corruptions import base

DenoiseFn = Callable[[jax.Array, jax.Array], jax.Array]
UpdateFn = Callable[..., jax.Array]
Sampler = Callable[..., Any]


FINALS = ("noise", "denoise")  # how a sampler ends (module docstring)


def _bcast(v: jax.Array) -> jax.Array:
  return v[:, None, None, None]


def check_final(final: str) -> None:
  if final not in FINALS:
    raise ValueError(f"final must be one of {FINALS}, got {final!r}")


def momentum_update(
  corruption: Any, x_t: jax.Array, x0_hat: jax.Array, t: jax.Array, t_next: jax.Array, noise: jax.Array
) -> jax.Array:
  """One step of the Momentum Sampler (the paper's Algorithm 2)."""
  var_t = jnp.square(corruption.noise_std(t))
  var_next = jnp.square(corruption.noise_std(t_next))
  y_t = corruption.apply(x0_hat, t)
  eps_hat = y_t - x_t
  z = x_t - _bcast((var_next - var_t) / var_t) * eps_hat + _bcast(jnp.sqrt(jnp.maximum(var_t - var_next, 0.0))) * noise
  return z + (corruption.apply(x0_hat, t_next) - y_t)


def naive_update(
  corruption: Any, x_t: jax.Array, x0_hat: jax.Array, t: jax.Array, t_next: jax.Array, noise: jax.Array
) -> jax.Array:
  """One step of the naive sampler (Algorithm 1): re-corrupt x̂_0 to level t_next."""
  del x_t, t
  return corruption.corrupt(x0_hat, t_next, noise)


def deterministic_update(
  corruption: Any, x_t: jax.Array, x0_hat: jax.Array, t: jax.Array, t_next: jax.Array, noise: jax.Array
) -> jax.Array:
  """One step of the deterministic sampler. EXTENSION (DDIM-like), not in the paper."""
  del noise
  ratio = corruption.noise_std(t_next) / corruption.noise_std(t)
  return corruption.apply(x0_hat, t_next) + _bcast(ratio) * (x_t - corruption.apply(x0_hat, t))


def ancestral_update(
  corruption: Any, x_t: jax.Array, x0_hat: jax.Array, t: jax.Array, t_next: jax.Array, noise: jax.Array
) -> jax.Array:
  """One step of the ancestral sampler. EXTENSION, not in the paper; for corruptions diagonal in a
  basis (`corruption.diagonal`: blur, masking, identity).

  Per coefficient, with c_t, c_u the multipliers at t and u = t_next < t, take the Markov chain
  x_t = d x_u + σ ξ with d = c_t/c_u (0 where c_u = 0) and σ² = s_t² - d² s_u² ≥ 0; it has the
  forward marginals C_t x_0 + s_t η. Its exact reverse step given x_0 (DDPM's posterior
  q(x_u | x_t, x_0), here per coefficient) is Gaussian:

      mean = (σ² c_u x̂_0 + d s_u² x_t) / s_t²,   variance = s_u² σ² / s_t²,

  with x̂_0 in place of x_0. Unlike the Momentum step it stays random while s_t is constant
  (σ² = (1 - d²) s² for the frequencies a step un-blurs), so started from one fixed x_t it draws
  different samples of p(x_0 | x_t): what restoration from an observation needs. For C_t = I its
  mean is the Momentum step's (score_sde's reverse diffusion) and its variance DDPM's."""
  basis, c_t = corruption.diagonal(t, x_t.shape[1], x_t.shape[2])
  _, c_u = corruption.diagonal(t_next, x_t.shape[1], x_t.shape[2])
  c_t, c_u = c_t[..., None].astype(jnp.float32), c_u[..., None].astype(jnp.float32)
  s_t = _bcast(corruption.noise_std(t).astype(jnp.float32))
  s_u = _bcast(corruption.noise_std(t_next).astype(jnp.float32))
  d = jnp.where(c_u > 0, c_t / jnp.where(c_u > 0, c_u, 1.0), 0.0)
  sig2 = jnp.maximum(jnp.square(s_t) - jnp.square(d * s_u), 0.0)
  to_b = functools.partial(dct.to_basis, basis=basis)
  mean = sig2 * c_u * to_b(x0_hat.astype(jnp.float32)) + d * jnp.square(s_u) * to_b(x_t.astype(jnp.float32))
  mean = mean / jnp.square(s_t)
  std = jnp.sqrt(jnp.square(s_u) * sig2) / s_t
  return dct.from_basis(mean + std * to_b(noise.astype(jnp.float32)), basis).astype(x_t.dtype)


Trace = time_grids.Trace  # what every sampler returns with trace=True


def integrate(
  update: UpdateFn,
  denoise_fn: DenoiseFn,
  x_init: jax.Array,
  corruption: Any,
  times: jax.Array,
  *,
  key: jax.Array,
  final: str = "noise",
  trace: bool = False,
) -> Any:
  """Runs `update` along the resolved grid `times` (N + 1 times t_0 > … > t_N = 0,
  `time_grids.table`): step i evaluates x̂_0 = denoise_fn(x, t_i) and moves to t_{i+1}.

  Args:
    update: (corruption, x_t, x0_hat, t, t_next, noise) -> x_{t_next}.
    denoise_fn: (x_t [B,H,W,C], t [B]) -> x̂_0 [B,H,W,C].
    x_init: [B, H, W, C], a sample of p_{t_0}.
    corruption: object with `apply`, `noise_std`, `corrupt`.
    times: the N + 1 times: an array, or `time_grids.Uniform` (what `time_grids.table` gives).
    key: PRNG key; step i draws its noise from fold_in(key, i).
    final: 'noise' (the last update's x_0, the paper's end) or 'denoise' (the last step's x̂_0).
    trace: return a `Trace` (every step's input and estimate) instead of x_0; the same keys, so
      x_0 is unchanged.
  """
  check_final(final)
  num_steps = len(times) - 1
  batch = x_init.shape[0]
  dtype = jnp.promote_types(x_init.dtype, jnp.float32)

  def level(j):
    return jnp.full((batch,), times[j], dtype)

  def body(i, carry):
    x_t, _ = carry
    t, t_next = level(i), level(i + 1)
    x0_hat = denoise_fn(x_t, t).astype(x_t.dtype)
    noise = jax.random.normal(jax.random.fold_in(key, i), x_t.shape, x_t.dtype)
    x_next = update(corruption, x_t, x0_hat, t, t_next, noise).astype(x_t.dtype)
    if final == "denoise":
      x_next = jnp.where(i == num_steps - 1, x0_hat, x_next)
    return x_next, x0_hat

  init = (x_init, jnp.zeros_like(x_init))
  if not trace:
    x0, _ = jax.lax.fori_loop(0, num_steps, body, init)
    return x0

  def scan_body(carry, i):
    new = body(i, carry)
    return new, (carry[0], new[1])

  (x0, x0_hat), (x_ts, x0_hats) = jax.lax.scan(scan_body, init, jnp.arange(num_steps))
  grid = times.array(dtype) if isinstance(times, time_grids.Uniform) else times
  return Trace(x0, x0_hat, grid[:num_steps], x_ts, x0_hats)


def reverse_process(
  update: UpdateFn,
  denoise_fn: DenoiseFn,
  x_init: jax.Array,
  corruption: Any,
  *,
  num_steps: int,
  key: jax.Array,
  trace: bool = False,
  t_start: float = 1.0,
  time_grid: Any = "auto",
  rho: float = 7.0,
  final: str = "noise",
) -> Any:
  """Runs `update` from t = t_start (default 1) to t = 0 in `num_steps` steps (one denoise_fn
  call each): the grid `time_grid` resolved (`time_grids.table`), then `integrate`.

  Args:
    update, denoise_fn, corruption, key, final, trace: as `integrate`.
    x_init: [B, H, W, C] sample of p_{t_start}.
    num_steps: N ≥ 1, the number of network evaluations.
    t_start: the level of x_init, in (0, 1] (restoration starts from an observation's level,
      `soft_diffusion.restoration`).
    time_grid: 'auto' (= 'uniform' for these samplers: t_i = t_start (1 - i/N)), a family of
      `time_grids.FAMILIES`, or num_steps + 1 explicit times.
    rho: ρ of the 'edm' family.
  Returns:
    x_0 [B, H, W, C]; with `trace`, a `Trace`.
  """
  time_grids.check_num_steps(num_steps)
  check_final(final)
  if not 0 < t_start <= 1:
    raise ValueError(f"t_start must be in (0, 1], got {t_start!r}")
  x_init = base.check_images(x_init, "x_init")
  _, height, width, _ = x_init.shape
  dtype = jnp.promote_types(x_init.dtype, jnp.float32)
  grid = "uniform" if isinstance(time_grid, str) and time_grid == "auto" else time_grid
  times = time_grids.table(grid, corruption, num_steps, height, width, t_start=t_start, rho=rho, dtype=dtype)
  return integrate(update, denoise_fn, x_init, corruption, times, key=key, final=final, trace=trace)


def pc_sampler(
  denoise_fn: DenoiseFn,
  x_init: jax.Array,
  corruption: Any,
  *,
  num_steps: int,
  key: jax.Array,
  snr: float = 0.17,
  trace: bool = False,
  time_grid: Any = "auto",
  rho: float = 7.0,
  final: str = "denoise",
) -> Any:
  """score_sde's predictor-corrector sampler (Song et al., 2021), for any corruption.

  `num_steps` network evaluations over L = ceil(N/2) levels t_l = 1 - l/(L-1), l = 0 … L-1
  (score_sde's grid from T down to its smallest noise; here t = 0, s_0 = noise_std_min), or the
  L levels of `time_grid` ('auto' = 'uniform', a `time_grids` family or L explicit times; rho:
  the 'edm' family's ρ; needs L >= 2 unless uniform). At each
  level one Langevin corrector step, then one predictor step to t_{l+1} (the first level has no
  corrector when N is odd). Score: s_θ(x, t) = (C_t h_θ(x, t) - x)/s_t² (losses.py).

  * Corrector (score_sde's LangevinCorrector, one step): with g = s_θ(x, t) and z ~ N(0, I),
    ε = 2 (snr ‖z‖ / ‖g‖)², x ← x + ε g + √(2ε) z. Norms are per image (score_sde takes the
    batch mean, so an image depended on the others in its batch).
  * Predictor: the Momentum update (= score_sde's reverse-diffusion predictor when C_t = I).
  * Noise removal: the last predictor step goes from s_0 to no noise and returns its mean, the
    denoised estimate x̂_0 = h_θ(x, 0) (score_sde's x + σ_min² s_θ when C_t = I), so the
    samples do not keep noise of about s_0 (`final = 'denoise'`, the default here; 'noise' returns
    the last Momentum update's x instead, as the other samplers do by default).

  Signature and returns as `reverse_process`; a `Trace` has one entry per network call.
  """
  time_grids.check_num_steps(num_steps)
  check_final(final)
  if not snr > 0:
    raise ValueError(f"snr must be > 0, got {snr!r}")
  x_init = base.check_images(x_init, "x_init")
  batch, height, width, _ = x_init.shape
  dtype = jnp.promote_types(x_init.dtype, jnp.float32)
  levels = (num_steps + 1) // 2
  if isinstance(time_grid, str) and time_grid in ("auto", "uniform"):

    def level_time_of(l):  # t_l = (L-1-l)/(L-1), clamped at 0: the last level is t = 0
      return jnp.maximum(levels - 1 - l, 0) / max(levels - 1, 1)

  else:
    if levels < 2:
      raise ValueError(f"pc with time_grid {time_grid!r} needs num_steps >= 3 (two levels), got {num_steps}")
    grid = time_grids.table(time_grid, corruption, levels - 1, height, width, rho=rho, dtype=dtype)

    def level_time_of(l):  # the predictor of the last level steps to t = 0 again
      return grid[jnp.minimum(l, levels - 1)]

  def level_time(l):
    return jnp.full((batch,), level_time_of(l), dtype)

  def per_image_norm(v):
    return jnp.sqrt(jnp.sum(jnp.square(v), axis=(1, 2, 3)))

  def corrector(x, t, k):
    x0_hat = denoise_fn(x, t).astype(x.dtype)
    grad = (corruption.apply(x0_hat, t) - x) / _bcast(jnp.square(corruption.noise_std(t)))
    z = jax.random.normal(k, x.shape, x.dtype)
    eps = 2.0 * jnp.square(snr * per_image_norm(z) / jnp.maximum(per_image_norm(grad), 1e-20))
    return (x + _bcast(eps) * grad + _bcast(jnp.sqrt(2.0 * eps)) * z).astype(x.dtype), x0_hat

  def predictor(x, l, k):
    t, t_next = level_time(l), level_time(l + 1)
    x0_hat = denoise_fn(x, t).astype(x.dtype)
    noise = jax.random.normal(k, x.shape, x.dtype)
    x_next = momentum_update(corruption, x, x0_hat, t, t_next, noise).astype(x.dtype)
    if final == "noise":
      return x_next, x0_hat
    return jnp.where(l == levels - 1, x0_hat, x_next), x0_hat  # noise removal at the end

  def level(carry, l):
    x, _ = carry
    k_corrector, k_predictor = jax.random.split(jax.random.fold_in(key, l))
    x_corrected, x0_c = corrector(x, level_time(l), k_corrector)
    x_next, x0_p = predictor(x_corrected, l, k_predictor)
    return (x_next, x0_p), (jnp.stack([x, x_corrected]), jnp.stack([x0_c, x0_p]))

  x, x0_hat = x_init, jnp.zeros_like(x_init)
  first_x, first_x0 = [], []
  start = 0
  if num_steps % 2:  # odd: the first level is a predictor step alone
    k_predictor = jax.random.split(jax.random.fold_in(key, 0))[1]
    first_x, (x, x0_hat) = [x_init[None]], predictor(x_init, 0, k_predictor)
    first_x0 = [x0_hat[None]]
    start = 1
  (x0, x0_hat), (x_ts, x0_hats) = jax.lax.scan(level, (x, x0_hat), jnp.arange(start, levels))
  if not trace:
    return x0
  flat = lambda a: a.reshape(-1, *a.shape[2:])  # noqa: E731
  table = jnp.asarray(level_time_of(jnp.arange(levels)), dtype)
  calls = jnp.repeat(table[start:], 2)  # corrector, then predictor, at each level
  times = jnp.concatenate([table[:1], calls]) if start else calls
  x_ts = jnp.concatenate([*first_x, flat(x_ts)])
  x0_hats = jnp.concatenate([*first_x0, flat(x0_hats)])
  return Trace(x0, x0_hat, times, x_ts, x0_hats)


def sampler_from_update(update: UpdateFn, name: str, doc: str) -> Sampler:
  """A sampler with the shared signature that runs `update` through `reverse_process`."""

  def sampler(
    denoise_fn: DenoiseFn,
    x_init: jax.Array,
    corruption: Any,
    *,
    num_steps: int,
    key: jax.Array,
    trace: bool = False,
    t_start: float = 1.0,
    time_grid: Any = "auto",
    rho: float = 7.0,
    final: str = "noise",
  ) -> Any:
    return reverse_process(
      update,
      denoise_fn,
      x_init,
      corruption,
      num_steps=num_steps,
      key=key,
      trace=trace,
      t_start=t_start,
      time_grid=time_grid,
      rho=rho,
      final=final,
    )

  sampler.__name__ = sampler.__qualname__ = name
  sampler.__doc__ = doc + "\n\nSignature and returns: see `reverse_process`."
  return sampler


momentum_sampler = sampler_from_update(
  momentum_update, "momentum_sampler", "The Momentum Sampler, the paper's Algorithm 2 (module docstring)."
)
naive_sampler = sampler_from_update(
  naive_update, "naive_sampler", "The naive sampler, the paper's Algorithm 1: re-corrupt each estimate."
)
deterministic_sampler = sampler_from_update(
  deterministic_update,
  "deterministic_sampler",
  "EXTENSION, not in the paper: a deterministic DDIM-like sampler (module docstring).",
)


ancestral_sampler = sampler_from_update(
  ancestral_update,
  "ancestral_sampler",
  "EXTENSION, not in the paper: ancestral sampling of a Markov chain with Soft Diffusion's "
  "marginals, for corruptions diagonal in a basis (module docstring).",
)


SAMPLERS: dict[str, Sampler] = {
  "momentum": momentum_sampler,
  "naive": naive_sampler,
  "deterministic": deterministic_sampler,
  "ancestral": ancestral_sampler,
  "pc": pc_sampler,
  "multistep": multistep.multistep_sampler,
  "multistep_sde": multistep.multistep_sde_sampler,
}


def default_time_grid(name: str) -> str:
  """The grid time_grid='auto' means for sampler `name`: 'uniform', and for 'multistep' its
  measured default (`multistep.DEFAULT_TIME_GRID`)."""
  return multistep.DEFAULT_TIME_GRID if name.startswith("multistep") else "uniform"


def ends_denoised(name: str, final: str = "auto") -> bool:
  """Whether sampler `name` with `final` ('auto', 'noise' or 'denoise') returns the last step's
  estimate x̂_0 rather than the last update's x."""
  if final != "auto":
    return final == "denoise"
  parameter = inspect.signature(SAMPLERS[name]).parameters.get("final")
  return parameter is not None and parameter.default == "denoise"


def starts_below_one(name: str) -> bool:
  """Whether sampler `name` can start from a sample of p_t at t < 1 (it takes `t_start`): what
  restoration from an observation's level needs."""
  return "t_start" in inspect.signature(SAMPLERS[name]).parameters


def get(name: str, **options: Any) -> Sampler:
  """The sampler registered as `name` (one of SAMPLERS), with those of `options` it takes
  (e.g. `snr` for 'pc', `order` for 'multistep', `time_grid`, `rho` and `final` for all) bound;
  options it does not take are left out, and `final = 'auto'` (or None) keeps the sampler's own end."""
  if name not in SAMPLERS:
    raise ValueError(f"sampler must be one of {sorted(SAMPLERS)}, got {name!r}")
  sampler = SAMPLERS[name]
  if options.get("final") in ("auto", None):
    options = {k: v for k, v in options.items() if k != "final"}
  accepted = inspect.signature(sampler).parameters
  if "final" in options and "final" not in accepted:
    raise ValueError(f"sampler {name!r} does not take final (its end is its own); use final='auto'")
  bound = {k: v for k, v in options.items() if k in accepted}
  return functools.partial(sampler, **bound) if bound else sampler
