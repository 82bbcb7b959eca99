"""The code stays one obvious place for each thing: small modules, no dead definitions."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("emocache", "democorpus", "extract", "features", "manifests", "train")
MAX_LINES = 500


@pytest.mark.parametrize("path", sorted(p.relative_to(ROOT) for pkg in PACKAGES for p in (ROOT / pkg).rglob("*.py")),
                         ids=str)
def test_no_module_is_over_500_lines(path):
    lines = len((ROOT / path).read_text(encoding="utf-8").splitlines())
    assert lines <= MAX_LINES, f"{path} has {lines} lines: split it by what it holds (ARCHITECTURE.md)"


def test_no_dead_code():
    """vulture over the packages and the benchmarks (which use some library functions); names only a
    framework uses are listed, with the reason, in tests/vulture_whitelist.py."""
    cmd = [sys.executable, "-m", "vulture", *PACKAGES, "bench", "tests/vulture_whitelist.py", "--min-confidence", "60"]
    found = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    assert found.returncode == 0 and not found.stdout, "dead code (delete it, or whitelist a name a framework uses):\n" + found.stdout + found.stderr
