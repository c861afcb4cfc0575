"""--mode restore: posterior samples for degraded images with a trained run (I/O and state; the
maths is in `restoration.py`).

    python -m soft_diffusion.main --config configs/digits.py --workdir runs/digits --mode restore \\
        --config.restore.operator=gaussian_blur --config.restore.size=1.0 --config.restore.sigma_y=0.02

The `restore` config block (configs/default.py) names the operator A, its size, the observation
noise σ_y, the method ('native' or 'guided'), K samples per observation and the NFE. Inputs:

* `restore.input = ''`: the first `num_images` images of `restore.split`, degraded here
  (y = A x_0 + σ_y n, key `restore.seed`) and scored against the originals: PSNR and SSIM of the
  MMSE estimate (the mean of the K samples) and of single samples, beside two baselines computed
  here, the observation itself and the linear MMSE (Wiener) estimate from the data's mean and
  DCT power spectrum. On a 'gaussian_field' config every number is also exact
  (`evaluation/posterior.py` against `gaussian_field.posterior`), for the trained network and,
  with `eval.oracle`, the exact denoiser, beside exact posterior samples (the floor).
* `restore.input = PATH`: a folder of PNGs or an .npz (array 'y', or its only array; [N, H, W, C]
  in [-1, 1], or uint8) of images already degraded by the operator the block describes; no truth,
  outputs only.

Writes WORKDIR/restore/<operator>_<size>_s<sigma_y>_<method>/: restorations.npz (y, samples [K, N, H, W, C],
estimate, std, and truth when known), restore.png (observation | samples | estimate | spread |
truth), metrics.json. One process (a multi-process run is refused with a one-line error).
"""

from __future__ import annotations

import dataclasses
import logging
import time
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from etils import epath

from soft_diffusion import data, dct, errors, gaussian_field, restoration, samplers
from soft_diffusion.evaluation import image_quality
from soft_diffusion.evaluation import posterior as posterior_metrics
from soft_diffusion.run import figures, files, reporting
from soft_diffusion.run import settings as settings_lib
from soft_diffusion.run import state as state_lib
from soft_diffusion.run.modes import sample as sample_lib
from soft_diffusion.run.workdir import Workdir

log = logging.getLogger(__name__)

SPECTRUM_IMAGES = 2000  # training images for the data's mean and DCT power spectrum (guided, Wiener)
FIGURE_IMAGES = 6


