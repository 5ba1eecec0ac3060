"""The code keeps its style: ruff on the Python (pyproject's [tool.ruff]) and clang-format on csrc/
(.clang-format). Both tools are in the `dev` extra, which the README's test command installs."""
from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PYTHON_TREES = ["src", "tests", "benchmarks", "scripts", "examples"]


def _tool(name: str) -> str:
    found = shutil.which(name) or shutil.which(name, path=str(Path(sys.executable).parent))
    if not found:
        pytest.skip(f"{name} is not installed (pip install 'lstmkit[dev]')")
    return found


def test_ruff_is_clean():
    run = subprocess.run([_tool("ruff"), "check", *PYTHON_TREES], cwd=ROOT, capture_output=True, text=True)
    assert run.returncode == 0, run.stdout[-6000:] + run.stderr[-2000:]


def test_csrc_is_clang_formatted():
    sources = sorted(str(p) for p in (ROOT / "csrc").rglob("*") if p.suffix in (".h", ".cpp"))
    assert sources
    run = subprocess.run([_tool("clang-format"), "--dry-run", "--Werror", *sources], cwd=ROOT, capture_output=True,
                         text=True)
    assert run.returncode == 0, run.stderr[-6000:]
