"""PyTorch frontend: torch.nn-compatible LSTM, GRU, LSTMCell and GRUCell backed by lstmkit's custom operators.

Importing this package registers ``torch.ops.lstmkit.lstm``, ``torch.ops.lstmkit.gru`` and
``torch.ops.lstmkit.rnn_backward`` (see ``lstmkit.torch.ops``). ``import lstmkit`` alone never imports torch.
"""
from . import ops
from .modules import GRU, LSTM, GRUCell, LSTMCell

__all__ = ["LSTM", "GRU", "LSTMCell", "GRUCell", "ops"]
