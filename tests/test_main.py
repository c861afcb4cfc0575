"""The command line answers every input error a user can make in one line.

Each case runs the real command line (`soft_diffusion.main.main(argv)`, what `python -m
soft_diffusion.main` runs) in a process of its own and must end with exit status 2, exactly one
line on stderr (`error: ...` naming the field, path or flag and what is allowed or what to run),
no traceback, and nothing written to the workdir. The processes are forked from two runners
(tests/cli_runner.py) that import the package once, instead of starting an interpreter per case;
a few tests below start the real `python -m soft_diffusion.main` as users do.
"""

import concurrent.futures
import json
import pathlib
import subprocess
import sys

import pytest
from support import REPO, cli, cpu_env

# id -> (command-line flags, text the error line must contain). In the flags, {run} is the workdir
# (absent unless the case makes it), {tmp} a scratch folder, {tfds} the session's digits.
CASES = {
  # The command line and the config file.
  "missing config file": (["--config=configs/nope.py"], "--config configs/nope.py: no such file"),
  "config with a syntax error": (["--config={tmp}/syntax.py"], "SyntaxError"),
  "config without get_config": (["--config={tmp}/no_get_config.py"], "defines no get_config()"),
  "config whose get_config raises": (["--config={tmp}/raises.py"], "RuntimeError: no config today"),
  "config that is not a ConfigDict": (["--config={tmp}/not_a_dict.py"], "must return an ml_collections.ConfigDict"),
  "unknown config form": (
    ["--config=configs/gaussian_field.py:pink"],
    "--config configs/gaussian_field.py:pink: ValueError: the config's form (the ':FORM' after the file name) "
    "must be one of ('preconditioned', 'paper'), got 'pink'",
  ),
  "misspelled key": (
    ["--config.train.total_step=5"],
    "--config.train.total_step: the config has no field 'total_step'; did you mean 'total_steps'?",
  ),
  "unknown block": (["--config.trainn.num_steps=5"], "the config has no field 'trainn'"),
  "value of the wrong type": (["--config.train.total_steps=abc"], "--config.train.total_steps=abc"),
  "no workdir": (["--workdir="], "--workdir is required"),
  "unknown mode": (["--mode=bogus"], "--mode=bogus"),
  "unknown flag": (["--bogus"], "Unknown command line flag 'bogus'"),
  "positional argument": (["extra"], "unexpected arguments ['extra']"),
  "zero processes": (["--distributed", "--num_processes=0"], "--num_processes must be >= 1, got 0"),
  "process flags without --distributed": (["--process_id=1"], "need --distributed"),
  "process id out of range": (
    ["--distributed", "--num_processes=2", "--process_id=2"],
    "--process_id must be in [0, --num_processes = 2), got 2",
  ),
  "coordinator without a port": (
    ["--distributed", "--coordinator_address=localhost"],
    "--coordinator_address must be host:port",
  ),
  "--step when training": (["--step=3"], "--step applies to --mode sample, eval and tune_grid only"),
  "negative --step": (["--mode=sample", "--step=-1"], "--step must be a checkpoint step >= 0"),
  "compilation cache that is a file": (
    ["--compilation_cache_dir={tmp}/a_file"],
    "--compilation_cache_dir must be a folder (created if missing) or a gs:// URL",
  ),
  "URL workdir without a bucket": (["--workdir=gs://"], "--workdir gs://: a URL must look like scheme://bucket/folder"),
  "--steps that is not a list": (["--mode=eval", "--steps=best"], "--steps must be 'all' or a comma list"),
  "--step with --steps": (["--mode=eval", "--step=2", "--steps=all"], "--step and --steps exclude each other"),
  "accumulation that does not divide the batch": (
    ["--config.train.grad_accum_steps=3"],
    "config.train.grad_accum_steps must be a divisor of train.batch_size = 8, got 3",
  ),
  # Config values.
  "batch size 0": (["--config.train.batch_size=0"], "config.train.batch_size must be an int >= 1, got 0"),
  "float16": (
    ["--config.model.dtype=float16"],
    "config.model.dtype must be 'auto', 'float32' or 'bfloat16', got 'float16'",
  ),
  "negative learning rate": (["--config.optim.lr=-1"], "config.optim.lr must be > 0"),
  "unknown sampler": (["--config.sample.sampler=ddim"], "config.sample.sampler must be one of"),
  "image size the U-Net cannot halve": (
    ["--config.data.image_size=7"],
    "config.data.image_size must be divisible by 2^",
  ),
  "zero noise": (
    ["--config.corruption.noise_std_min=0"],
    "config.corruption: noise std_min must be a finite number > 0",
  ),
  "unknown corruption": (["--config.corruption.name=bogus"], "corruption name must be one of"),
  "unknown dataset": (["--config.data.name=bogus"], "config.data.name must be one of"),
  "no eval step counts": (["--config.eval.num_steps=()"], "config.eval.num_steps must be a non-empty tuple"),
  "unknown eval sampler": (["--config.eval.samplers=('x',)"], "config.eval.samplers must be a non-empty tuple of"),
  "one level": (["--config.levels.num_levels=1"], "config.levels.num_levels must be an int in [2,"),
  "cosine decay without an end": (
    ["--config.optim.decay=cosine", "--config.optim.decay_steps=0"],
    "config.optim.decay_steps must be an int > optim.warmup_steps",
  ),
  "zero crop": (["--config.data.crop_size=0"], "config.data.crop_size must be None"),
  "unknown loss weighting": (["--config.loss.weighting=snr"], "config.loss.weighting must be one of"),
  "unknown mask order": (
    ["--config.corruption.name=mask", "--config.corruption.mask_order=bogus"],
    "config.corruption: ",
  ),
  "unknown prior": (["--config.sample.prior=bogus"], "config.sample.prior must be one of"),
  "t_min of 1": (["--config.train.t_min=1.0"], "config.train.t_min must be in [0, 1)"),
  "sampling selected levels without levels.json": (
    ["--mode=sample", "--config.corruption.blur_schedule=selected"],
    "levels.json does not exist; run: python -m soft_diffusion.main --mode levels",
  ),
  # Paths, files and things that must exist first.
  "workdir is a file": (["--workdir={tmp}/a_file"], "is a file; give a folder"),
  "workdir under a file": (["--workdir={tmp}/a_file/run"], "lies under the file"),
  "sampling before training": (["--mode=sample", "--workdir={tmp}/empty_run"], "no checkpoints in"),
  "evaluating without statistics": (["--mode=eval", "--workdir={tmp}/empty_run"], "no reference statistics"),
  "level selection for masks": (
    ["--mode=levels", "--config.corruption.name=mask"],
    "config.corruption.name must be 'blur' for --mode levels",
  ),
  "folder dataset without a path": (
    ["--config.data.name=folder", "--config.data.path="],
    "config.data.path must be a folder of images when data.name = 'folder'",
  ),
  "folder that does not exist": (
    ["--config.data.name=folder", "--config.data.path={tmp}/no_images"],
    "config.data.path must be an existing folder",
  ),
  "CelebA not prepared": (
    ["--config.data.name=celeb_a", "--config.data.path={tmp}/empty_tfds"],
    "python -m soft_diffusion.data.prepare celeb_a",
  ),
  "negative field spectrum scale": (["--config.data.field_k0=-2"], "config.data.field_k0 must be a number > 0"),
  "statistics for Gaussian fields": (
    ["--mode=stats", "--config.data.name=gaussian_field", "--config.data.cache=False"],
    "'gaussian_field' needs no reference statistics",
  ),
  "oracle for masked Gaussian fields": (
    ["--mode=eval", "--config.data.name=gaussian_field", "--config.data.cache=False", "--config.corruption.name=mask"],
    "config.eval.oracle must be False for corruption.name = 'mask'",
  ),
  "unknown restoration operator": (
    ["--mode=restore", "--config.restore.operator=bogus"],
    "config.restore.operator must be one of ('gaussian_blur', 'box_blur', 'random_mask', 'lower_half', 'model')",
  ),
  "restoration blur of 0 px": (
    ["--mode=restore", "--config.restore.size=0"],
    "config.restore.size must be the blur sigma",
  ),
  "restoring before training": (["--mode=restore", "--workdir={tmp}/empty_run"], "no checkpoints in"),
  # The tuned time grid (--mode tune_grid, sample.time_grid = 'tuned').
  "tuning a grid for momentum": (
    ["--mode=tune_grid"],
    "--mode tune_grid fits grids for sample.sampler = 'multistep' only, got 'momentum'",
  ),
  "tuning before training": (
    ["--mode=tune_grid", "--workdir={tmp}/empty_run", "--config.sample.sampler=multistep"],
    "no checkpoints in",
  ),
  "a tuned grid for momentum": (
    ["--mode=sample", "--config.sample.time_grid=tuned"],
    "config.sample.sampler must be 'multistep' (the sampler --mode tune_grid fits a grid for) with sample.time_grid",
  ),
  "sampling a tuned grid that was never tuned": (
    ["--mode=sample", "--config.sample.sampler=multistep", "--config.sample.time_grid=tuned"],
    "time_grid.json does not exist; run: python -m soft_diffusion.main --mode tune_grid",
  ),
  "a corrupt grid file": (
    [
      "--mode=sample",
      "--workdir={tmp}/bad_grid_run",
      "--config.sample.sampler=multistep",
      "--config.sample.time_grid=tuned",
    ],
    "time_grid.json is not a grid file written by --mode tune_grid",
  ),
  "a grid tuned for another corruption": (
    [
      "--mode=sample",
      "--workdir={tmp}/other_grid_run",
      "--config.sample.sampler=multistep",
      "--config.sample.time_grid=tuned",
    ],
    "time_grid.json was tuned for other corruption settings",
  ),
  "zero tuning images": (
    ["--mode=tune_grid", "--config.tune.num_images=0"],
    "config.tune.num_images must be an int >= 1",
  ),
  "unknown tuning start": (["--mode=tune_grid", "--config.tune.start=cosine"], "config.tune.start must be one of"),
  "unknown multistep form": (["--config.sample.form=heun"], "config.sample.form must be one of"),
  "midpoint form of order 3": (
    ["--config.sample.order=3", "--config.sample.form=midpoint"],
    "config.sample.form must be 'auto' or 'exact' with sample.order = 3",
  ),
  "unknown reference split": (
    ["--mode=stats", "--config.eval.split=bogus"],
    "config.eval.split: split 'bogus' of 'digits' must be one of",
  ),
}
# Cases that need the Inception weights to be missing.
NO_WEIGHTS = {"statistics without Inception weights": (["--mode=stats"], "python -m soft_diffusion.evaluation.weights")}
CASES.update(NO_WEIGHTS)


