"""Time grids tuned to a denoiser. EXTENSION, not in the paper.

A grid is N+1 times t_start = t_0 > … > t_N = 0 (`time_grids.py`). Here it is parametrised by N
unconstrained numbers z: t_i = t_start (1 - Σ_{j<i} softmax(z)_j), so t_0 = t_start and t_N = 0
exactly and every step is positive, and z is fitted by Adam (optax) to one of two objectives,
from a family grid; the best grid seen is kept. The sampler is `multistep.multistep_sampler`
(order 1 is the deterministic sampler), which differentiates through its times.

* `exact_spectral_fd` (the oracle on a Gaussian law N(0, diag v) in the DCT basis): with the
  exact posterior mean every deterministic sampler here is linear and diagonal per DCT
  coefficient, x_0(k) = g(k) x_1(k), so one call on the image whose every coefficient is 1 gives
  the gains g. With p_1 the exact law at t = 1, N(0, diag(c_1² v + s_1²)), the samples are
  N(0, diag(g² std_1²)), and their spectral Fréchet distance to the truth is exactly
  C Σ_k (|g(k)| std_1(k) - √v(k))² (C channels): `evaluation.exact`'s measure without its
  finite-sample bias. Minimised over the grid it is the best any grid can do for that sampler.
* `distillation_loss` (any denoiser, e.g. a trained network): the mean squared distance between
  the N-step solution and a reference solution of the same ODE from the same starts x_1 (many
  steps), as learned-time-step methods fit their grids (LD3: Tong et al., 2024).

Pure: jax, numpy and optax; no files (the program's `--mode tune_grid` writes the grid).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from soft_diffusion import dct, gaussian_field, multistep


def grid_from_logits(z: jax.Array, t_start: float = 1.0) -> jax.Array:
  """z [N] -> the grid [N + 1]: t_start … 0, strictly decreasing (module docstring)."""
  steps = jax.nn.softmax(z)
  return t_start * jnp.concatenate([jnp.ones((1,), steps.dtype), 1.0 - jnp.cumsum(steps)]).at[-1].set(0.0)


def logits_from_grid(times: Any) -> np.ndarray:
  """The z [N] whose `grid_from_logits` is `times` [N + 1] (up to float error)."""
  steps = -np.diff(np.asarray(times, np.float64))
  if np.any(steps <= 0):
    raise ValueError(f"times must decrease strictly, got {np.asarray(times).tolist()}")
  return np.log(steps / steps.sum())


def solver(order: int = 2, form: str = "auto", final: str = "noise") -> Callable[..., jax.Array]:
  """The sampler whose grid is tuned: the deterministic `multistep_sampler` with these options."""
  return functools.partial(multistep.multistep_sampler, order=order, form=form, final=final)


def exact_gains(sampler: Any, corruption: Any, v: np.ndarray, times: jax.Array) -> jax.Array:
  """g [H, W]: the gain per DCT coefficient of a deterministic `sampler` driven by the exact
  posterior mean of N(0, diag v) (v [H, W]) on the grid `times` (module docstring)."""
  height, width = np.shape(v)
  ones = dct.dct2(jnp.ones((1, height, width, 1), jnp.float32), inverse=True)
  oracle = gaussian_field.oracle_denoiser(corruption, v)
  out = sampler(oracle, ones, corruption, num_steps=times.shape[0] - 1, key=jax.random.key(0), time_grid=times)
  return dct.dct2(out)[0, :, :, 0]


def start_std(corruption: Any, v: np.ndarray) -> jax.Array:
  """std_1 [H, W]: the per-coefficient std of the exact p_1, √(c_1² v + s_1²)."""
  height, width = np.shape(v)
  c1 = gaussian_field.dct_multipliers(corruption, jnp.ones((1,)), height, width)[0]
  s1 = corruption.noise_std(jnp.ones((1,), jnp.float32))[0]
  return jnp.sqrt(jnp.square(c1) * jnp.asarray(v, jnp.float32) + jnp.square(s1))


def exact_spectral_fd(gains: jax.Array, std_1: jax.Array, v: np.ndarray, channels: int = 3) -> jax.Array:
  """C Σ_k (|g(k)| std_1(k) - √v(k))²: the spectral Fréchet distance of the samples' law to the truth."""
  return channels * jnp.sum(jnp.square(jnp.abs(gains) * std_1 - jnp.sqrt(jnp.asarray(v, jnp.float32))))


