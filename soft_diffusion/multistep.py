"""A multistep exponential integrator for corruptions diagonal in a basis (blur, masks, identity).
EXTENSION, not in the paper: the 'multistep' sampler.

Derivation. Let the corruption be diagonal in an orthonormal basis (`Corruption.diagonal`: the
2-D DCT for blur and identity, pixels for masks). Per coefficient k of that basis,

    x_t(k) = c_t(k) x_0(k) + s_t η(k),   η(k) ~ N(0, 1) independent (the basis is orthonormal),

a scalar diffusion with its own signal scale c_t(k) and the shared noise s_t. Its forward SDE
has drift f = ċ/c and g² = d(s²)/dt - 2 f s²; with the score (c x̂_0 - x)/s², where
x̂_0 = E[x_0 | x_t] is the denoiser's estimate (of the whole image, so coefficients couple only
through it), the probability-flow ODE f x - ½ g² ∇log p_t (same marginals as the forward
process) is

    dx/dt = (ṡ/s) x + (ċ - c ṡ/s) x̂_0(x, t),   per coefficient.

With ρ = c/s (ρ = exp(λ), λ the coefficient's log-SNR), d(x/s)/dt = x̂_0 dρ/dt, so from t = a to
t = b exactly

    x_b = (s_b/s_a) x_a + s_b ∫_a^b x̂_0(τ) dρ(τ).                                    (1)

The linear part is solved exactly (an exponential integrator); only x̂_0(τ) is approximated.
Step i (from a = t_i to b = t_{i+1} on the time grid) replaces it by the polynomial in τ through
the last q = min(order, i + 1) estimates x̂_0 at t_i, t_{i-1}, …, with Lagrange basis ℓ_j:

    x_b = (s_b/s_a) x_a + s_b Σ_j I_j ⊙ x̂_0(t_{i-j}),
    I_j = ∫_a^b ℓ_j dρ = ℓ_j(b) ρ(b) - ℓ_j(a) ρ(a) - ∫_a^b ρ(τ) ℓ_j'(τ) dτ,          (2)

per coefficient, the last integral by 16-point Gauss-Legendre quadrature (ρ is smooth between
the schedules' knots; ℓ_j' is a polynomial of degree ≤ q - 2). One network evaluation per step.

* order 1: ℓ_0 = 1 and I_0 = ρ(b) - ρ(a), so x_b = C_b x̂_0 + (s_b/s_a)(x_a - C_a x̂_0): today's
  deterministic sampler (a test checks the two agree).
* Exact when x̂_0 is a polynomial of degree < q in τ along the path (e.g. a fixed image): then
  the only approximation in (1) vanishes. Local error O(h^(q+1)), global O(h^q) (tested: order 2
  halves the error about four times per halving of h on the exact Gaussian-field denoiser).
* C_t = I: ρ = 1/s_t; with geometric s_t, λ = -log s_t is affine in t, so polynomials in t are
  polynomials in λ and (2) is the multistep data-prediction exponential integrator with its
  higher-order terms integrated exactly (as DEIS does); DPM-Solver++(2M) (Lu et al., 2022) reads
  the line at the step's midpoint instead: form 'midpoint' below. The two agree to second order.

Forms (`form`, order 2). 'exact' is (2) with the line through the last two estimates. 'midpoint'
reads that line once, at the step's midpoint in t, and multiplies it by ∫dρ:
x̂ = D_a + κ (D_a - D_p), κ = (a - b) / (2 (t_p - a)), x_b = (s_b/s_a) x_a + s_b (ρ_b - ρ_a) x̂
(D_a, D_p the estimates at a and at the time before, t_p). For C_t = I with geometric s_t the
midpoint in t is the midpoint in λ, and this is DPM-Solver++(2M) exactly (with (3), SDE-DPM-
Solver++(2M), η = 1; tested against a numpy reference of both updates). 'midpoint_logsnr' reads
the line at the midpoint of each coefficient's own λ (κ = h / (2 h_last) per coefficient, 0 where
a λ is -inf, at most KAPPA_MAX). Measured (docs/results.md, "Ten steps and fewer"): on the VE
fields 'midpoint' is the more accurate at 5–10 NFE, on blur the two are within 10 % on the
family grids and 'exact' is better on optimal grids at 4–6 NFE; 'midpoint_logsnr' is worse.

The polynomial is in t rather than in each coefficient's own λ(k): a blurred-away coefficient has
λ = -∞ and one whose c and s are both constant has a flat λ, while the grid's t always moves.
Deterministic: `key` is unused (kept for the shared signature).

Stochastic variant ('multistep_sde'). The reverse SDE dx = [f x - g² ∇log p_t] dt + g dw̄ has
the same marginals. With y = x c/s², dy = x̂_0 d(ρ²) + (c/s²) g dw̄, so from a to b

    x_b = (s_b/s_a)(ρ_a/ρ_b) x_a + (s_b²/c_b) ∫_a^b x̂_0(τ) d(ρ²)(τ) + s_b √(1 - (ρ_a/ρ_b)²) ξ,   (3)

ξ ~ N(0, I) (the noise integral is exact: its variance is (s_b²/c_b)² (ρ_b² - ρ_a²)). x̂_0 is
interpolated as in (2), with ρ² in place of ρ. Order 1 is the ancestral sampler
(`samplers.ancestral_update`, tested); for C_t = I this is SDE-DPM-Solver++ (Lu et al., 2022).
Where C_b removes a coefficient (c_b = 0) the step draws it as s_b ξ, as the ancestral step does.
"""

