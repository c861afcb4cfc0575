"""Files and progress: atomic writes, workdir checks, image grids, multi-day ETAs."""

import logging

import numpy as np
import pytest

from soft_diffusion import errors, evaluation
from soft_diffusion.run import files, image_files, reporting
from soft_diffusion.run.workdir import Workdir


@pytest.mark.parametrize(
  "seconds, text",
  [
    (0, "00:00:00"),
    (59.6, "00:01:00"),
    (3725, "01:02:05"),
    (26 * 3600, "1d 02:00:00"),
    (3 * 86_400 + 61, "3d 00:01:01"),
  ],
)
def test_durations_keep_their_days(seconds, text):
  assert reporting.format_duration(seconds) == text


def test_progress_logs_count_rate_and_eta(caplog):
  progress = reporting.Progress("drawn", 100)
  with caplog.at_level(logging.INFO, logger="soft_diffusion.run.reporting"):
    progress(25)
  (line,) = caplog.messages
  assert line.startswith("drawn: 25/100") and "images/s" in line and "ETA " in line


def test_atomic_writes_leave_only_the_finished_file(tmp_path):
  files.write_json(tmp_path / "a" / "r.json", {"x": 1})
  files.save_npz(tmp_path / "a" / "arrays.npz", images=np.zeros((2, 3), np.uint8))

  def crash(f):
    f.write(b"half")
    raise RuntimeError("crash while writing")

  with pytest.raises(RuntimeError):
    files.write_atomic(tmp_path / "a" / "r.json", crash)
  assert (tmp_path / "a" / "r.json").read_text() == '{\n "x": 1\n}'  # the old file, whole
  assert sorted(p.name for p in (tmp_path / "a").iterdir()) == ["arrays.npz", "r.json"]  # no temporary left


def test_workdir_checks(tmp_path):
  assert Workdir.resolve(tmp_path / "new" / "run").root == (tmp_path / "new" / "run").resolve()
  assert not (tmp_path / "new").exists()  # nothing is created
  (tmp_path / "file").write_text("")
  with pytest.raises(errors.ConfigError, match="is a file"):
    Workdir.resolve(tmp_path / "file")
  with pytest.raises(errors.ConfigError, match="lies under the file"):
    Workdir.resolve(tmp_path / "file" / "run")


def test_image_grid_and_uint8_rounding():
  images = np.arange(4 * 2 * 3 * 1, dtype=np.uint8).reshape(4, 2, 3, 1)
  grid = image_files.image_grid(images)
  assert grid.shape == (2 * 3 + 1, 2 * 4 + 1, 1)
  np.testing.assert_array_equal(grid[1:3, 1:4], images[0])
  np.testing.assert_array_equal(grid[4:6, 5:8], images[3])
  np.testing.assert_array_equal(evaluation.to_uint8(np.array([-1.0, -0.999, 0.0, 1.0, 2.0])), [0, 0, 128, 255, 255])
