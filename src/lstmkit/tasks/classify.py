"""Sequence classification: ``SequenceClassifier`` (scikit-learn style) on lstmkit.torch.LSTM/GRU, for
numeric sequences (list of (T_i, F) arrays, variable lengths) or text (list of str, char-level tokens).

    clf = SequenceClassifier(hidden_size=64, epochs=30).fit(X_train, y_train)
    clf.predict(X_test)          # (N,) labels
    clf.predict_proba(X_test)    # (N, C), columns in clf.classes_ order
"""
from __future__ import annotations

import numpy as np

from . import checkpoint
from .training import TrainConfig, fit, seed_everything

TASK = "classify"
SHIFTS = ((0, 1), (0, -1), (1, 1), (1, -1))  # (axis: 0 time, 1 feature; by): augment='shift'


def shifted(x, axis: int, by: int) -> np.ndarray:
    """(T, F) sequence moved ``by`` (+1 or -1) positions along ``axis``; the vacated row or column is zero."""
    x = np.asarray(x, np.float32).reshape(len(x), -1)
    out = np.zeros_like(x)
    src = [slice(None), slice(None)]
    dst = [slice(None), slice(None)]
    src[axis], dst[axis] = (slice(0, -1), slice(1, None)) if by > 0 else (slice(1, None), slice(0, -1))
    out[tuple(dst)] = x[tuple(src)]
    return out


