"""Every example a user may copy runs: each script in examples/ (in a quick setting) and each ```python
block of the README, in a fresh process against the installed lstmkit.

A new example must be added to QUICK_ARGS (the test fails until it is), so none goes unrun.
"""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = sorted((ROOT / "examples").glob("*.py"))
QUICK_ARGS = {  # script -> arguments for a run of seconds, and a line its output must contain
    "forecast_tourism.py": (["--series", "20", "--epochs", "1"], "LSTM           MASE"),
}


def _run(args, cwd):
    import lstmkit

    env = dict(os.environ, PYTHONPATH=str(Path(lstmkit.__file__).resolve().parents[1]), MPLBACKEND="Agg")
    return subprocess.run([sys.executable, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=600)


def test_every_example_has_a_quick_setting():
    assert EXAMPLES, "examples/ holds no script"
    assert {p.name for p in EXAMPLES} == set(QUICK_ARGS), "add each example's quick arguments to QUICK_ARGS"


@pytest.mark.parametrize("name", sorted(QUICK_ARGS))
def test_example_runs(name, tmp_path):
    pytest.importorskip("pandas")
    args, expected = QUICK_ARGS[name]
    run = _run([str(ROOT / "examples" / name), *args], tmp_path)
    assert run.returncode == 0, run.stderr[-4000:]
    assert expected in run.stdout, run.stdout[-2000:]


def _readme_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", (ROOT / "README.md").read_text(encoding="utf-8"), flags=re.S)


def test_readme_has_python_blocks():
    assert len(_readme_blocks()) >= 2


@pytest.mark.parametrize("index", range(len(_readme_blocks())))
def test_readme_python_block_runs(index, tmp_path):
    pytest.importorskip("torch")
    code = _readme_blocks()[index]
    script = tmp_path / "block.py"
    script.write_text(code, encoding="utf-8")
    run = _run([str(script)], tmp_path)
    assert run.returncode == 0, f"README python block {index}:\n{code}\n{run.stderr[-4000:]}"
