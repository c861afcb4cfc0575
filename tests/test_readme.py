"""The README's code example runs as written."""

import pathlib
import re

README = pathlib.Path(__file__).resolve().parents[1] / "README.md"


def test_readme_python_example_runs():
  blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
  assert blocks, "README.md has no python example"
  namespace = {}
  exec(compile(blocks[0], "README.md", "exec"), namespace)
  assert namespace["x_sampled"].shape == (8, 32, 32, 3)
  assert namespace["loss"].shape == ()


def test_readme_gaussian_field_example_runs(capsys):
  """The oracle example runs after the first one (it reuses its corruption and keys)."""
  blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
  example = [b for b in blocks if "oracle_denoiser" in b]
  assert len(example) == 1
  namespace = {}
  exec(compile(blocks[0], "README.md", "exec"), namespace)
  exec(compile(example[0], "README.md", "exec"), namespace)
  assert namespace["x"].shape == (256, 32, 32, 3)
  assert "spectral_fd" in capsys.readouterr().out
