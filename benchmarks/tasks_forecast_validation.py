"""Choosing ES-RNN settings without the holdout (issue 21): fit on every series without its last 2H values,
score the H values before the holdout (the validation window), beside seasonal naive, Theta and damped ETS on the
same window. Appends one JSON line per run to benchmarks/runs/forecast-validation.jsonl.

    PYTHONPATH=src python benchmarks/tasks_forecast_validation.py m1-quarterly none '{}'
    PYTHONPATH=src python benchmarks/tasks_forecast_validation.py m1-quarterly mase '{"loss_weights": "mase"}'

Arguments: the data set, a tag, and the Forecaster keyword arguments as JSON (model='esrnn', one member, seed 0
unless given). Series too short to train on once 2H values are dropped are left out of the fit and the scores.
"""
from __future__ import annotations

import json
import os
import sys
import time

import numpy as np

from lstmkit.tasks.forecast import Forecaster, series_dict
from lstmkit.tasks.forecast.baselines import forecast_all
from lstmkit.tasks.forecast.data import load_forecast
from lstmkit.tasks.forecast.metrics import mase_scale, scores

BASELINES = ("seasonal naive", "theta", "ets (damped)")
OUT = os.path.join("benchmarks", "runs", "forecast-validation.jsonl")


def validation_split(name: str) -> tuple:
    """(histories {id: y (n,)} ending before the validation window, actual (S, H), MASE scales (S,), H, m)."""
    s = load_forecast(name)
    H, m = s.horizon, s.season_length
    train = {u: y[:-H] for u, y in series_dict(s.df).items()}  # the holdout dropped
    train = {u: y for u, y in train.items() if len(y) - H >= H + max(m, 2)}  # enough left for one window
    hist = {u: y[:-H] for u, y in train.items()}
    actual = np.stack([y[-H:] for y in train.values()])
    return hist, actual, np.asarray([mase_scale(h, m) for h in hist.values()]), H, m


def main(name: str, tag: str, kw: dict) -> dict:
    import pandas as pd

    hist, actual, scale, H, m = validation_split(name)
    row = {"set": name, "tag": tag, "kw": kw}
    for method in BASELINES:
        f, _ = forecast_all(method, list(hist.values()), H, m)
        row[method] = round(scores(actual, f, scale)["MASE"], 4)
    df = pd.concat([pd.DataFrame({"unique_id": u, "ds": np.arange(len(h)), "y": h}) for u, h in hist.items()])
    start = time.perf_counter()
    fc = Forecaster(horizon=H, season_length=m, **{"model": "esrnn", **kw}).fit(df)
    row["seconds"] = round(time.perf_counter() - start, 1)
    r = scores(actual, fc.predict_arrays(hist)[:, :, fc.config["quantiles"].index(0.5)], scale)
    row.update(MASE=round(r["MASE"], 4), sMAPE=round(r["sMAPE"], 3), load=round(os.getloadavg()[0], 1),
               best_epochs=[h["best_epoch"] for h in fc.history_])
    return row


if __name__ == "__main__":
    result = main(sys.argv[1], sys.argv[2], json.loads(sys.argv[3]) if len(sys.argv) > 3 else {})
    os.makedirs(os.path.dirname(OUT), exist_ok=True)
    with open(OUT, "a") as f:
        f.write(json.dumps(result) + "\n")
    print(json.dumps(result))
