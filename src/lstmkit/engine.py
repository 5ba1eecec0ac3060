"""The native CPU engine: fused LSTM/GRU kernels in C++ (``lstmkit._engine``), checked from Python.

Every function here computes exactly what the NumPy reference (``lstmkit.ref``) computes, in float32 or
float64, and checks its arguments before any native code runs: shapes, dtypes (float32 or float64, all
the same), lengths. Inputs that are not C-contiguous, not in native byte order, or read-only are copied
first; the caller's arrays are never modified or kept. Errors name the argument, what was expected
and what came.

One call path for every cell: ``forward`` / ``train_forward`` / ``backward`` check their arguments into a
``SequenceCall`` (named fields: the config, x, the plain weights and the variant parameters, the state,
lengths, the variant options and masks, the inter-layer dropout masks) and hand it to the plain kernels
or, for a config with the options of docs/variants.md, to the variant kernels; inter-layer dropout is an
input of every call (``dropout_masks``), so training with it is one native call too. ``VariantStepper``
streams a variant config.

The package imports and works without the compiled extension; ``available()`` says whether it is
there, and the functions below raise RuntimeError when it is not.

Instruction sets: the extension holds the kernels built three times (baseline SSE2 "scalar", "avx2"
with FMA, "avx512") and picks the best the CPU runs when it is imported; "amx" is the avx512 path with the
bfloat16 and int8 products (``lstmkit.quantize``, bf16 training) on Intel's AMX tiles, where the CPU has them
and Linux grants the process their state. The environment variable ``LSTMKIT_ISA=scalar|avx2|avx512|amx``,
read at import, forces a lower path (never a higher one than the CPU has); ``isa()`` reports the path in use
and ``supported_isas()`` what the CPU could run.

Threads: the kernels split large products (and large batches of a step) over their own thread pool;
``set_num_threads(n)`` / ``get_num_threads()`` (default: the CPUs of the process's affinity mask).
Results do not depend on the number of threads (bit for bit without lengths; with lengths a
step's row split can change the summation order of one row, within float rounding). The GIL is released
during every native call, so Python threads can run models at the same time (a call that finds the pool
busy runs on its own thread). Inside a torch program (``import lstmkit.torch``) the pool's work runs on
torch's OpenMP threads instead of its own (``share_openmp_team``): torch's threads spin on the cores for
milliseconds after each torch op, and a second set of threads competing with them for the cores ran
lstmkit's training calls at half speed (docs/benchmarks.md).
"""
from __future__ import annotations

import functools
import re
import threading
from collections.abc import Mapping
import dataclasses
from dataclasses import dataclass

import numpy as np

from . import checks, workspaces
from .params import DTYPES, GATES, RNNConfig, _param_shapes, param_shapes, to_numpy

import os
import warnings

ISAS = ("scalar", "avx2", "avx512", "amx")

INT8_KERNELS = ("madd", "pairs")  # the AVX2 int8 inner loops (lstmkit.quantize); LSTMKIT_INT8_KERNEL picks one


def _check_env(name: str, allowed: tuple, instead: str) -> None:
    """Warn (the native side reads it at import and ignores an unknown value) when env var `name` is set to
    something not in `allowed`."""
    value = os.environ.get(name)
    if value is not None and value not in allowed:
        warnings.warn(f"{name}={value!r} is not one of {allowed}; ignored ({instead})", RuntimeWarning, stacklevel=3)


_check_env("LSTMKIT_ISA", ISAS, "the best path this CPU runs is used")
_check_env("LSTMKIT_INT8_KERNEL", INT8_KERNELS, "the kernel for this CPU is used")

try:  # the extension is optional: a source checkout without a build still imports lstmkit
    from . import _engine
except ImportError:  # pragma: no cover - depends on the build
    _engine = None


if _engine is not None:
    import atexit

    # before the interpreter finalizes: a daemon thread inside an engine call then waits for the exit instead of
    # taking the GIL back, which would end it by pthread_exit through native frames and abort the process
    atexit.register(_engine.prepare_exit)


def _check_isa_runs() -> None:
    """Warn when LSTMKIT_ISA names a path this CPU cannot run (avx512 on an AVX2 machine): the engine then uses
    the best it runs, which a benchmark or test meaning to measure the named path should be told."""
    value = os.environ.get("LSTMKIT_ISA")
    if _engine is not None and value in ISAS and value not in _engine.supported_isas():
        warnings.warn(f"LSTMKIT_ISA={value!r}: this CPU does not run that path (it runs "
                      f"{tuple(_engine.supported_isas())}); {_engine.isa()!r} is used", RuntimeWarning, stacklevel=3)


_check_isa_runs()

__all__ = [
    "available", "supports", "isa", "supported_isas", "set_num_threads", "get_num_threads", "share_openmp_team",
    "openmp_team",
    "cell_forward", "forward", "train_forward", "backward", "workspace_size", "SequenceCall", "VariantStepper",
    "variant_options",
]

CELL_WEIGHTS = ("weight_ih", "weight_hh", "bias_ih", "bias_hh", "weight_hr")


def available() -> bool:
    """True when the compiled extension ``lstmkit._engine`` can be imported."""
    return _engine is not None


def supports(config: RNNConfig) -> bool:
    """True when the native engine computes ``config``'s forward and backward: every plain config and
    every variant (docs/variants.md), inter-layer dropout included, once the extension is built."""
    if not available():
        return False
    return config.is_plain or hasattr(_engine, "variant_forward")