from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from soft_diffusion import dct, time_grids
from soft_diffusion.corruptions import base

ORDERS = (1, 2, 3)
# How a step of order 2 uses the last two estimates (module docstring, "Forms"): 'exact' (the
# interpolant integrated exactly; also order 3), 'midpoint' (DPM-Solver++(2M): the interpolant in t
# at the step's midpoint), 'midpoint_logsnr' (the same in each coefficient's own log-SNR).
FORMS = ("exact", "midpoint", "midpoint_logsnr")
DEFAULT_FORM = "exact"  # the 'auto' form
GAUSS_NODES = 16
KAPPA_MAX = 2.0  # 'midpoint_logsnr': the largest extension of a coefficient's line (2M's on a uniform λ grid: 0.5)
DEFAULT_TIME_GRID = "uniform"  # the 'auto' grid of this sampler: see samplers.DEFAULT_TIME_GRIDS


def _lagrange(tau: jax.Array, points: list[jax.Array]) -> tuple[list[jax.Array], list[jax.Array]]:
  """(ℓ_j(tau), ℓ_j'(tau)) for the Lagrange basis through `points` (q scalars), tau [...]."""
  q = len(points)
  values, derivs = [], []
  for j in range(q):
    others = [m for m in range(q) if m != j]
    denom = 1.0
    for m in others:
      denom = denom * (points[j] - points[m])
    value = jnp.ones_like(tau)
    for m in others:
      value = value * (tau - points[m])
    deriv = jnp.zeros_like(tau)
    for n in others:
      term = jnp.ones_like(tau)
      for m in others:
        if m != n:
          term = term * (tau - points[m])
      deriv = deriv + term
    values.append(value / denom)
    derivs.append(deriv / denom)
  return values, derivs


def step_weights(
  corruption: Any, a: jax.Array, b: jax.Array, points: list[jax.Array], height: int, width: int, power: int = 1
):
  """The weights ∫_a^b ℓ_j d(ρ^power) [1, H, W] of (2) (power 1) or (3) (power 2) for a step a -> b,
  for each order q = 1 … len(points) (Lagrange basis through points[:q]; points[0] = a), and
  ρ_a, ρ_b [1, H, W], s_a, s_b; float32."""
  nodes, gauss_w = np.polynomial.legendre.leggauss(GAUSS_NODES)
  tau = (a + b) / 2 + (b - a) / 2 * jnp.asarray(nodes, jnp.float32)  # [G]
  quad_w = (b - a) / 2 * jnp.asarray(gauss_w, jnp.float32)  # oriented: b < a

  def rho(t):  # [M] -> [M, H, W]
    _, c = corruption.diagonal(t, height, width)
    return c.astype(jnp.float32) / corruption.noise_std(t).astype(jnp.float32)[:, None, None]

  ends = jnp.stack([a, b])
  rho_a, rho_b = jnp.split(rho(ends), 2)  # [1, H, W] each
  f_a, f_b, f_tau = rho_a**power, rho_b**power, rho(tau) ** power  # f = ρ^power; f_tau [G, H, W]
  per_order = []
  for q in range(1, len(points) + 1):
    values_b, derivs = _lagrange(b, points[:q])[0], _lagrange(tau, points[:q])[1]
    weights = []
    for j in range(q):
      integral = jnp.einsum("g,ghw->hw", quad_w * derivs[j], f_tau, precision=jax.lax.Precision.HIGHEST)
      weights.append(values_b[j] * f_b - (1.0 if j == 0 else 0.0) * f_a - integral[None])
    per_order.append(weights)
  s_a, s_b = corruption.noise_std(ends).astype(jnp.float32)
  return per_order, rho_a, rho_b, s_a, s_b


