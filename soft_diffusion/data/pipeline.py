"""One input pipeline for every dataset: source -> per-process slice -> seeded shuffle ->
decode/crop/resize -> random flip -> batch, run by grain with background workers.

* Sources (`sources.py`): prepared TFDS splits (`celeb_a`, the embedded `digits`) read from
  ArrayRecord files, or a folder of PNG/JPEG images; these yield encoded bytes. The
  `gaussian_field` source (`field_source.py`) generates float images from (seed, index): no
  shuffle or decoding, the rest of the pipeline is the same.
* Training: every process defines the same seeded stream (shuffle of the whole split, reseeded
  every epoch, repeated forever) cut into global batches; process i decodes only rows
  [i*b, (i+1)*b) of each global batch of n*b. The global batch at step k is therefore the same
  whatever the number of processes, which is what makes a run on 2 hosts x 4 devices train
  exactly like one on 1 host x 8. Evaluation: process i reads `source[i::n]`, one pass, in order.
* The iterator is a grain `DatasetIterator`: `get_state()` / `set_state()` restore it so that
  the next batch is exactly the one an uninterrupted run would have produced.
* `cache=True` decodes and resizes the training split once into host memory (the embedded
  digits: 1,617 images, 1.7 MB at 16×16; CelebA-64: 162,770 images, 8 GB of float32 per host),
  with `num_workers` processes decoding; then the stream only shuffles, flips and batches, far
  faster than decoding every step. The batches are bitwise those of the uncached stream.
* `to_global_array` assembles the per-process batches into one array sharded over the
  ("data",) mesh with `jax.make_array_from_process_local_data`.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable
from typing import Any

import grain
import numpy as np

from soft_diffusion import typed_config
from soft_diffusion.data import field_source, preprocess, sources

log = logging.getLogger(__name__)

FILE_DATASETS = ("digits", "celeb_a", "folder")  # encoded images, decoded and resized by the pipeline


@dataclasses.dataclass(frozen=True)
class GeneratedDataset:
  """A dataset generated on the fly: element i of a split is a pure function of (config, split,
  seed, i), a float32 image [S, S, channels]; nothing is decoded, shuffled or stored.

  make_source(cfg, split, seed): a random-access source (`__len__`, `__getitem__` -> the image).
  fingerprint(cfg): the config fields its images depend on besides data.name and image_size
    (selected levels are refused when they differ).
  exact_spectrum(cfg): when the law is known to be Gaussian with independent DCT coefficients,
    their variances [S, S, channels]; then level selection needs no data pass, --mode eval
    measures exact distances (no Inception) and restoration scores against the exact posterior.
  """

  make_source: Callable[[Any, str, int], Any]
  fingerprint: Callable[[Any], dict[str, Any]] = lambda cfg: {}
  exact_spectrum: Callable[[Any], np.ndarray] | None = None


GENERATED: dict[str, GeneratedDataset] = {
  "gaussian_field": GeneratedDataset(
    field_source.from_config,
    fingerprint=lambda cfg: {"field": [cfg.field_k0, cfg.field_pixel_std]},
    exact_spectrum=lambda cfg: field_source.from_config(cfg, "train", 0).spectrum(),
  )
}
DATASETS = (*FILE_DATASETS, *GENERATED)  # the built-in names; `dataset_names()` includes registered ones


def dataset_names() -> tuple[str, ...]:
  """Every dataset name `data.name` accepts: the file-backed ones and every GENERATED entry."""
  return (*FILE_DATASETS, *GENERATED)


def is_generated(cfg: Any) -> bool:
  return cfg.name in GENERATED


def has_exact_law(cfg: Any) -> bool:
  """True for a generated dataset whose law is known exactly (it has an `exact_spectrum`)."""
  generated = GENERATED.get(cfg.name)
  return generated is not None and generated.exact_spectrum is not None


def exact_spectrum(cfg: Any) -> np.ndarray | None:
  """The exact DCT variances [S, S, C] of a dataset whose law is known (see GeneratedDataset), else None."""
  generated = GENERATED.get(cfg.name)
  return None if generated is None or generated.exact_spectrum is None else generated.exact_spectrum(cfg)


def fingerprint_extra(cfg: Any) -> dict[str, Any]:
  """The fields a generated dataset's images depend on (see GeneratedDataset); {} for the others."""
  generated = GENERATED.get(cfg.name)
  return {} if generated is None else generated.fingerprint(cfg)


