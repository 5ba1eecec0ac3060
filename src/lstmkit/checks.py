"""Input checks shared by every frontend: each error names the argument, what was expected and what came.

A wrong shape raises ``errors.ShapeError`` and a wrong dtype ``errors.DtypeMismatchError``: the ValueError
and TypeError lstmkit has always raised, which are also the RuntimeError (or ValueError) torch.nn raises.

They read only ``.shape``, ``.ndim`` and ``.dtype``, so numpy arrays and torch tensors go through the
same checks (and the same messages) before any computation or native code runs.
"""
from __future__ import annotations


import numpy as np

from .errors import DtypeMismatchError, ShapeError, StateFormError
from .params import RNNConfig, to_numpy


def dtype_name(dtype) -> str:
    """'float32' for np.float32, np.dtype('float32') and torch.float32 alike."""
    # a plain dict, not functools.lru_cache: torch.compile warns on every compile that traces an lru_cache;
    # str(np.dtype) runs Python code in numpy, and every call checks a dtype or two
    try:
        return _DTYPE_NAMES[dtype]
    except (KeyError, TypeError):  # not seen yet, or unhashable
        # np.dtype's name ignores byte order: a big-endian float32 input is float32 (copied to native order later)
        name = np.dtype(dtype).name if isinstance(dtype, (type, np.dtype)) else str(dtype).replace("torch.", "")
    if len(_DTYPE_NAMES) < 64:
        try:
            _DTYPE_NAMES[dtype] = name
        except TypeError:
            pass
    return name


_DTYPE_NAMES: dict = {}


def check_input(config: RNNConfig, x, dtype, why: str | None = None) -> tuple[int, int, bool]:
    """Check x (T, B, I), (B, T, I) with batch_first, or unbatched (T, I). Returns (T, B, unbatched).
    ``why``: where ``dtype`` comes from, for the message (default: the layer's)."""
    if not hasattr(x, "shape") or not hasattr(x, "dtype"):
        raise TypeError(f"input: expected an array of shape (T, B, {config.input_size}), got {type(x).__name__}")
    layout = "(B, T, I)" if config.batch_first else "(T, B, I)"
    if x.ndim not in (2, 3):
        raise ValueError(f"input: expected 3 dimensions {layout} or 2 (T, I), got shape {tuple(x.shape)}")
    if x.shape[-1] != config.input_size:
        raise ShapeError(
            f"input: expected {config.input_size} features in the last dimension, got shape {tuple(x.shape)}"
        )
    check_dtype_matches("input", x.dtype, dtype, why)
    if x.ndim == 2:
        return x.shape[0], 1, True
    T, B = (x.shape[1], x.shape[0]) if config.batch_first else (x.shape[0], x.shape[1])
    return T, B, False


def check_dtype_matches(name: str, got, expected, why: str | None = None) -> None:
    """DtypeMismatchError unless ``got`` is ``expected``; ``why``: where ``expected`` comes from, when it is
    not the layer's dtype (then the layer's dtype is no remedy)."""
    if dtype_name(got) != dtype_name(expected):
        reason, remedy = (why, "cast it first") if why else (
            "the layer's dtype", "cast it first, or build the layer with the dtype you need")
        raise DtypeMismatchError(f"{name}: expected dtype {dtype_name(expected)} ({reason}), got {dtype_name(got)}; "
                                 f"{remedy}")


def state_shapes(config: RNNConfig, batch: int, unbatched: bool = False) -> tuple[tuple[int, ...], ...]:
    """Expected shapes of (h0, c0) for LSTM or (h0,) for GRU."""
    k = config.num_layers * config.num_directions
    lead = (k,) if unbatched else (k, batch)
    h = lead + (config.output_size,)
    return (h, lead + (config.hidden_size,)) if config.mode == "LSTM" else (h,)


def check_state(config: RNNConfig, hx, batch: int, unbatched: bool, dtype, why: str | None = None) -> tuple:
    """Check an initial state: LSTM (h0, c0), GRU h0. Returns it as a tuple; None stays None. ``why``: as
    ``check_input``'s."""
    if hx is None:
        return None
    names = ("h0", "c0") if config.mode == "LSTM" else ("h0",)
    if config.mode == "LSTM":
        if not isinstance(hx, (tuple, list)) or len(hx) != 2:
            got = f"a {type(hx).__name__} of {len(hx)}" if isinstance(hx, (tuple, list)) else type(hx).__name__
            raise StateFormError(f"hx: expected a tuple (h0, c0) for an LSTM, got {got}")
        hx = tuple(hx)
    else:
        if isinstance(hx, (tuple, list)):
            raise StateFormError("hx: expected one array h0 for a GRU, got a tuple")
        hx = (hx,)
    for name, value, shape in zip(names, hx, state_shapes(config, batch, unbatched)):
        if not hasattr(value, "shape"):
            raise StateFormError(f"hx: expected {name} as an array of shape {shape}, got {type(value).__name__}")
        if tuple(value.shape) != shape:
            raise ShapeError(f"hx: expected {name} of shape {shape}, got {tuple(value.shape)}")
        check_dtype_matches(f"hx ({name})", value.dtype, dtype, why)
    return hx


