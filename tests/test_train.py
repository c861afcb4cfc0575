"""The train loop: a golden first step, exact resume, the non-finite guard, SIGTERM.

Every run uses configs/tiny.py (the digits at 8×8, a 2-level U-Net): compiles stay short."""

import json
import pathlib
import signal
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from support import REPO, checkpoint_steps, cli, cpu_env, flat, saved_state

from soft_diffusion import corruptions, losses, models
from soft_diffusion.models import make_denoise_fn
from soft_diffusion.run import settings as settings_lib
from soft_diffusion.run import state as state_lib
from soft_diffusion.run import workdir as workdir_lib
from soft_diffusion.run.modes import train
from soft_diffusion.run.workdir import Workdir


def test_resume_gives_bitwise_the_same_state(tiny_config, tmp_path, monkeypatch):
  """Also: retention (the newest checkpoint plus every multiple of keep_every_steps) and a
  profiler trace, in the uninterrupted run."""
  monkeypatch.chdir(tmp_path)  # relative workdirs, as users type them
  monkeypatch.setattr(train, "PROFILE_WARMUP_STEPS", 1)
  for workdir, num_steps in (("straight", 4), ("resumed", 2), ("resumed", 4)):  # the last resumes at step 2
    config = tiny_config.copy_and_resolve_references()
    config.train.total_steps = num_steps
    if workdir == "straight":
      config.checkpoint.every_steps, config.checkpoint.max_to_keep, config.checkpoint.keep_every_steps = 1, 1, 3
      config.train.profile_steps = 2
    resolved = Workdir.resolve(workdir)  # absolute, as the command line makes it
    train.run_training(Workdir.of(resolved).settings(config, resolve_levels=False), resolved)
  assert checkpoint_steps("straight") == [3, 4]  # 1 and 2 deleted, 3 kept as a multiple of 3
  traces = list(pathlib.Path("straight/logs/plugins/profile").glob("*/*.xplane.pb"))
  assert len(traces) == 1 and traces[0].stat().st_size > 0, "no profiler trace written"
  a, b = flat(saved_state("straight", 4)), flat(saved_state("resumed", 4))
  assert a.keys() == b.keys()
  for key in a:
    np.testing.assert_array_equal(a[key], b[key], err_msg=f"{key} differs after resume")
  assert int(a["['step']"]) == 4