def make_scratch(tmp: pathlib.Path) -> None:
  (tmp / "syntax.py").write_text("def get_config(:\n")
  (tmp / "no_get_config.py").write_text("x = 1\n")
  (tmp / "raises.py").write_text("def get_config():\n  raise RuntimeError('no config today')\n")
  (tmp / "not_a_dict.py").write_text("def get_config():\n  return 5\n")
  (tmp / "a_file").write_text("not a folder\n")
  (tmp / "empty_run").mkdir()
  (tmp / "bad_grid_run").mkdir()
  (tmp / "bad_grid_run" / "time_grid.json").write_text("{not json")
  (tmp / "other_grid_run").mkdir()
  (tmp / "other_grid_run" / "time_grid.json").write_text(json.dumps({"fingerprint": {"corruption": {}}, "grids": {}}))
  (tmp / "empty_tfds").mkdir()
  (tmp / "no_weights").mkdir()


def tree(path: pathlib.Path):
  """What is at `path`: None, a file's bytes, or the sorted relative paths below a folder."""
  if not path.exists():
    return None
  if path.is_file():
    return path.read_bytes()
  return sorted(str(p.relative_to(path)) for p in path.rglob("*"))


@pytest.fixture(scope="module")
def results(tmp_path_factory, tfds_dir):
  tmp = tmp_path_factory.mktemp("bad_input")
  make_scratch(tmp)
  names, cases, workdirs = list(CASES), [], []
  for name in names:
    flags = [f.format(tmp=tmp, tfds=tfds_dir) for f in CASES[name][0]]
    if not any(f.startswith("--config.data.path") for f in flags):
      flags.append(f"--config.data.path={tfds_dir}")
    given = [f.split("=", 1)[1] for f in flags if f.startswith("--workdir=")]
    workdir = given[0] if given else str(tmp / "runs" / name.replace(" ", "_").replace("/", "_"))
    config = next((f.split("=", 1)[1] for f in flags if f.startswith("--config=")), "configs/tiny.py")
    flags = [f for f in flags if not f.startswith(("--workdir=", "--config="))]
    env = {"SOFT_DIFFUSION_CACHE": str(tmp / "no_weights")} if name in NO_WEIGHTS else {}
    cases.append({"argv": [f"--config={config}", f"--workdir={workdir}", *flags], "env": env})
    workdirs.append(pathlib.Path(workdir))
  before = [tree(w) for w in workdirs]

  # The digits are prepared once, before the runs read them.
  from soft_diffusion import data

  data.make_source(data.DataConfig(name="digits", path=tfds_dir), "train")

  def runner(part):
    proc = subprocess.run(
      [sys.executable, "tests/cli_runner.py"],
      input=json.dumps(part),
      cwd=REPO,
      capture_output=True,
      text=True,
      timeout=600,
      env=cpu_env(),
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout)

  halves = [cases[0::2], cases[1::2]]
  with concurrent.futures.ThreadPoolExecutor(max_workers=2) as pool:
    first, second = pool.map(runner, halves)
  ran = [None] * len(cases)
  ran[0::2], ran[1::2] = first, second
  return {
    name: (subprocess.CompletedProcess([], r["returncode"], "", r["stderr"]), b, tree(w))
    for name, r, b, w in zip(names, ran, before, workdirs, strict=True)
  }


