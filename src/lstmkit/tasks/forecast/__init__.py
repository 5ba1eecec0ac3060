"""Global forecasting: ``Forecaster`` and everything ``lstmkit forecast`` needs.

estimator.py (the Forecaster), esrnn.py (its ES-RNN model), panel.py (long-format data checked, per-series
arrays), windows.py (training windows), net.py (the network), data.py (bundled sets, the user's CSV), baselines.py
and metrics.py (what it is scored against and with), job.py (the backtest and the forecast of the future behind
lstmkit forecast).
Names are imported on first use, so the light modules (the CLI reads baselines at start-up) stay light.
"""
_WHERE = {"Forecaster": "estimator", "series_dict": "estimator", "pinball": "estimator", "ESRNN": "esrnn"}


def __getattr__(name):
    if name in _WHERE:
        import importlib

        return getattr(importlib.import_module(f"{__name__}.{_WHERE[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
