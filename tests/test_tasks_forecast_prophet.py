"""Prophet as an optional forecast baseline (the ``prophet`` extra): asked for without the package, a named
error before any training; installed, it forecasts a trending season better than seasonal naive and runs in
``lstmkit forecast --baselines``."""
import json
import sys

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("statsmodels")
pd = pytest.importorskip("pandas")

from lstmkit.cli import main  # noqa: E402
from lstmkit.tasks.forecast import baselines  # noqa: E402


def test_prophet_without_the_package_is_refused_before_training(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "prophet", None)  # import prophet raises ImportError, installed or not
    with pytest.raises(ImportError, match=r"pip install 'lstmkit\[prophet\]'"):
        baselines.forecast_all("prophet", [np.arange(20.0)], 4, 4)  # never 20 silent seasonal-naive fallbacks
    csv = tmp_path / "s.csv"
    csv.write_text("unique_id,ds,y\n" + "\n".join(f"a,{t},{10 + t % 4}" for t in range(30)))
    out = tmp_path / "run"
    with pytest.raises(SystemExit) as e:
        main(["forecast", "--csv", str(csv), "--horizon", "4", "--baselines", "naive,prophet", "--out", str(out)])
    assert e.value.code == 2  # a usage error
    err = capsys.readouterr().err
    assert "--baselines" in err and "pip install 'lstmkit[prophet]'" in err and "Traceback" not in err
    assert not out.exists()  # refused before the run folder was made


def test_default_baselines_leave_prophet_out():
    assert "prophet" in baselines.METHODS and "prophet" not in baselines.DEFAULT


def test_prophet_follows_a_trend_that_seasonal_naive_misses():
    """y = 100 + 0.5 t + 10 sin(2πt/4): seasonal naive repeats the last season, so at step h it misses the trend
    by 0.5·4·ceil(h/4), a mean absolute error of exactly 3 over H = 8; a trend-and-season model fit on 40
    exact values should stay under 1 (measured 0.57: its multiplicative season on a trending level)."""
    pytest.importorskip("prophet")
    t = np.arange(48.0)
    y = 100 + 0.5 * t + 10 * np.sin(2 * np.pi * t / 4)
    H, m = 8, 4
    naive_mae = np.abs(baselines.seasonal_naive(y[:-H], H, m) - y[-H:]).mean()
    assert naive_mae == pytest.approx(3.0, abs=1e-9)
    f, fallbacks = baselines.forecast_all("prophet", [y[:-H]], H, m)
    assert fallbacks == 0 and f.shape == (1, H)
    assert np.abs(f[0] - y[-H:]).mean() < 1.0


def test_forecast_command_runs_prophet_as_a_baseline(tmp_path, capsys):
    pytest.importorskip("prophet")
    t = np.arange(40)
    df = pd.concat([pd.DataFrame({"unique_id": f"s{k}", "ds": t, "y": 50 + k + 0.3 * t + 5 * np.sin(np.pi * t / 2)})
                    for k in range(3)])
    csv = tmp_path / "s.csv"
    df.to_csv(csv, index=False)
    out = tmp_path / "run"
    assert main(["forecast", "--csv", str(csv), "--horizon", "4", "--season-length", "4", "--baselines",
                 "seasonal naive,prophet", "--epochs", "1", "--batches-per-epoch", "1", "--hidden-size", "4",
                 "--out", str(out), "--no-progress"]) == 0
    res = json.loads((out / "results.json").read_text())
    rows = {r["method"]: r for r in res["table"]}
    assert list(rows) == ["LSTM (global, quantile)", "seasonal naive", "prophet"]
    assert res["baseline_fallbacks"]["prophet"] == 0 and rows["prophet"]["MASE"] < rows["seasonal naive"]["MASE"]
    assert "cmdstanpy" not in capsys.readouterr().err  # its INFO lines are hidden
