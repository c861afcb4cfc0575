"""Every `python -m soft_diffusion.main` command line the project shows its users parses and
validates as written: the README, docs/, launch/ (its README, the scripts' usage comments) and
the usage lines of the config files and of main.py.

Shorthands are expanded the way a reader would: shell variables set earlier in the same code
block (`M="... soft_diffusion.main ..."`, then `$M --mode sample`), the prose definition
"`M = python -m soft_diffusion.main ...`" for the code spans of the same page, the results
table's CFG and EVAL columns, and the placeholders W, DIR, DATA, RAW, N, ... (PLACEHOLDERS).
Optional parts in brackets and `...` are left out. Each command line is then parsed by
`main.parse` (flags, the config file and its `--config.x=v` overrides) and its settings are
validated (`settings.load`), all in one fresh interpreter, which touches no backend.
"""

from __future__ import annotations

import json
import pathlib
import re
import shlex
import subprocess
import sys

REPO = pathlib.Path(__file__).resolve().parents[1]
SCRATCH = "/nonexistent/soft_diffusion_docs"  # parsing reads no workdir or data folder
PLACEHOLDERS = {
  "W": f"{SCRATCH}/run",
  "DIR": f"{SCRATCH}/run",
  "WORKDIR": f"{SCRATCH}/run",
  "DATA": f"{SCRATCH}/data",
  "RAW": f"{SCRATCH}/raw",
  "CFG": "configs/digits.py",
  "FILE": "configs/digits.py",
  "N": "4",
  "I": "0",
  "HOST:PORT": "127.0.0.1:1234",
}
LAUNCHERS = ("launch/local.sh", "launch/gpu.sh", "launch/slurm.sh", "launch/tpu_pod.sh")
SHELL_STOP = {"&&", "||", "|", ";", ">", ">>", "2>&1", "&"}
MIN_COMMANDS = 40  # what the pages held when this test was written: finding fewer means the extraction broke


def sources() -> list[pathlib.Path]:
  pages = [REPO / "README.md", REPO / "launch" / "README.md", *sorted(REPO.glob("docs/*.md"))]
  return [
    *pages,
    *sorted(REPO.glob("launch/*.sh")),
    *sorted(REPO.glob("configs/*.py")),
    REPO / "soft_diffusion" / "main.py",
  ]


def _strip_comment(line: str) -> str:
  """The line without a trailing shell comment (a # after whitespace, outside quotes)."""
  quote = None
  for i, ch in enumerate(line):
    if ch in "'\"" and quote in (None, ch):
      quote = None if quote else ch
    elif ch == "#" and quote is None and (i == 0 or line[i - 1].isspace()):
      return line[:i].rstrip()
  return line.rstrip()


def _expand(line: str, variables: dict[str, str]) -> str:
  return re.sub(r"\$\{?(\w+)\}?", lambda m: variables.get(m.group(1), m.group(0)), line)


def shell_lines(path: pathlib.Path) -> list[str]:
  """The command lines of `path`'s code: fenced blocks of a page, usage comments of a script
  (`#   command`), indented usage lines of a Python file; continuations joined, comments
  stripped, variables set earlier in the same block expanded."""
  text = path.read_text()
  if path.suffix == ".md":
    blocks = re.findall(r"^```[a-z]*\n(.*?)^```", text, re.S | re.M)
  elif path.suffix == ".sh":  # usage comments; a line with a code span is prose about a command
    blocks = ["\n".join(x[1:].strip() for x in text.splitlines() if x.startswith("#  ") and "`" not in x)]
  else:  # docstring usage lines; a continuation is written `\\` in the source
    text = text.replace("\\\\\n", " ")
    blocks = ["\n".join(x.strip() for x in text.splitlines() if x.startswith("    python -m"))]
  out = []
  for block in blocks:
    variables: dict[str, str] = {}
    for line in block.replace("\\\n", " ").splitlines():
      line = _expand(_strip_comment(line), variables)
      assignment = re.fullmatch(r"(\w+)=(.*)", line.strip())
      if assignment:
        value = shlex.split(assignment.group(2))
        variables[assignment.group(1)] = value[0] if value else ""
      elif line.strip():
        out.append(line.strip())
  return out