def check_lengths_form(lengths, batch: int) -> None:
    """Check the form of lengths, not their values: B integers (a numpy array or a torch tensor).

    Reads only ``.shape`` and ``.dtype``, so it also works on tensors whose values cannot be read yet
    (while torch.compile traces).
    """
    shape = tuple(lengths.shape)
    if len(shape) != 1 or shape[0] != batch:
        raise ValueError(f"lengths: expected {batch} values, one per sequence in the batch, got shape {shape}")
    if shape[0] and not dtype_name(lengths.dtype).startswith(("int", "uint")):
        raise TypeError(f"lengths: expected integers, got dtype {dtype_name(lengths.dtype)}")


def check_lengths(lengths, steps: int, batch: int) -> np.ndarray | None:
    """Check per-sequence lengths: B integers in [0, T], any order. Returns a fresh int64 array or None."""
    if lengths is None:
        return None
    arr = np.asarray(to_numpy(lengths))
    check_lengths_form(arr, batch)
    arr = arr.astype(np.int64)
    if arr.size and (arr.min() < 0 or arr.max() > steps):
        raise ValueError(f"lengths: expected values in [0, {steps}] (the number of steps), "
                         f"got {arr.min()}..{arr.max()}")
    return arr


VARIANT_MASKS = ("recurrent", "zoneout_c", "zoneout_h")


def check_dropout_masks(config: RNNConfig, steps: int, batch: int, dtype, masks) -> None:
    """Check the form of a call's inter-layer dropout masks, not their values: a list or tuple of none (no
    dropout) or one per layer but the last, each (T, B, D·P) of ``dtype`` (already scaled by 1/(1 − p)).

    Reads only ``len``, ``.shape`` and ``.dtype``, so it serves numpy arrays (lstmkit.engine) and torch
    tensors whose values cannot be read yet (the torch operators, while torch.compile traces).
    """
    expected = config.num_layers - 1
    if not isinstance(masks, (list, tuple)):
        raise TypeError(f"dropout_masks: expected a list of {expected} masks (one per layer but the last), "
                        f"got {type(masks).__name__}")
    if len(masks) not in (0, expected):
        raise ValueError(f"dropout_masks: expected 0 or {expected} masks (one per layer but the last), "
                         f"got {len(masks)}")
    shape = (steps, batch, config.num_directions * config.output_size)
    for k, m in enumerate(masks):
        if tuple(m.shape) != shape:
            raise ValueError(f"dropout_masks[{k}]: expected shape {shape}, got {tuple(m.shape)}")
        check_dtype_matches(f"dropout_masks[{k}]", m.dtype, dtype)  # torch's RuntimeError for the torch ops


def check_variant_masks(config: RNNConfig, steps: int, batch: int, dtype, masks: dict, prefix: str) -> None:
    """Check the form of a variant call's sampled masks (lstmkit.ref.variants.VariantMasks), not their values.

    masks: each field of VARIANT_MASKS -> a list (empty: not sampled) of one mask per layer·direction,
    recurrent (B, P), zoneout_c (T, B, H) (an LSTM's only), zoneout_h (T, B, P), all of ``dtype``;
    errors name them ``prefix + field``. Reads only ``.shape`` and ``.dtype``, so it works on numpy
    arrays and on torch tensors whose values cannot be read yet (while torch.compile traces).
    """
    K = config.num_layers * config.num_directions
    H, P = config.hidden_size, config.output_size
    shapes = {"recurrent": (batch, P), "zoneout_c": (steps, batch, H), "zoneout_h": (steps, batch, P)}
    for field in VARIANT_MASKS:
        name, given = prefix + field, masks[field]
        if not len(given):
            continue
        if field == "zoneout_c" and config.mode == "GRU":
            raise ValueError(f"{name}: expected None for a GRU (it has no cell state), got masks")
        if len(given) != K:
            raise ValueError(f"{name}: expected a list of {K} masks (one per layer·direction), got {len(given)} masks")
        for k, m in enumerate(given):
            if tuple(m.shape) != shapes[field]:
                raise ValueError(f"{name}[{k}]: expected shape {shapes[field]}, got {tuple(m.shape)}")
            if dtype_name(m.dtype) != dtype_name(dtype):
                raise TypeError(f"{name}[{k}]: expected dtype {dtype_name(dtype)} (the dtype of x), "
                                f"got {dtype_name(m.dtype)}; cast it first")
