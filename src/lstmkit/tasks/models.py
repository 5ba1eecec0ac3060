"""What every task's network shares: ``recurrent_layer`` (lstmkit.torch.LSTM / GRU) and ``last_hidden``. The
networks themselves live with their task (classify/net.py, forecast/net.py, generate/net.py)."""
from __future__ import annotations

from .._optional import require

torch = require("torch", "tasks")
nn = torch.nn


def recurrent_layer(cell: str, input_size: int, hidden_size: int, num_layers: int = 1, bidirectional: bool = False,
                    dropout: float = 0.0):
    """The one place the tasks get their recurrent layer: lstmkit.torch.LSTM or GRU, batch_first=True."""
    from ..torch import GRU, LSTM

    cls = {"lstm": LSTM, "gru": GRU}.get(cell.lower())
    if cls is None:
        raise ValueError(f"cell: expected 'lstm' or 'gru', got {cell!r}")
    return cls(input_size, hidden_size, num_layers=num_layers, batch_first=True, bidirectional=bidirectional,
               dropout=dropout if num_layers > 1 else 0.0)


def last_hidden(rnn, h_n):
    """Final hidden state of the top layer, both directions concatenated: (B, D·H)."""
    h = h_n[0] if isinstance(h_n, tuple) else h_n  # LSTM (h, c) or GRU h: (L·D, B, H)
    d = 2 if rnn.bidirectional else 1
    return torch.cat(list(h[-d:]), dim=-1)
