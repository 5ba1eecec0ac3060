"""Character language models: ``CharLM`` and everything ``lstmkit generate`` needs.

model.py (CharLM: training, scoring, sampling), net.py (the network), match.py (the match model mixed in),
data.py (the text), job.py (the run behind lstmkit generate).
Names are imported on first use, so the light modules (the CLI reads nothing of it at start-up) stay light.
"""
_WHERE = {"CharLM": "model"}


def __getattr__(name):
    if name in _WHERE:
        import importlib

        return getattr(importlib.import_module(f"{__name__}.{_WHERE[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
