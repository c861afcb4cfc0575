"""Input pipelines: TFDS (CelebA, embedded digits) and image folders, streamed by grain.

    from soft_diffusion import data
    cfg = data.DataConfig(name="digits", image_size=16)
    iterator = iter(data.make_dataset(cfg, split="train", batch_size=64, seed=0, train=True))
    batch = next(iterator)          # [64, 16, 16, 1] float32 in [-1, 1]
    state = iterator.get_state()    # restore with iterator.set_state(state)

Preparing CelebA: `python -m soft_diffusion.data.prepare celeb_a --data_dir DIR [--manual_dir RAW]`.
"""

from soft_diffusion.data.pipeline import (
  DATASETS,
  GENERATED,
  DataConfig,
  GeneratedDataset,
  Preprocess,
  RandomFlip,
  dataset_names,
  exact_spectrum,
  fingerprint_extra,
  first_batches,
  has_exact_law,
  is_generated,
  local_batch_size,
  make_dataset,
  make_source,
  to_global_array,
)
from soft_diffusion.data.sources import FolderSource, TfdsSource, prepare_command

__all__ = [
  "DATASETS",
  "GENERATED",
  "DataConfig",
  "GeneratedDataset",
  "FolderSource",
  "Preprocess",
  "RandomFlip",
  "TfdsSource",
  "dataset_names",
  "exact_spectrum",
  "fingerprint_extra",
  "first_batches",
  "has_exact_law",
  "is_generated",
  "local_batch_size",
  "make_dataset",
  "make_source",
  "prepare_command",
  "to_global_array",
]