def exact_objective(
  sampler: Any, corruption: Any, v: np.ndarray, channels: int = 3
) -> Callable[[jax.Array], jax.Array]:
  """times [N + 1] -> the exact spectral FD of `sampler` with the oracle on that grid."""
  std_1 = start_std(corruption, v)
  return lambda times: exact_spectral_fd(exact_gains(sampler, corruption, v, times), std_1, v, channels)


def distillation_loss(
  sampler: Any, denoise_fn: Any, corruption: Any, x_1: jax.Array, target: jax.Array
) -> Callable[[jax.Array], jax.Array]:
  """times [N + 1] -> mean over the batch of ‖sampler(x_1; times) - target‖² / D: the N-step
  solution's distance to the reference `target` drawn from the same starts x_1 [B, H, W, C]."""

  def loss(times: jax.Array) -> jax.Array:
    out = sampler(denoise_fn, x_1, corruption, num_steps=times.shape[0] - 1, key=jax.random.key(0), time_grid=times)
    return jnp.mean(jnp.square(out.astype(jnp.float32) - target.astype(jnp.float32)))

  return loss


@functools.lru_cache(maxsize=64)
def _value_and_grad(objective: Callable[[jax.Array], jax.Array], t_start: float) -> Callable[..., Any]:
  """The jitted value and gradient in the logits, compiled once per objective (tune's restarts reuse it)."""
  return jax.jit(jax.value_and_grad(lambda z: objective(grid_from_logits(z, t_start))))


class Tuned(NamedTuple):
  times: np.ndarray  # [N + 1] float64, the best grid seen
  loss: float  # its objective
  start_loss: float  # the objective of the starting grid
  losses: np.ndarray  # [iterations + 1]: the objective before each update, then at the end


def tune(
  objective: Callable[[jax.Array], jax.Array],
  start: Any,
  *,
  iterations: int = 200,
  learning_rate: float = 0.05,
  callback: Callable[[int, float], None] | None = None,
) -> Tuned:
  """Adam on the logits of the grid (module docstring) from the grid `start` [N + 1], minimising
  `objective(times)`; returns the best grid seen. `callback(i, loss)` after each evaluation."""
  if isinstance(iterations, bool) or not isinstance(iterations, int) or iterations < 0:
    raise ValueError(f"iterations must be an int >= 0, got {iterations!r}")
  if not (isinstance(learning_rate, (int, float)) and learning_rate > 0):
    raise ValueError(f"learning_rate must be a number > 0, got {learning_rate!r}")
  start = np.asarray(start, np.float64)
  t_start = float(start[0])
  z = jnp.asarray(logits_from_grid(start), jnp.float32)
  value_and_grad = _value_and_grad(objective, t_start)
  optimizer = optax.adam(learning_rate)
  opt_state = optimizer.init(z)
  losses, best = [], (np.inf, None)
  for i in range(iterations + 1):
    loss, grad = value_and_grad(z)
    loss = float(loss)
    losses.append(loss)
    if callback is not None:
      callback(i, loss)
    if np.isfinite(loss) and loss < best[0]:
      best = (loss, np.asarray(z))
    if i == iterations or not np.all(np.isfinite(np.asarray(grad))):
      break
    updates, opt_state = optimizer.update(grad, opt_state, z)
    z = optax.apply_updates(z, updates)
  if best[1] is None:
    raise ValueError("the objective is not finite on the starting grid")
  times = np.asarray(grid_from_logits(jnp.asarray(best[1]), t_start), np.float64)
  times[0], times[-1] = t_start, 0.0
  return Tuned(times, best[0], losses[0], np.asarray(losses))
