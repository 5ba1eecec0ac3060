"""The classifier's network: a recurrent layer read out by pooling and a linear head."""
from __future__ import annotations

from ..models import last_hidden, nn, recurrent_layer, torch


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
