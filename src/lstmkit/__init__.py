"""lstmkit: LSTM and GRU networks, from the textbook equations to a fused native CPU engine.

The core needs NumPy only: the reference equations (``lstmkit.ref``), torch-style layers
(``lstmkit.LSTM``, ``GRU``, ``LSTMCell``, ``GRUCell``), optimizers and ``summary``. PyTorch drop-ins
live in ``lstmkit.torch`` and load torch only when imported.
"""
from . import optim, ref
from .layers import GRU, LSTM, GRUCell, Gradients, Linear, LSTMCell
from .io import from_keras, from_onnx, from_torch, load, save, to_keras, to_onnx, to_torch
from .params import RNNConfig
from .engine import get_num_threads, set_num_threads
from .summary import summary
from .quantize import quantize
from . import tasks  # light: its classes import torch and pandas only when asked for

__version__ = "0.1.0"

__all__ = ["LSTM", "GRU", "LSTMCell", "GRUCell", "Linear", "Gradients", "RNNConfig", "summary", "optim", "ref",
           "Forecaster", "SequenceClassifier", "CharLM",
           "save", "load", "from_torch", "to_torch", "from_keras", "to_keras", "from_onnx", "to_onnx", "__version__",
           "set_num_threads", "get_num_threads", "quantize"]


def __getattr__(name):
    """Forecaster, SequenceClassifier and CharLM, imported from lstmkit.tasks on first use."""
    if name in tasks.__all__:
        return getattr(tasks, name)
    raise AttributeError(f"module 'lstmkit' has no attribute {name!r}")