@dataclasses.dataclass(frozen=True)
class DataConfig:
  """The `data` block: the input pipeline (soft_diffusion/data).

  The config schema: each field's comment is its documentation (`python -m soft_diffusion.run.schema`
  lists every field, docs/config.md shows them).
  """

  # 'digits' (embedded, 8×8 scikit-learn digits) | 'celeb_a' (TFDS) | 'folder' (your images) |
  # 'gaussian_field' (generated stationary Gaussian fields with a known law: docs/method.md §7, exact metrics)
  name: str = "digits"
  path: str | None = None  # folder for 'folder'; TFDS data_dir otherwise (None = default)
  # side of the square training images, pixels. The digits are stored at 8×8; 16×16 leaves room for
  # a U-Net with three resolutions (16, 8, 4) and for blur levels between "sharp" and "one blob",
  # while staying cheap enough for a 2-core CPU.
  image_size: int = 16
  crop_size: int | None = None  # central crop before resizing; None = largest square
  random_flip: bool = False  # random horizontal flip in training (digits: no, faces: yes)
  train_split: str = "train"  # split read for training
  folder_holdout_every: int = 10  # 'folder': every n-th file (sorted by path) is the validation split; 0 = none
  cache: bool = False  # decode + resize the whole training split once, into memory (small datasets only)
  num_workers: int = 0  # grain worker processes decoding in the background (0 = in the main process)
  read_threads: int = 4  # grain threads reading records
  prefetch_buffer_size: int = 64  # elements grain reads ahead
  # 'gaussian_field' only: spectrum v(k, l) = a / (1 + (k² + l²)/k0²) in the DCT basis, a set so the
  # pixel std is field_pixel_std (docs/method.md §7); this is k0
  field_k0: float = 2.0
  field_pixel_std: float = 0.3  # 'gaussian_field' only: the fields' pixel std, which sets a (see field_k0)

  def __post_init__(self):
    typed_config.check(self.name in dataset_names(), "data.name", f"one of {dataset_names()}", self.name)
    typed_config.check(
      self.name != "folder" or bool(self.path), "data.path", "a folder of images when data.name = 'folder'", self.path
    )
    typed_config.check(  # an empty path would make TFDS read and prepare in the current folder
      self.path is None or (isinstance(self.path, str) and self.path.strip() != ""),
      "data.path",
      "a folder (local or gs://), or None for TFDS's default (~/tensorflow_datasets)",
      self.path,
    )
    for field in ("image_size", "read_threads", "prefetch_buffer_size"):
      typed_config.check(
        typed_config.is_int_at_least(getattr(self, field), 1), f"data.{field}", "an int >= 1", getattr(self, field)
      )
    for field in ("num_workers", "folder_holdout_every"):
      typed_config.check(
        typed_config.is_int_at_least(getattr(self, field), 0), f"data.{field}", "an int >= 0", getattr(self, field)
      )
    typed_config.check(isinstance(self.cache, bool), "data.cache", "True or False", self.cache)
    for field in ("field_k0", "field_pixel_std"):
      value = getattr(self, field)
      typed_config.check(typed_config.is_positive_number(value), f"data.{field}", "a number > 0", value)
    if is_generated(self):
      typed_config.check(
        not self.cache, "data.cache", f"False for {self.name!r} (an endless generated stream)", self.cache
      )
      typed_config.check(
        self.crop_size is None, "data.crop_size", f"None for {self.name!r} (generated at image_size)", self.crop_size
      )
    typed_config.check(
      self.crop_size is None or typed_config.is_int_at_least(self.crop_size, 1),
      "data.crop_size",
      "None (largest central square) or an int >= 1",
      self.crop_size,
    )

  @classmethod
  def from_any(cls, cfg: Any) -> DataConfig:
    """From a DataConfig, dataclass, Mapping or ConfigDict; unknown keys are an error."""
    return typed_config.from_block(cls, cfg, "data")


