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
