"""Training faults: a NaN in the data stops training with a message saying where (or the batch is skipped
on request) instead of producing NaN weights; ``kill -9`` mid-training then resume reaches weights
bit-identical to an uninterrupted run.

This file is also the worker script for the kill test: ``python tests/test_training_faults.py OUT EPOCHS
[resume] [slow]``.
"""
import math
import os
import signal
import subprocess
import sys
import time

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("safetensors")



def _problem(nan_at=None):
    g = torch.Generator().manual_seed(1)
    x = torch.randn(96, 5, 3, generator=g)
    y = (x[:, :, 0].sum(1) > 0).long()
    lengths = torch.full((96,), 5)
    if nan_at is not None:
        x[nan_at, 2, 1] = math.nan
    return (x[:64], lengths[:64], y[:64]), (x[64:], lengths[64:], y[64:])


def _loss(model, x, lengths, y):
    if os.environ.get("LSTMKIT_TEST_SLOW"):
        time.sleep(0.03)  # gives the kill test time to strike mid-training; no effect on the numbers
    return torch.nn.functional.cross_entropy(model(x, lengths), y)


def train(out, epochs, resume=False, nan_at=None, on_nonfinite=None, log=lambda *_: None):
    from lstmkit.tasks.classify.net import SequenceNet
    from lstmkit.tasks.training import TrainConfig, fit, seed_everything

    torch.set_num_threads(1)
    seed_everything(0)
    model = SequenceNet(3, 2, hidden_size=6, dropout=0.3)  # dropout: resume restores torch's RNG too
    train_data, val = _problem(nan_at)
    cfg = TrainConfig(epochs=epochs, batch_size=16, lr=1e-2, patience=100, progress=False, on_nonfinite=on_nonfinite)
    result = fit(model, _loss, train_data, val, cfg, task="test", config={}, ckpt_dir=out, resume=resume, log=log)
    return model, result


def test_nan_in_data_stops_with_location(tmp_path):
    from lstmkit.tasks.training import NonFiniteLossError

    with pytest.raises(NonFiniteLossError) as err:
        train(str(tmp_path / "run"), 3, nan_at=7)
    msg = str(err.value)
    assert "non-finite loss (nan) at epoch 1, step " in msg and "batch index " in msg and "7" in msg, msg
    assert isinstance(err.value, ValueError)  # the CLI reports it as an error (exit 2), not a traceback


def test_nan_batch_skipped_on_request(tmp_path):
    logs = []
    model, result = train(str(tmp_path / "run"), 3, nan_at=7, on_nonfinite="skip", log=logs.append)
    assert all(torch.isfinite(p).all() for p in model.parameters())
    assert [h.get("skipped_batches") for h in result["history"]] == [1, 1, 1]  # example 7's batch, each epoch
    assert all(math.isfinite(h["train_loss"]) for h in result["history"])
    assert sum("batch skipped" in m and "epoch 1" in m for m in logs) == 1


def test_nonfinite_mode_from_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("LSTMKIT_ON_NONFINITE", "skip")
    _, result = train(str(tmp_path / "run"), 1, nan_at=7)
    assert result["history"][0]["skipped_batches"] == 1


def _worker(out, epochs, *flags, slow=False):
    import lstmkit  # the workers import the lstmkit this process imported (an installed one has the engine)

    here = os.path.dirname(os.path.dirname(os.path.abspath(lstmkit.__file__)))
    env = {**os.environ, "PYTHONPATH": here, "OMP_NUM_THREADS": "1"}
    env.pop("LSTMKIT_TEST_SLOW", None)
    if slow:
        env["LSTMKIT_TEST_SLOW"] = "1"
    return subprocess.Popen([sys.executable, os.path.abspath(__file__), out, str(epochs), *flags], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_kill_9_then_resume_is_bit_identical(tmp_path):
    from lstmkit.tasks import checkpoint

    epochs = 6
    ref = _worker(str(tmp_path / "ref"), epochs)
    victim = _worker(str(tmp_path / "run"), epochs, slow=True)  # ~0.15 s per epoch
    last = tmp_path / "run" / "last.safetensors"
    deadline = time.time() + 30
    while not last.exists() and victim.poll() is None and time.time() < deadline:
        time.sleep(0.005)
    assert last.exists(), victim.communicate()
    os.kill(victim.pid, signal.SIGKILL)
    victim.communicate()
    assert victim.returncode == -signal.SIGKILL
    done = checkpoint.load(str(last))["trainer"]["epoch"]
    assert 1 <= done < epochs  # killed mid-training, after the first checkpoint
    resumed = _worker(str(tmp_path / "run"), epochs, "resume")
    for p in (ref, resumed):
        out, errs = p.communicate(timeout=60)
        assert p.returncode == 0, errs[-3000:]
    a = checkpoint.load(str(tmp_path / "ref" / "last.safetensors"))
    b = checkpoint.load(str(last))
    assert b["trainer"]["epoch"] == epochs
    for k, v in a["model"].items():
        assert torch.equal(v, b["model"][k]), k  # bit for bit
    assert [h["val_loss"] for h in a["trainer"]["history"]] == [h["val_loss"] for h in b["trainer"]["history"]]
    for k, v in a["optim"]["state"][0].items():
        if isinstance(v, torch.Tensor):
            assert torch.equal(v, b["optim"]["state"][0][k]), k
    leftovers = [f for f in os.listdir(tmp_path / "run") if f.endswith(".tmp.safetensors")]
    assert len(leftovers) <= 1  # at most the temp file of a write the kill interrupted; never a torn checkpoint


if __name__ == "__main__":
    train(sys.argv[1], int(sys.argv[2]), resume="resume" in sys.argv[3:])
