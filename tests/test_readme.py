"""Every command in the README's code blocks runs, in a cheap form, so that the README cannot drift from the
program: `jobs.train` for one epoch on a few digits, `jobs.sweep` with `plan_only=true`, `jobs.transfer` and
`jobs.report` on a tiny sweep made here, Python blocks executed. A new block is picked up by itself; a command that
cannot run here goes in SKIP with its reason.

Each command runs in its own temporary folder (outputs land there), several at a time.
"""
from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"

# (pattern searched in the command, why it is not run here). Add a line for a command that needs what CI lacks.
SKIP = [
    (r"^make ", "sets up a fresh .venv (minutes); CI runs the suite itself"),
    (r"-m pytest", "the test suite itself: CI runs it"),
    (r"^source ", "shell setup, not a Harness command"),
    (r"^sbatch |hydra/launcher=slurm", "submits to SLURM: tests/test_slurm.py submits to a real one"),
    (r"^wandb sync", "uploads to W&B: needs an API key and network"),
    (r"hydra\.launcher\.address=auto", "joins a running Ray cluster"),
    (r"jobs\.benchmark", "a timing benchmark (minutes): tests/test_benchmark.py runs its --quick form"),
    (r"pipeline\.cluster\.local", "runs a Ray cluster until stopped: tests/test_sweep.py starts one"),
    (r"~/mylab|mynet\.", "needs the user's own package: tests/test_user_models.py writes one and trains it"),
    (r"model\.path=|zoo\.models=", "needs the user's model files: tests/test_user_models.py makes and evaluates them"),
    (r"^python my_app\.py", "the user's own Hydra app: tests/test_launcher_suites.py runs Hydra's test apps on it"),
    (r"data=(folder|arrays|torchvision)", "needs the user's data: tests/test_sources.py writes and reads each kind"),
    (r"gpu_check\.sh --device cuda", "needs a GPU"),
    (r"gpu_check\.sh --device cpu", "minutes of CPU: tests/test_gpu_check.py runs it"),
]

# The cheap form of each entry point: overrides appended unless the command sets the key itself.
ONE_EPOCH = {"trainer.max_epochs": "1", "data.limit": "100", "eval.epsilons": "[0.1]"}
CHEAP = {"jobs.train": ONE_EPOCH, "jobs.sweep": {"plan_only": "true"}}
# The sweep that `jobs.transfer` and `jobs.report` commands run on (`dir=outputs/sweeps/main`, as in the README).
TINY_SWEEP = ["sweep.grid.model=softmax", "sweep.grid.regularizer=none,adversarial", "evaluation.enabled=false",
              "report.images=2", "sweep.overrides=['trainer.max_epochs=1','data.limit=200','eval.epsilons=[0.1]']"]
NEEDS_SWEEP = ("jobs.transfer", "jobs.report")
# Names that Python blocks use without defining them (a model and a batch of digits).
PYTHON_NAMES = "model, x, y"


@dataclass(frozen=True)
class Command:
    text: str                 # as the README writes it (continuation lines joined, comments dropped)
    language: str
    line: int                 # where its block starts in the README

    @property
    def skip(self) -> str | None:
        return next((reason for pattern, reason in SKIP if re.search(pattern, self.text)), None)


def code_blocks(markdown: str) -> list[tuple[str, int, str]]:
    """(language, first line, body) of every fenced block."""
    return [(m.group(1), markdown[:m.start()].count("\n") + 1, m.group(2))
            for m in re.finditer(r"^```(\w*)\n(.*?)^```", markdown, re.S | re.M)]


def without_comment(line: str) -> str:
    """The line up to an unquoted `#` that starts a word (the shell's comment)."""
    quote = None
    for i, char in enumerate(line):
        if quote:
            quote = None if char == quote else quote
        elif char in "'\"":
            quote = char
        elif char == "#" and (i == 0 or line[i - 1].isspace()):
            return line[:i].rstrip()
    return line.rstrip()


def commands(markdown: str) -> list[Command]:
    """The shell commands of the bash blocks, one per line (joined at a trailing backslash, comments dropped),
    and each Python block whole. Blocks without a language (layouts, listings) are not commands."""
    found = []
    for language, line, body in code_blocks(markdown):
        if language == "python":
            found.append(Command(body, language, line))
        elif language in ("bash", "sh", "shell"):
            for text in re.sub(r"\\\n\s*", " ", body).splitlines():
                text = " ".join(without_comment(text).split())
                if text:
                    found.append(Command(text, language, line))
    return found


def cheap_form(text: str) -> tuple[list[str] | str, dict[str, str]]:
    """A plain `[VAR=value ...] python -m <module> <args>` command as an argv with its cheap overrides, and its
    environment; anything with shell syntax (`$(...)`, pipes) stays a string for bash, as written."""
    if re.search(r"[$|;&<>`]", text):
        return text, {}
    words = shlex.split(text)
    env = {}
    while words and re.fullmatch(r"[A-Z_]+=\S*", words[0]):
        key, _, value = words.pop(0).partition("=")
        env[key] = value
    assert words[:2] == ["python", "-m"], f"not a python -m command: {text}"
    module, args = words[2], words[3:]
    if not any(a.startswith("--") for a in args):
        given = {a.lstrip("+~").partition("=")[0] for a in args}
        args += [f"{key}={value}" for key, value in CHEAP.get(module, {}).items() if key not in given]
    return [sys.executable, "-m", module, *args], env


