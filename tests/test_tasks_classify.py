"""lstmkit classify end to end on tiny slices, the output-folder guard and lstmkit predict."""
import json
import os

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("sklearn")
pytest.importorskip("safetensors")

from lstmkit.cli import main  # noqa: E402

TINY = ["--epochs", "1", "--hidden-size", "8", "--no-progress"]


def test_digits_end_to_end_with_baselines(tmp_path, capsys):
    out = str(tmp_path / "run")
    assert main(["classify", "--dataset", "digits", "--limit", "120", "--out", out] + TINY) == 0
    res = json.load(open(os.path.join(out, "results.json")))
    names = [r["model"] for r in res["table"]]
    assert names[0].startswith("LSTM") and "majority class" in names
    assert any(n.startswith("logistic regression") for n in names)
    assert 0.0 <= res["table"][0]["test accuracy"] <= 1.0
    assert len(res["results"][names[0]]["per_class"]) == 10
    assert os.path.getsize(os.path.join(out, "confusion.png")) > 1000
    printed = capsys.readouterr().out
    assert "majority class" in printed and "beat the best baseline" in printed


def test_refuses_non_empty_out_unless_overwrite(tmp_path, capsys):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "data.csv").write_text("precious")
    assert main(["classify", "--dataset", "digits", "--limit", "60", "--out", str(out)] + TINY) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert (out / "data.csv").read_text() == "precious" and sorted(os.listdir(out)) == ["data.csv"]
    assert main(["classify", "--dataset", "digits", "--limit", "60", "--out", str(out), "--overwrite"] + TINY) == 0
    assert (out / "data.csv").read_text() == "precious"


def test_text_csv_and_predict(tmp_path, capsys):
    rng = np.random.default_rng(0)
    rows = ["text,label"] + [f"{'good great fine' if i % 2 else 'bad awful poor'} {rng.integers(100)},{i % 2}"
                             for i in range(80)]
    csv = tmp_path / "texts.csv"
    csv.write_text("\n".join(rows))
    out = str(tmp_path / "run")
    assert main(["classify", "--csv", str(csv), "--out", out] + TINY) == 0
    res = json.load(open(os.path.join(out, "results.json")))
    assert any("char 1-3-gram" in r["model"] for r in res["table"])
    new = tmp_path / "new.csv"
    new.write_text("text\ngood great 7\nbad awful 3\n")
    pred = tmp_path / "pred.csv"
    assert main(["predict", "--model", os.path.join(out, "best.safetensors"), "--csv", str(new),
                 "--output", str(pred)]) == 0
    lines = pred.read_text().splitlines()
    assert lines[0] == "prediction,probability" and len(lines) == 3
    # never overwrite an existing output file
    assert main(["predict", "--model", os.path.join(out, "best.safetensors"), "--csv", str(new),
                 "--output", str(pred)]) == 2
    # a --label-col the file lacks is bad input (exit 2, the column named), not an internal error
    assert main(["predict", "--model", os.path.join(out, "best.safetensors"), "--csv", str(new),
                 "--label-col", "label"]) == 2
    assert "no column(s) 'label'" in capsys.readouterr().err


def test_variable_length_sequences_use_lengths():
    from lstmkit.tasks.classify import SequenceClassifier

    rng = np.random.default_rng(0)
    X = [rng.standard_normal((int(rng.integers(3, 9)), 2)).astype(np.float32) + (i % 2) for i in range(60)]
    y = np.array([str(i % 2) for i in range(60)])
    clf = SequenceClassifier(hidden_size=8, epochs=3).fit(X, y)
    p = clf.predict_proba(X[:5])
    assert p.shape == (5, 2) and np.allclose(p.sum(1), 1, atol=1e-5)
    # padding must not change a sequence's prediction: alone vs in a batch with longer ones
    assert np.allclose(clf.predict_proba([X[0]]), p[:1], atol=1e-5)


def test_shift_augmentation_moves_one_pixel_and_zero_fills():
    from lstmkit.tasks.classify import SHIFTS, SequenceClassifier, shifted

    x = np.arange(1, 10, dtype=np.float32).reshape(3, 3)
    assert shifted(x, 0, 1).tolist() == [[0, 0, 0], [1, 2, 3], [4, 5, 6]]
    assert shifted(x, 1, -1).tolist() == [[2, 3, 0], [5, 6, 0], [8, 9, 0]]
    assert len(SHIFTS) == 4 and x[0, 0] == 1  # the input is not modified
    with pytest.raises(ValueError, match="augment"):  # checked in fit: scikit-learn's __init__ only stores
        SequenceClassifier(augment="rotate").fit(np.zeros((4, 3)), [0, 1, 0, 1])
    with pytest.raises(ValueError, match="numeric"):
        SequenceClassifier(text=True, augment="shift").fit(["ab", "cd"] * 5, ["0", "1"] * 5)


def test_dataset_preset_applies_and_flags_win(tmp_path):
    from lstmkit.tasks.classify.presets import PRESETS

    out = str(tmp_path / "run")
    assert main(["classify", "--dataset", "digits", "--limit", "60", "--no-bidirectional", "--out", out] + TINY) == 0
    cfg = json.load(open(os.path.join(out, "results.json")))["config"]
    assert cfg["bidirectional"] is False and cfg["hidden_size"] == 8 and cfg["epochs"] == 1  # given flags
    assert cfg["augment"] == PRESETS["digits"]["augment"] == "shift"  # from the preset
    assert cfg["lr_schedule"] == PRESETS["digits"]["lr_schedule"]
