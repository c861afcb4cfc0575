"""The mesh, the optimizer built from settings, and the train state on its devices (the network
itself comes from `models.make_network(settings.model)`).

* `make_mesh()`: one ("data",) axis over every device of every process; `replicated(mesh)` and
  `batch_sharding(mesh)` are the two shardings used (state replicated, batches split).
* `make_optimizer(cfg)`: Adam with warm-up and clipping
  (docs/method.md §6).
* `TrainState` and `create_state`: the state is created directly with its sharding
  (`jax.eval_shape` → shardings → `jax.jit(init, out_shardings=…)`), never first on one device;
  `abstract_state` is its shape, for restoring a checkpoint into.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import flax
import flax.linen as nn
import jax
import jax.numpy as jnp
import optax
from jax.sharding import AxisType, NamedSharding, PartitionSpec

from soft_diffusion import errors

if TYPE_CHECKING:
  from soft_diffusion.run.settings import OptimConfig

log = logging.getLogger(__name__)

# ----------------------------------------------------------------------------------------------
# Mesh and shardings.


def make_mesh() -> jax.sharding.Mesh:
  """1-D ("data",) mesh over every device of every process."""
  return jax.make_mesh((jax.device_count(),), ("data",), axis_types=(AxisType.Auto,))


def log_devices() -> None:
  """One log line with the devices and processes a mode runs on (after its input checks)."""
  log.info("devices: %d (%s), processes: %d", jax.device_count(), jax.default_backend(), jax.process_count())


def replicated(mesh: jax.sharding.Mesh) -> NamedSharding:
  return NamedSharding(mesh, PartitionSpec())


def batch_sharding(mesh: jax.sharding.Mesh) -> NamedSharding:
  """The leading (batch) axis split over the mesh's "data" axis."""
  return NamedSharding(mesh, PartitionSpec("data"))


def check_batch_split(field: str, batch_size: int, mesh: jax.sharding.Mesh) -> None:
  """A batch split over the mesh must divide evenly: one-line error naming `config.<field>`."""
  if batch_size % mesh.size:
    raise errors.ConfigError(f"config.{field} must be a multiple of the {mesh.size} devices, got {batch_size}")


# ----------------------------------------------------------------------------------------------
# Model and optimizer.


def make_optimizer(cfg: OptimConfig) -> tuple[optax.GradientTransformation, optax.Schedule]:
  """Adam with linear warm-up and global-norm clipping (docs/method.md §6); optionally cosine decay to 0."""
  if cfg.decay == "cosine":
    lr_schedule = optax.warmup_cosine_decay_schedule(0.0, cfg.lr, cfg.warmup_steps, cfg.decay_steps, 0.0)
  elif cfg.warmup_steps:
    lr_schedule = optax.linear_schedule(0.0, cfg.lr, cfg.warmup_steps)
  else:
    lr_schedule = optax.constant_schedule(cfg.lr)
  optimizer = optax.chain(
    optax.clip_by_global_norm(cfg.grad_clip), optax.adam(lr_schedule, b1=cfg.beta1, b2=cfg.beta2, eps=cfg.eps)
  )
  return optimizer, lr_schedule


# ----------------------------------------------------------------------------------------------
# Train state.


@flax.struct.dataclass
class TrainState:
  step: jax.Array
  params: Any
  ema_params: Any
  opt_state: Any
  first_nonfinite_step: jax.Array  # -1 until step n (1-based, as logged) meets a non-finite loss or gradient


def _init_fn(network: nn.Module, optimizer: optax.GradientTransformation, image_shape: tuple[int, ...], seed: int):
  def init() -> TrainState:
    x = jnp.zeros((1, *image_shape), jnp.float32)
    params = network.init(jax.random.fold_in(jax.random.key(seed), -1 % 2**31), x, jnp.zeros((1,)))["params"]
    return TrainState(
      step=jnp.zeros((), jnp.int32),
      params=params,
      ema_params=params,
      opt_state=optimizer.init(params),
      first_nonfinite_step=jnp.full((), -1, jnp.int32),
    )

  return init


def create_state(network: nn.Module, optimizer, image_shape: tuple[int, ...], seed: int, sharding) -> TrainState:
  """Initial state, created directly with `sharding` (replicated) on every device."""
  init = _init_fn(network, optimizer, image_shape, seed)
  shardings = jax.tree.map(lambda _: sharding, jax.eval_shape(init))
  return jax.jit(init, out_shardings=shardings)()


def abstract_state(network: nn.Module, optimizer, image_shape: tuple[int, ...], seed: int, sharding) -> TrainState:
  """The state's shapes and dtypes with `sharding`, without computing it (a restore target)."""
  abstract = jax.eval_shape(_init_fn(network, optimizer, image_shape, seed))
  return jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=sharding), abstract)
