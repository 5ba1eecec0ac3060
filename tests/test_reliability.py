"""Crash safety of model files: a damaged file is refused, a writer killed mid-save loses nothing."""
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

import lstmkit

WRITER = """
import sys
import lstmkit
path = sys.argv[1]
models = [lstmkit.LSTM(128, 256, num_layers=2, seed=s) for s in (1, 2)]
print("ready", flush=True)
k = 0
while True:  # alternate two versions of the checkpoint until killed
    lstmkit.save(models[k % 2], path, overwrite=True)
    k += 1
"""


def test_damaged_tensor_bytes_are_refused(tmp_path):
    path = tmp_path / "m.safetensors"
    lstmkit.save(lstmkit.GRU(3, 4, seed=0), path)
    data = bytearray(path.read_bytes())
    data[-5] ^= 0x40  # flip one bit inside the last tensor
    path.write_bytes(bytes(data))
    with pytest.raises(ValueError, match="content hash mismatch"):
        lstmkit.load(path)


def test_sigkill_during_save_always_leaves_a_loadable_previous_checkpoint(tmp_path):
    """25 times: a writer saving in a loop is SIGKILLed at a random moment; the file always loads intact
    and holds exactly one of the two versions written (never a mix, never a truncation)."""
    path = tmp_path / "ckpt.safetensors"
    versions = [lstmkit.LSTM(128, 256, num_layers=2, seed=s).state_dict() for s in (1, 2)]
    lstmkit.save(lstmkit.LSTM(128, 256, num_layers=2, seed=1), path)
    rng = np.random.default_rng(0)
    kills = 0
    for _ in range(25):
        proc = subprocess.Popen([sys.executable, "-c", WRITER, str(path)], stdout=subprocess.PIPE, text=True)
        assert proc.stdout.readline().strip() == "ready"
        time.sleep(rng.uniform(0.0, 0.25))
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
        kills += proc.returncode == -signal.SIGKILL
        loaded = lstmkit.load(path).state_dict()
        matches = [all(np.array_equal(loaded[k], v[k]) for k in v) for v in versions]
        assert any(matches), "the checkpoint after a kill is neither of the versions written"
    assert kills == 25
    # a kill can leave the writer's temp file behind, but never under the checkpoint's own name
    assert all(p.name == path.name or p.name.startswith(f".{path.name}.") for p in tmp_path.iterdir())
