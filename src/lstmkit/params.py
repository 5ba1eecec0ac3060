"""The one shared type: an RNN's configuration and its parameters under torch's names.

Parameters live in a plain ``dict[str, np.ndarray]`` keyed exactly as torch.nn names them
(``weight_ih_l0``, ``weight_hh_l0``, ``bias_ih_l0``, ``bias_hh_l0``, ``weight_hr_l0``, ``_reverse``
suffix), so a state_dict moves between torch and lstmkit with no renaming. Gate order is torch's:
LSTM rows are (i, f, g, o), GRU rows are (r, z, n).
"""
from __future__ import annotations

import functools
import math
from dataclasses import asdict, dataclass, fields, replace

import numpy as np

from .errors import ArgumentTypeError

GATES = {"LSTM": ("i", "f", "g", "o"), "GRU": ("r", "z", "n")}
DTYPES = ("float32", "float64")
# the variant options of docs/variants.md, with their defaults; a plain config leaves them all as here
VARIANT_DEFAULTS = {
    "peephole": False, "input_forget": False, "clip": None, "activations": None, "layer_norm": False,
    "zoneout": (0.0, 0.0), "recurrent_dropout": 0.0, "forget_bias": 0.0, "linear_before_reset": True,
}
LSTM_ONLY = ("peephole", "input_forget", "forget_bias")
GRU_ONLY = ("linear_before_reset",)


