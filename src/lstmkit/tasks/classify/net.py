"""The classifier's networks: ``SequenceNet`` (a recurrent layer read out by pooling and a linear head) and
``LSTMFCN`` (a fully convolutional branch beside an LSTM branch, Karim et al. 2018)."""
from __future__ import annotations

import math

from .. import distributed
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


# LSTM-FCN (Karim, Majumdar, Darabi & Chen, "LSTM Fully Convolutional Networks for Time Series Classification",
# IEEE Access 2018, arXiv:1709.05206): the FCN of Wang et al. 2017 (three Conv1d-BN-ReLU blocks, global average
# pooling) beside an LSTM that reads the "dimension-shuffled" series, concatenated into a softmax head.
FCN_FILTERS = (128, 256, 128)
FCN_KERNELS = (8, 5, 3)
PRECISIONS = ("float32", "bfloat16")  # of the convolutions while training (LSTMFCN.train_convolutions_in)


def valid_mask(lengths, T: int, device):
    """(B, 1, T) float: 1 at each case's valid steps, 0 on the padding after them."""
    steps = torch.arange(T, device=device)[None, :]  # (1, T)
    return (steps < lengths.to(device)[:, None]).unsqueeze(1)


class MaskedBatchNorm1d(nn.BatchNorm1d):
    """BatchNorm1d over (B, F, T) whose training statistics come from the valid steps alone (``mask`` (B, 1, T)),
    so how much padding a batch carries does not change the normalisation; eval mode uses the running
    statistics, as BatchNorm1d (state_dict names unchanged). ``mask`` None (no padding in the batch): BatchNorm1d's
    own fused kernel, the same numbers in a fifth of the time.

    Under DDP (torchrun) the statistics are the global batch's, as torch.nn.SyncBatchNorm's: the masked sums and
    counts are summed over the ranks (differentiably, ``distributed.sum_over_ranks``), so N processes normalise,
    and update the running buffers, as one process does with the whole batch."""

    def forward(self, x, mask):
        synced = distributed.active()
        if not self.training or (mask is None and not synced):
            return super().forward(x)
        m = x.new_ones(x.shape[0], 1, x.shape[2]) if mask is None else mask.to(x.dtype)
        if distributed.is_placeholder():  # an example this rank runs only to join the collectives: it counts 0
            m = m * 0
        # two passes, as in one process: the global mean, then the global sum of squared deviations from it
        sums = distributed.sum_over_ranks(torch.cat([(x * m).sum((0, 2)), m.sum()[None]]))
        n = sums[-1].detach().clamp(min=1)
        mean = sums[:-1] / n  # (F,)
        # biased, as BatchNorm1d normalises with
        var = distributed.sum_over_ranks((((x - mean[None, :, None]) ** 2) * m).sum((0, 2))) / n
        with torch.no_grad():
            self.num_batches_tracked += 1
            unbiased = var * n / (n - 1).clamp(min=1)  # the running estimate is unbiased, as BatchNorm1d's
            self.running_mean.lerp_(mean.detach().to(self.running_mean.dtype), self.momentum)
            self.running_var.lerp_(unbiased.detach().to(self.running_var.dtype), self.momentum)
        xhat = (x - mean[None, :, None]) / torch.sqrt(var[None, :, None] + self.eps)
        return xhat * self.weight[None, :, None] + self.bias[None, :, None]


class ConvBlock(nn.Module):
    """Conv1d ('same' zero padding) -> masked batch norm -> ReLU, the padding steps set back to 0 so the next
    block sees exactly what it would see at the end of the unpadded sequence (its own zero padding)."""

    def __init__(self, in_channels: int, filters: int, kernel: int):
        super().__init__()
        self.conv = nn.Conv1d(in_channels, filters, kernel)
        # 'same' zero padding, split as torch's padding="same" splits it (left = (k-1)//2), written out because
        # torch warns on every call for an even kernel
        self.pad = ((kernel - 1) // 2, kernel - 1 - (kernel - 1) // 2)
        self.bn = MaskedBatchNorm1d(filters)
        self.bf16 = False  # LSTMFCN.train_convolutions_in(): the convolution in bfloat16 while training

    def forward(self, x, mask):
        """x (B, F_in, T), mask (B, 1, T) or None (no padding) -> (B, F, T)."""
        # Mixed precision: only the convolution's products in bfloat16 (float32 accumulation, float32 weights and
        # gradients through autocast's casts); batch norm, ReLU and the masks stay in x's dtype.
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=self.bf16 and self.training and x.is_cpu):
            y = self.conv(nn.functional.pad(x, self.pad))
        z = torch.relu(self.bn(y.to(x.dtype), mask))
        return z if mask is None else z * mask