def make_source(cfg: DataConfig, split: str, seed: int = 0):
  """The random-access source for `split` of the configured dataset (`seed`: a generated
  dataset's stream; the file-backed datasets do not use it)."""
  if is_generated(cfg):
    return GENERATED[cfg.name].make_source(cfg, split, seed)
  if cfg.name == "folder":
    return sources.FolderSource(cfg.path, split, cfg.folder_holdout_every)
  return sources.TfdsSource(cfg.name, split, cfg.path)


@dataclasses.dataclass(frozen=True)
class Preprocess(grain.transforms.Map):
  """Record -> [image_size, image_size, C] float32 in [-1, 1]."""

  crop_size: int | None
  image_size: int

  def map(self, record: dict[str, Any]) -> np.ndarray:
    return preprocess.preprocess(record["image"], record["name"], crop_size=self.crop_size, image_size=self.image_size)


class RandomFlip(grain.transforms.RandomMap):
  """Horizontal flip with probability 1/2 (seeded per element by grain)."""

  def random_map(self, image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    return np.ascontiguousarray(image[:, ::-1]) if rng.random() < 0.5 else image


def _single_threaded_blas(worker_index: int, worker_count: int) -> None:
  """Grain worker start-up: one BLAS thread per worker. The resize matmuls are small, and
  several worker processes each running a multi-threaded (spin-waiting) BLAS pool thrash the
  CPU cores they share."""
  del worker_index, worker_count
  import threadpoolctl

  threadpoolctl.threadpool_limits(1, user_api="blas")


def decode_all(ds: grain.MapDataset, preprocess_fn: Preprocess, cfg: DataConfig) -> np.ndarray:
  """Every record of `ds`, preprocessed, in order, as one array [N, S, S, C] float32 (`data.cache`).
  With `num_workers` > 0 the decoding is spread over that many worker processes (CelebA's
  162,770 JPEGs: minutes on one core); progress with rate and ETA goes to the log."""
  chunk = 128  # images per hand-over from a worker process (one per image costs more than decoding)
  stream = (
    ds.map(preprocess_fn)
    .batch(chunk, drop_remainder=False)
    .to_iter_dataset(grain.ReadOptions(num_threads=cfg.read_threads, prefetch_buffer_size=cfg.prefetch_buffer_size))
  )
  if cfg.num_workers:
    stream = _multiprocess(stream, cfg.num_workers)
  iterator = iter(stream)
  out = None
  done, start, next_report = 0, time.perf_counter(), len(ds) // 10
  try:
    for images in iterator:
      if out is None:
        out = np.empty((len(ds), *images.shape[1:]), images.dtype)
      out[done : done + len(images)] = images
      done += len(images)
      if done >= next_report and len(ds) >= 10_000:
        rate = done / (time.perf_counter() - start)
        log.info("data.cache: %d/%d decoded, %.0f images/s, ETA %.0f s", done, len(ds), rate, (len(ds) - done) / rate)
        next_report += len(ds) // 10
  finally:
    if hasattr(iterator, "close"):
      iterator.close()
  return out


def _multiprocess(stream: grain.IterDataset, num_workers: int) -> grain.IterDataset:
  """`stream` read ahead by `num_workers` grain worker processes (order kept)."""
  from absl import flags

  if not flags.FLAGS.is_parsed():  # grain's workers read absl flags; outside absl.app, use defaults
    flags.FLAGS.mark_as_parsed()
  return stream.mp_prefetch(grain.MultiprocessingOptions(num_workers=num_workers), worker_init_fn=_single_threaded_blas)


def local_batch_size(global_batch_size: int, num_devices: int, process_count: int) -> int:
  """Per-process batch size; the global batch must split evenly over devices and processes."""
  if global_batch_size < 1 or global_batch_size % num_devices:
    raise ValueError(
      f"config.train.batch_size = {global_batch_size} must be a positive multiple of the number of devices "
      f"({num_devices})"
    )
  if num_devices % process_count:
    raise ValueError(f"{num_devices} devices do not split evenly over {process_count} processes")
  return global_batch_size // process_count


def make_dataset(
  cfg: DataConfig,
  *,
  split: str,
  batch_size: int,
  seed: int,
  train: bool,
  process_index: int = 0,
  process_count: int = 1,
  source: Any = None,
) -> grain.IterDataset:
  """The grain dataset of host-local batches [batch_size, S, S, C] float32 in [-1, 1].

  Args:
    cfg: data config.
    split: split to read.
    batch_size: batch size of this process (see `local_batch_size`).
    seed: shuffle and flip seed (the same on every process).
    train: shuffle, repeat forever, random flip (if configured); process i gets rows
      [i*batch_size, (i+1)*batch_size) of each global batch of process_count*batch_size.
      Otherwise one pass over `source[process_index::process_count]` in order, keeping the
      last partial batch.
    process_index, process_count: which part of the data this process reads.
    source: an already opened source for `split` (default: `make_source(cfg, split)`).
  """
  if not 0 <= process_index < process_count:
    raise ValueError(f"process_index must be in [0, {process_count}), got {process_index}")
  if batch_size < 1:
    raise ValueError(f"batch_size must be >= 1, got {batch_size}")
  source = make_source(cfg, split, seed) if source is None else source
  ds = grain.MapDataset.source(source)
  generated = is_generated(cfg)  # records are the images already
  if train:
    global_batch = batch_size * process_count
    if len(ds) < global_batch:
      raise ValueError(f"split {split!r} has {len(ds)} images, fewer than the global batch size {global_batch}")
    # One global stream; a local batch of b is a block of b consecutive elements, and the
    # process takes every n-th block: rows [i*b, (i+1)*b) of each global batch. Lazy: only
    # the blocks this process takes are read and decoded.
    preprocess_fn = Preprocess(cfg.crop_size, cfg.image_size)
    if generated:  # already i.i.d. and (practically) endless: no shuffle, no decoding
      pass
    elif cfg.cache:  # the same images, decoded once: the stream is bitwise that of the uncached pipeline
      ds = grain.MapDataset.source(decode_all(ds, preprocess_fn, cfg))
      ds = ds.seed(seed).shuffle().repeat(None)
    else:
      ds = ds.seed(seed).shuffle().repeat(None).map(preprocess_fn)
    if cfg.random_flip:
      # An explicit seed: grain's default one depends on the chain's depth, which `cache` changes.
      ds = ds.random_map(RandomFlip(), seed=int(np.random.SeedSequence([seed, 1]).generate_state(1)[0]))
    ds = ds.batch(batch_size)[process_index::process_count]
  else:
    ds = ds[process_index::process_count]
    if not generated:
      ds = ds.map(Preprocess(cfg.crop_size, cfg.image_size))
    ds = ds.batch(batch_size, drop_remainder=False)
  iter_ds = ds.to_iter_dataset(
    grain.ReadOptions(num_threads=cfg.read_threads, prefetch_buffer_size=cfg.prefetch_buffer_size)
  )
  if cfg.num_workers and not (cfg.cache and train):  # a cached stream is only shuffled and batched
    iter_ds = _multiprocess(iter_ds, cfg.num_workers)
  return iter_ds


def first_batches(
  cfg: DataConfig,
  split: str,
  num: int,
  *,
  batch_size: int,
  seed: int = 0,
  source: Any = None,
  process_index: int = 0,
  process_count: int = 1,
):
  """Host batches (float32 numpy) of the first `num` images of `split`, in order and unflipped, the
  last one cut so that exactly min(num, len(split)) images come out: the one loop behind the prior's
  images, the reference statistics and the power spectrum. With `process_count` > 1, this
  process's share only: the images i < num with i % process_count == process_index (the shares of
  all processes are the first `num` images, each read once)."""
  ds = make_dataset(
    cfg,
    split=split,
    batch_size=batch_size,
    seed=seed,
    train=False,
    source=source,
    process_index=process_index,
    process_count=process_count,
  )
  return _first(ds, len(range(process_index, max(num, 0), process_count)))


def _first(ds: Any, num: int):
  if num <= 0:
    return
  count = 0
  for batch in ds:
    batch = np.asarray(batch)[: num - count]
    count += len(batch)
    yield batch
    if count >= num:
      break


def to_global_array(local_batch: np.ndarray, mesh: Any, axis: str = "data"):
  """Per-process batches -> one global jax.Array sharded along `axis` of `mesh` (batch dim)."""
  import jax
  from jax.sharding import NamedSharding, PartitionSpec

  sharding = NamedSharding(mesh, PartitionSpec(axis))
  return jax.make_array_from_process_local_data(sharding, local_batch)