@dataclass(frozen=True)
class RNNConfig:
    """Architecture of a stacked (bi)directional LSTM or GRU, with torch.nn's argument names."""

    mode: str  # "LSTM" or "GRU"
    input_size: int
    hidden_size: int
    num_layers: int = 1
    bias: bool = True
    batch_first: bool = False
    dropout: float = 0.0
    bidirectional: bool = False
    proj_size: int = 0
    # variants (docs/variants.md); activations normalised to ((name, α, β), ...) or None, zoneout to (z_c, z_h)
    peephole: bool = False
    input_forget: bool = False
    clip: float | None = None
    activations: tuple | None = None
    layer_norm: bool = False
    zoneout: tuple = (0.0, 0.0)
    recurrent_dropout: float = 0.0
    forget_bias: float = 0.0
    linear_before_reset: bool = True

    def __post_init__(self):
        if self.mode not in GATES:
            raise ValueError(f"mode: expected one of {tuple(GATES)}, got {self.mode!r}")
        for name in ("input_size", "hidden_size", "num_layers"):
            object.__setattr__(self, name, check_size(name, getattr(self, name), minimum=1))
        p = check_size("proj_size", self.proj_size, minimum=0)
        object.__setattr__(self, "proj_size", p)
        # torch.nn.LSTM/GRU refuse a non-bool bias or batch_first (TypeError); so do both frontends, since
        # bias="False" would otherwise build a layer with biases, silently. bidirectional: torch takes any
        # truthy value, lstmkit takes 0 and 1 too and refuses the rest by name.
        object.__setattr__(self, "bias", check_flag("bias", self.bias))
        object.__setattr__(self, "batch_first", check_flag("batch_first", self.batch_first))
        object.__setattr__(self, "bidirectional", check_flag("bidirectional", self.bidirectional, ints=True))
        if p and self.mode != "LSTM":
            raise ValueError(f"proj_size: only LSTM supports a projection, got proj_size={p} for {self.mode}")
        if p >= self.hidden_size and p:
            raise ValueError(f"proj_size: expected less than hidden_size={self.hidden_size}, got {p}")
        d = self.dropout
        if isinstance(d, bool) or not isinstance(d, (int, float)) or not 0.0 <= d <= 1.0:
            raise ValueError(f"dropout: expected a number in [0, 1], got {d!r}")
        self._check_variants()
        # computed once here, not by functools.cached_property: that one takes an RLock on first read, which
        # torch.compile(fullgraph=True) cannot trace, and every forward call reads it
        plain = all(getattr(self, k) == v for k, v in VARIANT_DEFAULTS.items() if k != "forget_bias")
        object.__setattr__(self, "_is_plain", plain)

    def _check_variants(self):
        def number(name, value, ok, expected):
            if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)) or not ok(value):
                raise ValueError(f"{name}: expected {expected}, got {value!r}")
            return float(value)

        for name in ("peephole", "input_forget", "layer_norm", "linear_before_reset"):
            if not isinstance(getattr(self, name), (bool, np.bool_)):
                raise ValueError(f"{name}: expected True or False, got {getattr(self, name)!r}")
            object.__setattr__(self, name, bool(getattr(self, name)))
        if self.clip is not None:
            clip = number("clip", self.clip, lambda v: 0 < v < math.inf, "a number > 0 or None")
            object.__setattr__(self, "clip", clip)
        object.__setattr__(self, "recurrent_dropout", number(
            "recurrent_dropout", self.recurrent_dropout, lambda v: 0 <= v < 1, "a number in [0, 1)"))
        forget_bias = number("forget_bias", self.forget_bias, math.isfinite, "a finite number")
        object.__setattr__(self, "forget_bias", forget_bias)
        z = self.zoneout
        if not isinstance(z, (tuple, list)) or len(z) != 2:
            raise ValueError(f"zoneout: expected a pair (z_c, z_h), got {z!r}")
        zoneout = tuple(number("zoneout", v, lambda v: 0 <= v < 1, "each in [0, 1)") for v in z)
        object.__setattr__(self, "zoneout", zoneout)
        object.__setattr__(self, "activations", _normalise_activations(self.mode, self.activations))
        other = "GRU" if self.mode == "LSTM" else "LSTM"
        for name in GRU_ONLY if self.mode == "LSTM" else LSTM_ONLY:
            if getattr(self, name) != VARIANT_DEFAULTS[name]:
                raise ValueError(f"{name}: only {other} has this option, "
                                 f"got {name}={getattr(self, name)!r} for {self.mode}")
        if self.mode == "GRU" and self.zoneout[0]:
            raise ValueError(f"zoneout: a GRU has no cell state, so z_c must be 0, got zoneout={self.zoneout}")
        if self.layer_norm and not self.linear_before_reset:
            raise ValueError("layer_norm: not defined with linear_before_reset=False (docs/variants.md), got both")

    def __reduce__(self):
        # pickled as a constructor call, so unpickling validates like construction; torch.load(weights_only=True)
        # may call RNNConfig since lstmkit.torch registers it as a safe global (it would otherwise restore the
        # fields unchecked)
        return (type(self), tuple(getattr(self, f.name) for f in fields(self)))

    @property
    def num_gates(self) -> int:
        return len(GATES[self.mode])

    @property
    def num_directions(self) -> int:
        return 2 if self.bidirectional else 1

    @property
    def output_size(self) -> int:
        """Size of h: proj_size when projecting, else hidden_size."""
        return self.proj_size or self.hidden_size

    @property
    def is_plain(self) -> bool:
        """True when no option changes the forward (forget_bias only initialises): the textbook cells."""
        return self._is_plain

    def variant_options(self) -> dict:
        """The variant options that differ from their defaults (forget_bias included), by name."""
        return {k: getattr(self, k) for k, v in VARIANT_DEFAULTS.items() if getattr(self, k) != v}

    def require_plain(self, where: str, *, inference: bool = False, hint: str = "") -> None:
        """The one refusal of the variant options: ValueError naming ``where`` and every option that changes
        the forward, for a path that computes or stores the plain cells only.

        inference: the path only evaluates, so the training-only recurrent_dropout (off in eval) is allowed.
        hint: what to do instead, appended to the message.
        """
        refusal = self.plain_refusal(where, inference=inference, hint=hint)
        if refusal:
            raise ValueError(refusal)

    def plain_refusal(self, where: str, *, inference: bool = False, hint: str = "") -> str | None:
        """``require_plain``'s message, or None where it would pass (for a caller that falls back instead)."""
        ignored = ("forget_bias", "recurrent_dropout") if inference else ("forget_bias",)
        changed = {k: v for k, v in self.variant_options().items() if k not in ignored}
        if not changed:
            return None
        return f"{where}: cannot express the variant options {changed}" + (f"; {hint}" if hint else "")

    def assigned(self, name: str, value, owner: str) -> RNNConfig:
        """The config of a built module (``owner``, its class name) after ``module.<name> = value``: torch.nn reads
        ``batch_first`` and ``dropout`` at every forward, so they change (validated as at construction); the other
        fields fix the parameters' shapes or the cell, so a new value is refused by name (AttributeError)."""
        current = getattr(self, name)
        if name in LIVE_FIELDS:
            return self if value == current else replace(self, **{name: value})
        refuse_reshaping(name, current, value, owner)
        return self

    def refuse_variants(self, where: str) -> None:
        """``require_plain`` for formats that cannot hold a variant (the message says where it can be saved)."""
        self.require_plain(where, hint="save to safetensors instead")

    def to_dict(self) -> dict:
        """JSON-ready fields; variant options only when set, so a plain config serialises as it always did."""
        d = asdict(self)
        return {f.name: d[f.name] for f in fields(self)
                if f.name not in VARIANT_DEFAULTS or d[f.name] != VARIANT_DEFAULTS[f.name]}


