"""The documentation is true to the repository: links resolve, generated tables match their JSON,
the README's code runs, the method is cited from the repository's own docs/method.md."""

from __future__ import annotations

import pathlib
import re
import subprocess
import sys

import pytest

REPO = pathlib.Path(__file__).resolve().parents[1]
PAGES = sorted([REPO / "README.md", REPO / "launch" / "README.md", REPO / "CHANGELOG.md", *REPO.glob("docs/*.md")])
TEXT_SUFFIXES = {".py", ".md", ".sh", ".toml", ".ini", ".cfg", ".txt", ".cff", ""}
LINK = re.compile(r"\]\(([^)\s]+)\)")


def repository_text_files() -> list[pathlib.Path]:
  """The repository's own text files: tracked or new, not ignored (virtual environments, runs)."""
  listed = subprocess.run(
    ["git", "ls-files", "--cached", "--others", "--exclude-standard"], cwd=REPO, capture_output=True, text=True
  )
  if listed.returncode == 0:
    paths = [REPO / line for line in listed.stdout.splitlines()]
  else:  # not a git checkout (an unpacked archive)
    paths = [p for p in REPO.rglob("*") if not {".git", ".venv", "runs"} & set(p.relative_to(REPO).parts)]
  return [p for p in paths if p.is_file() and p.suffix in TEXT_SUFFIXES and p.stat().st_size < 2_000_000]


def slug(heading: str) -> str:
  """GitHub's anchor for a markdown heading."""
  text = re.sub(r"[`*_]", "", heading.strip().lower())
  text = re.sub(r"[^\w\- ]", "", text)
  return text.replace(" ", "-")


def anchors(page: pathlib.Path) -> set[str]:
  return {slug(m) for m in re.findall(r"^#+ (.*)$", page.read_text(), re.M)}


def test_no_reference_to_a_file_outside_the_repository():
  # the method's source document is not shipped; the code and docs cite docs/method.md instead
  pattern = re.compile(r"\b" + "SP" + r"EC\b")
  hits = []
  for path in repository_text_files():
    for number, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
      if pattern.search(line):
        hits.append(f"{path.relative_to(REPO)}:{number}: {line.strip()[:80]}")
  assert not hits, "\n".join(hits)


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(REPO)))
def test_every_link_resolves(page):
  broken = []
  for target in LINK.findall(page.read_text()):
    if re.match(r"[a-z]+:", target):  # http(s), mailto: not checked offline
      continue
    path_part, _, anchor = target.partition("#")
    resolved = (page.parent / path_part).resolve() if path_part else page
    if not resolved.exists():
      broken.append(f"{target}: no such file")
    elif anchor and resolved.suffix == ".md" and anchor not in anchors(resolved):
      broken.append(f"{target}: no heading #{anchor} in {resolved.relative_to(REPO)}")
  assert not broken, f"{page.relative_to(REPO)}: " + "; ".join(broken)


def test_every_docs_page_says_what_it_answers_and_is_linked_from_the_readme():
  readme = (REPO / "README.md").read_text()
  for page in sorted(REPO.glob("docs/*.md")):
    lines = page.read_text().splitlines()
    assert lines[0].startswith("# "), page.name
    assert lines[2].startswith("This page answers"), page.name
    assert f"(docs/{page.name})" in readme, f"README does not link docs/{page.name}"


def test_readme_is_short_and_starts_from_a_clone():
  text = (REPO / "README.md").read_text()
  assert len(text.splitlines()) <= 250
  for needed in ("git clone", "make demo", "make test", "launch/tpu_pod.sh", "launch/slurm.sh", "docs/results.md"):
    assert needed in text, needed


def test_generated_tables_match_their_json():
  result = subprocess.run(
    [sys.executable, "tools/results_doc.py", "--check"], cwd=REPO, capture_output=True, text=True, check=False
  )
  assert result.returncode == 0, result.stdout + result.stderr
  assert "generated blocks" in result.stdout


def test_readme_functional_api_block_runs_as_written():
  (block,) = python_blocks("README.md")
  namespace: dict = {}
  exec(compile(block, "README.md", "exec"), namespace)  # noqa: S102 (the README's own example)
  assert namespace["images"].shape == (8, 16, 16, 1)
  assert bool(abs(namespace["images"]).max() < 10)
  assert float(namespace["loss"]) > 0


def test_one_version_everywhere():
  init = (REPO / "soft_diffusion" / "__init__.py").read_text()
  (version,) = re.findall(r'^__version__ = "([^"]+)"', init, re.M)
  assert f"\nversion: {version}\n" in (REPO / "CITATION.cff").read_text()
  assert f"## {version} " in (REPO / "CHANGELOG.md").read_text()
  assert "version=VERSION" in (REPO / "setup.py").read_text()
  assert (REPO / "soft_diffusion" / "py.typed").exists()
  assert "Apache License" in (REPO / "LICENSE").read_text()[:200]


