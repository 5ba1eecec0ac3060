"""lstmkit generate end to end on a tiny slice; compressor baselines; sampling from a saved model."""
import json
import os

import pytest

pytest.importorskip("torch")

from lstmkit.cli import main  # noqa: E402
from lstmkit.tasks.generate_job import compressor_bpc  # noqa: E402


def test_generate_end_to_end_and_predict(tmp_path, capsys):
    out = str(tmp_path / "run")
    argv = ["generate", "--limit", "12000", "--epochs", "1", "--batches-per-epoch", "2", "--hidden-size", "16",
            "--seq-len", "16", "--n-chars", "20", "--prompt", "def ", "--out", out, "--no-progress"]
    assert main(argv) == 0
    res = json.load(open(os.path.join(out, "results.json")))
    names = [r["model"] for r in res["table"]]
    assert names[0].startswith("LSTM") and "xz (given the training text)" in names and "bz2 (test text alone)" in names
    assert all(r["bpc"] > 0 for r in res["table"])
    assert all(s.startswith("def ") and len(s) == 24 for s in res["samples"])
    capsys.readouterr()
    assert main(["predict", "--model", os.path.join(out, "model.safetensors"), "--prompt", "if", "--n-chars",
                 "10"]) == 0
    assert capsys.readouterr().out.startswith("if")


def test_compressors_gain_from_training_text():
    train = "the quick brown fox jumps over the lazy dog. " * 200
    rows = {r["model"]: r["bpc"] for r in compressor_bpc(train, "the quick brown fox jumps over the lazy dog. " * 5)}
    assert rows["xz (given the training text)"] < rows["xz (test text alone)"]
    assert rows["bz2 (given the training text)"] < rows["bz2 (test text alone)"]
