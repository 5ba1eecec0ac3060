"""lstmkit: LSTM and GRU networks, from the textbook equations to a fused native CPU engine.

The core needs NumPy only: the reference equations (``lstmkit.ref``), torch-style layers
(``lstmkit.LSTM``, ``GRU``, ``LSTMCell``, ``GRUCell``), optimizers and ``summary``. PyTorch drop-ins
live in ``lstmkit.torch`` and load torch only when imported.
"""
from . import optim, ref
from .layers import GRU, LSTM, GRUCell, Gradients, Linear, LSTMCell
from .params import RNNConfig
from .summary import summary

__version__ = "0.1.0"

__all__ = ["LSTM", "GRU", "LSTMCell", "GRUCell", "Linear", "Gradients", "RNNConfig", "summary", "optim", "ref",
           "__version__"]