# RNNConfig fields a built module may change (torch.nn reads them at every forward): RNNConfig.assigned
LIVE_FIELDS = ("batch_first", "dropout")


def refuse_reshaping(name: str, old, new, owner: str) -> None:
    """AttributeError for ``module.<name> = new`` on a built ``owner`` when the name fixes its parameters' shapes
    or its cell (torch.nn would run with weights of the old shapes); an unchanged value passes."""
    if new != old:
        raise AttributeError(f"{name}: fixed when the {owner} is built (its parameters follow it), so {new!r} cannot "
                             f"replace {old!r}; build a new {owner}")


def check_size(name: str, value, minimum: int, below=ValueError) -> int:
    """A size argument: an int (numpy ints too, not bool) >= minimum. Returns it as an int.

    The wrong type raises ArgumentTypeError (a ValueError, and the TypeError torch.nn raises for
    ``input_size=3.0``); a value below ``minimum`` raises ``below``: ValueError, as torch.nn.LSTM/GRU raise.
    """
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise ArgumentTypeError(f"{name}: expected an integer >= {minimum}, got {value!r} ({type(value).__name__})")
    if value < minimum:
        expected = "a positive integer" if minimum == 1 else f"an integer >= {minimum}"
        raise below(f"{name}: expected {expected}, got {value!r}")
    return int(value)


def check_flag(name: str, value, ints: bool = False) -> bool:
    """A flag argument: True or False (numpy bools too; with ``ints``, also 0 and 1). Returns a bool.

    Anything else raises ArgumentTypeError (a ValueError, and the TypeError torch.nn raises for
    ``bias="True"``), since its truthiness is a guess: "False" is truthy.
    """
    if isinstance(value, (bool, np.bool_)) or (ints and isinstance(value, (int, np.integer)) and value in (0, 1)):
        return bool(value)
    expected = "True or False (or 0 or 1)" if ints else "True or False"
    raise ArgumentTypeError(f"{name}: expected {expected}, got {value!r} ({type(value).__name__})")