def isa() -> str:
    """The instruction-set path the kernels use: "scalar" (SSE2 baseline), "avx2", "avx512" or "amx" (avx512
    with the bfloat16 and int8 products on AMX tiles)."""
    return _require_engine().isa()


def supported_isas() -> tuple[str, ...]:
    """The paths this CPU can run, lowest first (LSTMKIT_ISA picks among them)."""
    return tuple(_require_engine().supported_isas())


def max_threads() -> int:
    """The most threads ``set_num_threads`` accepts: 4 x the CPUs (at least 16). More only wait on each
    other, and each costs a stack; 10**6 of them exhaust the process's thread limit."""
    return max(16, 4 * (os.cpu_count() or 1))


def set_num_threads(n: int) -> None:
    """Use ``n`` threads (1 to ``max_threads()``, the calling thread included) in the native kernels, for all
    models."""
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)):
        raise TypeError(f"n: expected an int, got {type(n).__name__}")
    if not 1 <= n <= max_threads():
        raise ValueError(f"n: expected 1 to {max_threads()} threads (4 x the {os.cpu_count()} CPUs, at least 16), "
                         f"got {n}")
    _require_engine().set_num_threads(int(n))


def share_openmp_team(enable: bool = True) -> str:
    """Run the native kernels' parallel work on the threads of the OpenMP runtime already loaded in this
    process (torch's libgomp; ``import lstmkit.torch`` turns this on), or on lstmkit's own thread pool
    (``enable=False``, the default without torch). The thread count stays ``get_num_threads()``, and results
    are the same bits either way. Returns the runtime's file path, or '' when none is loaded (or
    ``enable`` is False), in which case lstmkit's own threads run the work."""
    if not isinstance(enable, (bool, np.bool_)):
        raise TypeError(f"enable: expected a bool, got {type(enable).__name__}")
    return str(_require_engine().share_openmp_team(bool(enable)))


def openmp_team() -> str:
    """The file path of the OpenMP runtime whose threads run the native kernels' parallel work
    (``share_openmp_team``), or '' while lstmkit's own thread pool runs it."""
    return str(_require_engine().openmp_team())


def get_num_threads() -> int:
    """Threads the native kernels use (default: the CPUs in the process's affinity mask)."""
    return int(_require_engine().get_num_threads())


def _require_engine():
    if _engine is None:
        raise RuntimeError(
            "lstmkit._engine: the native engine is not built; install lstmkit with pip (which compiles it) "
            "or build it with CMake and copy _engine*.so into src/lstmkit/"
        )
    return _engine


_NATIVE_FLOATS = (np.dtype(np.float32), np.dtype(np.float64))  # native byte order


def _array(name: str, value, dtype=None, whose: str = "the dtype of x") -> np.ndarray:
    """``value`` as an ndarray (no copy yet); TypeError if it cannot be one or has the wrong dtype.

    With ``dtype`` None, the dtype must be float32 or float64; otherwise it must equal ``dtype`` (``whose``:
    where that dtype comes from, for the message).
    """
    if type(value) is np.ndarray and value.dtype in _NATIVE_FLOATS and (dtype is None or value.dtype == dtype):
        return value  # the common case, without the string compares below (dtype.name is slow)
    try:
        arr = np.asarray(to_numpy(value))
    except Exception as e:  # noqa: BLE001 - anything numpy refuses is a type error for the caller
        of = f" of dtype {value.dtype}" if hasattr(value, "dtype") else ""  # e.g. torch.bfloat16, which NumPy lacks
        wanted = f"dtype {np.dtype(dtype).name}" if dtype is not None else "float32 or float64"
        raise TypeError(f"{name}: expected an array of {wanted}, got {type(value).__name__}{of}") from e
    if arr.dtype == object:
        raise TypeError(f"{name}: expected an array of numbers, got {type(value).__name__} of objects")
    if dtype is None:
        if arr.dtype.name not in DTYPES:
            raise TypeError(f"{name}: expected dtype float32 or float64, got {arr.dtype.name}")
    elif arr.dtype.name != np.dtype(dtype).name:
        raise TypeError(
            f"{name}: expected dtype {np.dtype(dtype).name} ({whose}), got {arr.dtype.name}; cast it first"
        )
    return arr


def _shape(name: str, arr: np.ndarray, shape: tuple, what: str = "") -> None:
    if arr.shape != tuple(shape):
        raise ValueError(f"{name}: expected shape {tuple(shape)}{what}, got {arr.shape}")


