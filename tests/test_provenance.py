"""Stale results: metrics.json records the code that made it; a sweep names complete jobs made by other code,
reuses them by default, and `rerun=stale` retrains exactly those. Job ids do not depend on the code."""
from __future__ import annotations

import importlib.metadata
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from hydra import compose
from omegaconf import open_dict

from pipeline import provenance, store
from pipeline.config import hydra_context
from pipeline.stages.plan import plan
from pipeline.stages.report import report_stage
from pipeline.stages.sweep_dir import job_dir
from pipeline.stages.train import run_jobs

ROOT = Path(__file__).resolve().parent.parent


def stale_sweep():
    with hydra_context():
        cfg = compose("sweep", overrides=["sweep.name=stale", "transfer.enabled=false", "evaluation.enabled=false",
                                          "report.images=0"])
        with open_dict(cfg):
            cfg.sweep.grid = {"model": "softmax,logistic"}
            cfg.sweep.overrides = ["logger=none", "trainer.max_epochs=1", "data.limit=100", "data.digits=[3,7]",
                                   "eval.epsilons=[0.25]"]
        return cfg, plan(cfg.sweep)


@pytest.fixture
def jobs():
    return stale_sweep()[1]


def attempts(sweep_dir, job) -> int:
    return len(store.read_attempts(job_dir(sweep_dir, job)))


def git(*args: str) -> str:
    return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, check=True).stdout.strip()


@pytest.mark.slow
def test_metrics_record_the_code_that_made_them(jobs, tmp_path):
    run_jobs(jobs, tmp_path)
    code = store.read_metrics(job_dir(tmp_path, jobs[0]))["code"]
    assert re.fullmatch(r"[0-9a-f]{12}", code["fingerprint"])
    assert code["version"] == importlib.metadata.version("harness")
    if shutil.which("git") and subprocess.run(["git", "rev-parse"], cwd=ROOT, capture_output=True).returncode == 0:
        dirty = git("status", "--porcelain", "--untracked-files=no", "--", "pipeline")
        assert code["commit"] == git("rev-parse", "HEAD") + ("+dirty" if dirty else "")
    else:                                                            # not a checkout (an sdist, a copied tree)
        assert code["commit"] is None


def test_the_fingerprint_follows_the_sources_that_decide_a_job(tmp_path, monkeypatch):
    """On a copy of the package: editing a job's source changes the fingerprint, editing another file does not."""
    package = tmp_path / "pipeline"
    shutil.copytree(provenance.PACKAGE, package, ignore=shutil.ignore_patterns("__pycache__"))
    monkeypatch.setattr(provenance, "PACKAGE", package)
    fingerprint = provenance.fingerprint.__wrapped__
    original = fingerprint()
    assert original == provenance.fingerprint()                     # the copy is the running code
    with (package / "report" / "document.py").open("a") as other:   # not a source of a job's numbers
        other.write("# a comment\n")
    assert fingerprint() == original
    seen = {original}
    # imported by the job (attacks), reached only through imports (adapter: the default cost; sources: pixel
    # scaling; models/build; training/module), and named only in conf/ (regularizers: Hydra imports them by name)
    for source in ("attacks/fgsm.py", "models/networks.py", "models/adapter.py", "sources.py", "models/build.py",
                   "regularizers.py", "training/module.py"):
        with (package / source).open("a") as file:
            file.write("# a comment\n")
        assert fingerprint() not in seen, source
        seen.add(fingerprint())


@pytest.mark.slow
def test_every_module_a_job_imports_is_in_its_fingerprint(tmp_path):
    """A job run in a fresh interpreter: each module of `pipeline` it loaded is one of the fingerprint's sources."""
    script = f"""
import sys
from pipeline.config import compose_job, hydra_context
from pipeline.training.job import run_job
with hydra_context():
    cfg = compose_job(["logger=none", "trainer.max_epochs=1", "data.limit=100", "eval.epsilons=[0.25]",
                       "regularizer=adversarial"])
run_job(cfg, __import__("pathlib").Path({str(tmp_path / "job")!r}))
print("\\n".join(sorted(name for name, module in sys.modules.items() if name.split(".")[0] == "pipeline")))
"""
    loaded = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True,
                            cwd=tmp_path).stdout.split()
    sources = set(provenance.sources(provenance.JOB_ENTRY))
    assert len(loaded) > 10
    assert [name for name in loaded if provenance.module_file(name) not in sources] == []
    assert (tmp_path / "job" / store.METRICS).is_file()


@pytest.mark.slow
def test_stale_jobs_are_named_reused_by_default_and_retrained_with_rerun_stale(jobs, tmp_path, monkeypatch, capsys):
    run_jobs(jobs, tmp_path)
    assert [attempts(tmp_path, job) for job in jobs] == [1, 1]
    # the job of the first setting was made by other code
    path = job_dir(tmp_path, jobs[0]) / store.METRICS
    metrics = store.read_json(path)
    metrics["code"]["fingerprint"] = "older code"
    store.write_json(path, metrics)

    reused = run_jobs(jobs, tmp_path)
    assert reused.trained == [] and reused.stale == [jobs[0].id] and sorted(reused.reused) == sorted(j.id for j in jobs)
    said = capsys.readouterr().err
    assert f"1 complete jobs were made by other code ({jobs[0].setting} ×1): reusing them" in said
    report_stage(stale_sweep()[0], tmp_path, jobs)
    assert f"1 of these jobs were made by other code than this sweep's (pipeline/provenance.py): {jobs[0].setting} ×1" \
        in (tmp_path / "report.md").read_text()

    retrained = run_jobs(jobs, tmp_path, rerun="stale")
    assert retrained.trained == [jobs[0].id] and retrained.reused == [jobs[1].id]
    assert [attempts(tmp_path, job) for job in jobs] == [2, 1]
    assert provenance.made_by_this_code(store.read_metrics(job_dir(tmp_path, jobs[0])))

    # new code: every complete job is stale
    monkeypatch.setattr(provenance, "fingerprint", lambda entry=provenance.JOB_ENTRY: "newer code")
    assert run_jobs(jobs, tmp_path).stale == [j.id for j in jobs]


@pytest.mark.slow
def test_a_sweep_with_its_diagnostics_switched_off_still_reports(jobs, tmp_path):
    """`evaluation.diagnostics=null` (no checks) is a setting, not a crash of the report stage."""
    run_jobs(jobs, tmp_path)
    cfg = stale_sweep()[0]
    with open_dict(cfg):
        cfg.evaluation.diagnostics = None
    report_stage(cfg, tmp_path, jobs)
    assert (tmp_path / "report.md").read_text().startswith("# Harness sweep")
