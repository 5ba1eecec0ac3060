"""Sequence classification: ``SequenceClassifier`` and everything ``lstmkit classify`` needs.

estimator.py (the scikit-learn estimator), sequences.py (input layouts), net.py (the network), data.py
(bundled sets and the user's files), job.py (the run behind lstmkit classify), presets.py (per-set settings).
Names are imported on first use, so the light modules (the CLI reads presets and data at start-up) stay light.
"""
_WHERE = {"SequenceClassifier": "estimator", "SHIFTS": "estimator", "shifted": "estimator"}


def __getattr__(name):
    if name in _WHERE:
        import importlib

        return getattr(importlib.import_module(f"{__name__}.{_WHERE[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
