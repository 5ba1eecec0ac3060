"""Sequence classification: ``SequenceClassifier``, a scikit-learn estimator on lstmkit.torch.LSTM/GRU, for
numeric sequences (variable lengths; the layout named by ``layout=``) or text (list of str, char-level tokens).

    clf = SequenceClassifier(hidden_size=64, epochs=30).fit(X_train, y_train)
    clf.predict(X_test)          # (N,) labels, in y's dtype
    clf.predict_proba(X_test)    # (N, C), columns in clf.classes_ order
    clf.score(X_test, y_test)    # accuracy
    cross_val_score(SequenceClassifier(epochs=5), X, y, cv=3)   # clone, get_params/set_params work
"""
from __future__ import annotations

import os

import numpy as np

from ..._optional import require
from .. import checkpoint, devices
from .sequences import check_channels, check_layout, to_sequences
from ..training import LR_SCHEDULES, TrainConfig, fit, keeps_global_rng, quiet, resumable, seed_everything

_base = require("sklearn.base", "tasks")
_validation = require("sklearn.utils.validation", "tasks")
_multiclass = require("sklearn.utils.multiclass", "tasks")

TASK = "classify"
SHIFTS = ((0, 1), (0, -1), (1, 1), (1, -1))  # (axis: 0 time, 1 feature; by): augment='shift'
AUGMENTS = (None, "shift")
ARCHS = ("lstm", "lstm-fcn")
NORMALIZE = ("global", "case", "auto")
VALIDATIONS = ("auto", "holdout", "fixed", "kfold")
# validation='auto' holds out a split only when it has at least this many cases: the loss of a smaller split
# moves by more, case to case, than the epochs it is meant to rank (a 15% split of 50 cases is 8 cases)
MIN_HOLDOUT = 50
# the architecture a checkpoint must carry to be rebuilt (the rest of the parameters only steer fit)
_ARCH = ("hidden_size", "num_layers", "bidirectional", "cell", "text", "embed_dim", "max_len", "dropout", "pool",
         "head_dropout", "layout", "arch", "normalize", "ensemble")


def normalize_case(s: np.ndarray) -> np.ndarray:
    """(T, C) sequence z-normalised per channel over its own steps (normalize='case'); a constant channel
    becomes 0."""
    std = s.std(0)
    return (s - s.mean(0)) / np.where(std > 0, std, 1.0).astype(s.dtype)


def shifted(x, axis: int, by: int) -> np.ndarray:
    """(T, F) sequence moved ``by`` (+1 or -1) positions along ``axis``; the vacated row or column is zero."""
    x = np.asarray(x, np.float32).reshape(len(x), -1)
    out = np.zeros_like(x)
    src = [slice(None), slice(None)]
    dst = [slice(None), slice(None)]
    src[axis], dst[axis] = (slice(0, -1), slice(1, None)) if by > 0 else (slice(1, None), slice(0, -1))
    out[tuple(dst)] = x[tuple(src)]
    return out


