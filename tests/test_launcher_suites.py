"""Hydra's own launcher test suites on `hydra/launcher=harness_ray` (tests/hydra_launcher_suites.py), run in a
pytest process of their own from a temporary folder: Hydra's suites assume a process whose logging, Hydra state and
working folder no other test has touched, as in the repositories of Hydra's launcher plugins. All must pass, none
may be skipped."""
from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.slow, pytest.mark.ray]

SUITES = Path(__file__).resolve().parent / "hydra_launcher_suites.py"


@pytest.mark.slow
def test_hydras_launcher_suites_pass_on_harness_ray(tmp_path):
    result = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-rs", str(SUITES)],
                            cwd=tmp_path, capture_output=True, text=True, timeout=1500)
    summary = result.stdout.strip().splitlines()[-1] if result.stdout.strip() else result.stderr[-2000:]
    assert result.returncode == 0, result.stdout[-6000:]
    passed = re.search(r"(\d+) passed", summary)
    assert passed and int(passed.group(1)) == 21, summary        # discovery + Hydra's 20 launcher tests
    assert not re.search(r"skipped|deselected|error", summary), summary
