"""The forecaster's network: a recurrent layer over patches and a quantile head."""
from __future__ import annotations

from ..models import last_hidden, nn, recurrent_layer, torch


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
