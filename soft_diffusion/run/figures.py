"""Every figure the drivers write, as functions of plain data (no sampling, no checkpoints).

* `to_display`, `image_rows`: image grids with row labels and column titles (the trajectory,
  forward-process and restoration figures).
* `fid_vs_nfe`, `spectral_fd_vs_nfe`, `ring_ratios`, `nfe_axis`: the evaluation plots.
* `levels_figure`: what `--mode levels` selected.
* `restoration_figure`: observations, posterior samples, their mean and spread.

Each writes a PNG through `image_files.save_figure` (atomic, local or gs://); matplotlib is
imported on first use (`image_files.pyplot`).
"""

from __future__ import annotations

from typing import Any

import matplotlib.ticker
import numpy as np
from etils import epath

from soft_diffusion.run import image_files

# ----------------------------------------------------------------------------------------------
# Image grids.


def to_display(x) -> np.ndarray:
  """An image in [-1, 1] (H, W, C) as floats in [0, 1] for imshow (grayscale as H, W)."""
  x = np.asarray(x, np.float32)
  x = np.clip((x + 1.0) / 2.0, 0.0, 1.0)
  return x[..., 0] if x.shape[-1] == 1 else x


def image_rows(path: epath.Path, rows: list[tuple[str, list[np.ndarray]]], titles: list[str], suptitle: str) -> None:
  """A grid of display images (`to_display`): one row per (label, images), one title per column."""
  plt = image_files.pyplot()
  cols = len(titles)
  fig, axes = plt.subplots(len(rows), cols, figsize=(1.5 * cols, 1.6 * len(rows) + 0.6), squeeze=False)
  for r, (label, images) in enumerate(rows):
    for c, image in enumerate(images):
      ax = axes[r, c]
      ax.imshow(image, cmap="gray" if image.ndim == 2 else None, vmin=0, vmax=1, interpolation="nearest")
      ax.set_xticks([])
      ax.set_yticks([])
      if r == 0:
        ax.set_title(titles[c], fontsize=7)
      if c == 0:
        ax.set_ylabel(label, fontsize=8)
  fig.suptitle(suptitle, fontsize=9)
  fig.tight_layout()
  image_files.save_figure(fig, path)


def restoration_figure(path: epath.Path, y, samples, estimate, std, truth, title: str, num_images: int = 4) -> None:
  """Per observation: y, up to three posterior samples, their mean, the spread ×4 (and the truth)."""
  n = min(num_images, len(y))
  titles = ["observation", *[f"sample {i + 1}" for i in range(min(3, len(samples)))], "estimate", "spread ×4"]
  titles += ["truth"] if truth is not None else []
  rows = []
  for i in range(n):
    row = [to_display(y[i])]
    row += [to_display(samples[j, i]) for j in range(min(3, len(samples)))]
    row += [to_display(estimate[i]), to_display(np.clip(8 * std[i] - 1, -1, 1))]
    row += [to_display(truth[i])] if truth is not None else []
    rows.append((f"#{i}", row))
  image_rows(path, rows, titles, title)


# ----------------------------------------------------------------------------------------------
# Evaluation plots.


def fid_vs_nfe(path: epath.Path, points: list[dict], title: str, paper_curves: dict | None = None) -> None:
  """FID against NFE (log-log), a line per sampler; `paper_curves` {label: (nfes, fids)} beside them."""
  plt = image_files.pyplot()
  fig, ax = plt.subplots(figsize=(5.2, 3.8))
  for sampler in dict.fromkeys(p["sampler"] for p in points):
    mine = sorted((p["num_steps"], p["fid"]) for p in points if p["sampler"] == sampler)
    ax.plot(*zip(*mine, strict=True), "o-", label=f"{sampler} (ours)")
  for label, (nfe, fid) in (paper_curves or {}).items():
    ax.plot(nfe, fid, "x--", alpha=0.6, label=label)
  ax.set(xscale="log", yscale="log", xlabel="NFE (network evaluations per sample)", ylabel="FID")
  nfes = sorted({p["num_steps"] for p in points})
  ax.set_xticks(nfes, [str(n) for n in nfes], minor=False)
  ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
  ax.yaxis.set_major_formatter(matplotlib.ticker.ScalarFormatter())
  ax.yaxis.set_minor_formatter(matplotlib.ticker.FormatStrFormatter("%g"))
  ax.set_title(title, fontsize=9)
  ax.grid(True, which="both", alpha=0.3)
  ax.legend(fontsize=7)
  fig.tight_layout()
  image_files.save_figure(fig, path, dpi=120)


def nfe_axis(ax, nfes) -> None:
  """A log NFE axis labelled at `nfes`."""
  ax.set_xscale("log")
  ax.set_xticks(nfes, [str(n) for n in nfes], minor=False)
  ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())