def test_there_are_at_least_30_distinct_bad_inputs():
  assert len(CASES) >= 30


@pytest.mark.parametrize("name", list(CASES))
def test_bad_input_is_one_line_without_traceback_and_writes_nothing(results, name):
  proc, before, after = results[name]
  expected = CASES[name][1]
  lines = [line for line in proc.stderr.splitlines() if line.strip()]
  assert proc.returncode == 2, f"exit {proc.returncode}; stderr:\n{proc.stderr[-3000:]}"
  assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
  assert len(lines) == 1, "stderr has more than one line:\n" + proc.stderr[-3000:]
  assert lines[0].startswith("error: ") and expected in lines[0], lines[0]
  assert after == before, f"the workdir changed: {before} -> {after}"


def test_verbose_shows_the_traceback_of_an_input_error(tmp_path, tiny_flags):
  proc = cli(tmp_path / "run", *tiny_flags, "--config.train.batch_size=0", "--verbose")
  assert proc.returncode != 0 and "Traceback" in proc.stderr
  assert "ConfigError: config.train.batch_size must be an int >= 1, got 0" in proc.stderr


def test_a_bug_keeps_its_traceback(tmp_path, tfds_dir):
  """An exception that is not a user error (here: a stand-in bug in the train loop) is not
  turned into one line."""
  script = (
    "import sys\n"
    "from soft_diffusion.run import main\n"
    "from soft_diffusion.run.modes import train\n"
    "def bug(*args):\n"
    "  raise RuntimeError('a bug in the loop')\n"
    "train.run_training = bug\n"
    "main.main(sys.argv)\n"
  )
  command = [
    sys.executable,
    "-c",
    script,
    "--config=configs/tiny.py",
    f"--workdir={tmp_path / 'run'}",
    f"--config.data.path={tfds_dir}",
  ]
  proc = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=300, env=cpu_env())
  assert proc.returncode not in (0, 2) and "Traceback" in proc.stderr
  assert "RuntimeError: a bug in the loop" in proc.stderr


def test_the_old_mode_name_is_refused_in_one_line(tmp_path, tiny_flags):
  """--mode schedule was --mode levels before 0.1.0; the alias is gone."""
  proc = cli(tmp_path / "run", *tiny_flags, "--mode=schedule")
  assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr[-3000:]
  assert "--mode" in proc.stderr and "levels" in proc.stderr
  assert not (tmp_path / "run").exists()


def test_the_config_file_may_come_anywhere_on_the_line():
  """ml_collections refuses `--config.x=v` before `--config FILE`; main moves the file first."""
  from soft_diffusion.run.main import config_first

  assert config_first(["m", "--workdir=W", "--config.data.path=D", "--config", "c.py:paper", "--mode=eval"]) == [
    "m",
    "--config",
    "c.py:paper",
    "--workdir=W",
    "--config.data.path=D",
    "--mode=eval",
  ]
  assert config_first(["m", "--config.seed=1", "--config=c.py"]) == ["m", "--config=c.py", "--config.seed=1"]
  assert config_first(["m", "--config.seed=1"]) == ["m", "--config.seed=1"]  # no file: parse() names what is missing
  assert config_first(["m", "--config"]) == ["m", "--config"]