class SequenceClassifier(_base.ClassifierMixin, _base.BaseEstimator):
    """LSTM (or GRU) reading a sequence, classifying from its last hidden state concatenated with the mean
    and max of its outputs (``pool='last+mean+max'``; ``'last'`` for the last state alone), through dropout
    ``head_dropout`` (None: ``dropout``) and a linear layer.

    A scikit-learn classifier: parameters are the constructor's arguments (``get_params``/``set_params``,
    ``clone``, ``GridSearchCV``); fitted state ends in ``_`` (``classes_``, ``model_``, ``config_``,
    ``history_``, ``n_channels_``, ``layout_``; ``feature_names_in_``, as scikit-learn sets it, when X is a
    DataFrame (N, T) whose column names are all strings: predict checks a DataFrame's names against them, and
    warns when a frame comes with names after a fit without them or the other way round).

    Numeric input X: an array (N, T) (univariate), (N, T, C) with ``layout='NTC'`` (default) or (N, C, T)
    with ``layout='NCT'`` (aeon's order), or a list of per-case arrays of any lengths in that layout;
    ``layout='auto'`` reads time as the axis whose size varies across a variable-length list and refuses
    equal-length data. Features are standardised with the training set's per-channel mean/std.
    ``augment='shift'`` adds four copies of every training sequence (not of the validation split), moved by
    one step earlier and later in time and by one channel either way, zero-filled: for images read row by
    row (digits) these are the one-pixel shifts.
    Text input (``text=True``): characters seen in training get ids 2..V-1 (0 pad, 1 unknown), sequences
    truncated to ``max_len`` characters.

    ``arch='lstm-fcn'``: LSTM-FCN (``net.LSTMFCN``, Karim et al. 2018): a fully convolutional branch (Conv1d
    128/256/128 filters, kernels 8/5/3, batch norm, ReLU, global average pooling over the valid steps) beside an
    LSTM branch reading the dimension-shuffled case (resampled to the longest training length), whose last state
    goes through dropout ``dropout``; ``pool`` and ``head_dropout`` are the plain LSTM's only. The paper's
    settings are ``presets.ARCH_PRESETS['lstm-fcn']`` (hidden_size=8, dropout=0.8, ...).
    ``normalize``: 'global' (default) standardises each channel with the training set's mean/std; 'case'
    first z-normalises every case per channel over its own steps (at fit and predict); 'auto' is 'case' for
    univariate and 'global' for multivariate input.

    y: (N,) labels of any dtype; ``predict`` returns them in that dtype (``classes_`` = ``np.unique(y)``).
    ``validation``: 'holdout' holds out a stratified ``val_fraction`` for early stopping (``patience``);
    'fixed' trains all ``epochs`` on all data, no early stopping (the epoch of lowest training loss is kept);
    'kfold' picks the epoch count with the lowest mean validation loss over ``n_folds`` stratified folds (each
    trained for ``epochs``), then trains on all data for that many (a 'cosine' schedule then spans those
    epochs); 'auto' (default) is 'holdout' when the held-out split has at least MIN_HOLDOUT (50) cases, else
    'fixed'. The policy used is ``history_['validation']``.
    ``lr_schedule``: 'constant', 'cosine' (to 0 over the epochs) or 'plateau' (the LSTM-FCN paper's rule on the
    training loss, no held-out data: the rate times 2^-1/3 after 10 epochs without a lower training loss, down
    to lr/10; a plateau there ends training, ``history_['converged']``; ``epochs`` is then a cap).
    ``ensemble``: K > 1 trains K networks with seeds seed, seed+1, ..., seed+K-1 on the same data under the same
    policy (K times the cost) and predicts with the mean of their class probabilities (``net.Ensemble``, one
    model in ``save``/``load``; ``predict_members`` gives each member's labels).
    ``precision`` (LSTM-FCN): 'float32' (default), 'bfloat16' (the convolutions' products in bfloat16 while
    training on the CPU, float32 weights, gradients, batch norm and predictions: ~2.3x faster training where the
    CPU has AVX512_BF16 or AMX, slower elsewhere) or 'auto' ('bfloat16' on such a CPU, else 'float32'). What was
    used is ``history_['precision']``.
    ``verbose``: 0 silent (default), 1 one line per epoch on stdout, 2 also a progress bar (on a terminal).
    ``device``: where the model trains and predicts ('cpu', 'cuda', 'cuda:N', 'mps' or a torch.device; checked
    in fit, before any work); the data stays on the CPU and moves there batch by batch.
    """

    def __init__(self, hidden_size: int = 64, num_layers: int = 1, bidirectional: bool = False, cell: str = "lstm",
                 epochs: int = 30, batch_size: int = 64, lr: float = 5e-3, patience: int = 8,
                 val_fraction: float = 0.15, dropout: float = 0.0, seed: int = 0, text: bool = False,
                 embed_dim: int = 32, max_len: int = 300, pool: str = "last+mean+max",
                 head_dropout: float | None = 0.2, lr_schedule: str = "constant", augment: str | None = None,
                 layout: str = "NTC", verbose: int = 0, device="cpu", arch: str = "lstm", normalize: str = "global",
                 validation: str = "auto", n_folds: int = 5, ensemble: int = 1, precision: str = "float32"):
        # scikit-learn's contract: store the arguments as given; they are checked in fit
        self.hidden_size, self.num_layers, self.bidirectional, self.cell = hidden_size, num_layers, bidirectional, cell
        self.epochs, self.batch_size, self.lr, self.patience = epochs, batch_size, lr, patience
        self.val_fraction, self.dropout, self.seed, self.text = val_fraction, dropout, seed, text
        self.embed_dim, self.max_len, self.pool, self.head_dropout = embed_dim, max_len, pool, head_dropout
        self.lr_schedule, self.augment, self.layout, self.verbose = lr_schedule, augment, layout, verbose
        self.device = device
        self.arch, self.normalize, self.validation, self.n_folds = arch, normalize, validation, n_folds
        self.ensemble, self.precision = ensemble, precision

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.non_deterministic = False  # a seed fixes every draw: fit twice, same model
        tags.input_tags.string = bool(self.text)
        tags.input_tags.two_d_array = not self.text
        return tags

    # -- input ------------------------------------------------------------------------------------------

    def _check_params(self) -> None:
        for name, allowed in (("arch", ARCHS), ("normalize", NORMALIZE), ("validation", VALIDATIONS),
                              ("lr_schedule", LR_SCHEDULES), ("precision", devices.PRECISIONS)):
            value = getattr(self, name)
            if value not in allowed:
                raise ValueError(f"{name}: expected one of {', '.join(map(repr, allowed))}, got {value!r}")
        if self.text and self.arch != "lstm":
            raise ValueError(f"arch={self.arch!r} is for numeric sequences; text=True needs arch='lstm'")
        if self.text and self.normalize == "case":
            raise ValueError("normalize='case' is for numeric sequences, not text")
        if not isinstance(self.n_folds, (int, np.integer)) or isinstance(self.n_folds, bool) or self.n_folds < 2:
            raise ValueError(f"n_folds: expected an integer >= 2 (validation='kfold'), got {self.n_folds!r}")
        if self.augment not in AUGMENTS:
            raise ValueError(f"augment: expected None or 'shift', got {self.augment!r}")
        if self.augment == "shift" and self.text:
            raise ValueError("augment='shift' is for numeric sequences, not text")
        check_layout(self.layout)
        self.device_ = devices.resolve(self.device)
        if self.precision == "bfloat16" and self.arch != "lstm-fcn":
            raise ValueError(f"precision='bfloat16' is for the LSTM-FCN's convolutions (arch='lstm-fcn'); "
                             f"arch={self.arch!r} trains in float32")
        if self.precision == "bfloat16" and self.device_.type != "cpu":
            raise ValueError(f"precision='bfloat16' is for training on the CPU; device {str(self.device_)!r} "
                             "trains in float32 (use precision='float32' or 'auto')")
        if not 0.0 <= float(self.val_fraction) < 1.0:
            raise ValueError(f"val_fraction: expected a fraction in [0, 1), got {self.val_fraction!r}")
        for name in ("hidden_size", "num_layers", "epochs", "batch_size", "ensemble"):
            value = getattr(self, name)
            if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name}: expected a positive integer, got {value!r}")
        for name in ("seed", "verbose"):  # seed: training is always seeded (reproducible); verbose: 0, 1, 2
            value = getattr(self, name)
            if not isinstance(value, (int, np.integer)) or value < 0:
                raise ValueError(f"{name}: expected an integer >= 0, got {value!r}")
        lr = self.lr
        if isinstance(lr, bool) or not isinstance(lr, (int, float, np.floating)) or not 0 < lr < np.inf:
            raise ValueError(f"lr: expected a positive number, got {lr!r}")

    def _check_feature_names(self, X, reset: bool) -> None:
        """scikit-learn's convention for tabular X (a DataFrame): fit (``reset``) sets ``feature_names_in_`` from
        string column names; predict refuses other names or another order (for a (N, T) frame the columns are
        time steps: reordered, the sequences would be read scrambled) and warns on names present on one side
        only. Sequences of other forms (3-D arrays, lists) carry no feature names."""
        check = getattr(_validation, "_check_feature_names", None)
        if check is not None:
            check(self, X, reset=reset)
        else:  # scikit-learn < 1.6: a method of BaseEstimator
            super()._check_feature_names(X, reset=reset)

    def _texts(self, X) -> list:
        if isinstance(X, str) or not all(isinstance(s, str) for s in X):
            raise ValueError("X: text=True expects a list of str (one text per case)")
        if len(X) == 0:
            raise ValueError("X: no sequences (0 cases)")
        return list(X)

    def _inputs(self, X, fitted: bool) -> list:
        """X -> list of str (text) or of (T_i, C) float32 arrays in this estimator's layout."""
        if self.text:
            if not fitted:
                self.layout_ = None
            return self._texts(X)
        seqs, used = to_sequences(X, self.layout_ if fitted else self.layout)
        if fitted:
            check_channels(seqs, self.n_channels_, self.layout_)
        else:
            self.layout_ = used
        return seqs

    @staticmethod
    def _labels(y, n: int) -> np.ndarray:
        if y is None:
            raise ValueError("SequenceClassifier requires y to be passed, but the target y is None")
        y = _validation.column_or_1d(y, warn=True)
        _multiclass.check_classification_targets(y)
        if len(y) != n:
            raise ValueError(f"y: expected {n} labels (one per sequence in X), got {len(y)}")
        return y

    # -- encoding -----------------------------------------------------------------------------------------

    def _precision_used(self) -> str:
        """precision resolved: 'bfloat16' only for an LSTM-FCN on the CPU ('auto': where the CPU multiplies
        bfloat16 natively, ``devices.native_bf16``), else 'float32'."""
        return devices.precision_used(self.precision, self.device_) if self.arch == "lstm-fcn" else "float32"

    def _normalize_used(self, X) -> str | None:
        """normalize resolved for these inputs: None for text; 'auto' is 'case' for univariate series (the
        UCR convention: the class is in the shape, not the level) and 'global' for several channels (whose
        levels relative to each other carry information)."""
        if self.text:
            return None
        if self.normalize != "auto":
            return self.normalize
        return "case" if X[0].shape[1] == 1 else "global"

    def _prepare(self, X) -> dict:
        """Fit the encoding on training data: feature scaling or the character vocabulary."""
        if self.text:
            return {"vocab": "".join(sorted(set("".join(X))))}
        norm = self._normalize_used(X)
        if norm == "case":
            X = [normalize_case(s) for s in X]
        allsteps = np.concatenate(X)  # (sum T_i, C)
        out = {"mean": allsteps.mean(0).tolist(), "std": (allsteps.std(0) + 1e-6).tolist(), "normalize": norm}
        if self.arch == "lstm-fcn":
            out["fcn_steps"] = int(max(len(s) for s in X))  # the LSTM branch's input width (net.LSTMFCN)
        return out

    def _encode(self, X):
        """-> (x (N, T, C) float32 or (N, T) int64, lengths (N,) int64) as torch tensors."""
        import torch

        cfg = self.config_
        if cfg["text"]:
            lookup = {c: i + 2 for i, c in enumerate(cfg["vocab"])}
            seqs = [[lookup.get(c, 1) for c in s[:cfg["max_len"]]] or [1] for s in X]
            T = max(len(s) for s in seqs)
            x = np.zeros((len(seqs), T), np.int64)
            for i, s in enumerate(seqs):
                x[i, :len(s)] = s
            return torch.from_numpy(x), torch.tensor([len(s) for s in seqs])
        mean, std = np.asarray(cfg["mean"], np.float32), np.asarray(cfg["std"], np.float32)
        per_case = cfg.get("normalize") == "case"
        T, C = max(len(s) for s in X), len(mean)
        x = np.zeros((len(X), T, C), np.float32)  # (N, T, C), zero-padded after each sequence's end
        for i, s in enumerate(X):
            x[i, :len(s)] = ((normalize_case(s) if per_case else s) - mean) / std
        return torch.from_numpy(x), torch.tensor([len(s) for s in X])

    def _build(self):
        """The fitted model's network: one member, or ``net.Ensemble`` of ``ensemble`` of them."""
        from .net import Ensemble

        k = int(self.config_.get("ensemble", 1))
        return self._build_one() if k == 1 else Ensemble([self._build_one() for _ in range(k)]).to(self.device_)

    def _build_one(self):
        """One freshly initialised network (a SequenceNet or an LSTMFCN) for ``config_``."""
        from .net import LSTMFCN, SequenceNet

        c = self.config_
        if c.get("arch", "lstm") == "lstm-fcn":
            net = LSTMFCN(len(c["mean"]), len(c["classes"]), c["fcn_steps"], c["hidden_size"], c["num_layers"],
                          c["bidirectional"], c["cell"], dropout=c["dropout"])
            return net.to(self.device_)
        return SequenceNet(0 if c["text"] else len(c["mean"]), len(c["classes"]), c["hidden_size"], c["num_layers"],
                           c["bidirectional"], c["cell"], vocab_size=len(c["vocab"]) + 2 if c["text"] else None,
                           embed_dim=c["embed_dim"], dropout=c["dropout"], pool=c.get("pool", "last"),
                           head_dropout=c.get("head_dropout")).to(self.device_)

    # -- validation ---------------------------------------------------------------------------------------

    def _validation_used(self, n: int) -> str:
        """The policy fit follows for n training cases: 'holdout' (early stopping on a stratified
        ``val_fraction``), 'fixed' (all ``epochs``, no held-out data) or 'kfold' (the epoch count chosen by
        ``n_folds``-fold cross-validation, then all data for that many epochs). 'auto': 'holdout' when the
        split holds at least MIN_HOLDOUT cases, else 'fixed'; val_fraction=0 is 'fixed' under 'auto' and 'holdout'."""
        if self.validation in ("fixed", "kfold"):
            return self.validation
        n_val = int(np.ceil(self.val_fraction * n))
        if n_val == 0 or (self.validation == "auto" and n_val < MIN_HOLDOUT):
            return "fixed"
        return "holdout"

    def _split(self, y_idx: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """(training indices, validation indices): a stratified ``val_fraction`` when possible."""
        from sklearn.model_selection import train_test_split

        n = len(y_idx)
        n_val = int(np.ceil(self.val_fraction * n))
        if n - n_val < 1:
            raise ValueError(f"X: {n} sequence(s) leave no training data after holding out val_fraction="
                             f"{self.val_fraction} (one sample cannot be split); pass val_fraction=0")
        counts = np.bincount(y_idx)
        stratify = counts[counts > 0].min() > 1 and n_val >= np.count_nonzero(counts)
        return train_test_split(np.arange(n), test_size=n_val, random_state=self.seed,
                                stratify=y_idx if stratify else None)

    def _folds(self, y_idx: np.ndarray, log=quiet) -> list:
        """[(training indices, validation indices)] * n_folds, stratified when every class has n_folds cases."""
        from sklearn.model_selection import KFold, StratifiedKFold

        n = len(y_idx)
        counts = np.bincount(y_idx)
        if n < self.n_folds:
            raise ValueError(f"validation='kfold': n_folds={self.n_folds} folds need at least {self.n_folds} "
                             f"sequences, got {n} ({self._class_counts(counts)}); lower n_folds or use "
                             "validation='fixed'")
        stratified = counts[counts > 0].min() >= self.n_folds
        if not stratified:  # a fold may then train without a class: said where fit's lines go
            log(f"validation='kfold': folds not stratified, a class has fewer than n_folds={self.n_folds} cases "
                f"({self._class_counts(counts)})")
        kind = StratifiedKFold if stratified else KFold
        return list(kind(self.n_folds, shuffle=True, random_state=self.seed).split(np.zeros(n), y_idx))

    def _class_counts(self, counts: np.ndarray) -> str:
        """'cases per class: a 3, b 1' for ``np.bincount`` of the class indices (the labels as given)."""
        return "cases per class: " + ", ".join(f"{c} {k}" for c, k in zip(self.classes_.tolist(), counts.tolist()))

    def _kfold_epochs(self, X, y_idx, log) -> tuple[int, list]:
        """(the epoch count with the lowest validation loss averaged over the folds, that mean curve)."""
        curves = []
        for k, (tr, va) in enumerate(self._folds(y_idx, log)):
            _, history = self._train(X, y_idx, tr, va, self.epochs, patience=self.epochs + 1, log=quiet)
            curves.append([h["val_loss"] for h in history["history"]])
            log(f"fold {k + 1}/{self.n_folds}: best val loss {min(curves[-1]):.4f} at epoch "
                f"{int(np.argmin(curves[-1])) + 1}")
        mean = np.mean(curves, axis=0)  # (epochs,)
        best = int(np.argmin(mean)) + 1
        log(f"{self.n_folds}-fold cross-validation: {best} epochs (mean val loss {mean[best - 1]:.4f})")
        return best, mean.tolist()

    # -- training -----------------------------------------------------------------------------------------

    def _train(self, X, y_idx, idx_tr, idx_val, epochs: int, patience: int, ckpt_dir=None, resume=False,
               log=quiet, extra: dict | None = None, seed: int | None = None):
        """Fit a fresh network on X[idx_tr] (early stopping on X[idx_val] unless None), its weights and batches
        drawn from ``seed`` (None: ``self.seed``) -> (model, history); sets ``config_`` (the encoding is fitted
        on the training cases)."""
        import torch

        if self.augment == "shift":
            copies = [shifted(X[i], axis, by) for axis, by in SHIFTS for i in idx_tr]
            n = len(y_idx)
            X, y_idx = list(X) + copies, np.concatenate([y_idx] + [y_idx[idx_tr]] * len(SHIFTS))
            idx_tr = np.concatenate([idx_tr, n + np.arange(len(copies))])
        params = {k: v for k, v in self.get_params().items() if k != "device"}  # where it ran is not the model
        # "params": the arguments as given (get_params of a loaded classifier, so clone(loaded).fit trains
        # the same way); the top-level keys hold what fit resolved (layout, normalize='auto')
        self.config_ = {**params, **self._prepare([X[i] for i in idx_tr]), "layout": self.layout_,
                        "classes": _json_labels(self.classes_), "classes_dtype": self.classes_.dtype.str,
                        "params": params, **(extra or {})}
        seed = self.seed if seed is None else seed
        seed_everything(seed)
        model = self._build_one()
        if self.arch == "lstm-fcn":  # every training, k-fold's folds too
            model.train_convolutions_in(self._precision_used())

        def data(ids):
            x, lengths = self._encode([X[i] for i in ids])
            return x, lengths, torch.from_numpy(y_idx[ids].astype(np.int64))

        def loss_fn(model, x, lengths, target):
            T = int(lengths.max())  # trim padding the batch does not need
            return torch.nn.functional.cross_entropy(model(x[:, :T], lengths), target)

        cfg = TrainConfig(epochs=epochs, batch_size=self.batch_size, lr=self.lr, patience=patience,
                          seed=seed, progress=int(self.verbose) >= 2, lr_schedule=self.lr_schedule,
                          loss_unit="nats per sequence (cross-entropy)")
        history = fit(model, loss_fn, data(idx_tr), None if idx_val is None else data(idx_val), cfg,
                      task=TASK, config=self.config_, ckpt_dir=ckpt_dir, resume=resume, log=log)
        return model, history

    # -- API ----------------------------------------------------------------------------------------------

    @keeps_global_rng
    def fit(self, X, y, *, ckpt_dir: str | None = None, resume: bool = False, log=None,
            feature_names: list | None = None) -> "SequenceClassifier":
        """X: sequences (see the class docstring; list of str when text=True), y: (N,) labels.
        ``feature_names``: the C channels' names, kept in the checkpoint (``lstmkit predict`` asks for them).
        ``ckpt_dir``: write last/best.safetensors there every epoch (``resume=True`` continues from them).
        ``log``: where epoch lines go (default: stdout when ``verbose``, else nowhere)."""
        self._check_params()
        self._check_feature_names(X, reset=True)
        X = self._inputs(X, fitted=False)
        y = self._labels(y, len(X))
        self.classes_, y_idx = np.unique(y, return_inverse=True)
        if log is None:
            log = print if self.verbose else quiet
        self.n_channels_ = None if self.text else X[0].shape[1]
        if feature_names is not None and len(feature_names) != self.n_channels_:
            raise ValueError(f"feature_names: expected {self.n_channels_} names, got {len(feature_names)}")
        policy = self._validation_used(len(X))
        epochs, extra = self.epochs, {"validation_used": policy, "precision_used": self._precision_used()}
        if policy == "kfold":
            epochs, curve = self._kfold_epochs(X, y_idx, log)
            extra.update(epochs_used=epochs, kfold_val_loss=curve)
        seed_everything(self.seed)
        idx_tr, idx_val = self._split(y_idx) if policy == "holdout" else (np.arange(len(X)), None)
        if feature_names is not None:
            extra["features"] = [str(f) for f in feature_names]
        if hasattr(self, "feature_names_in_"):  # a loaded model checks a DataFrame's columns as this one does
            extra["feature_names_in"] = self.feature_names_in_.tolist()
        log(f"validation: {policy} ({len(idx_tr)} training cases"
            f"{f', {len(idx_val)} held out' if idx_val is not None else f', {epochs} epochs, no early stopping'})")
        self.model_, self.history_ = self._train_ensemble(X, y_idx, idx_tr, idx_val, epochs, ckpt_dir, resume, log,
                                                          extra)
        self.history_["validation"] = policy
        self.history_["precision"] = extra["precision_used"]
        return self

    def _train_ensemble(self, X, y_idx, idx_tr, idx_val, epochs: int, ckpt_dir, resume: bool, log, extra: dict):
        """(model, history): one network (ensemble=1), else ``ensemble`` networks with seeds seed, seed+1, ...
        on the same cases and split, gathered in ``net.Ensemble``; history is member 0's, every member's under
        'members'. Member k checkpoints into ckpt_dir/member-k as a one-network model (loadable on its own);
        under ``resume`` a member with no checkpoint yet (the run stopped before it) starts afresh."""
        from .net import Ensemble

        k = int(self.ensemble)
        if k == 1:
            return self._train(X, y_idx, idx_tr, idx_val, epochs, self.patience, ckpt_dir, resume, log, extra)
        members, histories = [], []
        for m in range(k):
            log(f"member {m + 1}/{k}: seed {self.seed + m}")
            mdir = None if ckpt_dir is None else os.path.join(ckpt_dir, f"member-{m}")
            # rank 0 decides for all ranks (only it needs to see the folder; ranks deciding apart would deadlock)
            again = resume and (m == 0 or resumable(mdir))
            model, history = self._train(X, y_idx, idx_tr, idx_val, epochs, self.patience, mdir, again, log,
                                         {**extra, "ensemble": 1, "member": m, "seed": self.seed + m},
                                         seed=self.seed + m)
            members.append(model)
            histories.append(history)
        self.config_ = {**{key: v for key, v in self.config_.items() if key != "member"}, "ensemble": k,
                        "seed": self.seed}
        return Ensemble(members).to(self.device_).eval(), {**histories[0], "members": histories}

    def predict_members(self, X) -> np.ndarray:
        """(K, N) each ensemble member's predicted labels (K = ``ensemble``; (1, N) for one network)."""
        _validation.check_is_fitted(self, "model_")
        self._check_feature_names(X, reset=False)
        members = getattr(self.model_, "members", [self.model_])
        return np.stack([self.classes_[self._proba(m, X).argmax(1)] for m in members])

    def predict_proba(self, X, batch_size: int = 512) -> np.ndarray:
        """(N, C) class probabilities (float64, rows sum to 1), columns in ``classes_`` order; an ensemble's
        are its members' mean."""
        _validation.check_is_fitted(self, "model_")
        self._check_feature_names(X, reset=False)
        return self._proba(self.model_, X, batch_size)

    def _proba(self, model, X, batch_size: int = 512) -> np.ndarray:
        """(N, C) softmax of ``model``'s output on X (encoded as in training)."""
        import torch

        x, lengths = self._encode(self._inputs(X, fitted=True))
        device = devices.of(model)
        model.eval()
        out = []
        with torch.no_grad():
            for i in range(0, len(x), batch_size):
                ln = lengths[i:i + batch_size]
                batch = devices.to((x[i:i + batch_size, :int(ln.max())], ln), device)
                out.append(torch.softmax(model(*batch).double(), -1).cpu())
        return torch.cat(out).numpy()

    def predict(self, X) -> np.ndarray:
        """(N,) predicted labels, in the dtype of the y given to fit."""
        proba = self.predict_proba(X)  # first: it checks that fit ran
        return self.classes_[proba.argmax(1)]

    def save(self, path: str) -> None:
        """Weights and config in one safetensors file (the format ``lstmkit predict`` reads)."""
        _validation.check_is_fitted(self, "model_")
        checkpoint.save(path, task=TASK, config=self.config_, model=self.model_)

    @classmethod
    def load(cls, path: str, device="cpu") -> "SequenceClassifier":
        """A fitted classifier from ``save``'s file (or a ``lstmkit classify`` run's best.safetensors), its
        model on ``device``."""
        ck = checkpoint.load(path, task=TASK)
        c = ck["config"]
        # every argument as given to the classifier saved (older files: the architecture's, the rest defaults)
        given = c.get("params") or {k: c[k] for k in _ARCH if k in c and not (k == "layout" and c[k] is None)}
        clf = cls(**given, device=device)
        clf.device_ = devices.resolve(device)
        clf.config_ = c
        clf.classes_ = np.asarray(c["classes"], dtype=np.dtype(c["classes_dtype"]) if "classes_dtype" in c else None)
        clf.layout_ = None if c["text"] else c.get("layout", "NTC")
        clf.n_channels_ = None if c["text"] else len(c["mean"])
        if "feature_names_in" in c:
            clf.feature_names_in_ = np.asarray(c["feature_names_in"], dtype=object)
        clf.model_ = clf._build()
        clf.model_.load_state_dict(ck["model"])
        clf.model_.eval()
        return clf


def _json_labels(classes: np.ndarray) -> list:
    """The classes as JSON values that ``np.asarray(values, dtype=classes.dtype)`` reads back: datetimes and
    durations as their integer counts of the dtype's unit (tolist gives date/datetime objects, which JSON lacks)."""
    if classes.dtype.kind in "Mm":
        return classes.view(np.int64).tolist()
    return classes.tolist()
