"""The character language model's network: embedding, recurrent layers, next-character logits.

Options a char LM profits from (Press & Wolf 2017 for tying, Gal & Ghahramani 2016 / Merity et al. 2018 for
the dropouts, Krueger et al. 2017 for zoneout): the output layer may share the embedding matrix (``tie_weights``;
the recurrent layer's output width, ``proj_size`` or ``hidden_size``, must then equal ``embed_dim``), dropout on the
embedded input, between layers and on the top layer's output, and lstmkit's variant cells: the layer-normalised
LSTM/GRU, zoneout of the cell and hidden state, and recurrent (variational) dropout on the state each step reads.
"""
from __future__ import annotations

import numbers

import numpy as np

from ..models import nn, torch


def check_options(*, vocab_size: int, embed_dim: int, hidden_size: int, num_layers: int, cell: str,
                  dropout: float, embed_dropout: float, proj_size: int, layer_norm: bool, tie_weights: bool,
                  zoneout=(0.0, 0.0), recurrent_dropout: float = 0.0) -> None:
    """ValueError naming the first bad argument (before any weights are made)."""
    for name, v in (("vocab_size", vocab_size), ("embed_dim", embed_dim), ("hidden_size", hidden_size),
                    ("num_layers", num_layers)):
        if not isinstance(v, int) or v < 1:
            raise ValueError(f"{name}: expected a positive integer, got {v!r}")
    if not (isinstance(zoneout, (tuple, list)) and len(zoneout) == 2):
        raise ValueError(f"zoneout: expected a pair (cell, hidden) of probabilities, got {zoneout!r}")
    for name, p in (("dropout", dropout), ("embed_dropout", embed_dropout), ("zoneout[0]", zoneout[0]),
                    ("zoneout[1]", zoneout[1]), ("recurrent_dropout", recurrent_dropout)):
        if isinstance(p, bool) or not isinstance(p, numbers.Real) or not 0.0 <= p < 1.0:
            raise ValueError(f"{name}: expected a probability in [0, 1), got {p!r}")
    if cell.lower() not in ("lstm", "gru"):
        raise ValueError(f"cell: expected 'lstm' or 'gru', got {cell!r}")
    if cell.lower() == "gru" and zoneout[0]:
        raise ValueError(f"zoneout: a GRU has no cell state, so the first (cell) probability must be 0, "
                         f"got {zoneout!r}")
    if not isinstance(proj_size, int) or not 0 <= proj_size < hidden_size:
        raise ValueError(f"proj_size: expected an integer in [0, hidden_size={hidden_size}), got {proj_size!r}")
    if proj_size and cell.lower() != "lstm":
        raise ValueError(f"proj_size: only the LSTM has a projection, got proj_size={proj_size} with cell={cell!r}")
    out = proj_size or hidden_size
    if tie_weights and out != embed_dim:
        raise ValueError(f"tie_weights: the output layer shares the embedding, so embed_dim must equal the "
                         f"recurrent output width (proj_size or hidden_size) {out}, got embed_dim={embed_dim}")


class Dropout(nn.Module):
    """``nn.Dropout`` (keep each value with probability 1 − p, scaled by 1/(1 − p), in training) with the CPU's masks
    drawn by NumPy's PCG64 as float32 uniforms: torch's CPU dropout draws with a sequential Mersenne Twister, 28 ms
    for a (32, 128, 512) mask against 7.5 ms this way (2 threads, AMD Zen 3), and the char LM draws two such masks per
    step (10 % of its training time). Each draw is seeded from torch's generator, so torch's seed (and a
    checkpoint's saved RNG state) still decides the masks; on other devices, torch's own dropout."""

    def __init__(self, p: float):
        super().__init__()
        self.p = float(p)

    def forward(self, x):
        if not self.training or self.p == 0.0:
            return x
        if not x.is_cpu:
            return nn.functional.dropout(x, self.p, True)
        seed = int(torch.randint(0, 2**62, (1,)))
        uniform = torch.from_numpy(np.random.default_rng(seed).random(tuple(x.shape), dtype=np.float32))
        return x * uniform.ge_(self.p).to(x.dtype).mul_(1.0 / (1.0 - self.p))

    def extra_repr(self) -> str:
        return f"p={self.p}"