def make_degradation(
  cfg: settings_lib.RestoreConfig, height: int, width: int, corruption: Any = None
) -> restoration.Degradation:
  """The operator A of the restore block for height × width images (`corruption`: the model's,
  for operator = 'model')."""
  with errors.user_input("config.restore"):
    if cfg.operator == "model":
      basis, c = corruption.diagonal(jnp.full((1,), float(cfg.size)), height, width)
      return restoration.Degradation(basis, np.asarray(c[0], np.float64), f"model C_t t={cfg.size:g}")
    if cfg.operator == "gaussian_blur":
      return restoration.gaussian_blur(float(cfg.size), height, width)
    if cfg.operator == "box_blur":
      return restoration.box_blur(int(cfg.size), height, width)
    if cfg.operator == "random_mask":
      return restoration.random_mask(float(cfg.size), height, width, cfg.mask_seed)
    return restoration.box_mask((height // 2, height), (0, width), height, width)  # lower_half


def load_split_images(settings: settings_lib.Settings, split: str, num: int) -> np.ndarray:
  """The first `num` images of `split`, float32 [n, H, W, C] in [-1, 1]."""
  data_cfg = dataclasses.replace(settings.data, train_split=split)
  return sample_lib.load_training_images(dataclasses.replace(settings, data=data_cfg), num)


def load_observations(path: str, height: int, width: int, channels: int) -> np.ndarray:
  """Degraded images from a folder of PNGs or an .npz, float32 [N, H, W, C] in [-1, 1]."""
  p = epath.Path(path)
  if not p.exists():
    raise errors.MissingError(f"config.restore.input: {path} does not exist (a folder of PNGs or an .npz)")
  if p.is_dir():
    from PIL import Image

    pngs = sorted(f for f in p.iterdir() if f.suffix.lower() == ".png")
    if not pngs:
      raise errors.MissingError(f"config.restore.input: no .png files in {path}")
    mode = "L" if channels == 1 else "RGB"
    arrays = [np.asarray(Image.open(f).convert(mode)) for f in pngs]
    y = np.stack([a[..., None] if a.ndim == 2 else a for a in arrays])
  else:
    try:
      f = files.load_npz(p)
    except Exception as e:  # not an npz
      raise errors.ConfigError(f"config.restore.input: {path} is not a readable .npz ({type(e).__name__})") from None
    if "y" not in f and len(f) != 1:
      raise errors.ConfigError(f"config.restore.input: {path} holds {sorted(f)}; it needs an array 'y' (or one array)")
    y = f["y"] if "y" in f else next(iter(f.values()))
  if y.ndim != 4 or y.shape[1:] != (height, width, channels):
    raise errors.ConfigError(
      f"config.restore.input: images must be [N, {height}, {width}, {channels}] for this model, got {y.shape}"
    )
  if y.dtype == np.uint8:
    return y.astype(np.float32) / 127.5 - 1.0
  y = y.astype(np.float32)
  if not (np.all(np.isfinite(y)) and y.min() >= -1.5 and y.max() <= 1.5):
    raise errors.ConfigError(
      "config.restore.input: float images must be finite and in [-1, 1] (noise may reach ±1.5), or uint8"
    )
  return y


def data_statistics(settings: settings_lib.Settings, channels: int) -> tuple[np.ndarray, np.ndarray]:
  """(mean image [H, W, C], DCT power spectrum [H, W, C]) of the data: exact for a dataset whose
  law is known (`data.exact_spectrum`: zero mean), else from the first SPECTRUM_IMAGES training
  images (variance of each DCT coefficient)."""
  exact = data.exact_spectrum(settings.data)
  if exact is not None:
    v = exact[..., 0]  # channels are alike
    return np.zeros((*v.shape, channels)), np.repeat(v[:, :, None], channels, axis=-1)
  images = sample_lib.load_training_images(settings, SPECTRUM_IMAGES).astype(np.float64)
  mean = images.mean(axis=0)
  v = dct.dct2_host(images - mean).var(axis=0)
  return mean, np.maximum(v, 1e-8 * max(float(v.max()), 1e-30))


def wiener_estimate(
  y: np.ndarray, degradation: restoration.Degradation, mean: np.ndarray, v: np.ndarray, sigma_y: float
):
  """The linear MMSE estimate of x_0 from y under N(mean, DCT-diagonal v): the exact posterior
  mean of that Gaussian, per channel."""
  centred = y - np.asarray(degradation.apply(jnp.asarray(mean[None], jnp.float32)), np.float64)
  out = np.empty_like(y, dtype=np.float64)
  for c in range(y.shape[-1]):
    post = gaussian_field.posterior(v[..., c], degradation, sigma_y, centred[..., c : c + 1])
    out[..., c] = post.mean[..., 0]
  return out + mean[None]


def _restore_fn(run, cfg, degradation, start, denoise_fn, mean, spectrum, mesh):
  """jitted (y [B, H, W, C], key) -> one posterior sample per observation."""
  sampler = samplers.get(cfg.sampler)
  batch = state_lib.batch_sharding(mesh)

  def fn(y, key):
    y = jax.lax.with_sharding_constraint(y, batch)
    if cfg.method == "native":
      return restoration.restore_native(
        sampler, denoise_fn, y, run.corruption, degradation, cfg.sigma_y, num_steps=cfg.num_steps, key=key, start=start
      )
    k_init, k_sampler = jax.random.split(key)
    x_init = restoration.guided_init(y, run.corruption, degradation, cfg.sigma_y, mean, spectrum, k_init)
    x_init = jax.lax.with_sharding_constraint(x_init, batch)
    return restoration.restore_guided(
      sampler, denoise_fn, y, x_init, run.corruption, degradation, cfg.sigma_y, spectrum,
      num_steps=cfg.num_steps, key=k_sampler,
    )  # fmt: skip

  return jax.jit(fn)


def draw_samples(fn, y: np.ndarray, cfg: settings_lib.RestoreConfig, label: str) -> np.ndarray:
  """K samples for each observation: [K, N, H, W, C] float32, in batches of cfg.batch_size
  (every batch padded to it: one compile); batch i uses key fold_in(key(seed), i)."""
  k, n = cfg.num_samples, len(y)
  tiled = np.tile(y, (k, 1, 1, 1))
  out = []
  report = reporting.Progress(f"restored ({label})", k * n, note=" (first batch includes compiling)")
  for i, lo in enumerate(range(0, k * n, cfg.batch_size)):
    chunk = tiled[lo : lo + cfg.batch_size]
    pad = cfg.batch_size - len(chunk)
    if pad:
      chunk = np.concatenate([chunk, np.repeat(chunk[-1:], pad, axis=0)])
    x = fn(jnp.asarray(chunk), jax.random.fold_in(jax.random.key(cfg.seed + 1), i))
    out.append(np.asarray(x)[: len(chunk) - pad])
    report(min(k * n, lo + cfg.batch_size))
  return np.concatenate(out).reshape(k, n, *y.shape[1:])


def _image_scores(images: np.ndarray, truth: np.ndarray) -> dict[str, float]:
  clipped = np.clip(images, -1.0, 1.0)
  return {
    "psnr": float(image_quality.psnr(clipped, truth).mean()),
    "ssim": float(image_quality.ssim(clipped, truth).mean()),
  }


def restore(settings: settings_lib.Settings, workdir: epath.Path, mesh: jax.sharding.Mesh | None = None) -> epath.Path:
  """--mode restore (module docstring); returns the output folder."""
  settings = settings_lib.require(settings, "restore")
  workdir = epath.Path(workdir)
  cfg = settings.restore
  if jax.process_count() > 1:
    raise errors.ConfigError("--mode restore runs on one process (start it without --distributed)")
  mesh = mesh if mesh is not None else state_lib.make_mesh()
  state_lib.check_batch_split("restore.batch_size", cfg.batch_size, mesh)
  size = settings.data.image_size
  if cfg.operator != "model":  # checked before the checkpoint is read
    degradation = make_degradation(cfg, size, size)
  run = sample_lib.load_run(settings, workdir, mesh=mesh)
  if cfg.operator == "model":
    degradation = make_degradation(cfg, size, size, run.corruption)
  channels = sample_lib.prior_channels(run.prior)
  start = None
  if cfg.method == "native":
    with errors.user_input("config.restore.method = 'native'"):
      start = restoration.native_level(run.corruption, degradation, cfg.sigma_y)
    log.info(
      "native restoration starts at t* = %.4f (s = %.4g)",
      start.t,
      float(run.corruption.noise_std(jnp.float32(start.t))),
    )

  if cfg.input:
    y = load_observations(cfg.input, size, size, channels)
    truth = None
  else:
    truth = load_split_images(settings, cfg.split, cfg.num_images)
    y = np.asarray(degradation.observe(jnp.asarray(truth), cfg.sigma_y, jax.random.key(cfg.seed)))
  mean, v = data_statistics(settings, channels)
  fields = data.has_exact_law(settings.data)  # every score is also exact against the true posterior
  denoisers = {"trained": run.denoise_fn()}
  if fields and settings.eval.oracle:
    denoisers["oracle"] = gaussian_field.oracle_denoiser(run.corruption, v[..., 0])

  size_tag = "" if cfg.operator == "lower_half" else f"_{cfg.size:g}"
  tag = f"{cfg.operator}{size_tag}_s{cfg.sigma_y:g}_{cfg.method}"
  out = Workdir.of(workdir).restoration(tag)
  out.folder.mkdir(parents=True, exist_ok=True)
  record: dict[str, Any] = {
    "config": dataclasses.asdict(cfg),
    "operator": degradation.description,
    "step": run.step,
    "num_observations": len(y),
    "t_start": start.t if start else 1.0,
  }
  arrays: dict[str, np.ndarray] = {"y": y}
  if truth is not None:
    arrays["truth"] = truth
    wiener = wiener_estimate(y.astype(np.float64), degradation, mean, v, cfg.sigma_y)
    record["baselines"] = {"observation": _image_scores(y, truth), "wiener": _image_scores(wiener, truth)}
  if fields and truth is not None:
    post = gaussian_field.posterior(v[..., 0], degradation, cfg.sigma_y, y)
    exact = posterior_metrics.exact_samples(post, cfg.num_samples, np.random.default_rng(cfg.seed))
    record["exact_posterior"] = posterior_metrics.restoration_metrics(exact, truth, post)
  for name, denoise_fn in denoisers.items():
    t0 = time.perf_counter()
    fn = _restore_fn(run, cfg, degradation, start, denoise_fn, mean, v, mesh)
    samples = draw_samples(fn, y, cfg, name)
    estimate, std = (np.asarray(a) for a in restoration.posterior_summary(samples))
    arrays |= {f"samples_{name}": samples, f"estimate_{name}": estimate, f"std_{name}": std}
    entry: dict[str, Any] = {"seconds": round(time.perf_counter() - t0, 1)}
    if truth is not None:
      entry["estimate"] = _image_scores(estimate, truth)
      entry["sample"] = _image_scores(samples.reshape(-1, *y.shape[1:]), np.tile(truth, (len(samples), 1, 1, 1)))
    if fields and truth is not None:
      entry["exact"] = posterior_metrics.restoration_metrics(samples, truth, post)
    record[name] = entry
    log.info("%s: %s", name, entry)
    figures.restoration_figure(
      out.figure(name),
      y,
      samples,
      estimate,
      std,
      truth,
      f"{degradation.description}, σ_y={cfg.sigma_y:g}, {cfg.method}, {name}",
      num_images=FIGURE_IMAGES,
    )
  files.save_npz(out.arrays, **arrays)
  files.write_json(out.metrics, record)
  log.info("restorations, figures and metrics in %s", out.folder)
  return out.folder
