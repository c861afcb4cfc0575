"""The embedded default dataset: scikit-learn's handwritten digits as a TFDS dataset.

1,797 grey-scale 8×8 digits (values 0..16, scaled to 0..255) ship inside scikit-learn, so the
whole pipeline (TFDS ArrayRecord files -> grain) runs with no download; preparing takes
seconds and happens on first use. Splits are fixed: every tenth image (index % 10 == 0, 180
images) is `validation`, the other 1,617 are `train`.
"""

from __future__ import annotations

import numpy as np
import tensorflow_datasets as tfds

NAME = "soft_diffusion_digits"


def digit_images() -> tuple[np.ndarray, np.ndarray]:
  """All 1,797 digits as uint8 [N, 8, 8, 1] in 0..255, and their labels [N]."""
  from sklearn.datasets import load_digits  # local file inside scikit-learn, no network

  digits = load_digits()
  images = np.round(digits.images * (255.0 / 16.0)).astype(np.uint8)[..., None]
  return images, digits.target.astype(np.int64)


class SoftDiffusionDigits(tfds.core.GeneratorBasedBuilder):
  """scikit-learn's 8×8 handwritten digits (registered as `soft_diffusion_digits`)."""

  VERSION = tfds.core.Version("1.0.0")
  RELEASE_NOTES = {"1.0.0": "Initial release: scikit-learn digits, fixed train/validation split."}

  def _info(self) -> tfds.core.DatasetInfo:
    return tfds.core.DatasetInfo(
      builder=self,
      description="scikit-learn's handwritten digits (UCI optical recognition, 8×8, 0..255).",
      features=tfds.features.FeaturesDict(
        {
          "image": tfds.features.Image(shape=(8, 8, 1), encoding_format="png"),
          "label": tfds.features.ClassLabel(num_classes=10),
        }
      ),
      supervised_keys=("image", "label"),
    )

  def _split_generators(self, dl_manager):
    del dl_manager  # nothing to download
    return {"train": self._generate_examples(held_out=False), "validation": self._generate_examples(held_out=True)}

  def _generate_examples(self, held_out: bool):
    images, labels = digit_images()
    for index, (image, label) in enumerate(zip(images, labels, strict=True)):
      if (index % 10 == 0) == held_out:
        yield index, {"image": image, "label": int(label)}