class CharNet(nn.Module):
    """Character language model on lstmkit.torch.LSTM / GRU (batch_first).

    forward(x, state=None): x (B, T) int64 -> logits (B, T, V), new state (carried across chunks).
    With ``tie_weights`` the logits are ``out @ embed.weight.T + head_bias``: one (V, E) tensor serves as both
    embedding and output layer, and the state_dict holds it once (``embed.weight``; no ``head.weight``).
    ``dropout``: between layers and on the top layer's output; ``embed_dropout``: on the embedded input;
    ``zoneout`` (cell, hidden): the probabilities that a unit keeps its previous value at a step (training; the
    expectation in evaluation), and ``recurrent_dropout`` the state's dropout mask, one per sequence (lstmkit's
    variant cell, docs/variants.md; both off by default).
    ``bf16`` (set by CharLM's ``precision``): while training on the CPU, the forward runs under
    ``torch.autocast("cpu", dtype=torch.bfloat16)``: the recurrent layer's and the output layer's products in
    bfloat16 (docs/mixed_precision.md), the state, the logits returned and every weight float32; evaluation is
    float32 either way.
    """

    def __init__(self, vocab_size: int, embed_dim: int = 64, hidden_size: int = 256, num_layers: int = 1,
                 cell: str = "lstm", dropout: float = 0.0, *, embed_dropout: float = 0.0, proj_size: int = 0,
                 layer_norm: bool = False, tie_weights: bool = False, zoneout=(0.0, 0.0),
                 recurrent_dropout: float = 0.0):
        super().__init__()
        check_options(vocab_size=vocab_size, embed_dim=embed_dim, hidden_size=hidden_size, num_layers=num_layers,
                      cell=cell, dropout=dropout, embed_dropout=embed_dropout, proj_size=proj_size,
                      layer_norm=layer_norm, tie_weights=tie_weights, zoneout=zoneout,
                      recurrent_dropout=recurrent_dropout)
        from ...torch import GRU, LSTM

        self.embed = nn.Embedding(vocab_size, embed_dim)
        kw = {"proj_size": proj_size} if proj_size else {}
        if layer_norm:
            kw["layer_norm"] = True
        if any(zoneout):  # only where set: the plain cell otherwise, as before these options
            kw["zoneout"] = tuple(float(z) for z in zoneout)
        if recurrent_dropout:
            kw["recurrent_dropout"] = float(recurrent_dropout)
        cls = LSTM if cell.lower() == "lstm" else GRU
        self.rnn = cls(embed_dim, hidden_size, num_layers=num_layers, batch_first=True,
                       dropout=dropout if num_layers > 1 else 0.0, **kw)
        self.embed_drop = Dropout(embed_dropout)
        self.drop = Dropout(dropout)  # also with one layer, where the recurrent layer has no dropout
        self.tied = tie_weights
        if tie_weights:  # small embeddings (AWD-LSTM's ±0.1): as output weights N(0, 1) would start with huge logits
            nn.init.uniform_(self.embed.weight, -0.1, 0.1)
            self.head_bias = nn.Parameter(torch.zeros(vocab_size))
        else:
            self.head = nn.Linear(proj_size or hidden_size, vocab_size)
        self.bf16 = False

    def forward(self, x, state=None):
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=self.bf16 and self.training and x.is_cpu):
            out, state = self.rnn(self.embed_drop(self.embed(x)), state)  # (B, T, P)
            out = self.drop(out)
            if self.tied:
                logits = nn.functional.linear(out, self.embed.weight, self.head_bias)  # (B, T, V)
            else:
                logits = self.head(out)
        return logits.float(), state