class SequenceClassifier:
    """LSTM (or GRU) reading a sequence, classifying from its last hidden state concatenated with the mean
    and max of its outputs (``pool='last+mean+max'``; ``'last'`` for the last state alone), through dropout
    ``head_dropout`` (None: ``dropout``) and a linear layer.

    Numeric input: features standardised with the training set's per-feature mean/std. ``augment='shift'``
    adds four copies of every training sequence (not of the validation split), moved by one step earlier and
    later in time and by one feature position either way, zero-filled: for images read row by row (digits)
    these are the one-pixel shifts.
    Text input (``text=True``): characters seen in training get ids 2..V-1 (0 pad, 1 unknown),
    sequences truncated to ``max_len`` characters.
    """

    def __init__(self, hidden_size: int = 64, num_layers: int = 1, bidirectional: bool = False, cell: str = "lstm",
                 epochs: int = 30, batch_size: int = 64, lr: float = 5e-3, patience: int = 8, val_fraction: float = 0.15,
                 dropout: float = 0.0, seed: int = 0, text: bool = False, embed_dim: int = 32, max_len: int = 300,
                 pool: str = "last+mean+max", head_dropout: float | None = 0.2, lr_schedule: str = "constant",
                 augment: str | None = None, progress: bool = True):
        if augment not in (None, "shift"):
            raise ValueError(f"augment: expected None or 'shift', got {augment!r}")
        self.params = dict(hidden_size=hidden_size, num_layers=num_layers, bidirectional=bidirectional, cell=cell,
                           epochs=epochs, batch_size=batch_size, lr=lr, patience=patience, val_fraction=val_fraction,
                           dropout=dropout, seed=seed, text=text, embed_dim=embed_dim, max_len=max_len, pool=pool,
                           head_dropout=head_dropout, lr_schedule=lr_schedule, augment=augment)
        self.progress = progress
        self.model = None
        self.history_ = None

    # -- encoding -----------------------------------------------------------------------------------------

    def _prepare(self, X, y) -> dict:
        """Fit the encoding on training data: classes, feature scaling or the character vocabulary."""
        enc = {"classes": sorted(set(map(str, y)))}
        if self.params["text"]:
            chars = sorted(set("".join(X)))
            enc["vocab"] = "".join(chars)
        else:
            allsteps = np.concatenate([np.asarray(x, np.float32).reshape(len(x), -1) for x in X])
            enc["mean"] = allsteps.mean(0).tolist()
            enc["std"] = (allsteps.std(0) + 1e-6).tolist()
        return enc

    def _encode(self, X):
        """-> (x (N, T, F) float32 or (N, T) int64, lengths (N,) int64) as torch tensors."""
        import torch

        cfg = self.config
        if cfg["text"]:
            lookup = {c: i + 2 for i, c in enumerate(cfg["vocab"])}
            seqs = [[lookup.get(c, 1) for c in s[:cfg["max_len"]]] or [1] for s in X]
            T = max(len(s) for s in seqs)
            x = np.zeros((len(seqs), T), np.int64)
            for i, s in enumerate(seqs):
                x[i, :len(s)] = s
            return torch.from_numpy(x), torch.tensor([len(s) for s in seqs])
        mean, std = np.asarray(cfg["mean"], np.float32), np.asarray(cfg["std"], np.float32)
        seqs = [(np.asarray(s, np.float32).reshape(len(s), -1) - mean) / std for s in X]
        if any(len(s) == 0 for s in seqs):
            raise ValueError("X: every sequence needs at least one step")
        T, F = max(len(s) for s in seqs), len(mean)
        x = np.zeros((len(seqs), T, F), np.float32)
        for i, s in enumerate(seqs):
            if s.shape[1] != F:
                raise ValueError(f"X[{i}]: expected {F} features per step, got {s.shape[1]}")
            x[i, :len(s)] = s
        return torch.from_numpy(x), torch.tensor([len(s) for s in seqs])

    def _build(self):
        from .models import SequenceNet

        c = self.config
        return SequenceNet(0 if c["text"] else len(c["mean"]), len(c["classes"]), c["hidden_size"], c["num_layers"],
                           c["bidirectional"], c["cell"], vocab_size=len(c["vocab"]) + 2 if c["text"] else None,
                           embed_dim=c["embed_dim"], dropout=c["dropout"], pool=c.get("pool", "last"),
                           head_dropout=c.get("head_dropout"))

    # -- API ----------------------------------------------------------------------------------------------

    def fit(self, X, y, *, ckpt_dir: str | None = None, resume: bool = False, log=print) -> "SequenceClassifier":
        """X: list of (T_i, F) arrays (or str when text=True); y: (N,) labels. A stratified
        ``val_fraction`` of the data is held out for early stopping."""
        import torch
        from sklearn.model_selection import train_test_split

        p = self.params
        y = np.asarray(y).astype(str)
        seed_everything(p["seed"])
        counts = np.unique(y, return_counts=True)[1]
        stratify = min(counts) > 1 and np.ceil(p["val_fraction"] * len(y)) >= len(counts)
        idx_tr, idx_val = train_test_split(np.arange(len(y)), test_size=p["val_fraction"], random_state=p["seed"],
                                           stratify=y if stratify else None)
        if p["augment"] == "shift":
            if p["text"]:
                raise ValueError("augment='shift' is for numeric sequences, not text")
            copies = [shifted(X[i], axis, by) for axis, by in SHIFTS for i in idx_tr]
            n = len(y)
            X, y = list(X) + copies, np.concatenate([y] + [y[idx_tr]] * len(SHIFTS))
            idx_tr = np.concatenate([idx_tr, n + np.arange(len(copies))])
        Xtr = [X[i] for i in idx_tr]
        self.config = {**p, **self._prepare(Xtr, y[idx_tr])}
        self.classes_ = np.asarray(self.config["classes"])
        index = {c: i for i, c in enumerate(self.classes_)}
        seed_everything(p["seed"])
        self.model = self._build()

        def data(ids):
            x, lengths = self._encode([X[i] for i in ids])
            return x, lengths, torch.tensor([index[v] for v in y[ids]])

        def loss_fn(model, x, lengths, target):
            T = int(lengths.max())  # trim padding the batch does not need
            return torch.nn.functional.cross_entropy(model(x[:, :T], lengths), target)

        cfg = TrainConfig(epochs=p["epochs"], batch_size=p["batch_size"], lr=p["lr"], patience=p["patience"],
                          seed=p["seed"], progress=self.progress, lr_schedule=p["lr_schedule"])
        result = fit(self.model, loss_fn, data(idx_tr), data(idx_val), cfg, task=TASK, config=self.config,
                     ckpt_dir=ckpt_dir, resume=resume, log=log)
        self.history_ = result
        return self

    def predict_proba(self, X, batch_size: int = 512) -> np.ndarray:
        """(N, C) class probabilities, columns in ``classes_`` order."""
        import torch

        if self.model is None:
            raise ValueError("SequenceClassifier: call fit() or load() first")
        x, lengths = self._encode(X)
        self.model.eval()
        out = []
        with torch.no_grad():
            for i in range(0, len(x), batch_size):
                ln = lengths[i:i + batch_size]
                out.append(torch.softmax(self.model(x[i:i + batch_size, :int(ln.max())], ln), -1))
        return torch.cat(out).numpy()

    def predict(self, X) -> np.ndarray:
        """(N,) predicted labels (str)."""
        return self.classes_[self.predict_proba(X).argmax(1)]

    def save(self, path: str) -> None:
        """Weights and config in one safetensors file (the format ``lstmkit predict`` reads)."""
        checkpoint.save(path, task=TASK, config=self.config, model=self.model)

    @classmethod
    def load(cls, path: str) -> "SequenceClassifier":
        ck = checkpoint.load(path, task=TASK)
        clf = cls(**{k: ck["config"][k] for k in ("hidden_size", "num_layers", "bidirectional", "cell", "text",
                                                      "embed_dim", "max_len", "dropout")}, progress=False)
        clf.config = ck["config"]
        clf.classes_ = np.asarray(clf.config["classes"])
        clf.model = clf._build()
        clf.model.load_state_dict(ck["model"])
        clf.model.eval()
        return clf