def _normalise_activations(mode: str, value):
    """((name, α, β), ...) of the right count, or None for none or exactly the default functions."""
    from .ref.activations import DEFAULTS, normalise  # lazy: lstmkit.ref imports this module

    if value is None:
        return None
    expected = len(DEFAULTS[mode])
    if isinstance(value, str) or not isinstance(value, (tuple, list)) or len(value) != expected:
        names = "(gate, cell, hidden)" if mode == "LSTM" else "(gate, cell)"
        raise ValueError(f"activations: expected {expected} activations {names} for {mode}, got {value!r}")
    specs = tuple(normalise(v, f"activations[{j}]") for j, v in enumerate(value))
    return None if specs == tuple(normalise(n) for n in DEFAULTS[mode]) else specs


def suffix(layer: int, direction: int) -> str:
    """torch's name suffix: ``_l{layer}`` plus ``_reverse`` for the backward direction."""
    return f"_l{layer}" + ("_reverse" if direction == 1 else "")


def param_shapes(config: RNNConfig) -> dict[str, tuple[int, ...]]:
    """Every parameter's name and shape, in torch's order (per layer, per direction)."""
    return dict(_param_shapes(config))  # a fresh dict: the caller may change it


@functools.lru_cache(maxsize=256)  # every forward call checks its weights against these
def _param_shapes(config: RNNConfig) -> tuple[tuple[str, tuple[int, ...]], ...]:
    G, H, P = config.num_gates, config.hidden_size, config.output_size
    D = config.num_directions
    shapes: dict[str, tuple[int, ...]] = {}
    for layer in range(config.num_layers):
        layer_input = config.input_size if layer == 0 else D * P
        for direction in range(D):
            s = suffix(layer, direction)
            shapes["weight_ih" + s] = (G * H, layer_input)
            shapes["weight_hh" + s] = (G * H, P)
            if config.bias:
                shapes["bias_ih" + s] = (G * H,)
                shapes["bias_hh" + s] = (G * H,)
            if config.proj_size:
                shapes["weight_hr" + s] = (P, H)
            if config.peephole:
                shapes["peephole" + s] = (3 * H,)
            if config.layer_norm:
                for name in ("ln_ih_weight", "ln_ih_bias", "ln_hh_weight", "ln_hh_bias"):
                    shapes[name + s] = (G * H,)
                if config.mode == "LSTM":
                    shapes["ln_cell_weight" + s] = (H,)
                    shapes["ln_cell_bias" + s] = (H,)
    return tuple(shapes.items())


def init_params(config: RNNConfig, seed: int | None = None, dtype="float32") -> dict[str, np.ndarray]:
    """torch's initialisation: every weight uniform in ±1/√hidden_size (peepholes too); layer-norm gains 1
    and shifts 0; with forget_bias, the f rows of bias_ih set to it and those of bias_hh to 0."""
    dtype = check_dtype(dtype)
    rng = np.random.default_rng(seed)
    bound = 1.0 / math.sqrt(config.hidden_size)
    params = {}
    for name, shape in param_shapes(config).items():
        if name.startswith("ln_"):  # drawn from no random numbers, so plain weights stay as they were
            params[name] = np.full(shape, 1.0 if "_weight" in name else 0.0, dtype)
        else:
            params[name] = rng.uniform(-bound, bound, size=shape).astype(dtype)
    if config.forget_bias and config.bias:
        H = config.hidden_size
        for name in params:
            if name.startswith(("bias_ih", "bias_hh")):
                params[name][H:2 * H] = config.forget_bias if name.startswith("bias_ih") else 0.0
    return params


def check_dtype(dtype) -> np.dtype:
    """Normalise a dtype argument; only float32 and float64 are computed."""
    try:
        dt = np.dtype(dtype)
    except TypeError as e:
        if not (isinstance(dtype, str) and dtype == "bfloat16"):
            raise TypeError(f"dtype: expected one of {DTYPES}, got {dtype!r}") from e
        dt = None  # numpy knows bfloat16 only once ml_dtypes is imported; same message either way
    name = "bfloat16" if dt is None else dt.name
    if name not in DTYPES:
        hint = ""
        if name in ("int8", "bfloat16"):
            hint = f"; for {name} inference, quantise a float32 model: lstmkit.quantize(model, {name!r})"
        raise TypeError(f"dtype: expected one of {DTYPES}, got {name}{hint}")
    return dt