def prose_lines(path: pathlib.Path) -> list[str]:
  """The command lines of a page's code spans, with its prose shorthand (`M = python -m
  soft_diffusion.main ...`) expanded, and the rows of a table with CFG and EVAL columns as the
  `M --mode eval --config CFG ... EVAL` the page says they stand for."""
  if path.suffix != ".md":
    return []
  text = path.read_text()
  spans = [" ".join(s.split()) for s in re.findall(r"`([^`\n]+(?:\n[^`\n]+)?)`", text)]
  shorthand = next((s.split("=", 1)[1].strip() for s in spans if re.match(r"M\s*=\s*\S*python", s)), None)
  out = []
  for span in spans:
    if re.match(r"(\S*python3?|\$PYTHON) -m soft_diffusion\.main\b", span):
      out.append(span)
    elif shorthand and span.startswith("M ") and not re.match(r"M\s*=", span):
      out.append(shorthand + span[1:])
  lines = text.splitlines()
  for i, line in enumerate(lines):
    cells = [c.strip() for c in line.strip().strip("|").split("|")]
    if shorthand and "CFG" in cells and "EVAL" in cells:
      cfg_col, eval_col = cells.index("CFG"), cells.index("EVAL")
      previous = ""
      for row in lines[i + 2 :]:
        if not row.startswith("|"):
          break
        cells = [c.strip() for c in row.strip().strip("|").split("|")]
        cfg = re.findall(r"`([^`]+)`", cells[cfg_col])
        evaluation = " ".join(re.findall(r"`([^`]+)`", cells[eval_col]))
        if cells[eval_col].startswith("as above with"):  # the previous row's flags, one replaced
          key = evaluation.split("=", 1)[0]
          evaluation = " ".join([*(f for f in previous.split() if not f.startswith(key + "=")), evaluation])
        previous = evaluation
        out.append(f"{shorthand} --mode eval --config {cfg[0]} --workdir W --config.data.path=DATA {evaluation}")
  return out


def main_argv(line: str) -> list[str] | None:
  """The arguments `soft_diffusion.main` gets from `line`, placeholders filled; None when the
  line runs something else."""
  try:
    tokens = shlex.split(line)
  except ValueError:
    return None
  for i, token in enumerate(tokens):
    if token == "soft_diffusion.main" and i and tokens[i - 1] == "-m":
      args = tokens[i + 1 :]
      break
    if token.endswith(LAUNCHERS):
      rest = tokens[i + 1 :]
      if "--" in rest:
        args = rest[rest.index("--") + 1 :]
      elif token.endswith(("launch/gpu.sh", "launch/slurm.sh")) or (token.endswith("local.sh") and "--config" in rest):
        args = rest
      else:
        return None
      break
  else:
    return None
  argv, depth = [], 0
  for token in args:
    if token in SHELL_STOP or token.startswith(("#", ">")):
      break
    depth += token.count("[") if token.startswith("[") else 0
    if depth == 0 and token == "...":  # "any command, plus": a fragment, not a command line
      return None
    if depth == 0 and token != "EVAL":
      name, eq, value = token.partition("=")
      if token in PLACEHOLDERS:
        token = PLACEHOLDERS[token]
      elif eq and value in PLACEHOLDERS:
        token = f"{name}={PLACEHOLDERS[value]}"
      argv.append(token)
    depth -= token.count("]") if depth else 0
  return argv or None  # no arguments: the module named in prose


def documented_commands() -> list[tuple[str, list[str]]]:
  found = []
  for path in sources():
    for line in [*shell_lines(path), *prose_lines(path)]:
      argv = main_argv(line)
      if argv is not None:
        found.append((f"{path.relative_to(REPO)}: {line}", argv))
  return found


RUNNER = """
import json, sys
from absl import flags
from soft_diffusion import errors
from soft_diffusion.run import main, settings
results = []
for argv in json.loads(sys.stdin.read()):
  flags.FLAGS.unparse_flags()
  for name in [n for n in flags.FLAGS if n.startswith("config.")]:  # each line defines its overrides anew
    delattr(flags.FLAGS, name)
  try:
    settings.load(main.parse(["main", *argv]))
    results.append(None)
  except Exception as e:
    results.append(f"{type(e).__name__}: {errors.one_line(e)}")
print(json.dumps(results))
"""


def test_every_documented_command_line_parses_and_validates():
  commands = documented_commands()
  assert len(commands) >= MIN_COMMANDS, f"found only {len(commands)} command lines: {commands}"
  proc = subprocess.run(
    [sys.executable, "-c", RUNNER],
    input=json.dumps([argv for _, argv in commands]),
    capture_output=True,
    text=True,
    cwd=REPO,
  )
  assert proc.returncode == 0, proc.stderr[-3000:]
  results = json.loads(proc.stdout.strip().splitlines()[-1])
  failures = [
    f"{where}\n    argv {argv}\n    {error}" for (where, argv), error in zip(commands, results, strict=True) if error
  ]
  assert not failures, f"{len(failures)} of {len(commands)} documented command lines fail:\n" + "\n".join(failures)


def test_the_extraction_expands_shorthands_as_a_reader_would():
  assert main_argv("M --x") is None
  assert main_argv("python -m soft_diffusion.main --mode eval ... --steps all") is None  # a fragment
  assert main_argv(".venv/bin/python -m soft_diffusion.main --config CFG --workdir W [--step N]") == [
    "--config",
    "configs/digits.py",
    "--workdir",
    f"{SCRATCH}/run",
  ]
  assert main_argv("launch/tpu_pod.sh $T -- --config c.py --workdir gs://b/r  # resumes") == [
    "--config",
    "c.py",
    "--workdir",
    "gs://b/r",
  ]
  assert main_argv("launch/tpu_pod.sh $T --logs") is None
  assert main_argv("python -m soft_diffusion.main --config=c.py --config.data.path=DATA && echo done") == [
    "--config=c.py",
    f"--config.data.path={SCRATCH}/data",
  ]
