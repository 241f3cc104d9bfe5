"""The code that produced a result, recorded beside it: the package version, a fingerprint of the sources that
decide the numbers, and the git commit when the code runs from a checkout.

The fingerprint is kept out of job ids (they hash the config only, so they stay stable across code versions):
a sweep compares it with the running code's to find stale results, names them, and retrains them on request.
"""
from __future__ import annotations

import ast
import functools
import hashlib
import re
import subprocess
from pathlib import Path
from typing import Any

PACKAGE = Path(__file__).resolve().parent

# Where a job's and each stage's code starts. What decides their numbers is every module of `pipeline` these import,
# directly or not, at any depth (an import inside a function counts), plus the modules conf/ names as `_target_` or
# data source: Hydra imports those by name, so no import statement shows them.
JOB_ENTRY, TRANSFER_ENTRY = "pipeline.training.job", "pipeline.stages.transfer"
EVALUATION_ENTRY = "pipeline.stages.evaluate"
NAMED_IN_CONF = re.compile(r"\bpipeline(?:\.\w+)+")


def module_file(name: str) -> Path | None:
    """The source file of a module of `pipeline` (a package: its __init__.py), or None if there is none."""
    path = PACKAGE.joinpath(*name.split(".")[1:])
    for file in (path / "__init__.py", path.with_suffix(".py")):
        if file.is_file():
            return file
    return None


def modules_along(dotted: str) -> set[str]:
    """The modules of `pipeline` on a dotted name's path: importing `pipeline.a.b` runs pipeline, pipeline.a and
    pipeline.a.b; `pipeline.a.Class` names pipeline and pipeline.a."""
    parts = dotted.split(".")
    along = (".".join(parts[:i]) for i in range(1, len(parts) + 1))
    return {name for name in along if parts[0] == "pipeline" and module_file(name)}


def imported(file: Path, name: str) -> set[str]:
    """The modules of `pipeline` a source file imports anywhere in it, with the packages importing them runs."""
    package = name if file.name == "__init__.py" else name.rpartition(".")[0]
    names: set[str] = set()
    for node in ast.walk(ast.parse(file.read_bytes(), str(file))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:   # relative: from the package, one level up per extra dot
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            names.add(base)
            names.update(f"{base}.{alias.name}" for alias in node.names)   # `from pipeline import store`
    return set().union(*map(modules_along, names))


def named_in_conf() -> set[str]:
    """The modules conf/'s YAML files name (`_target_: pipeline.models.Maxout`, `source: pipeline.data.mnist`)."""
    from pipeline.config import CONF_DIR

    return set().union(*(modules_along(dotted) for file in CONF_DIR.rglob("*.yaml")
                          for dotted in NAMED_IN_CONF.findall(file.read_text())))


def sources(entry: str = JOB_ENTRY) -> tuple[Path, ...]:
    """Every file of `pipeline` that the entry module and conf/'s named modules import, transitively."""
    seen: set[str] = set()
    todo = [entry, *named_in_conf()]
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        todo.extend(imported(module_file(name), name) - seen)
    return tuple(sorted({module_file(name) for name in seen}))


@functools.cache
def fingerprint(entry: str = JOB_ENTRY) -> str:
    """sha256 over the sources of an entry module (`sources`), by path and content: 12 hex digits."""
    digest = hashlib.sha256()
    for file in sources(entry):
        digest.update(str(file.relative_to(PACKAGE)).encode() + b"\0" + file.read_bytes() + b"\0")
    return digest.hexdigest()[:12]


@functools.cache
def commit() -> str | None:
    """The checkout's commit (with `+dirty` when its files differ from it), or None outside a git checkout."""
    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=PACKAGE, capture_output=True, text=True, timeout=10,
                              check=True).stdout.strip()

    try:
        head = git("rev-parse", "HEAD")
        return head + ("+dirty" if git("status", "--porcelain", "--untracked-files=no", "--", ".") else "")
    except (OSError, subprocess.SubprocessError):
        return None


def code(entry: str = JOB_ENTRY) -> dict[str, Any]:
    """What metrics.json records under "code"."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        package = version("harness")
    except PackageNotFoundError:
        package = None
    return {"version": package, "fingerprint": fingerprint(entry), "commit": commit()}


def made_by_this_code(metrics: dict[str, Any]) -> bool:
    """Whether a job's results came from the sources that would produce them now."""
    return (metrics.get("code") or {}).get("fingerprint") == fingerprint()