def test_sigterm_saves_exits_cleanly_and_the_run_resumes(tiny_flags, tmp_path):
  workdir = tmp_path / "run"
  flags = [*tiny_flags, "--config.train.log_every_steps=5", "--config.checkpoint.every_steps=100000"]
  command = [
    sys.executable,
    "-m",
    "soft_diffusion.main",
    "--config=configs/tiny.py",
    f"--workdir={workdir}",
    *flags,
    "--config.train.total_steps=100000",
  ]
  proc = subprocess.Popen(command, cwd=REPO, env=cpu_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
  lines = []
  for line in proc.stdout:  # wait until training is under way
    lines.append(line)
    if "step 10/100000" in line:
      proc.send_signal(signal.SIGTERM)
      break
  rest, _ = proc.communicate(timeout=300)
  log = "".join(lines) + rest
  assert proc.returncode == 0, log[-3000:]
  saved = checkpoint_steps(workdir)
  assert len(saved) == 1 and 10 <= saved[0] < 100000, f"checkpoints after SIGTERM: {saved}"
  resumed = cli(workdir, *flags, f"--config.train.total_steps={saved[0] + 5}")
  assert resumed.returncode == 0, resumed.stderr[-3000:]
  assert f"resumed from step {saved[0]}" in resumed.stderr
  assert checkpoint_steps(workdir)[-1] == saved[0] + 5


# Recorded by this test on the tiny config (CPU, float32), with the config pins it names:
# tests/golden_train_step.json (tools/golden_step.py checks a GPU or TPU against it too).
GOLDEN_FILE = pathlib.Path(__file__).with_name("golden_train_step.json")
GOLDEN = json.loads(GOLDEN_FILE.read_text())["values"]
PINS = json.loads(GOLDEN_FILE.read_text())["pins"]


def test_one_train_step_against_golden_values_and_first_principles(tiny_config):
  config = tiny_config
  for key, value in PINS.items():  # pinned: the golden values must not move when the tiny config is tuned
    block, field = key.split(".")
    config[block][field] = value
  settings = settings_lib.load(config)
  model = models.make_network(settings.model)
  optimizer, lr_schedule = state_lib.make_optimizer(settings.optim)
  corruption = corruptions.make(settings.corruption)
  state = state_lib.create_state(
    model, optimizer, (8, 8, 1), settings.seed, state_lib.replicated(state_lib.make_mesh())
  )
  init_params = jax.tree.map(np.asarray, state.params)
  yy, xx = np.meshgrid(np.linspace(-1, 1, 8), np.linspace(-1, 1, 8), indexing="ij")
  batch = np.stack([np.sin(3 * (k + 1) * xx * yy + k) for k in range(8)])[..., None].astype(np.float32)

  step = jax.jit(train.make_train_step(model, corruption, optimizer, lr_schedule, settings))
  new, metrics = step(state, jnp.asarray(batch))

  # First principles: the step's loss is the loss of docs/method.md §2 at the documented keys; Adam's first step
  # moves every parameter by lr * g / (|g| + eps) against the clipped gradient; EMA warm-up
  # gives decay min(0.999, 1/10) after one step.
  k_t, k_noise, k_dropout = jax.random.split(jax.random.fold_in(jax.random.key(settings.seed), 0), 3)
  t = jax.random.uniform(k_t, (8,), minval=settings.train.t_min, maxval=1.0)
  noise = jax.random.normal(k_noise, batch.shape)

  def loss_fn(params):
    denoise_fn = make_denoise_fn(model, params, train=True, dropout_key=k_dropout)
    return losses.soft_score_matching_loss(denoise_fn, batch, t, noise, corruption)

  loss, grads = jax.jit(jax.value_and_grad(loss_fn))(init_params)  # compiled: one program, not one per op
  np.testing.assert_allclose(metrics["loss"], loss, rtol=1e-6)
  np.testing.assert_allclose(metrics["grad_norm"], optax.tree.norm(grads), rtol=1e-5)
  clip = min(1.0, settings.optim.grad_clip / float(optax.tree.norm(grads)))
  lr, eps = settings.optim.lr, settings.optim.eps
  for (path, p0), p1, g, e1 in zip(
    jax.tree_util.tree_leaves_with_path(init_params),
    jax.tree.leaves(new.params),
    jax.tree.leaves(grads),
    jax.tree.leaves(new.ema_params),
    strict=True,
  ):
    g = clip * np.asarray(g)
    np.testing.assert_allclose(p1, p0 - lr * g / (np.abs(g) + eps), rtol=1e-5, atol=1e-7, err_msg=str(path))
    np.testing.assert_allclose(e1, 0.1 * p0 + 0.9 * np.asarray(p1), rtol=1e-5, atol=1e-7, err_msg=str(path))
  assert int(new.step) == 1 and int(new.first_nonfinite_step) == -1

  # The guard: a step on a non-finite batch changes nothing but records its (1-based) number.
  kept = jax.tree.map(np.asarray, new)
  bad, _ = step(new, jnp.asarray(np.where(np.arange(batch.size).reshape(batch.shape) == 5, np.nan, batch)))
  assert int(bad.first_nonfinite_step) == 2
  for (path, a), b in zip(
    jax.tree_util.tree_leaves_with_path(kept.replace(first_nonfinite_step=0)),
    jax.tree.leaves(bad.replace(first_nonfinite_step=0)),
    strict=True,
  ):
    np.testing.assert_array_equal(a, b, err_msg=f"{path} changed in a non-finite step")

  moved, start = jax.tree.leaves(new.params), jax.tree.leaves(init_params)
  got = {
    "loss": float(metrics["loss"]),
    "grad_norm": float(metrics["grad_norm"]),
    "update_l1": float(sum(np.abs(np.asarray(a) - b).sum() for a, b in zip(moved, start, strict=True))),
    "ema_l1": float(sum(np.abs(np.asarray(a)).sum() for a in jax.tree.leaves(new.ema_params))),
  }
  for key, value in GOLDEN.items():
    assert np.isclose(got[key], value, rtol=1e-5, atol=0), (
      f"one train step on the tiny config gave {key} = {got[key]!r}, recorded {value!r}. "
      f"All values now: {got!r}. The first-principles checks above passed, so the step is still "
      "self-consistent; something numerical changed (initialisation, corruption, loss, keys, "
      "optimizer). If intended, update the values in tests/golden_train_step.json."
    )


def test_non_finite_step_stops_training_and_keeps_the_last_good_checkpoint(tiny_config, tmp_path, monkeypatch):
  calls = []
  real = train.data.to_global_array

  def poisoned(batch, mesh):  # the third batch has one NaN pixel
    calls.append(None)
    if len(calls) == 3:
      batch = batch.copy()
      batch[0, 0, 0, 0] = np.nan
    return real(batch, mesh)

  monkeypatch.setattr(train.data, "to_global_array", poisoned)
  workdir = tmp_path / "run"
  tiny_config.train.total_steps = 6
  with pytest.raises(FloatingPointError, match=r"non-finite loss or gradient at step 3; last good checkpoint: 2"):
    train.run_training(Workdir.of(str(workdir)).settings(tiny_config, resolve_levels=False), str(workdir))
  assert checkpoint_steps(workdir) == [2], f"checkpoints after a non-finite step 3: {checkpoint_steps(workdir)}"
  assert all(np.isfinite(leaf).all() for leaf in flat(saved_state(workdir, 2)).values())


def test_metrics_summary_averages_and_bins():
  fetched = [
    {"loss": 1.0, "grad_norm": 2.0, "lr": 0.1, "bin_sum": np.array([1.0, 0.0]), "bin_count": np.array([1, 0])},
    {"loss": 3.0, "grad_norm": 4.0, "lr": 0.2, "bin_sum": np.array([2.0, 0.0]), "bin_count": np.array([3, 0])},
  ]
  got = train.summarize(fetched, num_bins=2)
  assert got == {"loss": 2.0, "grad_norm": 3.0, "lr": 0.2, "loss_t0.00-0.50": 0.75}


def test_gradient_accumulation_equals_one_big_batch(tiny_config):
  """4 micro-batches of 4 (with rematerialised blocks) give the parameters and EMA of one batch of
  16 after 3 optimizer steps, within 1e-5 relative (‖a − b‖ / ‖a‖ per array: Adam's first steps
  turn rounding in near-zero gradients into element-wise differences of ~1e-5 of the largest
  element); the learning rate and EMA moved once a step."""
  tiny_config.model.dropout = 0.0  # dropout keys differ per micro-batch by design
  tiny_config.model.skip = "identity"  # the step's arithmetic; no spectrum needed
  tiny_config.model.channel_mult = (1,)  # one level, remat on every block still: the arithmetic, not the depth
  tiny_config.optim.lr = 1e-2
  tiny_config.train.batch_size = 16
  rng = np.random.default_rng(0)
  batches = [jnp.asarray(rng.uniform(-1, 1, (16, 8, 8, 1)).astype(np.float32)) for _ in range(3)]
  finals = {}
  for accum, remat in ((1, False), (4, True)):
    config = tiny_config.copy_and_resolve_references()
    config.train.grad_accum_steps, config.model.remat = accum, remat
    settings = settings_lib.load(config)
    model = models.make_network(settings.model)
    optimizer, lr_schedule = state_lib.make_optimizer(settings.optim)
    state = state_lib.create_state(
      model, optimizer, (8, 8, 1), settings.seed, state_lib.replicated(state_lib.make_mesh())
    )
    corruption = corruptions.make(settings.corruption)
    step = jax.jit(train.make_train_step(model, corruption, optimizer, lr_schedule, settings))
    lrs = []
    for batch in batches:
      state, metrics = step(state, batch)
      lrs.append(float(metrics["lr"]))
      assert float(metrics["bin_count"].sum()) == 16
    assert int(state.step) == 3 and lrs == [float(lr_schedule(i)) for i in range(3)]
    finals[accum] = (flat(state.params), flat(state.ema_params), float(metrics["loss"]))
  (p1, e1, loss1), (p4, e4, loss4) = finals[1], finals[4]
  assert p1.keys() == p4.keys()
  np.testing.assert_allclose(loss4, loss1, rtol=1e-5)
  worst = 0.0
  for key in p1:
    for a, b, what in ((p1[key], p4[key], "params"), (e1[key], e4[key], "EMA")):
      relative = np.linalg.norm(a - b) / (np.linalg.norm(a) + 1e-12)
      worst = max(worst, relative)
      assert relative < 1e-5, f"{what} {key}: relative difference {relative:.2e}"
  print(f"largest relative difference (params and EMA, per array): {worst:.2e}")


class _FakeManager:
  """What SaveWatcher reads of an Orbax CheckpointManager."""

  def __init__(self, directory, error=None):
    self.directory, self.error = directory, error

  def is_saving_in_progress(self):
    return False

  def check_for_errors(self):
    if self.error:
      raise self.error

  def all_steps(self):
    return sorted(int(p.name) for p in self.directory.iterdir() if p.name.isdigit())

  def wait_until_finished(self):
    pass


def test_a_failed_async_save_is_reported_at_its_step(tmp_path):
  from soft_diffusion import errors
  from soft_diffusion.run import checkpoints

  (tmp_path / "4").mkdir()
  checkpoints.SaveWatcher(_FakeManager(tmp_path)).poll()  # nothing pending: nothing to say
  watcher = checkpoints.SaveWatcher(_FakeManager(tmp_path))
  watcher.started(4)
  watcher.finish()  # step 4 is on disk: fine
  watcher = checkpoints.SaveWatcher(_FakeManager(tmp_path, OSError("No space left on device")))
  watcher.started(6)
  with pytest.raises(
    errors.CheckpointError, match=r"save of checkpoint 6 .* failed \(OSError: No space left.*good checkpoint: 4"
  ):
    watcher.poll()
  watcher = checkpoints.SaveWatcher(_FakeManager(tmp_path))  # no error reported, but no folder either
  watcher.started(8)
  with pytest.raises(errors.CheckpointError, match="save of checkpoint 8 .* failed; last good checkpoint: 4"):
    watcher.poll()


def test_wiener_skip_spectrum_is_written_once_and_read_back(tiny_config, tmp_path):
  """model.skip = 'wiener': the first (training) call computes the data's mean DCT power spectrum
  over the training split into WORKDIR/spectrum.npz; later (sampling) calls read it back, and the
  skip is the Wiener gain of that spectrum. A sampling call without the file is a one-line error.
  (The skip inside the train step and the samplers is `make_denoise_fn`'s, tested in test_models.)"""
  import jax.numpy as jnp

  from soft_diffusion import corruptions, dct, errors, models
  from soft_diffusion.run import settings as settings_lib
  from soft_diffusion.run.modes import sample

  tiny_config.model.skip = "wiener"
  settings = settings_lib.load(tiny_config)
  corruption = corruptions.make(settings.corruption)
  with pytest.raises(errors.MissingError, match="no spectrum at .*writes it when training starts"):
    sample.make_skip(settings, corruption, tmp_path)
  skip = sample.make_skip(settings, corruption, tmp_path, fit_missing=True)
  power = np.load(tmp_path / "spectrum.npz")["power"]
  images = sample.load_training_images(settings, 10_000)
  np.testing.assert_allclose(power, np.mean(dct.dct2_host(images.astype(np.float64)) ** 2, axis=0), rtol=1e-5)
  again = sample.make_skip(settings, corruption, tmp_path)
  x, t = jnp.asarray(images[:4]), jnp.array([0.0, 0.3, 0.6, 1.0])
  np.testing.assert_allclose(again(x, t), skip(x, t), rtol=1e-6)
  np.testing.assert_allclose(skip(x, t), models.wiener_skip(corruption, power)(x, t), rtol=1e-6)


def test_run_log_sends_scalars_and_sample_grids_to_tensorboard_and_metrics(tmp_path):
  """What the loop logs on the primary process: metrics.jsonl lines, TensorBoard scalars, and
  sample grids as TensorBoard images (read back from the event file)."""
  from tensorboard.backend.event_processing import event_accumulator

  log = train.RunLog(tmp_path, 0, tensorboard=True)
  log.scalars(1, {"loss": 0.5})
  log.images(1, {"samples": np.full((4, 8, 8, 1), 200, np.uint8)})
  log.close()
  assert workdir_lib.read_metrics(tmp_path / "logs") == [{"step": 1, "loss": 0.5}]
  events = event_accumulator.EventAccumulator(str(tmp_path / "logs"), size_guidance={"images": 0, "tensors": 0})
  events.Reload()
  tags = events.Tags()
  assert "samples" in tags["tensors"] + tags["images"], tags
  assert "loss" in tags["tensors"] + tags["scalars"], tags