def resolve_form(order: int, form: str) -> str:
  """The form a step of `order` takes for `form` ('auto': `DEFAULT_FORM`, 'exact' for order 3;
  for order 1 every form is the same step, named 'exact')."""
  if form == "auto":
    form = "exact" if order == 3 else DEFAULT_FORM
  if form not in FORMS:
    raise ValueError(f"form must be 'auto' or one of {FORMS}, got {form!r}")
  if order == 3 and form != "exact":
    raise ValueError(f"order 3 takes form 'exact' only, got form {form!r}")
  return "exact" if order == 1 else form


def _log_rho(corruption: Any, t: jax.Array, height: int, width: int) -> jax.Array:
  """log ρ = each coefficient's log-SNR λ(k) at times t [M] -> [M, H, W] (-inf where c = 0)."""
  _, c = corruption.diagonal(t, height, width)
  return jnp.log(c.astype(jnp.float32)) - jnp.log(corruption.noise_std(t).astype(jnp.float32))[:, None, None]


def midpoint_factor(
  corruption: Any, t_prev: jax.Array, a: jax.Array, b: jax.Array, height: int, width: int, form: str
) -> jax.Array:
  """κ of the 2M step a -> b (module docstring, "Forms"): its estimate is D_a + κ (D_a - D_prev), the
  line through (t_prev, D_prev) and (a, D_a) read at the step's midpoint. 'midpoint': in t,
  κ = (a - b) / (2 (t_prev - a)), a scalar; 'midpoint_logsnr': in each coefficient's λ,
  κ = h / (2 h_last) [1, H, W] (h = λ_b - λ_a, h_last = λ_a - λ_prev), 0 where a λ is -inf or
  h_last <= 0 (no line to extend), at most KAPPA_MAX."""
  if form == "midpoint":
    return (a - b) / (2.0 * (t_prev - a))
  lam_prev, lam_a, lam_b = jnp.split(_log_rho(corruption, jnp.stack([t_prev, a, b]), height, width), 3)
  h, h_last = lam_b - lam_a, lam_a - lam_prev
  ok = jnp.isfinite(lam_prev) & jnp.isfinite(lam_b) & (h_last > 0)
  return jnp.clip(jnp.where(ok, h / jnp.where(ok, 2.0 * h_last, 1.0), 0.0), 0.0, KAPPA_MAX)