def check_state_dict(config: RNNConfig, state: dict, dtype) -> dict[str, np.ndarray]:
    """Validate a state_dict against ``config`` and return fresh arrays of ``dtype``.

    Raises ValueError naming the key for a missing or unexpected key, a wrong shape or a
    non-finite value, TypeError for values that are not real numbers (complex, strings). The caller's
    arrays are copied, never kept or modified.
    """
    dtype = check_dtype(dtype)
    expected = param_shapes(config)
    check_state_keys(expected, state, f"{config.mode}(input_size={config.input_size}, "
                                      f"hidden_size={config.hidden_size}, ...)")
    return {name: check_state_value(f"state_dict[{name!r}]", state[name], shape, dtype)
            for name, shape in expected.items()}


def check_state_keys(expected: dict, state: dict, owner: str, name: str = "state_dict") -> None:
    """ValueError listing the missing and unexpected keys of ``state`` against ``expected`` (names -> shapes);
    ``owner``: the module they belong to, ``name``: what ``state`` is called, for the message."""
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    if missing or unexpected:
        raise ValueError(f"{name}: keys do not match {owner}: missing {missing}, unexpected {unexpected}")


def check_state_value(name: str, value, shape: tuple, dtype) -> np.ndarray:
    """One parameter's new value as a fresh array of ``dtype``: real numbers (a numpy array, a torch tensor of
    any float dtype, bfloat16 too, nested lists) of exactly ``shape``, finite once cast.

    ``name``: how errors name the value (``state_dict['weight_ih_l0']``). Complex values and strings are refused
    (TypeError) rather than cast with a warning, which would drop the imaginary part or parse text.
    """
    arr = _as_array(name, value)
    if not np.can_cast(arr.dtype, dtype, casting="same_kind"):
        raise TypeError(f"{name}: expected real numbers (castable to {np.dtype(dtype).name}), got dtype {arr.dtype}")
    if arr.shape != tuple(shape):
        raise ValueError(f"{name}: expected shape {tuple(shape)}, got {arr.shape}")
    with np.errstate(over="ignore", invalid="ignore"):  # an overflow is refused below, by name
        out = np.array(arr, dtype=dtype, copy=True)
    if not np.all(np.isfinite(out)):
        if arr.dtype.kind in "biu" or np.all(np.isfinite(arr)):
            raise ValueError(f"{name}: expected values within {np.dtype(dtype).name}'s range, got some that "
                             "overflow to inf when cast")
        raise ValueError(f"{name}: expected finite values, got NaN or inf")
    return out


def _as_array(name: str, value) -> np.ndarray:
    """``value`` as a NumPy array; errors name it."""
    try:
        return np.asarray(to_numpy(value))
    except TypeError as e:
        # a torch float dtype NumPy lacks (bfloat16, float8): read its values as float32, exactly, as torch's
        # load_state_dict casts them into the parameter
        if callable(getattr(value, "is_floating_point", None)) and value.is_floating_point():
            return np.asarray(to_numpy(value.float()))
        raise TypeError(f"{name}: expected an array of real numbers, got {type(value).__name__} ({e})") from None
    except ValueError as e:  # a ragged nested list
        raise ValueError(f"{name}: expected an array of real numbers, got {type(value).__name__} ({e})") from None


def to_numpy(value):
    """A torch tensor as a numpy array (detached, on the CPU, its values: a negated or conjugated view resolved,
    where NumPy would read the raw memory), without importing torch; anything else as it is."""
    if hasattr(value, "detach") and hasattr(value, "cpu"):
        return value.detach().cpu().resolve_conj().resolve_neg().numpy()
    return value


def count_params(config: RNNConfig) -> int:
    return sum(math.prod(s) for s in param_shapes(config).values())
