"""Files a run writes, written whole or not at all, on a local disk or an object store.

* `write_atomic(path, write)` has `write(f)` fill an in-memory buffer, then publishes it whole:
  on a local disk as a sibling temporary file renamed over `path`; on an object store (no
  rename) as one object upload, which the store makes visible only once it is complete. Either
  way a crash never leaves a half-written `path`, and readers see the old file or the new one.
  `write_json` and `save_npz` use it (so do `image_files.write_png` and `image_files.save_figure`);
  `load_npz` reads an .npz from either.
* `is_local(path)`: a path on this machine, not a URL.

Paths are `etils.epath.Path` (the path type Orbax uses): local, or any scheme epath reads
(`gs://` through `tf.io.gfile` when TensorFlow is installed, else fsspec). Nothing here imports
JAX, a model or a metric.
"""

from __future__ import annotations

import io
import json
import os
import pathlib
from collections.abc import Callable
from typing import IO, Any

import numpy as np
from etils import epath


def is_local(path: str | os.PathLike) -> bool:
  """True for a path on this machine's file system, False for a URL (gs://, s3://, ...)."""
  return "://" not in os.fspath(path)


def write_atomic(path: str | os.PathLike, write: Callable[[IO[bytes]], Any]) -> None:
  """`write(f)` into a buffer, then `path` gets the whole buffer or nothing (see the module
  docstring): a crash never leaves a half-written `path`."""
  buffer = io.BytesIO()
  write(buffer)
  data = buffer.getvalue()
  path = epath.Path(path)
  path.parent.mkdir(parents=True, exist_ok=True)
  if not is_local(path):
    path.write_bytes(data)  # one upload: the object store publishes it only when it is complete
    return
  local = pathlib.Path(path)
  tmp = local.with_name(f"{local.stem}.tmp{local.suffix}")
  try:
    tmp.write_bytes(data)
    os.replace(tmp, local)  # atomic on POSIX
  except BaseException:
    tmp.unlink(missing_ok=True)
    raise


def write_json(path: str | os.PathLike, record: dict[str, Any]) -> None:
  write_atomic(path, lambda f: f.write(json.dumps(record, indent=1).encode()))


def save_npz(path: str | os.PathLike, **arrays: Any) -> None:
  write_atomic(path, lambda f: np.savez(f, **{k: np.asarray(v) for k, v in arrays.items()}))


def load_npz(path: str | os.PathLike) -> dict[str, np.ndarray]:
  """Every array of an .npz file, read whole (local or remote)."""
  with np.load(io.BytesIO(epath.Path(path).read_bytes())) as f:
    return {k: f[k] for k in f.files}
