"""The extension points of docs/contributing.md work as written there: a module of the user's own
(written to a temporary folder here) registers a corruption, a sampler with an option of its own
and a generated dataset, and the driver then trains one step and samples with all three by name."""

from __future__ import annotations

import importlib
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from soft_diffusion import corruptions, data, samplers
from soft_diffusion.run.workdir import Workdir

TOY_MODULE = textwrap.dedent(
  '''
  """A user's extensions: a corruption, a sampler with an option, a generated dataset."""
  import dataclasses

  import jax.numpy as jnp
  import numpy as np

  from soft_diffusion import corruptions, data, samplers


  @dataclasses.dataclass(frozen=True)
  class FadeOperator:
    """C_t x = (1 - 0.9 t) x: the image fades towards zero (linear, the identity at t = 0)."""

    def apply(self, x, t):
      return x * (1.0 - 0.9 * t)[:, None, None, None].astype(x.dtype)


  corruptions.REGISTRY["fade"] = lambda cfg: FadeOperator()


  def damped_update(corruption, x_t, x0_hat, t, t_next, noise, damping=0.5):
    """The naive step, with x_t's own part kept in proportion `damping` (an option)."""
    naive = corruption.apply(x0_hat, t_next) + corruption.noise_std(t_next)[:, None, None, None] * noise
    return damping * x_t + (1.0 - damping) * naive


  def damped_sampler(denoise_fn, x_init, corruption, *, num_steps, key, damping=0.5, **kwargs):
    update = lambda *args: damped_update(*args, damping=damping)
    return samplers.reverse_process(update, denoise_fn, x_init, corruption, num_steps=num_steps, key=key, **kwargs)


  samplers.SAMPLERS["damped"] = damped_sampler


  class StripesSource:
    """Element i: vertical stripes of period 2 + i % 3, a pure function of (split, seed, i)."""

    def __init__(self, cfg, split, seed):
      self.size, self.offset = cfg.image_size, (0 if split == "train" else 7) + seed

    def __len__(self):
      return 1000

    def __getitem__(self, i):
      period = 2 + (int(i) + self.offset) % 3
      row = np.where((np.arange(self.size) // period) % 2 == 0, 0.8, -0.8).astype(np.float32)
      return np.broadcast_to(row[None, :, None], (self.size, self.size, 1)).copy()


  data.GENERATED["stripes"] = data.GeneratedDataset(StripesSource)
  '''
)


REGISTRIES = (corruptions.REGISTRY, samplers.SAMPLERS, data.GENERATED)


@pytest.fixture
def registries():
  """The registries as they are, restored after the test (the toy entries do not leak)."""
  saved = [dict(registry) for registry in REGISTRIES]
  yield
  for registry, entries in zip(REGISTRIES, saved, strict=True):
    registry.clear()
    registry.update(entries)
  sys.modules.pop("my_extensions", None)


def test_a_toy_corruption_sampler_and_dataset_train_and_sample(registries, tiny_config, tmp_path, monkeypatch):
  (tmp_path / "my_extensions.py").write_text(TOY_MODULE)
  monkeypatch.syspath_prepend(str(tmp_path))
  importlib.import_module("my_extensions")
  assert "fade" in corruptions.REGISTRY and "damped" in samplers.SAMPLERS and "stripes" in data.dataset_names()

  from soft_diffusion.run.modes import sample, train

  config = tiny_config.copy_and_resolve_references()
  config.corruption.name = "fade"
  config.data.name = "stripes"
  config.data.cache = False
  config.sample.sampler = "damped"
  config.train.total_steps = 1
  config.checkpoint.every_steps = 1
  settings = Workdir.of(tmp_path).settings(config, resolve_levels=False)
  result = train.run_training(settings, tmp_path)
  assert result["step"] == 1 and np.isfinite(result["loss"])

  run = sample.load_run(Workdir.of(tmp_path).settings(config), tmp_path)
  images = run.draw(num_images=8, progress=False)  # sample.sampler = 'damped', its default damping
  assert images.shape == (8, 8, 8, 1) and images.dtype == np.uint8

  # The option reaches the sampler through samplers.get, as the built-in samplers' options do.
  assert samplers.get("damped", damping=0.0, order=3).keywords == {"damping": 0.0}  # not its option: left out
  x0 = jnp.asarray(np.stack([data.make_source(run.settings.data, "train", 0)[i] for i in range(4)]))
  x1 = run.corruption.corrupt(x0, jnp.ones(4), jax.random.normal(jax.random.key(0), x0.shape))
  draws = [
    samplers.get("damped", damping=d)(run.denoise_fn(), x1, run.corruption, num_steps=3, key=jax.random.key(1))
    for d in (0.0, 0.9)
  ]
  assert all(np.isfinite(np.asarray(x)).all() for x in draws)
  assert float(jnp.abs(draws[0] - draws[1]).max()) > 1e-3
