"""CLI habits of the task commands: every flag has help showing its default, --json prints the summary on
stdout, --quiet prints nothing, bad numbers and a forecast-the-future run, losses with units."""
import argparse
import json
import os

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("sklearn")

from lstmkit.cli import build_parser, main  # noqa: E402

TASKS = ("classify", "forecast", "generate", "predict")


def _subparsers():
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return {name: sub.choices[name] for name in TASKS}


@pytest.mark.parametrize("name", TASKS)
def test_every_flag_has_help_that_shows_its_default(name):
    p = _subparsers()[name]
    text = p.format_help()
    for action in p._actions:
        if not action.option_strings or action.dest == "help":
            continue
        assert action.help, f"{name} {action.option_strings[0]} has no help"
        if action.default not in (None, False):
            formatted = p.formatter_class(prog=p.prog)._get_help_string(action)
            assert "default" in formatted.lower(), f"{name} {action.option_strings[0]} hides its default"
    assert "(default: 0)" in text or name == "predict"  # --seed's default is shown


@pytest.mark.parametrize("argv, flag", [
    (["forecast", "--horizon", "-1"], "--horizon"),
    (["forecast", "--folds", "0"], "--folds"),
    (["generate", "--test-fraction", "1.5"], "--test-fraction"),
    (["classify", "--limit", "zero"], "--limit"),
])
def test_bad_numbers_are_plain_argparse_errors(argv, flag, capsys):
    with pytest.raises(SystemExit) as e:
        main(argv)
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert flag in err and "expected" in err and "Traceback" not in err


def test_json_summary_on_stdout_and_units_on_the_epoch_lines(tmp_path, capsys):
    out = str(tmp_path / "run")
    argv = ["classify", "--dataset", "digits", "--limit", "60", "--epochs", "1", "--hidden-size", "4", "--out", out,
            "--json", "--no-progress"]
    assert main(argv) == 0
    captured = capsys.readouterr()
    summary = json.loads(captured.out)  # stdout is the JSON alone
    assert summary["task"] == "classify" and summary["table"][0]["model"].startswith("LSTM")
    assert "nats per sequence (cross-entropy)" in captured.err  # the log went to stderr, losses with units


def test_quiet_prints_nothing(tmp_path, capsys):
    argv = ["classify", "--dataset", "digits", "--limit", "60", "--epochs", "1", "--hidden-size", "4", "--out",
            str(tmp_path / "run"), "--quiet"]
    assert main(argv) == 0
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err == ""


def test_forecast_the_future_from_a_csv_with_dates(tmp_path, capsys):
    pd = pytest.importorskip("pandas")
    t = np.arange(36)
    df = pd.concat([pd.DataFrame({"unique_id": f"s{k}", "ds": pd.date_range("2015-01-31", periods=36, freq="ME"),
                                  "y": 100 + k + 10 * np.sin(2 * np.pi * t / 12)}) for k in range(3)])
    csv = tmp_path / "monthly.csv"
    df.to_csv(csv, index=False)
    out = str(tmp_path / "run")
    argv = ["forecast", "--csv", str(csv), "--horizon", "3", "--future", "--epochs", "1", "--batches-per-epoch", "1",
            "--hidden-size", "4", "--out", out, "--no-progress"]
    assert main(argv) == 0
    assert "season length 12 (inferred from the ME frequency of ds)" in capsys.readouterr().out
    fc = pd.read_csv(os.path.join(out, "forecasts.csv"), parse_dates=["ds"])
    assert len(fc) == 9 and fc["ds"].max() == pd.Timestamp("2018-03-31")  # the 3 months after 2017-12
    # integer time steps: no season to infer, and the run says so
    df.assign(ds=np.tile(t, 3)).to_csv(csv, index=False)
    assert main(argv[:-3] + ["--out", str(tmp_path / "run2"), "--no-progress"]) == 0
    assert "warning: season length fell back to 1 (ds holds no dates)" in capsys.readouterr().out


def test_forecast_csv_with_an_extra_column_is_refused(tmp_path, capsys):
    csv = tmp_path / "x.csv"
    csv.write_text("unique_id,ds,y,price\n" + "\n".join(f"a,{t},{t},{t}" for t in range(30)))
    assert main(["forecast", "--csv", str(csv), "--horizon", "2", "--out", str(tmp_path / "r")]) == 2
    assert "not used ['price']" in capsys.readouterr().err


