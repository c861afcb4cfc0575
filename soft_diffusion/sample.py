"""Sampling from a trained run: `sample(config, workdir)` (the `--mode sample` of main.py).

Loads the latest checkpoint's EMA parameters and the run's prior p_1, draws
`config.sample.num_images` images with `config.sample.sampler` in `config.sample.num_steps`
network evaluations from keys fold_in(key(sample.seed), batch), and writes
`WORKDIR/samples/samples.npz` (key `images`, uint8 NHWC) and `samples.png`. The same checkpoint
and seed give identical images.
"""

from __future__ import annotations

import logging
import pathlib
import time
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp
from jax.sharding import NamedSharding, PartitionSpec

from soft_diffusion import corruptions, train

log = logging.getLogger(__name__)


def sample(config: Any, workdir: str) -> pathlib.Path:
  """Writes samples.npz and samples.png under WORKDIR/samples; returns the .npz path."""
  settings = train.settings_from_config(config)
  workdir = pathlib.Path(workdir).resolve()  # Orbax needs absolute paths
  checkpoints = workdir / "checkpoints"
  if not checkpoints.is_dir():
    raise FileNotFoundError(
      f"no checkpoints in {checkpoints}; train first: python -m soft_diffusion.main --workdir {workdir}"
    )
  prior = train.load_prior(workdir / "prior.npz")
  corruption = corruptions.make(settings.corruption)
  model = train.make_model(settings.model)
  optimizer, _ = train.make_optimizer(settings.optim)
  mesh = train.make_mesh()
  replicated = NamedSharding(mesh, PartitionSpec())
  size, channels = settings.data.image_size, int(prior.mean.shape[-1])
  abstract = jax.eval_shape(
    lambda: train.create_state(model, optimizer, (size, size, channels), settings.seed, replicated)
  )
  abstract = jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=replicated), abstract)
  manager = ocp.CheckpointManager(checkpoints, item_handlers={"state": ocp.StandardCheckpointHandler()})
  step = manager.latest_step()
  if step is None:
    raise FileNotFoundError(f"no complete checkpoint in {checkpoints}")
  state = train.restore_checkpoint(manager, step, ocp.args.Composite(state=ocp.args.StandardRestore(abstract)))["state"]
  sample_fn = train.make_sample_fn(model, corruption, settings.sample)
  start = time.perf_counter()
  images = train.draw_samples(
    sample_fn, state.ema_params, prior, settings.sample, settings.sample.num_images, progress=True
  )
  log.info(
    "%d images with the %s sampler, %d steps, in %.1f s (checkpoint step %d)",
    len(images),
    settings.sample.sampler,
    settings.sample.num_steps,
    time.perf_counter() - start,
    step,
  )
  out = workdir / "samples"
  out.mkdir(parents=True, exist_ok=True)
  np.savez(out / "samples.npz", images=images)
  train.write_png(images, out / "samples.png", scale=4 if images.shape[1] <= 32 else 1)
  return out / "samples.npz"
