"""Numeric sequence input for the classifier: many layouts in, one out (a list of (T_i, C) float32 arrays).

The layout is always named, never guessed from shapes alone:

- ``'NTC'`` (the default): case, time, channel, i.e. X[i] is (T_i, C) (lstmkit's, Keras' and torch's
  batch_first order);
- ``'NCT'``: case, channel, time, i.e. X[i] is (C, T_i) (aeon's and sktime's numpy3D order);
- ``'auto'``: only for a list of sequences of different lengths, where the axis whose size varies is time;
  equal-length data is ambiguous there and is refused.

A 2-D array (N, T) (or a list of 1-D sequences) is N univariate series whatever the layout.
"""
from __future__ import annotations

import numpy as np

LAYOUTS = ("NTC", "NCT", "auto")


def check_layout(layout) -> None:
    if layout not in LAYOUTS:
        raise ValueError(f"layout: expected one of {', '.join(map(repr, LAYOUTS))}, got {layout!r}")


def _is_sparse(X) -> bool:
    return hasattr(X, "tocsr") or type(X).__module__.startswith("scipy.sparse")


def _numeric(a, where: str) -> np.ndarray:
    """``a`` as float64, refusing complex, non-numeric and non-finite values with ``where`` named."""
    a = np.asarray(a)
    if np.iscomplexobj(a):
        raise ValueError(f"{where}: Complex data not supported")
    if a.dtype.kind in "USV":  # as scikit-learn's check_array: text is not read as numbers, however it looks
        raise ValueError(f"{where}: expected numbers, got an array of strings or bytes (dtype {a.dtype.str}); "
                         "convert it to numbers explicitly first (e.g. np.asarray(X, dtype=float)), or pass "
                         "text=True to classify text")
    if a.dtype.kind == "O":
        a = a.astype(np.float64)  # numbers stored as objects convert; anything else raises TypeError/ValueError
    a = np.asarray(a, np.float64)
    if not np.all(np.isfinite(a)):
        raise ValueError(f"{where}: contains NaN or infinity; fill or drop those steps first")
    return a


def _axis_sizes(seqs: list) -> tuple[set, set]:
    return {s.shape[0] for s in seqs}, {s.shape[1] for s in seqs}


def resolve_layout(seqs: list, layout: str) -> str:
    """'NTC' or 'NCT' for a list of 2-D arrays; 'auto' decided by which axis varies in size."""
    if layout != "auto":
        return layout
    first, second = _axis_sizes(seqs)
    if len(first) > 1 and len(second) == 1:
        return "NTC"
    if len(second) > 1 and len(first) == 1:
        return "NCT"
    shapes = sorted({s.shape for s in seqs})[:3]
    raise ValueError(f"layout='auto': cannot tell time from channels in sequences of shape(s) {shapes} "
                     "(only a set of different lengths says which axis is time); pass layout='NTC' "
                     "((T, C) per case, lstmkit/torch/Keras) or layout='NCT' ((C, T) per case, aeon/sktime)")


def to_sequences(X, layout: str = "NTC") -> tuple[list, str]:
    """X -> (list of (T_i, C) float32 arrays, the layout used ('NTC' or 'NCT')).

    X: array (N, T) (univariate), array (N, T, C) or (N, C, T) by ``layout``, or a list of such per-case
    arrays ((T_i,), (T_i, C) or (C, T_i)), pandas frames included. Errors (ValueError/TypeError) name the
    case: sparse, 1-D, complex, non-numeric, NaN/inf, empty, zero-length, mixed channel counts.
    """
    check_layout(layout)
    if _is_sparse(X):
        raise TypeError("X: sparse input is not supported; pass a dense (N, T) or (N, T, C) array")
    if X is None:
        raise ValueError("X: expected sequences, got None")
    if not isinstance(X, (list, tuple)):
        X = _numeric(X, "X")
        if X.ndim == 2:  # (N, T): N univariate series whatever the layout, as a 1-D sequence in a list is
            if X.shape[0] == 0:
                raise ValueError("X: no sequences (0 cases)")
            if X.shape[1] == 0:
                raise ValueError(f"X: sequences of 0 steps: 0 feature(s) (shape={X.shape}) while a minimum of 1 is "
                                 "required (a 2-D array is N univariate series of T steps)")
            return list(X[:, :, None].astype(np.float32)), ("NTC" if layout == "auto" else layout)
        if X.ndim != 3:
            raise ValueError(f"X: expected a 2-D (N, T) or 3-D (N, T, C)/(N, C, T) array or a list of "
                             f"sequences, got a {X.ndim}-D array of shape {X.shape}. Reshape your data: one "
                             "univariate sequence is X.reshape(1, -1), a list of them [seq1, seq2, ...]")
        if layout == "auto":
            raise ValueError(f"layout='auto': an equal-length array {X.shape} is ambiguous; pass layout='NTC' "
                             "(N, T, C) or layout='NCT' (N, C, T)")
        if X.shape[0] == 0:
            raise ValueError("X: no sequences (0 cases)")
        X = X if layout == "NTC" else X.transpose(0, 2, 1)  # the transpose the caller asked for by name
        if X.shape[1] == 0:
            raise ValueError(f"X: sequences of 0 steps: 0 feature(s) (shape={X.shape[:2]}) while a minimum of 1 "
                             f"is required (array read as {layout})")
        return list(X.astype(np.float32)), layout
    if len(X) == 0:
        raise ValueError("X: no sequences (0 cases)")
    seqs = [_numeric(s, f"X[{i}]") for i, s in enumerate(X)]
    for i, s in enumerate(seqs):
        if s.ndim not in (1, 2):
            raise ValueError(f"X[{i}]: expected a 1-D (T,) or 2-D sequence, got shape {s.shape}")
    two_d = [s for s in seqs if s.ndim == 2]
    used = resolve_layout(two_d, layout) if two_d else "NTC"
    # a 1-D sequence is univariate in every layout; a 2-D one is read as the layout says
    seqs = [s[:, None] if s.ndim == 1 else (s.T if used == "NCT" else s) for s in seqs]
    for i, s in enumerate(seqs):
        if s.shape[0] == 0:
            raise ValueError(f"X[{i}]: a sequence of 0 steps; every sequence needs at least one")
    channels = {s.shape[1] for s in seqs}
    if len(channels) > 1:
        raise ValueError(f"X: sequences disagree on the number of channels ({sorted(channels)}) when read as "
                         f"{used}; is the layout right?")
    return [s.astype(np.float32) for s in seqs], used


def check_channels(seqs: list, channels: int, layout: str) -> None:
    """Every sequence must have the fitted ``channels``; the message suggests the other layout when its
    reading would fit."""
    for i, s in enumerate(seqs):
        if s.shape[1] != channels:
            hint = ""
            if s.shape[0] == channels:
                other = "NCT" if layout == "NTC" else "NTC"
                hint = f"; read as {other} it would fit: is the layout {other}?"
            raise ValueError(f"X[{i}]: expected {channels} channel(s) per step (fitted on that many, layout "
                             f"{layout}), got {s.shape[1]}{hint}")
