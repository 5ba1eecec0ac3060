"""The Python API behind `lstmkit forecast`: a global LSTM on Tourism quarterly, scored against seasonal naive.

    PYTHONPATH=src python examples/forecast_tourism.py
"""
import numpy as np
import pandas as pd

from lstmkit import Forecaster
from lstmkit.tasks.baselines import seasonal_naive
from lstmkit.tasks.data import load_forecast
from lstmkit.tasks.metrics import mase_scale, scores

s = load_forecast("tourism-quarterly")  # long format: unique_id, ds, y
H, m = s.horizon, s.season_length
train = s.df.groupby("unique_id", group_keys=False).apply(lambda g: g.iloc[:-H])
actual = np.stack([g["y"].to_numpy()[-H:] for _, g in s.df.groupby("unique_id")])
history = [g["y"].to_numpy()[:-H] for _, g in s.df.groupby("unique_id")]

fc = Forecaster(horizon=H, season_length=m, epochs=10).fit(train)
pred = fc.predict()  # unique_id, ds, step, yhat, q0.1, q0.5, q0.9
lstm = pred.pivot(index="unique_id", columns="step", values="yhat").loc[sorted(pd.unique(s.df["unique_id"]))]
scales = np.array([mase_scale(h, m) for h in history])
print("LSTM           MASE", round(scores(actual, lstm.to_numpy(), scales)["MASE"], 3))
print("seasonal naive MASE", round(scores(actual, np.stack([seasonal_naive(h, H, m) for h in history]), scales)["MASE"], 3))
