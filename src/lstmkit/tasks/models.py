"""The networks the tasks train. Each uses ``recurrent_layer``, i.e. lstmkit.torch.LSTM / GRU."""
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


class SequenceNet(nn.Module):
    """Sequence -> class logits.

    forward(x, lengths): x (B, T, F) float (or (B, T) int64 token ids when ``vocab_size``), lengths (B,)
    int64 valid steps -> logits (B, C). ``pool`` 'last': read from the last valid step's hidden state;
    'last+mean+max': that concatenated with the mean and the max of the outputs over the valid steps.
    """

    def __init__(self, input_size: int, n_classes: int, hidden_size: int = 64, num_layers: int = 1,
                 bidirectional: bool = False, cell: str = "lstm", vocab_size: int | None = None, embed_dim: int = 32,
                 dropout: float = 0.0, pool: str = "last", head_dropout: float | None = None):
        super().__init__()
        if pool not in ("last", "last+mean+max"):
            raise ValueError(f"pool: expected 'last' or 'last+mean+max', got {pool!r}")
        self.pool = pool
        self.embed = nn.Embedding(vocab_size, embed_dim, padding_idx=0) if vocab_size else None
        self.rnn = recurrent_layer(cell, embed_dim if vocab_size else input_size, hidden_size, num_layers,
                                   bidirectional, dropout)
        self.drop = nn.Dropout(dropout if head_dropout is None else head_dropout)  # before the linear head
        width = hidden_size * (2 if bidirectional else 1)
        self.head = nn.Linear(width * (3 if pool != "last" else 1), n_classes)

    def forward(self, x, lengths):
        if self.embed is not None:
            x = self.embed(x)
        out, state = self.rnn(x, lengths=lengths)
        z = last_hidden(self.rnn, state)
        if self.pool != "last":
            valid = (torch.arange(out.shape[1], device=out.device)[None, :] < lengths.to(out.device)[:, None])
            valid = valid.unsqueeze(-1)
            mean = (out * valid).sum(1) / valid.sum(1).clamp(min=1)
            mx = out.masked_fill(~valid, float("-inf")).max(1).values
            z = torch.cat([z, mean, mx], dim=-1)
        return self.head(self.drop(z))


class ForecastNet(nn.Module):
    """Window of a normalised series (and its covariates) -> quantiles of the next ``horizon`` values.

    forward(x, future=None): x (B, T, F) (F = values per step + calendar inputs + covariates), future (B, E) the
    future-known covariates over the horizon, flattened (E = ``future_size``, 0 when none) -> (B, horizon, Q).
    """

    def __init__(self, input_size: int, horizon: int, n_quantiles: int, hidden_size: int = 64, num_layers: int = 1,
                 cell: str = "lstm", dropout: float = 0.0, future_size: int = 0):
        super().__init__()
        self.horizon, self.n_quantiles, self.future_size = horizon, n_quantiles, future_size
        self.rnn = recurrent_layer(cell, input_size, hidden_size, num_layers, False, dropout)
        self.head = nn.Sequential(nn.Linear(hidden_size + input_size + future_size, hidden_size), nn.ReLU(),
                                  nn.Linear(hidden_size, horizon * n_quantiles))

    def forward(self, x, future=None):
        _, state = self.rnn(x)
        parts = [last_hidden(self.rnn, state), x[:, -1]]  # skip connection from the last step
        if self.future_size:
            parts.append(future)  # (B, E): what is known about the horizon itself
        return self.head(torch.cat(parts, dim=-1)).view(-1, self.horizon, self.n_quantiles)


class CharNet(nn.Module):
    """Character language model.

    forward(x, state=None): x (B, T) int64 -> logits (B, T, V), new state (carried across chunks).
    """

    def __init__(self, vocab_size: int, embed_dim: int = 64, hidden_size: int = 256, num_layers: int = 1,
                 cell: str = "lstm", dropout: float = 0.0):
        super().__init__()
        self.embed = nn.Embedding(vocab_size, embed_dim)
        self.rnn = recurrent_layer(cell, embed_dim, hidden_size, num_layers, False, dropout)
        self.drop = nn.Dropout(dropout)  # also with one layer, where the recurrent layer has no dropout
        self.head = nn.Linear(hidden_size, vocab_size)

    def forward(self, x, state=None):
        out, state = self.rnn(self.embed(x), state)
        return self.head(self.drop(out)), state
