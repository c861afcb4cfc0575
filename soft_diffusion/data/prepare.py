"""Prepare a TFDS dataset as ArrayRecord files for the grain pipeline.

    python -m soft_diffusion.data.prepare celeb_a --data_dir DIR [--manual_dir RAW]
    python -m soft_diffusion.data.prepare digits  --data_dir DIR

CelebA's raw files live on Google Drive, which often refuses automated downloads. Without
`--manual_dir`, the command first probes Drive once with a short timeout and fails within
seconds, naming the five files to place in `--manual_dir`, instead of retrying for minutes.
With `--manual_dir` holding those files it runs offline (TFDS checks their SHA-256).
"""

from __future__ import annotations

import argparse
import pathlib
import sys
import time
import urllib.error
import urllib.request

from soft_diffusion.data import sources

# The five raw CelebA files TFDS's `celeb_a` builder reads (names as in its checksums.tsv).
CELEBA_FILES = (
  "img_align_celeba.zip",
  "list_eval_partition.txt",
  "list_attr_celeba.txt",
  "list_landmarks_align_celeba.txt",
  "identity_CelebA.txt",
)
# The smallest of them (2.8 MB): a cheap probe of whether Drive serves files to this machine.
PROBE_URL = "https://drive.google.com/uc?export=download&id=0B7EVK8r0v71pY0NSMzRuSXJEVkk"
PROBE_TIMEOUT_S = 10.0


class PrepareError(RuntimeError):
  """Preparation cannot proceed; the message says what to do."""


def manual_download_message(reason: str, manual_dir: str | None = None) -> str:
  where = manual_dir or "RAW"
  return (
    f"cannot download CelebA ({reason}). Download these five files from the CelebA page "
    f"(https://mmlab.ie.cuhk.edu.hk/projects/CelebA.html, 'Align&Cropped Images' and 'Anno'/'Eval'): "
    f"{', '.join(CELEBA_FILES)}; put them in one folder and run: "
    f"python -m soft_diffusion.data.prepare celeb_a --data_dir DIR --manual_dir {where}"
  )


def probe_drive(url: str = PROBE_URL, timeout: float = PROBE_TIMEOUT_S) -> None:
  """Raises PrepareError unless `url` starts serving a file (not an HTML refusal) in `timeout` s."""
  request = urllib.request.Request(url, headers={"User-Agent": "soft_diffusion-prepare"})
  try:
    with urllib.request.urlopen(request, timeout=timeout) as response:
      content_type = response.headers.get("Content-Type", "")
      first = response.read(512)
  except (urllib.error.URLError, OSError, TimeoutError) as e:
    raise PrepareError(manual_download_message(f"no connection to Google Drive: {e}")) from None
  if "text/html" in content_type or first.lstrip().lower().startswith((b"<!doctype html", b"<html")):
    raise PrepareError(manual_download_message("Google Drive answered with a web page instead of the file"))


def check_manual_dir(manual_dir: str) -> None:
  root = pathlib.Path(manual_dir)
  if not root.is_dir():
    raise PrepareError(
      f"--manual_dir {manual_dir!r} is not a folder. " + manual_download_message("no raw files", manual_dir)
    )
  missing = [name for name in CELEBA_FILES if not (root / name).is_file()]
  if missing:
    raise PrepareError(
      f"--manual_dir {manual_dir!r} lacks {', '.join(missing)}. "
      + manual_download_message("raw files missing", manual_dir)
    )


def prepare(name: str, data_dir: str | None, manual_dir: str | None = None, *, probe_url: str = PROBE_URL) -> str:
  """Builds the ArrayRecord files of dataset `name`; returns the folder they are in."""
  import tensorflow_datasets as tfds

  if name not in sources.TFDS_NAMES:
    raise PrepareError(f"dataset must be one of {sorted(sources.TFDS_NAMES)}, got {name!r}")
  builder = sources.tfds_builder(name, data_dir)
  if builder.is_prepared():
    return str(builder.data_dir)
  download_config = None
  if name == "celeb_a":
    if manual_dir is not None:
      check_manual_dir(manual_dir)
      download_config = tfds.download.DownloadConfig(manual_dir=manual_dir)
    else:
      probe_drive(probe_url)
  elif manual_dir is not None:
    raise PrepareError(f"--manual_dir is only used for celeb_a, not {name!r}")
  builder.download_and_prepare(download_config=download_config)
  return str(builder.data_dir)


def main(argv: list[str] | None = None) -> int:
  parser = argparse.ArgumentParser(prog="python -m soft_diffusion.data.prepare", description=__doc__.splitlines()[0])
  parser.add_argument("dataset", choices=sorted(sources.TFDS_NAMES))
  parser.add_argument("--data_dir", default=None, help="TFDS data_dir (default: TFDS's own, ~/tensorflow_datasets)")
  parser.add_argument("--manual_dir", default=None, help="folder with the five raw CelebA files (offline preparation)")
  args = parser.parse_args(argv)
  start = time.time()
  try:
    path = prepare(args.dataset, args.data_dir, args.manual_dir)
  except PrepareError as e:
    print(f"error: {e}", file=sys.stderr)
    return 1
  print(f"{args.dataset} prepared in {path} ({time.time() - start:.1f} s)")
  return 0


if __name__ == "__main__":
  sys.exit(main())
