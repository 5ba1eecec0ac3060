"""lstmkit classify on numeric sequences: every UCR/UEA set aeon bundles (from disk), aeon .ts files, a long-format
CSV/Parquet with named columns; lstmkit predict reads exactly the columns the model needs."""
import json
import os

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("sklearn")
pytest.importorskip("aeon")

from lstmkit.cli import main  # noqa: E402
from lstmkit.tasks.classify import data  # noqa: E402

TINY = ["--epochs", "1", "--hidden-size", "4", "--no-progress"]


def test_every_bundled_aeon_set_loads_with_its_split():
    sets = data.aeon_bundled_sets()
    assert {"osuleaf", "basicmotions", "gunpoint", "japanesevowels"} <= set(sets)
    for name in sets.values():
        d = data.load_classify(name.lower())  # any case
        assert d.test is not None and len(d.X) == len(d.y) > 0 and len(d.test.X) == len(d.test.y) > 0, name
        channels = {x.shape[1] for x in d.X + d.test.X}
        assert len(channels) == 1, name  # (T_i, C) with one C: aeon's (C, T) was transposed, by name
        assert all(np.isfinite(x).all() and len(x) > 0 for x in d.X), name
    basic = data.load_classify("BasicMotions")
    assert basic.X[0].shape == (100, 6)  # 6 channels (3-D accelerometer + gyroscope), 100 steps


def test_unknown_set_lists_the_bundled_ones():
    with pytest.raises(ValueError, match="OSULeaf"):
        data.load_classify("NoSuchSet")


def test_classify_a_bundled_aeon_set_end_to_end(tmp_path):
    out = str(tmp_path / "run")
    assert main(["classify", "--dataset", "ItalyPowerDemand", "--limit", "30", "--out", out] + TINY) == 0
    res = json.load(open(os.path.join(out, "results.json")))
    assert res["dataset"] == "ItalyPowerDemand" and res["classes"] == ["1", "2"]
    assert 0 <= res["table"][0]["test accuracy"] <= 1


def test_classify_a_ts_file_and_predict_on_it(tmp_path, capsys):
    root = os.path.join(data._aeon_data_dir(), "UnitTest")
    out = str(tmp_path / "run")
    assert main(["classify", "--ts", os.path.join(root, "UnitTest_TRAIN.ts"), "--out", out] + TINY) == 0
    res = json.load(open(os.path.join(out, "results.json")))
    assert res["n_train"] == 20 and res["n_test"] == 22  # the _TEST.ts beside it is the test split
    capsys.readouterr()
    assert main(["predict", "--model", os.path.join(out, "best.safetensors"), "--ts",
                 os.path.join(root, "UnitTest_TEST.ts")]) == 0
    captured = capsys.readouterr()
    assert captured.out.splitlines()[0] == "id,prediction,probability,label" and "accuracy" in captured.err


def _long_frame(n_cases=40, seed=0):
    """Long format: case id, step, two features, an integer label (the sign of feature b's mean)."""
    import pandas as pd

    rng = np.random.default_rng(seed)
    rows = []
    for case in range(n_cases):
        label = case % 2
        for t in range(int(rng.integers(5, 9))):
            rows.append({"case": f"c{case}", "t": t, "a": rng.normal(), "b": rng.normal() + (2 if label else -2),
                         "y": label})
    return pd.DataFrame(rows).sample(frac=1, random_state=0)  # rows shuffled: steps are sorted by --step-col


def test_long_format_csv_trains_and_predict_requires_the_columns(tmp_path, capsys):
    df = _long_frame()
    csv = tmp_path / "seq.csv"
    df.to_csv(csv, index=False)
    out = str(tmp_path / "run")
    cols = ["--id-col", "case", "--step-col", "t", "--label-col", "y"]
    assert main(["classify", "--sequences", str(csv), "--out", out, "--epochs", "30"] + cols + TINY[2:]) == 0
    res = json.load(open(os.path.join(out, "results.json")))
    assert res["classes"] == [0, 1] and res["config"]["features"] == ["a", "b"]
    assert res["table"][0]["test accuracy"] >= 0.9  # the label is b's sign, 2 standard deviations apart
    model = os.path.join(out, "best.safetensors")
    capsys.readouterr()
    # the label column is not a feature: without --label-col it is an error, never read as one more channel
    assert main(["predict", "--model", model, "--csv", str(csv), "--id-col", "case", "--step-col", "t"]) == 2
    assert "column(s) y are not read by this model" in capsys.readouterr().err
    assert main(["predict", "--model", model, "--csv", str(csv), "--id-col", "case", "--step-col", "t",
                 "--label-col", "y"]) == 0
    captured = capsys.readouterr()
    lines = captured.out.splitlines()
    assert lines[0] == "case,prediction,probability,label" and len(lines) == 41
    assert float(captured.err.split()[1]) >= 0.9
    assert main(["predict", "--model", model, "--csv", str(csv), "--id-col", "case"]) == 2
    assert "no column(s) 'step'" in capsys.readouterr().err


@pytest.mark.parametrize("mutate, match", [
    (lambda d: d.assign(a=d["a"].where(d.index != d.index[0])), "missing values in case"),
    (lambda d: d.assign(a=d["a"].astype(str) + "x"), "column 'a' is not numeric"),
    (lambda d: d.assign(y=np.arange(len(d)) % 2), "labels in 'y'"),
    (lambda d: d.assign(t=0), "more than once"),
])
def test_long_format_errors_name_the_column_or_case(tmp_path, mutate, match):
    path = tmp_path / "bad.csv"
    mutate(_long_frame(6)).to_csv(path, index=False)
    with pytest.raises(ValueError, match=match):
        data.load_long_sequences(str(path), "case", "t", "y")


def test_parquet_input_is_read_by_content(tmp_path):
    pytest.importorskip("pyarrow")
    df = _long_frame(6)
    path = tmp_path / "seq.csv"  # a Parquet file under a .csv name is still read as Parquet, not as text
    df.to_parquet(path)
    d = data.load_long_sequences(str(path), "case", "t", "y")
    assert len(d.X) == 6 and d.info["features"] == ["a", "b"]


def test_a_binary_file_given_as_csv_is_a_plain_error(tmp_path):
    path = tmp_path / "x.csv"
    path.write_bytes(b"\xff\xfe\x00\x81binary")
    with pytest.raises(ValueError, match="not a UTF-8 CSV"):
        data.read_table(str(path))
