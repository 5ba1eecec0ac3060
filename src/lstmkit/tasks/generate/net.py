"""The character language model's network: embedding, recurrent layer, next-character logits."""
from __future__ import annotations

from ..models import nn, recurrent_layer


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