def resample(x, lengths, steps: int):
    """Each case's valid part of x (B, T, C) linearly resampled to ``steps`` points -> (B, steps, C). The
    positions are exact rationals (j·(len-1)/(steps-1)), so a case of ``steps`` valid steps comes back
    unchanged, and padding after a case never enters."""
    B = x.shape[0]
    lengths = lengths.to(x.device).long()[:, None]  # (B, 1)
    j = torch.arange(steps, device=x.device)[None, :]  # (1, S)
    num = j * (lengths - 1)  # (B, S), integers: position = num / (S - 1)
    den = max(steps - 1, 1)
    lo = torch.div(num, den, rounding_mode="floor")
    w = ((num - lo * den).to(x.dtype) / den).unsqueeze(-1)  # (B, S, 1) in [0, 1)
    hi = torch.minimum(lo + 1, lengths - 1)
    C = x.shape[2]
    take = lambda idx: torch.gather(x, 1, idx.unsqueeze(-1).expand(B, steps, C))  # noqa: E731
    return take(lo) * (1 - w) + take(hi) * w


class LSTMFCN(nn.Module):
    """LSTM-FCN: sequence (B, T, C) -> class logits (B, n_classes).

    Conv branch: three ConvBlocks (``FCN_FILTERS`` filters, ``FCN_KERNELS`` kernels) over time, then the mean
    over each case's valid steps (masked global average pooling): a padded case gives the logits of the
    unpadded one. LSTM branch (the paper's dimension shuffle): each case resampled to ``steps`` points
    (``resample``; ``steps`` is the longest training case, so equal-length data is read as is), transposed so the
    LSTM reads C steps of ``steps`` features (one step for a univariate series), its last hidden state through
    dropout ``dropout``. The two are concatenated into a linear head.
    """

    def __init__(self, input_size: int, n_classes: int, steps: int, hidden_size: int = 8, num_layers: int = 1,
                 bidirectional: bool = False, cell: str = "lstm", dropout: float = 0.8):
        super().__init__()
        if not isinstance(steps, int) or steps < 1:
            raise ValueError(f"steps: expected a positive integer (the LSTM branch's input width), got {steps!r}")
        self.steps = steps
        widths = (input_size,) + FCN_FILTERS
        self.blocks = nn.ModuleList(ConvBlock(widths[k], widths[k + 1], FCN_KERNELS[k])
                                    for k in range(len(FCN_FILTERS)))
        self.rnn = recurrent_layer(cell, steps, hidden_size, num_layers, bidirectional, dropout)
        self.drop = nn.Dropout(dropout)
        self.head = nn.Linear(FCN_FILTERS[-1] + hidden_size * (2 if bidirectional else 1), n_classes)

    def train_convolutions_in(self, precision: str) -> "LSTMFCN":
        """'bfloat16': the conv blocks' convolutions run in bfloat16 while training (on the CPU; ~2.3x faster on
        AVX512_BF16, where they are most of the time), 'float32' (the default): in float32. Evaluation and
        predictions are float32 either way."""
        if precision not in PRECISIONS:
            raise ValueError(f"precision: expected one of {', '.join(map(repr, PRECISIONS))}, got {precision!r}")
        for block in self.blocks:
            block.bf16 = precision == "bfloat16"
        return self

    def conv_features(self, x, lengths):
        """(B, T, C) -> (B, FCN_FILTERS[-1]): the conv blocks, averaged over the valid steps."""
        T = x.shape[1]
        z = x.transpose(1, 2)  # (B, C, T)
        mask = None  # no padding in this batch: the plain (faster) path
        if bool((lengths < T).any()):
            mask = valid_mask(lengths, T, x.device).to(x.dtype)  # (B, 1, T)
            z = z * mask  # padding zeroed whatever the caller put there
        for block in self.blocks:
            z = block(z, mask)  # (B, F, T)
        return z.mean(2) if mask is None else z.sum(2) / mask.sum(2).clamp(min=1)

    def lstm_features(self, x, lengths):
        """(B, T, C) -> (B, D·H): the LSTM over the dimension-shuffled, resampled case."""
        shuffled = resample(x, lengths, self.steps).transpose(1, 2)  # (B, C, steps): C steps of `steps` features
        _, state = self.rnn(shuffled)  # every case has C steps here: no lengths
        return self.drop(last_hidden(self.rnn, state))

    def forward(self, x, lengths):
        return self.head(torch.cat([self.conv_features(x, lengths), self.lstm_features(x, lengths)], dim=-1))


class Ensemble(nn.Module):
    """Several classifiers read as one: forward(x, lengths) -> (B, n_classes) log of the members' mean class
    probabilities, so softmax of it (what ``predict_proba`` takes) is that mean (a seed ensemble averages
    probabilities, not logits). Each member is a ``SequenceNet`` or ``LSTMFCN`` over the same input."""

    def __init__(self, members):
        super().__init__()
        if len(members) < 1:
            raise ValueError("members: expected at least one network, got none")
        self.members = nn.ModuleList(members)

    def forward(self, x, lengths):
        logp = torch.stack([torch.log_softmax(m(x, lengths), -1) for m in self.members])  # (K, B, C)
        return torch.logsumexp(logp, 0) - math.log(len(self.members))
