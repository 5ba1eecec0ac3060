"""The core runs without torch; the command line works end to end."""
import subprocess
import sys

import pytest

from lstmkit.cli import main

NO_TORCH = """
import sys
sys.modules["torch"] = None  # any 'import torch' now raises ImportError
import numpy as np
import lstmkit
layer = lstmkit.LSTM(3, 4, num_layers=2, bidirectional=True, seed=0)
out, (h, c) = layer(np.ones((5, 2, 3), np.float32), lengths=[5, 2])
g = layer.backward(np.ones_like(out))
assert out.shape == (5, 2, 8) and g.input.shape == (5, 2, 3)
print(lstmkit.summary(layer).total)
try:
    import lstmkit.torch
except ImportError as e:
    print("torch frontend refused:", e)
"""


def test_core_imports_and_runs_without_torch():
    run = subprocess.run([sys.executable, "-c", NO_TORCH], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    assert run.stdout.splitlines()[0] == "736"  # 2 x (16*3 + 16*4 + 2*16) + 2 x (16*8 + 16*4 + 2*16)
    assert "torch frontend refused: torch is needed here: pip install 'lstmkit[torch]'" in run.stdout


def test_require_names_the_extra():
    from lstmkit._optional import require

    with pytest.raises(ImportError, match=r"pip install 'lstmkit\[viz\]'"):
        require("a_module_that_does_not_exist", "viz")


def test_cli_summary(capsys):
    assert main(["summary", "--input-size", "5", "--hidden-size", "10"]) == 0
    out = capsys.readouterr().out
    assert "680 in torch, 640 in Keras" in out
    import lstmkit

    # Keras' GRU(reset_after=False) holds linear_before_reset=False (to_keras writes it): one bias per gate
    gru = str(lstmkit.summary(lstmkit.GRU(3, 6, linear_before_reset=False)))
    assert "198 in torch, 180 in Keras (one bias vector per gate)" in gru
    assert "198 in torch, 198 in Keras\n" in str(lstmkit.summary(lstmkit.GRU(3, 6))) + "\n"


def test_cli_summary_bad_argument_is_a_clear_error(capsys):
    assert main(["summary", "--input-size", "5", "--hidden-size", "10", "--proj-size", "12"]) == 2
    assert "--proj-size: expected less than --hidden-size=10, got 12" in capsys.readouterr().err


def test_cli_demo_trains_and_beats_naive(capsys):
    assert main(["demo", "--epochs", "3", "--hidden-size", "16"]) == 0
    out = capsys.readouterr().out
    assert "held-out next-step MSE" in out


def test_python_dash_m_entry_point():
    run = subprocess.run([sys.executable, "-m", "lstmkit", "--version"], capture_output=True, text=True, timeout=60)
    assert run.returncode == 0 and "lstmkit" in run.stdout