def _native(arr: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """A C-contiguous, native-byte-order, writeable-or-not array the kernels can read.

    Returns ``arr`` itself when it already is one (the kernels only read it), else a copy.
    """
    if arr.dtype == dtype and arr.flags.c_contiguous:
        return arr
    return np.ascontiguousarray(arr, dtype=dtype)


def _check_state(name, state, shapes, dtype, whose: str = "the dtype of x") -> list[np.ndarray]:
    """state: a tuple/list of arrays with the given shapes; returns them ready for the kernels. ``whose``: where
    ``dtype`` comes from, for the message."""
    parts = ("h", "c")[: len(shapes)]
    expect = "(h, c)" if len(shapes) == 2 else "(h,)"
    if not isinstance(state, (tuple, list)) or len(state) != len(shapes):
        got = f"a {type(state).__name__} of {len(state)}" if isinstance(state, (tuple, list)) else type(state).__name__
        raise TypeError(f"{name}: expected a tuple {expect}, got {got}")
    out = []
    for part, value, shape in zip(parts, state, shapes):
        arr = _array(f"{name} ({part})", value, dtype, whose)
        _shape(f"{name} ({part})", arr, shape)
        out.append(_native(arr, dtype))
    return out


@dataclass(frozen=True)
class CellCache:
    """What ``cell_backward`` reads of a ``cell_forward(..., train=True)`` step: its inputs x (B, I) and state,
    the gates after σ / tanh act (B, G·H) and aux (B, H) (LSTM tanh(c'), GRU W_hn·h + b_hn)."""

    x: np.ndarray
    state: tuple
    act: np.ndarray
    aux: np.ndarray


def _check_cell(mode: str, x, state, w: Mapping):
    """A cell step's arguments checked (errors name the argument) and made C-contiguous:
    (x, state list, weights by name, dtype, P)."""
    if mode not in GATES:
        raise ValueError(f"mode: expected one of {tuple(GATES)}, got {mode!r}")
    lstm = mode == "LSTM"
    G = len(GATES[mode])
    if not isinstance(w, Mapping):
        raise TypeError(f"w: expected a dict of weights {CELL_WEIGHTS}, got {type(w).__name__}")
    unexpected = [k for k in w if k not in CELL_WEIGHTS or (k == "weight_hr" and not lstm)]
    missing = [k for k in ("weight_ih", "weight_hh") if k not in w]
    if ("bias_ih" in w) != ("bias_hh" in w):
        missing.append("bias_hh" if "bias_ih" in w else "bias_ih")
    if missing or unexpected:
        raise ValueError(f"w: keys do not match a {mode} cell: missing {missing}, unexpected {unexpected}")

    x = _array("x", x)
    dtype = x.dtype.newbyteorder("=")
    if x.ndim != 2:
        raise ValueError(f"x: expected 2 dimensions (B, I), got shape {x.shape}")
    B, I = x.shape
    arrays = {name: _array(f"w[{name!r}]", w[name], dtype) for name in CELL_WEIGHTS if name in w}
    w_ih = arrays["weight_ih"]
    if w_ih.ndim != 2 or w_ih.shape[0] == 0 or w_ih.shape[0] % G:
        raise ValueError(f"w['weight_ih']: expected shape ({G}·H, {I}) with H >= 1, got {w_ih.shape}")
    H = w_ih.shape[0] // G
    _shape("w['weight_ih']", w_ih, (G * H, I), f" (I = {I} from x)")
    P = H
    if "weight_hr" in arrays:
        w_hr = arrays["weight_hr"]
        if w_hr.ndim != 2 or w_hr.shape[0] == 0:
            raise ValueError(f"w['weight_hr']: expected shape (P, {H}) with P >= 1, got {w_hr.shape}")
        P = w_hr.shape[0]
        _shape("w['weight_hr']", w_hr, (P, H))
    _shape("w['weight_hh']", arrays["weight_hh"], (G * H, P))
    for name in ("bias_ih", "bias_hh"):
        if name in arrays:
            _shape(f"w[{name!r}]", arrays[name], (G * H,))
    shapes = ((B, P), (B, H)) if lstm else ((B, H),)
    state = _check_state("state", state, shapes, dtype)
    return _native(x, dtype), state, {name: _native(a, dtype) for name, a in arrays.items()}, dtype, P


def cell_forward(mode: str, x, state, w: Mapping, *, train: bool = False):
    """One cell step, as ``lstmkit.ref.lstm.cell_forward`` / ``ref.gru.cell_forward``.

    mode: "LSTM" or "GRU".
    x (B, I); state: LSTM (h (B, P), c (B, H)), GRU (h (B, H),);
    w: weights without the layer suffix, torch layout: weight_ih (G·H, I), weight_hh (G·H, P),
    optionally bias_ih and bias_hh (G·H,) (both or neither), weight_hr (P, H) (LSTM projection only);
    G = 4 (LSTM) or 3 (GRU), P = weight_hr's rows or H.
    Returns the new state: LSTM (h' (B, P), c' (B, H)), GRU (h' (B, H),), fresh arrays of x's dtype; with
    ``train`` (no projection), (new state, CellCache) for ``cell_backward``.
    """
    if not isinstance(train, (bool, np.bool_)):  # a string such as "no" would be truthy
        raise TypeError(f"train: expected a bool, got {type(train).__name__} {train!r}")
    x, st, nat, dtype, P = _check_cell(mode, x, state, w)
    lstm = mode == "LSTM"
    B, H = x.shape[0], st[-1].shape[1]
    if train and "weight_hr" in nat:
        raise ValueError("w['weight_hr']: cell_forward(train=True) computes cells without projection")
    h_out = np.empty((B, P), dtype)
    c_out = np.empty((B, H), dtype) if lstm else None
    new = (h_out, c_out) if lstm else (h_out,)
    caches = (np.empty((B, len(GATES[mode]) * H), dtype), np.empty((B, H), dtype)) if train else (None, None)
    if B:
        _require_engine().cell_forward(
            mode, x, st[0], st[1] if lstm else None, nat["weight_ih"], nat["weight_hh"], nat.get("bias_ih"),
            nat.get("bias_hh"), nat.get("weight_hr"), h_out, c_out, *caches)
    if not train:
        return new
    # the cache's own x and state: _check_cell passes the caller's arrays through when they fit, and a decoder
    # that refills its buffers (x[:] = ..., h[:] = h') before the backward would change the gradients
    return new, CellCache(x.copy(), tuple(s.copy() for s in st), *caches)


def cell_backward(mode: str, d_state, cache: CellCache, w: Mapping):
    """The gradients of one ``cell_forward(..., train=True)`` step, as ``ref.lstm.cell_backward`` /
    ``ref.gru.cell_backward``: d_state LSTM (dh' (B, H), dc' (B, H)), GRU (dh' (B, H),), None for zeros;
    cache the step's CellCache; w its weights. Returns (dx (B, I), d_prev (the state's gradient, a tuple like
    the state), grads by weight name), fresh arrays."""
    if not isinstance(cache, CellCache):
        raise TypeError(f"cache: expected the CellCache of cell_forward(..., train=True), got {type(cache).__name__}")
    x, st, nat, dtype, _ = _check_cell(mode, cache.x, cache.state, w)
    if "weight_hr" in nat:
        raise ValueError("w['weight_hr']: cell_backward computes cells without projection")
    lstm = mode == "LSTM"
    B, H = st[0].shape
    if isinstance(d_state, (tuple, list)):  # None for a state whose gradient is zero
        d_state = tuple(np.zeros((B, H), dtype) if g is None else g for g in d_state)
    d = _check_state("d_state", d_state, tuple(s.shape for s in st), dtype)
    dx, d_prev = np.empty_like(x), [np.empty((B, H), dtype) for _ in st]
    names = [k for k in CELL_WEIGHTS if k in nat]
    grads = {k: np.empty_like(nat[k]) for k in names}
    if B:
        cell_backward_into(mode, x, st[0], st[1] if lstm else None, [nat[k] for k in names], cache.act, cache.aux,
                           d[0], d[1] if lstm else None, dx, d_prev[0], d_prev[1] if lstm else None,
                           [grads[k] for k in names])
    else:
        for g in grads.values():
            g.fill(0)
    return dx, tuple(d_prev), grads


def cell_forward_into(mode: str, x, h, c, weights, h_out, c_out=None, act=None, aux=None) -> None:
    """``cell_forward`` into given arrays, for a caller that has checked its arguments (the torch cells,
    where this module's checks would cost more than the step at B = 1).

    x (B, I), h (B, H), c (B, H) (LSTM; None for a GRU), h_out and c_out (B, H) like them; weights
    [weight_ih, weight_hh] or [weight_ih, weight_hh, bias_ih, bias_hh] in torch's layout; B ≥ 1; all
    C-contiguous NumPy arrays of one dtype. act (B, G·H) and aux (B, H): None, or for training what
    ``cell_backward_into`` reads (the gates after σ / tanh; LSTM tanh(c'), GRU W_hn·h + b_hn). The native call
    checks every shape again (ValueError) and refuses another dtype or layout (TypeError), so a wrong
    argument fails rather than being misread.
    """
    w_ih, w_hh, b_ih, b_hh = weights if len(weights) == 4 else (*weights, None, None)
    _require_engine().cell_forward(mode, x, h, c, w_ih, w_hh, b_ih, b_hh, None, h_out, c_out, act, aux)


def cell_backward_into(mode: str, x, h, c, weights, act, aux, dh, dc, dx, dh_prev, dc_prev, grads) -> None:
    """The gradients of one ``cell_forward_into`` step with its caches act and aux, into given arrays
    (overwritten), for a caller that has checked its arguments: dh, dc (B, H) the gradients of h', c' (dc
    None for a GRU) -> dx (B, I), dh_prev, dc_prev (B, H) and grads [d_weight_ih, d_weight_hh(, d_bias_ih,
    d_bias_hh)] shaped like ``weights`` (ref/lstm.py's and ref/gru.py's cell_backward). Arrays as
    ``cell_forward_into``'s, checked again natively.
    """
    d_b_ih, d_b_hh = grads[2:] if len(grads) == 4 else (None, None)
    _require_engine().cell_backward(mode, x, h, c, weights[0], weights[1], act, aux, dh, dc, dx, dh_prev, dc_prev,
                                    grads[0], grads[1], d_b_ih, d_b_hh)


def native_weights(config: RNNConfig, params: Mapping, dtype=None) -> tuple[list[np.ndarray], np.dtype]:
    """``params`` checked against ``config`` and made ready for the kernels: (weights, dtype).

    Keys must be exactly ``param_shapes(config)``; every tensor has its shape and ``dtype`` (None: the
    first parameter's, which must be float32 or float64). weights come in torch's order (per layer, per
    direction: ih, hh, [bias_ih, bias_hh], [hr]) as C-contiguous arrays; the caller's are never modified.
    """
    if not isinstance(params, Mapping):
        raise TypeError(f"params: expected a dict of parameters under torch's names, got {type(params).__name__}")
    expected = _param_shapes(config)
    if len(params) != len(expected) or any(k not in params for k, _ in expected):
        expected = dict(expected)
        missing = [k for k in expected if k not in params]
        unexpected = [k for k in params if k not in expected]
        raise ValueError(f"params: keys do not match the config: missing {missing}, unexpected {unexpected}")
    if dtype is None:
        first = expected[0][0]
        dtype = _array(f"params[{first!r}]", params[first]).dtype.newbyteorder("=")
    weights = []
    for name, shape in expected:
        value = params[name]
        if type(value) is np.ndarray and value.dtype == dtype and value.shape == shape and value.flags.c_contiguous:
            weights.append(value)  # ready as it is (the common case: no error messages to format)
            continue
        arr = _array(f"params[{name!r}]", value, dtype)
        _shape(f"params[{name!r}]", arr, shape)
        weights.append(_native(arr, dtype))
    return weights, dtype


# ----------------------------------------------------------------------------------------------------------
# Sequence calls: one checked description (SequenceCall) serves the plain and the variant kernels.
# ----------------------------------------------------------------------------------------------------------

_SUFFIX = re.compile(r"_l\d+(_reverse)?$")


def variant_options(config: RNNConfig) -> dict:
    """The options the native variant kernels take, from the config (docs/variants.md)."""
    return {
        "peephole": config.peephole, "input_forget": config.input_forget, "clip": config.clip,
        "layer_norm": config.layer_norm, "linear_before_reset": config.linear_before_reset,
        "activations": config.activations, "zoneout": tuple(config.zoneout),
    }


@functools.lru_cache(maxsize=256)
def _weight_layout(config: RNNConfig) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """Positions in param_shapes(config) order of the plain weights (ih, hh, biases, hr) and of the variant
    parameters (peephole, ln_*): the native kernels take them as two lists."""
    plain, extra = [], []
    for i, name in enumerate(param_shapes(config)):
        (plain if _SUFFIX.sub("", name) in CELL_WEIGHTS else extra).append(i)
    return tuple(plain), tuple(extra)


@dataclass(frozen=True)
class SequenceCall:
    """One checked call of the native sequence kernels (forward, train_forward, backward), plain or variant.

    Every array is C-contiguous, native byte order, of ``dtype`` (the caller's arrays are never modified).
    x (T, B, I); weights: the plain weights in param_shapes order (per layer·direction: ih, hh, [bias_ih,
    bias_hh], [hr]); extra: the variant parameters (peephole, ln_*) in that order; h0 (L·D, B, P), c0
    (L·D, B, H) or None (GRU); lengths (B,) int64 or None; options: the variant kernels' options, None for
    the plain kernels; masks: (recurrent, zoneout_c, zoneout_h), each a list of one mask per layer·direction
    or empty (``lstmkit.ref.variants.VariantMasks``' fields); dropout: the L − 1 inter-layer dropout masks
    (T, B, D·P), or empty; precision: a training call's products, "float32" or "bfloat16" (``check_precision``).
    """

    config: RNNConfig
    dtype: np.dtype
    x: np.ndarray
    weights: list
    extra: list
    h0: np.ndarray
    c0: np.ndarray | None
    lengths: np.ndarray | None
    options: dict | None
    masks: tuple = ([], [], [])
    dropout: list = dataclasses.field(default_factory=list)
    precision: str = "float32"

    @property
    def variant(self) -> bool:
        return self.options is not None

    @property
    def state_shapes(self) -> tuple:
        return checks.state_shapes(self.config, self.x.shape[1])

    @property
    def output_shape(self) -> tuple:
        return (*self.x.shape[:2], self.config.num_directions * self.config.output_size)

    @property
    def recurrent_masks(self) -> bool:
        return len(self.masks[0]) > 0

    def kernel_args(self, x=None, h0=None, c0=None) -> tuple:
        """The arguments every native sequence function starts with (the kernels' own order); x, h0, c0
        given replace this call's (a stream steps one call description over new inputs and states)."""
        c = self.config
        head = (c.mode, c.num_layers, c.bidirectional, c.hidden_size, c.proj_size, c.bias,
                self.x if x is None else x, self.weights, self.h0 if h0 is None else h0,
                self.c0 if c0 is None else c0, self.lengths, self.dropout)
        return (*head, self.options, self.extra, *self.masks) if self.variant else head

    def kernel(self, name: str):
        """The native function ``name`` ("forward", "train_forward", "backward") for this call's cells (a
        training call in bfloat16 with the precision given)."""
        if self.precision != "float32":
            return functools.partial(getattr(_require_engine(), name), precision=self.precision)
        return getattr(_require_engine(), "variant_" + name if self.variant else name)

    def new_outputs(self) -> tuple[np.ndarray, list]:
        """Fresh (output (T, B, D·P), final state arrays) for the kernels to fill."""
        return np.empty(self.output_shape, self.dtype), [np.empty(s, self.dtype) for s in self.state_shapes]

    def workspace_size(self) -> int:
        return workspace_size(self.config, self.x.shape[0], self.x.shape[1], self.recurrent_masks)


def _check_dropout_masks(config: RNNConfig, dropout_masks, steps: int, batch: int, dtype) -> list:
    """The inter-layer dropout masks as C-contiguous arrays: [] for None, else checked.check_dropout_masks'
    form (none, or L − 1 of shape (T, B, D·P))."""
    if dropout_masks is None:
        return []
    if isinstance(dropout_masks, (list, tuple)):  # arrays first (lists of numbers, tensors), then one check
        dropout_masks = [_array(f"dropout_masks[{k}]", m, dtype) for k, m in enumerate(dropout_masks)]
    checks.check_dropout_masks(config, steps, batch, dtype, dropout_masks)
    return [_native(m, dtype) for m in dropout_masks]


def _check_masks(config: RNNConfig, variant_masks, steps: int, batch: int, dtype) -> tuple:
    """A variant call's masks as three lists of C-contiguous arrays (each empty, or one per layer·direction)."""
    if variant_masks is None:
        return [], [], []
    lists = {}
    for field in checks.VARIANT_MASKS:
        if not hasattr(variant_masks, field):
            raise TypeError(f"variant_masks: expected lstmkit.ref.variants.VariantMasks or None, "
                            f"got {type(variant_masks).__name__}")
        value = getattr(variant_masks, field)
        if value is not None and not isinstance(value, (list, tuple)):
            raise ValueError(f"variant_masks.{field}: expected None or a list of masks (one per layer·direction), "
                             f"got {type(value).__name__}")
        lists[field] = [_array(f"variant_masks.{field}[{k}]", m) for k, m in enumerate(value or ())]
    checks.check_variant_masks(config, steps, batch, dtype, lists, "variant_masks.")
    return tuple([_native(m, dtype) for m in lists[field]] for field in checks.VARIANT_MASKS)


PRECISIONS = ("float32", "bfloat16")


def check_precision(config: RNNConfig, precision, dtype) -> str:
    """A training call's ``precision`` checked against the config and the dtype: "float32" (every product in
    the model's dtype) or "bfloat16" (the products' operands rounded to bfloat16, float32 accumulation, state,
    gradients and weights: ``csrc/quant/quant_train.h``), which the plain LSTM/GRU cells without projection
    have, in float32. Anything else is refused, naming what is in the way (``bf16_refusal``)."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision: expected one of {PRECISIONS}, got {precision!r}")
    refusal = bf16_refusal(config, np.dtype(dtype).name) if precision == "bfloat16" else None
    if refusal:
        raise ValueError(refusal)
    return precision


def bf16_refusal(config: RNNConfig, dtype_name: str) -> str | None:
    """Why a training call of ``config`` on ``dtype_name`` ("float32", ...) cannot take bfloat16 products, or
    None when it can: the one condition behind ``check_precision``'s refusals and the torch frontend's choice
    under autocast (``torch.ops.training_precision``), which falls back to float32 where this names a reason.
    A dtype name rather than a dtype, so that torch.compile traces the torch frontend's call as plain Python."""
    where = "precision='bfloat16'"
    if dtype_name != "float32":
        return f"{where}: trains float32 models (master weights), got {dtype_name}"
    if config.proj_size:
        return f"{where}: has no projection (proj_size={config.proj_size}); train it with precision='float32'"
    return config.plain_refusal(where, hint="train them with precision='float32'")


def _check_call(config, params, x, state0, lengths, variant_masks=None, dropout_masks=None,
                precision="float32") -> SequenceCall:
    """Check a sequence call's arguments (errors name the argument) and describe it for the kernels."""
    if not isinstance(config, RNNConfig):
        raise TypeError(f"config: expected an lstmkit RNNConfig, got {type(config).__name__}")
    if not isinstance(params, Mapping):
        raise TypeError(f"params: expected a dict of parameters under torch's names, got {type(params).__name__}")
    x = _array("x", x)
    dtype = x.dtype.newbyteorder("=")
    if x.ndim != 3:
        raise ValueError(f"x: expected 3 dimensions (T, B, {config.input_size}), got shape {x.shape}")
    T, B, I = x.shape
    if I != config.input_size:
        raise ValueError(f"x: expected {config.input_size} features (input_size) in the last dimension, "
                         f"got shape {x.shape}")
    weights, _ = native_weights(config, params, dtype)
    shapes = checks.state_shapes(config, B)
    if state0 is None:
        state = [np.zeros(s, dtype) for s in shapes]
    else:
        state = _check_state("state0", state0, shapes, dtype)
    lens = checks.check_lengths(lengths, T, B)
    c0 = state[1] if len(state) == 2 else None
    drop = _check_dropout_masks(config, dropout_masks, T, B, dtype)
    precision = check_precision(config, precision, dtype)
    if config.is_plain:
        return SequenceCall(config, dtype, _native(x, dtype), weights, [], state[0], c0, lens, None, dropout=drop,
                            precision=precision)
    plain, extra = _weight_layout(config)
    options = variant_options(config)
    if variant_masks is not None:  # given masks replace the expectation; a field left None is no zoneout (as ref)
        options["zoneout"] = (0.0, 0.0)
    return SequenceCall(config, dtype, _native(x, dtype), [weights[i] for i in plain], [weights[i] for i in extra],
                        state[0], c0, lens, options, _check_masks(config, variant_masks, T, B, dtype), drop)


def forward(config: RNNConfig, params: Mapping, x, state0=None, lengths=None, variant_masks=None, dropout_masks=None):
    """Inference forward of the whole stacked (bi)directional RNN, as ``lstmkit.ref.rnn.forward``.

    config: the RNNConfig. Inter-layer dropout only where dropout_masks are given (as the reference).
    params: every parameter of ``param_shapes(config)`` under torch's names, all of x's dtype.
    x (T, B, I): always sequence-first, like the reference (batch_first is the frontends' business).
    state0: None for zeros, or LSTM (h0 (L·D, B, P), c0 (L·D, B, H)), GRU (h0 (L·D, B, H),).
    lengths: None (every sequence runs T steps) or B integers in [0, T], any order, with torch's
    packed-sequence semantics (state frozen after a sequence's end, the reverse direction starts at
    step lengths[b] − 1, outputs past the end are zero).
    variant_masks: for a variant config (``not config.is_plain``), the training masks
    (``lstmkit.ref.variants.VariantMasks``, each field None or one array per layer·direction k = layer·D +
    direction, of x's dtype: recurrent (B, P) scaled by 1/(1 − p), zoneout_c (T, B, H) (LSTM), zoneout_h
    (T, B, P), 1 keeping the old value); None for evaluation (no recurrent dropout, zoneout by its
    expectation), as in the reference.
    dropout_masks: None, or the L − 1 inter-layer dropout masks (T, B, D·P) of x's dtype, already scaled by
    1/(1 − p): layer l's output times mask l is what layer l + 1 reads (the reference's ``dropout_masks``).
    Returns (output (T, B, D·P), final state tuple shaped like state0), fresh arrays of x's dtype.
    P = proj_size or hidden_size, D = 2 if bidirectional else 1, L = num_layers.
    """
    call = _check_call(config, params, x, state0, lengths, variant_masks, dropout_masks)
    out, final = call.new_outputs()
    call.kernel("forward")(*call.kernel_args(), out, final[0], final[1] if len(final) == 2 else None)
    return out, tuple(final)


def workspace_size(config: RNNConfig, steps, batch, recurrent_masks: bool = False):
    """Values in the training workspace of ``train_forward`` for ``steps`` (T) by ``batch`` (B).

    Linear in T·B, so ``steps`` and ``batch`` may be symbolic sizes (torch's fake kernels pass them).
    recurrent_masks: for a variant config, whether the call has recurrent-dropout masks (a GRU then
    keeps h as well).
    """
    head = (config.mode, config.num_layers, config.bidirectional, config.hidden_size, config.proj_size)
    if config.is_plain:
        return steps * batch * _require_engine().train_workspace_row(*head)
    return steps * batch * _require_engine().variant_workspace_row(*head, variant_options(config),
                                                                    bool(recurrent_masks))


def train_forward(config: RNNConfig, params: Mapping, x, state0=None, lengths=None, variant_masks=None,
                  dropout_masks=None, precision: str = "float32"):
    """``forward`` for training: the same results plus the workspace ``backward`` reads.

    Arguments as ``forward`` (variant_masks: the training masks of a variant config; dropout_masks the
    inter-layer dropout masks). precision: "float32", or "bfloat16" for mixed precision (every product's
    operands rounded to bfloat16, accumulated in float32; state and outputs float32: ``check_precision``
    says which configs have it); pass the same to ``backward``. Returns (output
    (T, B, D·P), final state tuple, workspace), fresh arrays; workspace is 1-D of
    ``workspace_size(config, T, B, recurrent masks given)`` values of x's dtype (gate activations, states
    and layer inputs of every step, in the engine's own layout): keep it unchanged and pass it to
    ``backward`` with the same params, x, state0, lengths, variant_masks and dropout_masks.
    """
    return _train_forward(_check_call(config, params, x, state0, lengths, variant_masks, dropout_masks, precision))


def _train_forward(call: SequenceCall):
    """``train_forward`` of a checked call -> (output, final state tuple, workspace)."""
    out, final = call.new_outputs()
    workspace = workspaces.empty(call.workspace_size(), call.dtype)
    call.kernel("train_forward")(*call.kernel_args(), out, final[0], final[1] if len(final) == 2 else None,
                                 workspace)
    return out, tuple(final), workspace


def _check_gradients(call: SequenceCall, d_output, d_final_state):
    """The incoming gradients of a backward call, ready for the kernels: d_output (T, B, D·P) and
    d_final_state (zeros when None, else a tuple shaped like the final state)."""
    d_out = _array("d_output", d_output, call.dtype)
    _shape("d_output", d_out, call.output_shape)
    if d_final_state is None:
        d_final = [np.zeros(s, call.dtype) for s in call.state_shapes]
    else:
        d_final = _check_state("d_final_state", d_final_state, call.state_shapes, call.dtype)
    return _native(d_out, call.dtype), d_final


def _check_workspace(workspace, size: int, dtype):
    """A backward's workspace, checked to be what ``train_forward`` returned for this call (1-D, its size)."""
    workspace = _array("workspace", workspace, dtype)
    _shape("workspace", workspace, (size,), " (from train_forward with this config, T and B)")
    return _native(workspace, dtype)


def backward(config: RNNConfig, params: Mapping, x, d_output, d_final_state=None, state0=None, lengths=None,
             variant_masks=None, workspace=None, dropout_masks=None, precision: str = "float32"):
    """Gradients of ``forward`` by backpropagation through time, as ``lstmkit.ref.rnn.backward``.

    Arguments config, params, x, state0, lengths, variant_masks, dropout_masks as in ``forward``; precision
    as in ``train_forward`` (the same as the call that made the workspace: "bfloat16" rounds the products'
    operands, the gradients are float32).
    workspace: what ``train_forward`` returned for these same arguments (then the backward costs no
    forward), or None to run ``train_forward`` here first.
    d_output (T, B, D·P): gradient of the output (entries past a sequence's end are ignored).
    d_final_state: None for zeros, or a tuple shaped like the final state (LSTM (dh_n, dc_n), GRU (dh_n,)).
    Returns (dx (T, B, I), d_state0 tuple shaped like state0, grads: dict by torch parameter name, the
    variant parameters (peephole, ln_*) included), fresh arrays of x's dtype; dx is zero past each
    sequence's end.
    """
    call = _check_call(config, params, x, state0, lengths, variant_masks, dropout_masks, precision)
    d_out, d_final = _check_gradients(call, d_output, d_final_state)
    if workspace is None:  # the call is checked already: its forward runs without a second round of checks
        _, _, workspace = _train_forward(call)
    else:
        workspace = _check_workspace(workspace, call.workspace_size(), call.dtype)
    dx = np.empty(call.x.shape, call.dtype)
    d_state0 = [np.empty(s, call.dtype) for s in call.state_shapes]
    grads = [np.empty(w.shape, call.dtype) for w in call.weights]
    extra_grads = [np.empty(w.shape, call.dtype) for w in call.extra]
    lstm = len(d_state0) == 2
    call.kernel("backward")(*call.kernel_args(), workspace, d_out, d_final[0], d_final[1] if lstm else None,
                            dx, d_state0[0], d_state0[1] if lstm else None, grads,
                            *((extra_grads,) if call.variant else ()))
    names = list(param_shapes(config))
    if call.variant:  # back into param_shapes order
        plain, extra = _weight_layout(config)
        by_position = dict(zip(plain + extra, grads + extra_grads))
        grads = [by_position[i] for i in range(len(names))]
    return dx, tuple(d_state0), dict(zip(names, grads))


class VariantStepper:
    """Streaming of a variant config on the native variant kernels: one T = 1 forward per step, the state
    kept here between calls. The interface of the engine's native streams (``lstmkit.stream.Stream`` drives
    it): ``step(x (B, I), out (B, P))``, ``reset()``, ``get_state(h, c)``, ``set_state(h, c)`` with h (L, B, P),
    c (L, B, H) or None. Evaluation semantics, as the layer in eval mode: no recurrent dropout, zoneout by
    its expectation. The weights are copied now; one call at a time (another thread gets RuntimeError)."""

    def __init__(self, config: RNNConfig, params: Mapping, batch: int):
        if config.bidirectional:
            raise ValueError("stream: a bidirectional model cannot be streamed")
        copies = {name: np.array(to_numpy(value), copy=True) for name, value in params.items()}
        _, dtype = native_weights(config, copies)
        call = _check_call(config, copies, np.zeros((1, batch, config.input_size), dtype), None, None)
        self._call, self._kernel = call, call.kernel("forward")
        self._state = [call.h0, call.c0]
        self._next = [np.empty_like(s) if s is not None else None for s in self._state]
        self._out_shape = (1, batch, config.output_size)
        self._busy = threading.Lock()
        self.dtype = np.dtype(dtype)

    def _acquire(self) -> None:
        if not self._busy.acquire(blocking=False):
            raise RuntimeError("stream: already in use by another thread")

    def step(self, x: np.ndarray, out: np.ndarray) -> None:
        """x (B, I) C-contiguous -> out (B, P), the last layer's new h, both of the stepper's dtype: TypeError for
        another dtype or layout, ValueError for another shape (as the native streams; Stream converts then)."""
        _, B, P = self._out_shape
        for name, a, shape in (("x", x, (B, self._call.config.input_size)), ("out", out, (B, P))):
            if not isinstance(a, np.ndarray) or a.dtype != self.dtype or not a.flags.c_contiguous:
                got = f"{a.dtype}, {'C-contiguous' if a.flags.c_contiguous else 'strided'}" if isinstance(
                    a, np.ndarray) else type(a).__name__
                raise TypeError(f"{name}: expected a C-contiguous {self.dtype.name} array, got {got}")
            if a.shape != shape:
                raise ValueError(f"{name}: expected shape {shape}, got {a.shape}")
        self._acquire()
        try:
            self._kernel(*self._call.kernel_args(x[None], *self._state), out.reshape(self._out_shape), *self._next)
            self._state, self._next = self._next, self._state
        finally:
            self._busy.release()

    def reset(self) -> None:
        self._acquire()
        try:
            for s in self._state:
                if s is not None:
                    s.fill(0)
        finally:
            self._busy.release()

    def get_state(self, h: np.ndarray, c) -> None:
        self._acquire()
        try:
            h[...] = self._state[0]
            if c is not None:
                c[...] = self._state[1]
        finally:
            self._busy.release()

    def set_state(self, h: np.ndarray, c) -> None:
        for name, value, current in (("h", h, self._state[0]), ("c", c, self._state[1])):
            if value is None and current is None:
                continue
            if value is None or current is None or value.shape != current.shape or value.dtype != current.dtype:
                got = None if value is None else f"{value.shape} {value.dtype}"
                want = None if current is None else f"{current.shape} {current.dtype}"
                raise ValueError(f"state ({name}): expected {want}, got {got}")
        self._acquire()
        try:
            self._state[0][...] = h
            if c is not None:
                self._state[1][...] = c
        finally:
            self._busy.release()