def python_blocks(page: str) -> list[str]:
  return re.findall(r"```python\n(.*?)```", (REPO / page).read_text(), re.S)


def test_api_page_first_example_runs_as_written():
  blocks = python_blocks("docs/api.md")
  namespace: dict = {}
  exec(compile(blocks[0], "docs/api.md", "exec"), namespace)  # noqa: S102
  assert namespace["x_sampled"].shape == (8, 32, 32, 3)
  assert namespace["loss"].shape == ()


def test_api_page_gaussian_field_example_runs_as_written(capsys):
  """The oracle example runs after the first one (it reuses its corruption and keys)."""
  blocks = python_blocks("docs/api.md")
  (example,) = [b for b in blocks if "oracle_denoiser" in b]
  namespace: dict = {}
  exec(compile(blocks[0], "docs/api.md", "exec"), namespace)  # noqa: S102
  exec(compile(example, "docs/api.md", "exec"), namespace)  # noqa: S102
  assert namespace["x"].shape == (256, 32, 32, 3)
  assert "spectral_fd" in capsys.readouterr().out


def test_api_page_preconditioning_example_runs_as_written():
  """The preconditioning example runs after the first one (its corruption, data and keys); with
  F = 0 on Gaussian data its denoiser is the exact posterior mean, as the page says."""
  import numpy as np

  from soft_diffusion import gaussian_field

  blocks = python_blocks("docs/api.md")
  (example,) = [b for b in blocks if "Preconditioner" in b]
  namespace: dict = {}
  exec(compile(blocks[0], "docs/api.md", "exec"), namespace)  # noqa: S102
  exec(compile(example, "docs/api.md", "exec"), namespace)  # noqa: S102
  assert namespace["x"].shape == (8, 32, 32, 3) and namespace["loss"].shape == ()
  x_t, t = namespace["x_t"], namespace["t"]
  oracle = gaussian_field.oracle_denoiser(namespace["corruption"], namespace["power"])
  np.testing.assert_allclose(namespace["denoise_fn"](x_t, t), oracle(x_t, t), rtol=1e-4, atol=1e-5)


def test_make_refuses_a_python_older_than_3_11_in_one_line(tmp_path):
  """`make demo` / `make test` with python3 = 3.10 (Ubuntu 22.04, TPU VM images) used to die deep
  inside pip; the Makefile checks the interpreter first and names the fix."""
  import shutil

  if shutil.which("make") is None:
    pytest.skip("no make on this machine")
  stub = tmp_path / "python3.10"  # a 3.10 stand-in: the real interpreter reporting version 3.10
  stub.write_text(
    "#!/bin/sh\n"
    f'exec {sys.executable} -c "import sys; sys.version_info = (3, 10, 12, \'final\', 0); exec(sys.argv[1])" "$2"\n'
  )
  stub.chmod(0o755)
  for goal in ("demo", "test"):
    args = ["make", "-n", goal, f"PYTHON={stub}", f"VENV={tmp_path / 'venv'}"]
    out = subprocess.run(args, cwd=REPO, capture_output=True, text=True)
    assert out.returncode != 0 and not (tmp_path / "venv").exists(), out.stdout
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and f"run: PYTHON=python3.11 make {goal}" in lines[0], out.stderr
  ok = subprocess.run(["make", "-n", "demo", f"VENV={tmp_path / 'venv'}"], cwd=REPO, capture_output=True, text=True)
  assert ok.returncode == 0 and "-m venv" in ok.stdout, ok.stderr  # this interpreter (3.11+) passes


def test_counts_and_lists_in_the_docs_match_the_code():
  """Numbers and lists the docs state that the repository can count: the pinned packages and the
  samplers the schema's sample.sampler comment lists (docs/config.md)."""
  from soft_diffusion import samplers
  from soft_diffusion.run import schema

  pins = [line for line in (REPO / "constraints.txt").read_text().splitlines() if "==" in line]
  contributing = (REPO / "docs" / "contributing.md").read_text()
  stated = re.search(r"all (\d+) packages of the environment", contributing)
  assert stated and int(stated.group(1)) == len(pins), (
    f"docs/contributing.md: {stated and stated[0]}, pinned: {len(pins)}"
  )
  (block,) = [f.comment for f in schema.fields() if f.key == "sample.sampler"]
  missing = [name for name in samplers.SAMPLERS if f"'{name}'" not in block]
  assert not missing, f"the comment of SampleConfig.sampler (run/settings.py) lacks {missing}"
