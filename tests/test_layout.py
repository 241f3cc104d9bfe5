"""The layout's rules, read from the import graph (pipeline.provenance reads it for stale detection too): stages do
not import one another (only the orchestrator, stages/sweep.py, runs them, and they share the sweep folder's
layout); nothing below the stages imports them; the paper's claims are read by the report only; the Hydra
launcher plugins stand on their own; a package's __init__.py holds no logic."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

from pipeline import provenance

ROOT = provenance.PACKAGE.parent
SHARED_BY_STAGES = {"pipeline.stages.sweep_dir", "pipeline.stages.transfer_pairs", "pipeline.stages.composer"}
READS_THE_PAPER = ("pipeline.paper", "pipeline.report", "pipeline.stages.report", "pipeline.stages.sweep")


def modules() -> dict[str, Path]:
    found = {}
    for file in sorted(provenance.PACKAGE.rglob("*.py")):
        parts = list(file.relative_to(ROOT).with_suffix("").parts)
        found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = file
    return found


def imports(name: str, file: Path) -> set[str]:
    """What a module imports, without the packages its own name runs through."""
    return {d for d in provenance.imported(file, name) if d != name and not name.startswith(d + ".")}


MODULES = modules()


def test_the_graph_is_read():
    assert "pipeline.stages.sweep_dir" in imports("pipeline.stages.evaluate", MODULES["pipeline.stages.evaluate"])
    assert "pipeline.attacks.base" in imports("pipeline.attacks.fgsm", MODULES["pipeline.attacks.fgsm"])


@pytest.mark.parametrize("name", [n for n in MODULES if n.startswith("pipeline.stages.")])
def test_a_stage_imports_no_other_stage(name):
    if name == "pipeline.stages.sweep":   # the orchestrator: the stages in order
        return
    stages = {d for d in imports(name, MODULES[name]) if d.startswith("pipeline.stages.")}
    assert stages <= SHARED_BY_STAGES, f"{name} imports {sorted(stages - SHARED_BY_STAGES)}"


@pytest.mark.parametrize("name", [n for n in MODULES if not n.startswith("pipeline.stages")])
def test_nothing_below_the_stages_imports_them(name):
    assert not {d for d in imports(name, MODULES[name]) if d.startswith("pipeline.stages")}


@pytest.mark.parametrize("name", [n for n in MODULES if not n.startswith(READS_THE_PAPER)])
def test_the_paper_is_read_by_the_report_only(name):
    assert not {d for d in imports(name, MODULES[name]) if d.startswith("pipeline.paper")}


PLUGINS = sorted((ROOT / "hydra_plugins").rglob("*.py"))


@pytest.mark.parametrize("plugin", PLUGINS, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_the_launcher_plugins_import_no_stage(plugin):
    assert not {d for d in provenance.imported(plugin, "hydra_plugins") if d.startswith("pipeline.stages")}


@pytest.mark.parametrize("name", [n for n, f in MODULES.items() if f.name == "__init__.py"])
def test_a_packages_init_holds_no_logic(name):
    """A docstring, imports (re-exports), __all__, and a lazy module __getattr__ at most."""
    for node in ast.parse(MODULES[name].read_text()).body:
        allowed = (isinstance(node, (ast.Import, ast.ImportFrom))
                   or (isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant))
                   or (isinstance(node, ast.Assign) and [t.id for t in node.targets if isinstance(t, ast.Name)]
                       == ["__all__"])
                   or (isinstance(node, ast.FunctionDef) and node.name == "__getattr__"))
        assert allowed, f"{name}: line {node.lineno} is logic; give it a module of its own"
