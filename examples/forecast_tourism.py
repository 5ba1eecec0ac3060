"""The Python API behind `lstmkit forecast`: a global LSTM on Tourism quarterly, scored against seasonal naive.

    PYTHONPATH=src python examples/forecast_tourism.py              # all 427 series, 10 epochs
    PYTHONPATH=src python examples/forecast_tourism.py --series 20 --epochs 1   # a quick look (the tests run this)
"""
import argparse

import numpy as np
import pandas as pd

from lstmkit import Forecaster
from lstmkit.tasks.forecast.baselines import seasonal_naive
from lstmkit.tasks.forecast.data import load_forecast
from lstmkit.tasks.forecast.metrics import mase_scale, scores

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--series", type=int, default=0, help="use the first N series only (default 0: all)")
parser.add_argument("--epochs", type=int, default=10, help="training epochs (default 10)")
args = parser.parse_args()

s = load_forecast("tourism-quarterly")  # long format: unique_id, ds, y, sorted by ds within each series
H, m = s.horizon, s.season_length
df = s.df
if args.series:
    df = df[df["unique_id"].isin(pd.unique(df["unique_id"])[: args.series])]
train = df[df.groupby("unique_id").cumcount(ascending=False) >= H]  # all but each series' last H steps
actual = np.stack([g["y"].to_numpy()[-H:] for _, g in df.groupby("unique_id")])
history = [g["y"].to_numpy()[:-H] for _, g in df.groupby("unique_id")]

fc = Forecaster(horizon=H, season_length=m, epochs=args.epochs, verbose=1).fit(train)
pred = fc.predict()  # unique_id, ds, step, yhat, q0.1, q0.5, q0.9
lstm = pred.pivot(index="unique_id", columns="step", values="yhat").loc[sorted(pd.unique(df["unique_id"]))]
scales = np.array([mase_scale(h, m) for h in history])
print("LSTM           MASE", round(scores(actual, lstm.to_numpy(), scales)["MASE"], 3))
naive = np.stack([seasonal_naive(h, H, m) for h in history])
print("seasonal naive MASE", round(scores(actual, naive, scales)["MASE"], 3))