def spectral_fd_vs_nfe(path: epath.Path, runs: list[tuple[str, list[dict]]], step: int | None = None) -> None:
  """Spectral FD vs NFE (log-log): a line per (run label, sampler), trained solid, oracle dashed."""
  plt = image_files.pyplot()
  fig, ax = plt.subplots(figsize=(9.0, 4.4))
  colors = iter(plt.rcParams["axes.prop_cycle"].by_key()["color"] * 4)
  nfes: set[int] = set()
  for label, points in runs:
    for sampler in dict.fromkeys(p["sampler"] for p in points):
      color = next(colors)
      for denoiser, style in (("trained", "o-"), ("oracle", "x--")):
        mine = sorted(
          (p["num_steps"], p["spectral_fd"]) for p in points if (p["sampler"], p["denoiser"]) == (sampler, denoiser)
        )
        if mine:
          nfes.update(n for n, _ in mine)
          name = f"{label} {sampler}".strip() + ("" if denoiser == "trained" else " (oracle)")
          ax.plot(*zip(*mine, strict=True), style, color=color, label=name, alpha=1.0 if denoiser == "trained" else 0.7)
  ax.set(yscale="log", xlabel="NFE (network evaluations per sample)", ylabel="spectral Fréchet distance")
  nfe_axis(ax, sorted(nfes))
  n = runs[0][1][0]["num_images"] if runs and runs[0][1] else 0
  ax.set_title(
    f"Gaussian fields: distance to the true law ({n} samples" + (f", step {step})" if step else ")"), fontsize=9
  )
  ax.grid(True, which="both", alpha=0.3)
  ax.legend(fontsize=6.5, loc="upper left", bbox_to_anchor=(1.01, 1.0))
  fig.tight_layout()
  image_files.save_figure(fig, path, dpi=120)


def ring_ratios(path: epath.Path, runs: list[tuple[str, list[dict]]], step: int | None = None, nfe: int = 100) -> None:
  """v̂/v per ring k + l at the NFE closest to `nfe`: a line per (run, sampler), oracle dashed."""
  plt = image_files.pyplot()
  fig, ax = plt.subplots(figsize=(9.0, 4.4))
  colors = iter(plt.rcParams["axes.prop_cycle"].by_key()["color"] * 4)
  chosen = None
  for label, points in runs:
    if not points:
      continue
    chosen = min({p["num_steps"] for p in points}, key=lambda n: (abs(n - nfe), n))
    for sampler in dict.fromkeys(p["sampler"] for p in points):
      color = next(colors)
      for p in points:
        if (p["sampler"], p["num_steps"]) == (sampler, chosen):
          oracle = p["denoiser"] == "oracle"
          name = f"{label} {sampler}".strip() + (" (oracle)" if oracle else "")
          ax.plot(p["ring_ratios"], "--" if oracle else "-", color=color, label=name, alpha=0.7 if oracle else 1.0)
  ax.axhline(1.0, color="k", lw=0.8)
  ax.set(xlabel="frequency ring k + l", ylabel="sample variance / true variance", yscale="log")
  ax.set_title(f"variance kept per frequency at {chosen} NFE" + (f" (step {step})" if step else ""), fontsize=9)
  ax.grid(True, which="both", alpha=0.3)
  ax.legend(fontsize=6.5, loc="upper left", bbox_to_anchor=(1.01, 1.0))
  fig.tight_layout()
  image_files.save_figure(fig, path, dpi=120)


# ----------------------------------------------------------------------------------------------
# Level selection.


def levels_figure(path: epath.Path, levels: Any, settings: Any, power: np.ndarray) -> None:
  """Selected levels (σ_B(t) against log-spaced levels), hop distances against ε, and the data's radial spectrum."""
  plt = image_files.pyplot()
  c = settings.corruption
  k = len(levels.sigmas)
  t = np.linspace(0, 1, k)
  fig, axes = plt.subplots(1, 3, figsize=(13, 3.8))
  ax = axes[0]
  ax.plot(t, levels.sigmas, "o-", ms=3, label=f"selected ({k} levels)")
  t_fine = np.linspace(0, 1, 200)
  ax.plot(t_fine, c.blur_sigma_min * (c.blur_sigma_max / c.blur_sigma_min) ** t_fine, "--", label="log-spaced")
  ax.set(xlabel="t", ylabel="σ_B(t) [px]", yscale="log", title="blur level")
  ax.legend()
  ax = axes[1]
  ax.plot(np.arange(1, k), levels.selection.hop_distances, "o-", ms=3)
  ax.axhline(levels.selection.epsilon, color="k", ls=":", label=f"ε = {levels.selection.epsilon:.3g}")
  ax.set(xlabel="hop k (level k-1 → k)", ylabel="d (W2 bound)", title="distance between neighbouring levels")
  ax.legend()
  ax = axes[2]
  n = power.shape[0]
  radius = np.hypot(*np.meshgrid(np.arange(n), np.arange(n), indexing="ij")).round().astype(int)
  radial = np.bincount(radius.ravel(), power.sum(-1).ravel()) / np.maximum(np.bincount(radius.ravel()), 1)
  ax.semilogy(np.arange(len(radial)), radial)
  ax.set(xlabel="DCT frequency radius", ylabel="mean power", title=f"data spectrum ({settings.data.name})")
  fig.tight_layout()
  image_files.save_figure(fig, path)


def tuned_grids_figure(path: epath.Path, grids: dict[str, dict[str, Any]]) -> None:
  """--mode tune_grid: each tuned grid's times against the step index (the uniform grid is the
  diagonal), and its objective over the fit."""
  plt = image_files.pyplot()
  fig, (left, right) = plt.subplots(1, 2, figsize=(10.0, 4.0))
  left.plot([0, 1], [1, 0], ":", color="k", lw=0.8, label="uniform")
  for i, (key, grid) in enumerate(sorted(grids.items())):
    times = np.asarray(grid["times"])
    left.plot(np.arange(len(times)) / (len(times) - 1), times, "o-", ms=3, color=f"C{i}", label=key)
    right.plot(grid["losses"], color=f"C{i}", label=key)
  left.set(xlabel="step i / N", ylabel="t_i", title="tuned time grids")
  right.set(xlabel="Adam update", ylabel="mean squared distance to the reference", yscale="log")
  right.set_title("objective during the fit", fontsize=9)
  for ax in (left, right):
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=6.5)
  fig.tight_layout()
  image_files.save_figure(fig, path, dpi=110)
