"""Checkpoints that cannot be used: half-written steps are ignored; a checkpoint of another config
or with damaged files stops training and sampling with a one-line error saying what to do."""

import pytest
from support import TRAINED_STEPS, checkpoint_steps, flat, saved_state

from soft_diffusion import errors
from soft_diffusion.run import checkpoints
from soft_diffusion.run.modes import sample, train
from soft_diffusion.run.workdir import Workdir


def test_half_written_foreign_and_damaged_checkpoints(tiny_config, tmp_path):
  workdir = tmp_path / "run"
  tiny_config.train.total_steps = 2
  train.run_training(Workdir.of(str(workdir)).settings(tiny_config, resolve_levels=False), str(workdir))
  half = workdir / "checkpoints" / "4.orbax-checkpoint-tmp-1700000000"
  (half / "state").mkdir(parents=True)
  (half / "state" / "garbage").write_bytes(b"\0" * 64)
  tiny_config.train.total_steps = 4
  result = train.run_training(Workdir.of(str(workdir)).settings(tiny_config, resolve_levels=False), str(workdir))
  assert result["step"] == 4 and checkpoint_steps(workdir) == [2, 4]
  assert int(flat(saved_state(workdir, 4))["['step']"]) == 4

  other = tiny_config.copy_and_resolve_references()
  other.train.total_steps = 6
  other.model.channels = 8
  with pytest.raises(errors.CheckpointError, match=r"checkpoint 4 in .* cannot be restored into this config's state"):
    train.run_training(Workdir.of(str(workdir)).settings(other, resolve_levels=False), str(workdir))

  for f in (workdir / "checkpoints" / "4" / "state").rglob("*"):
    if f.is_file() and f.name != "commit_success.txt":
      f.write_bytes(b"damaged")
  with pytest.raises(errors.CheckpointError, match=r"move the folder 4 away"):
    sample.write_samples(Workdir.of(str(workdir)).settings(tiny_config), str(workdir))


def test_missing_checkpoints_name_what_to_run(tmp_path, trained_run):
  with pytest.raises(errors.MissingError, match=r"no checkpoints in .*; train first: python -m soft_diffusion.main"):
    checkpoints.resolve_step(tmp_path)
  with pytest.raises(errors.MissingError, match=rf"no checkpoint for step 7 .*available: \[{TRAINED_STEPS}\]"):
    checkpoints.resolve_step(trained_run, 7)
  assert checkpoints.resolve_step(trained_run) == TRAINED_STEPS == checkpoints.resolve_step(trained_run, TRAINED_STEPS)
