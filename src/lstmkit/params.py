"""The one shared type: an RNN's configuration and its parameters under torch's names.

Parameters live in a plain ``dict[str, np.ndarray]`` keyed exactly as torch.nn names them
(``weight_ih_l0``, ``weight_hh_l0``, ``bias_ih_l0``, ``bias_hh_l0``, ``weight_hr_l0``, ``_reverse``
suffix), so a state_dict moves between torch and lstmkit with no renaming. Gate order is torch's:
LSTM rows are (i, f, g, o), GRU rows are (r, z, n).
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np

GATES = {"LSTM": ("i", "f", "g", "o"), "GRU": ("r", "z", "n")}
DTYPES = ("float32", "float64")


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

    def __post_init__(self):
        if self.mode not in GATES:
            raise ValueError(f"mode: expected one of {tuple(GATES)}, got {self.mode!r}")
        for name in ("input_size", "hidden_size", "num_layers"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
                raise ValueError(f"{name}: expected a positive integer, got {value!r}")
        p = self.proj_size
        if isinstance(p, bool) or not isinstance(p, (int, np.integer)) or p < 0:
            raise ValueError(f"proj_size: expected an integer >= 0, got {p!r}")
        if p and self.mode != "LSTM":
            raise ValueError(f"proj_size: only LSTM supports a projection, got proj_size={p} for {self.mode}")
        if p >= self.hidden_size and p:
            raise ValueError(f"proj_size: expected less than hidden_size={self.hidden_size}, got {p}")
        d = self.dropout
        if isinstance(d, bool) or not isinstance(d, (int, float)) or not 0.0 <= d <= 1.0:
            raise ValueError(f"dropout: expected a number in [0, 1], got {d!r}")

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

    def to_dict(self) -> dict:
        return asdict(self)


def suffix(layer: int, direction: int) -> str:
    """torch's name suffix: ``_l{layer}`` plus ``_reverse`` for the backward direction."""
    return f"_l{layer}" + ("_reverse" if direction == 1 else "")


def param_shapes(config: RNNConfig) -> dict[str, tuple[int, ...]]:
    """Every parameter's name and shape, in torch's order (per layer, per direction)."""
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
    return shapes


def init_params(config: RNNConfig, seed: int | None = None, dtype="float32") -> dict[str, np.ndarray]:
    """torch's initialisation: every parameter uniform in ±1/√hidden_size."""
    dtype = check_dtype(dtype)
    rng = np.random.default_rng(seed)
    bound = 1.0 / math.sqrt(config.hidden_size)
    return {
        name: rng.uniform(-bound, bound, size=shape).astype(dtype)
        for name, shape in param_shapes(config).items()
    }


def check_dtype(dtype) -> np.dtype:
    """Normalise a dtype argument; only float32 and float64 are computed."""
    try:
        dt = np.dtype(dtype)
    except TypeError as e:
        raise TypeError(f"dtype: expected one of {DTYPES}, got {dtype!r}") from e
    if dt.name not in DTYPES:
        raise TypeError(f"dtype: expected one of {DTYPES}, got {dt.name}")
    return dt


def check_state_dict(config: RNNConfig, state: dict, dtype) -> dict[str, np.ndarray]:
    """Validate a state_dict against ``config`` and return fresh arrays of ``dtype``.

    Raises ValueError naming the key for a missing or unexpected key, a wrong shape or a
    non-finite value. The caller's arrays are copied, never kept or modified.
    """
    dtype = check_dtype(dtype)
    expected = param_shapes(config)
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    if missing or unexpected:
        raise ValueError(
            f"state_dict: keys do not match {config.mode}(input_size={config.input_size}, "
            f"hidden_size={config.hidden_size}, ...): missing {missing}, unexpected {unexpected}"
        )
    out = {}
    for name, shape in expected.items():
        value = np.array(to_numpy(state[name]), dtype=dtype, copy=True)
        if value.shape != shape:
            raise ValueError(f"state_dict[{name!r}]: expected shape {shape}, got {value.shape}")
        if not np.all(np.isfinite(value)):
            raise ValueError(f"state_dict[{name!r}]: expected finite values, got NaN or inf")
        out[name] = value
    return out


def to_numpy(value):
    """A torch tensor as a numpy array (detached, on the CPU), without importing torch; anything else as it is."""
    if hasattr(value, "detach") and hasattr(value, "cpu"):
        return value.detach().cpu().numpy()
    return value


def count_params(config: RNNConfig) -> int:
    return sum(math.prod(s) for s in param_shapes(config).values())
