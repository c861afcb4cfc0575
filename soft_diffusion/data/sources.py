"""Random-access sources of encoded images: prepared TFDS datasets (ArrayRecord) and folders.

Every source returns records `{"image": <PNG/JPEG bytes>, "name": <str for error messages>}`
so that decoding and preprocessing are one code path (`preprocess.py`) for all datasets.
"""

from __future__ import annotations

import dataclasses
import os
import pathlib
from typing import Any

TFDS_NAMES = {"celeb_a": "celeb_a", "digits": "soft_diffusion_digits"}
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")


def prepare_command(name: str, data_dir: str | None) -> str:
  """The exact command that prepares dataset `name`."""
  cmd = f"python -m soft_diffusion.data.prepare {name}"
  if data_dir is not None:
    cmd += f" --data_dir {data_dir}"
  if name == "celeb_a":
    cmd += " [--manual_dir RAW]"
  return cmd


def tfds_builder(name: str, data_dir: str | None):
  """The TFDS builder for `name` ('celeb_a' | 'digits') writing ArrayRecord files."""
  import tensorflow_datasets as tfds

  if name not in TFDS_NAMES:
    raise ValueError(f"TFDS dataset name must be one of {sorted(TFDS_NAMES)}, got {name!r}")
  if name == "digits":
    from soft_diffusion.data import digits

    return digits.SoftDiffusionDigits(data_dir=data_dir, file_format="array_record")
  return tfds.builder(TFDS_NAMES[name], data_dir=data_dir, file_format="array_record")


@dataclasses.dataclass
class TfdsSource:
  """A prepared TFDS split, images left encoded (decoded by our own pipeline)."""

  name: str
  split: str
  data_dir: str | None = None

  def __post_init__(self):
    import tensorflow_datasets as tfds

    builder = tfds_builder(self.name, self.data_dir)
    if not builder.is_prepared():
      if self.name == "digits":  # embedded: prepare on first use (seconds, no network)
        builder.download_and_prepare()
      else:
        raise ValueError(
          f"dataset {self.name!r} is not prepared in {builder.data_dir}; run: "
          f"{prepare_command(self.name, self.data_dir)}"
        )
    if self.split not in builder.info.splits:
      raise ValueError(f"split {self.split!r} of {self.name!r} must be one of {sorted(builder.info.splits)}")
    self._source = builder.as_data_source(split=self.split, decoders={"image": tfds.decode.SkipDecoding()})

  def __len__(self) -> int:
    return len(self._source)

  def __getitem__(self, index: int) -> dict[str, Any]:
    record = self._source[index]
    return {"image": record["image"], "name": f"{self.name}/{self.split}[{index}]"}


def list_images(path: str) -> list[str]:
  """Sorted image files (PNG/JPEG) below `path`; raises when there is none."""
  root = pathlib.Path(path)
  if not root.is_dir():
    raise ValueError(f"config.data.path must be an existing folder of PNG/JPEG images, got {path!r}")
  files = sorted(str(p) for p in root.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
  if not files:
    raise ValueError(f"config.data.path {path!r} holds no image files ({', '.join(IMAGE_SUFFIXES)})")
  return files


@dataclasses.dataclass
class FolderSource:
  """A folder of PNG/JPEG files (searched recursively), in sorted path order.

  `split` selects a deterministic hold-out: every `holdout_every`-th file is 'validation'
  (0 = no hold-out: 'train' is every file and 'validation' is empty, which is an error).
  """

  path: str
  split: str = "train"
  holdout_every: int = 0

  def __post_init__(self):
    files = list_images(self.path)
    if self.split not in ("train", "validation"):
      raise ValueError(f"split of a folder dataset must be 'train' or 'validation', got {self.split!r}")
    if self.holdout_every < 0:
      raise ValueError(f"holdout_every must be >= 0, got {self.holdout_every}")
    if self.holdout_every:
      keep = (
        (lambda i: i % self.holdout_every == 0)
        if self.split == "validation"
        else (lambda i: i % self.holdout_every != 0)
      )
      files = [f for i, f in enumerate(files) if keep(i)]
    elif self.split == "validation":
      files = []
    if not files:
      raise ValueError(f"split {self.split!r} of folder {self.path!r} is empty (holdout_every={self.holdout_every})")
    self._files = files

  def __len__(self) -> int:
    return len(self._files)

  def __getitem__(self, index: int) -> dict[str, Any]:
    path = self._files[index]
    with open(path, "rb") as f:
      return {"image": f.read(), "name": os.fspath(path)}