def run(argv: list[str] | str, cwd: Path, env: dict[str, str] = {}) -> subprocess.CompletedProcess:
    environment = {k: v for k, v in os.environ.items() if k != "HYDRA_FULL_ERROR"}
    environment.update({"WANDB_MODE": "disabled", "PYTHONIOENCODING": "utf-8",
                        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
                        "PATH": os.pathsep.join([str(Path(sys.executable).parent), os.environ["PATH"]]), **env})
    shell = ["bash", "-o", "pipefail", "-c", argv] if isinstance(argv, str) else argv
    return subprocess.run(shell, cwd=cwd, env=environment, capture_output=True, text=True, timeout=300)


ALL = commands(README.read_text(encoding="utf-8"))
SHELL = [c for c in ALL if c.language != "python"]


@pytest.fixture(scope="module")
def results(tmp_path_factory) -> dict[str, tuple[subprocess.CompletedProcess, float]]:
    """Every runnable shell command, several at a time; those that need a sweep directory run, one after the
    other, on the tiny sweep made first."""
    sweep_cwd = tmp_path_factory.mktemp("readme_sweep")

    def one(command: Command, cwd: Path | None = None) -> tuple[str, tuple[subprocess.CompletedProcess, float]]:
        argv, env = cheap_form(command.text)
        started = time.monotonic()
        result = run(argv, cwd or tmp_path_factory.mktemp("readme"), env)
        return command.text, (result, time.monotonic() - started)

    runnable = list({same_run(c): c for c in SHELL if c.skip is None}.values())   # each distinct run once
    needs_sweep = [c for c in runnable if any(f"-m {m} " in f"{c.text} " for m in NEEDS_SWEEP)]
    others = [c for c in runnable if c not in needs_sweep]

    def sweep_then_stages() -> list:
        started = time.monotonic()
        made = run([sys.executable, "-m", "jobs.sweep", *TINY_SWEEP], sweep_cwd)
        if made.returncode != 0:   # each stage command fails with the sweep's error
            return [(c.text, (made, time.monotonic() - started)) for c in needs_sweep]
        return [one(c, sweep_cwd) for c in needs_sweep]

    with ThreadPoolExecutor(max_workers=min(4, os.cpu_count() or 1)) as pool:
        chain = pool.submit(sweep_then_stages)
        found = dict(pool.map(one, others))
        found.update(chain.result())
    return {c.text: found[next(r.text for r in runnable if same_run(r) == same_run(c))]
            for c in SHELL if c.skip is None}


def same_run(command: Command) -> str:
    """Commands whose cheap forms are the same run (the same arguments in another order) share one run."""
    argv, env = cheap_form(command.text)
    return repr((sorted(argv) if isinstance(argv, list) else argv, sorted(env.items())))


@pytest.mark.slow
@pytest.mark.parametrize("command", [pytest.param(c, id=c.text[:100], marks=[pytest.mark.skip(reason=c.skip)]
                                                  if c.skip else []) for c in SHELL])
def test_readme_command_runs(results, command):
    result, seconds = results[command.text]
    print(f"{seconds:.1f}s  {command.text}")
    assert result.returncode == 0, (f"README line {command.line}: `{command.text}` exited {result.returncode}\n"
                                    f"{result.stderr[-3000:]}")
    assert "Traceback" not in result.stderr, result.stderr[-3000:]


@pytest.mark.parametrize("block", [c for c in ALL if c.language == "python"], ids=lambda c: f"line {c.line}")
def test_readme_python_block_runs(block, digits):
    """A Python block runs as written, given a model and digits (PYTHON_NAMES)."""
    from pipeline.models import Softmax

    x, y = digits[0][:100], digits[1][:100]
    namespace = dict(zip([n.strip() for n in PYTHON_NAMES.split(",")], (Softmax(x.shape[1:], 10).eval(), x, y)))
    exec(compile(block.text, f"README.md:{block.line}", "exec"), namespace)


def test_the_readme_parser_finds_the_commands_and_every_skip_rule_is_used():
    texts = [c.text for c in SHELL]
    assert "python -m jobs.train --help" in texts and "python -m jobs.sweep plan_only=true" in texts
    assert any(t.startswith("python -m jobs.sweep sweep.grid.model=softmax,maxout") and "resources.gpu=0.25" in t
               for t in texts)                                        # joined at the backslash, comment dropped
    for pattern, reason in SKIP:                                      # a rule that matches nothing is stale
        assert any(re.search(pattern, t) for t in texts), f"SKIP rule {pattern!r} ({reason}) matches no command"