def test_report_and_explain_on_a_classify_run_folder_with_a_raw_sequence(tmp_path, capsys):
    from lstmkit.commands._task_model import scaled
    from lstmkit.tasks.classify.data import load_digits

    run = tmp_path / "run"
    assert main(["classify", "--dataset", "digits", "--limit", "60", "--epochs", "1", "--hidden-size", "4",
                 "--out", str(run), "--quiet"]) == 0
    assert (run / "model.safetensors").is_file()  # the same model file name as forecast and generate
    raw = load_digits().X[0]  # (8 rows, 8 pixels), as the user has it: unscaled
    data = tmp_path / "digit.npy"
    np.save(data, raw)
    x = scaled(str(run / "model.safetensors"), raw.astype(np.float64), str(data), 0)
    config = json.loads((run / "results.json").read_text())["config"]
    np.testing.assert_allclose(x, (raw - np.asarray(config["mean"])) / np.asarray(config["std"]), rtol=1e-12)
    out = tmp_path / "report.html"
    assert main(["report", str(run), "--data", str(data), "--out", str(out)]) == 0
    assert out.stat().st_size > 10_000
    assert main(["explain", str(run), "--data", str(data)]) == 0
    assert "top units" in capsys.readouterr().out


@pytest.mark.parametrize("again", ["--overwrite", "--resume"])
def test_an_input_inside_the_run_folder_is_refused_before_anything_is_written(again, tmp_path, capsys):
    """--overwrite/--resume let a run write its fixed names (forecasts.csv, ...) into --out: an input there would
    be replaced by the run's output, so it is refused, and the file is left as it was."""
    out = tmp_path / "run"
    out.mkdir()
    csv = out / "forecasts.csv"
    csv.write_text("unique_id,ds,y\n" + "\n".join(f"a,{t},{t % 4}" for t in range(30)))
    before = csv.read_bytes()
    argv = ["forecast", "--csv", str(csv), "--horizon", "2", "--future", "--epochs", "1", "--out", str(out), again]
    assert main(argv) == 2
    assert f"--csv {csv} is inside --out {out}" in capsys.readouterr().err
    assert csv.read_bytes() == before and sorted(p.name for p in out.iterdir()) == ["forecasts.csv"]


def test_text_labels_pandas_reads_as_missing_stay_labels(tmp_path, capsys):
    """'NA' (North America) is a label; a CSV's cells are read as written, and an empty one is refused by row."""
    csv = tmp_path / "texts.csv"
    labels = ["NA", "EU", "null"]
    csv.write_text("text,label\n" + "\n".join(f"word{i % 3} price {i},{labels[i % 3]}" for i in range(30)))
    out = tmp_path / "run"
    assert main(["classify", "--csv", str(csv), "--out", str(out), "--epochs", "1", "--hidden-size", "4",
                 "--no-progress"]) == 0
    from lstmkit.tasks.classify import SequenceClassifier

    assert sorted(SequenceClassifier.load(str(out / "model.safetensors")).classes_) == ["EU", "NA", "null"]
    csv.write_text("text,label\nfine,EU\n,NA\nok,\n")
    assert main(["classify", "--csv", str(csv), "--out", str(tmp_path / "run2"), "--epochs", "1"]) == 2
    assert "column 'text' (--text-col) is empty in 1 row(s) (data rows 2;" in capsys.readouterr().err


def test_predict_refuses_the_trained_feature_columns_in_another_order(tmp_path, capsys):
    pd = pytest.importorskip("pandas")
    rng = np.random.default_rng(0)
    rows = [{"id": i, "step": t, "a": float(rng.normal()) + i % 2, "b": float(rng.normal()), "label": i % 2}
            for i in range(20) for t in range(4)]
    csv = tmp_path / "seq.csv"
    pd.DataFrame(rows).to_csv(csv, index=False)
    out = tmp_path / "run"
    assert main(["classify", "--sequences", str(csv), "--out", str(out), "--epochs", "1", "--hidden-size", "4",
                 "--no-progress"]) == 0
    model = str(out / "model.safetensors")
    argv = ["predict", "--model", model, "--csv", str(csv), "--label-col", "label"]
    assert main(argv + ["--feature-cols", "a,b"]) == 0
    assert main(argv + ["--feature-cols", "b,a"]) == 2
    assert "trained on a, b in that order, got b, a" in capsys.readouterr().err