def multistep_sampler(
  denoise_fn: Any,
  x_init: jax.Array,
  corruption: Any,
  *,
  num_steps: int,
  key: jax.Array,
  order: int = 2,
  form: str = "auto",
  time_grid: Any = "auto",
  rho: float = 7.0,
  trace: bool = False,
  t_start: float = 1.0,
  stochastic: bool = False,
  final: str = "noise",
) -> Any:
  """The multistep exponential integrator of order `order` (1, 2 or 3) in the corruption's
  diagonal basis (module docstring). EXTENSION, not in the paper.

  form: how order 2 combines the last two estimates, one of FORMS or 'auto' (`DEFAULT_FORM`);
  order 3 takes 'exact' only, and for order 1 the forms coincide.
  time_grid: a family of `time_grids.FAMILIES`, 'auto' (this sampler's measured default,
  `DEFAULT_TIME_GRID`) or N+1 explicit times (also traced ones, unchecked: `grid_tuning` differentiates
  through them); rho: the 'edm' family's ρ. stochastic: integrate
  the reverse SDE instead of the ODE ((3); step i's noise from fold_in(key, i)). final: 'noise'
  (the last step's x at t = 0) or 'denoise' (its estimate x̂_0, at the last time before 0). Other arguments
  and the returns as `samplers.reverse_process`; one denoise_fn call per step, none at t = 0.
  Raises ValueError (one line) for a corruption that is not diagonal in a known basis.
  """
  if order not in ORDERS:
    raise ValueError(f"order must be one of {ORDERS}, got {order!r}")
  form = resolve_form(order, form)
  if final not in ("noise", "denoise"):
    raise ValueError(f"final must be one of ('noise', 'denoise'), got {final!r}")
  x_init = base.check_images(x_init, "x_init")
  batch, height, width, _ = x_init.shape
  basis, _ = corruption.diagonal(jnp.zeros((1,), jnp.float32), height, width)  # raises if not diagonal
  grid = DEFAULT_TIME_GRID if isinstance(time_grid, str) and time_grid == "auto" else time_grid
  # Before t_0, fake distinct times (t_0 + m (t_0 - t_1)) keep the unused higher-order weights finite.
  back = np.arange(order - 1, 0, -1)
  if isinstance(grid, jax.core.Tracer):  # a grid being optimised (grid_tuning.py): checked by its maker
    if grid.shape != (num_steps + 1,):
      raise ValueError(f"time_grid must have num_steps + 1 = {num_steps + 1} times, got shape {grid.shape}")
    grid = grid.astype(jnp.float32)
    times = jnp.concatenate([grid[0] + jnp.asarray(back, jnp.float32) * (grid[0] - grid[1]), grid])
  else:
    times_np = time_grids.resolve(grid, corruption, num_steps, height, width, t_start=t_start, rho=rho)
    pad = times_np[0] + back * (times_np[0] - times_np[1])
    times = jnp.asarray(np.concatenate([pad, times_np]), jnp.float32)  # times[i + order - 1] = t_i

  def body(carry, i):
    x, history, _ = carry  # history: [order, B, H, W, C] estimates in the basis, newest first
    a, b = times[i + order - 1], times[i + order]
    t = jnp.full((batch,), a, jnp.float32)
    x0_hat = denoise_fn(x, t).astype(x.dtype)
    history = jnp.concatenate([dct.to_basis(x0_hat.astype(jnp.float32), basis)[None], history[:-1]])
    points = [times[i + order - 1 - j] for j in range(order)]
    power = 2 if stochastic else 1
    if form == "exact":  # (2) / (3) with the polynomial through the last min(order, i + 1) estimates
      per_order, rho_a, rho_b, s_a, s_b = step_weights(corruption, a, b, points, height, width, power)
      update = jnp.zeros_like(history[0])
      for q, weights in enumerate(per_order, start=1):
        candidate = sum(w[..., None] * history[j] for j, w in enumerate(weights))
        update = jnp.where(jnp.minimum(i + 1, order) == q, candidate, update)
    else:  # 2M: ∫ d(ρ^power) times the line through the last two estimates, read at the midpoint
      per_order, rho_a, rho_b, s_a, s_b = step_weights(corruption, a, b, points[:1], height, width, power)
      kappa = midpoint_factor(corruption, points[1], a, b, height, width, form)
      kappa = jnp.where(i >= 1, kappa, 0.0)[..., None]  # the first step has one estimate
      update = per_order[0][0][..., None] * (history[0] + kappa * (history[0] - history[1]))
    x32 = x.astype(jnp.float32)
    if not stochastic:  # (2)
      x_next = (s_b / s_a) * x32 + s_b * dct.from_basis(update, basis)
    else:  # (3): ρ_a/ρ_b is 0 where C_b removes a coefficient (c_b = 0), as in the ancestral step
      ok = rho_b > 0
      r = jnp.where(ok, rho_a / jnp.where(ok, rho_b, 1.0), 0.0)[..., None]
      gain = jnp.where(ok, jnp.square(s_b) / jnp.where(ok, rho_b * s_b, 1.0), 0.0)[..., None]  # s_b² / c_b
      noise = dct.to_basis(jax.random.normal(jax.random.fold_in(key, i), x.shape, jnp.float32), basis)
      coeffs = (s_b / s_a) * r * dct.to_basis(x32, basis) + gain * update
      x_next = dct.from_basis(coeffs + s_b * jnp.sqrt(jnp.maximum(1.0 - jnp.square(r), 0.0)) * noise, basis)
    if final == "denoise":
      x_next = jnp.where(i == num_steps - 1, x0_hat.astype(jnp.float32), x_next)
    return (x_next.astype(x.dtype), history, x0_hat), ((x, x0_hat) if trace else None)

  init = (x_init, jnp.zeros((order, *x_init.shape), jnp.float32), jnp.zeros_like(x_init))
  (x0, _, x0_hat), trajectory = jax.lax.scan(body, init, jnp.arange(num_steps))
  if not trace:
    return x0
  return time_grids.Trace(x0, x0_hat, times[order - 1 : order - 1 + num_steps], *trajectory)


multistep_sde_sampler = functools.partial(multistep_sampler, stochastic=True)
multistep_sde_sampler.__doc__ = """`multistep_sampler` with stochastic=True: the reverse-SDE
integrator (3) (module docstring), random at every step. EXTENSION, not in the paper."""
