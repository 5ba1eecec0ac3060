"""The activation functions ONNX's LSTM/GRU allow in place of sigmoid and tanh, forward and derivative.

Each entry of ``TABLE`` is (α default, β default, f(z, α, β), f'(z, y, α, β)): the derivative takes the
pre-activation z and the output y, whichever is cheaper. α/β defaults are ONNX's; a function without
α or β has 0.0 there (never read). At a kink the derivative takes the right-hand value.
"""
import numpy as np

from .lstm import sigmoid as _sigmoid


def _softplus(z):
    # log(1 + e^z) without overflow: max(z, 0) + log1p(e^−|z|)
    return np.maximum(z, 0) + np.log1p(np.exp(-np.abs(z)))


TABLE = {
    "Sigmoid": (0.0, 0.0, lambda z, a, b: _sigmoid(z), lambda z, y, a, b: y * (1.0 - y)),
    "Tanh": (0.0, 0.0, lambda z, a, b: np.tanh(z), lambda z, y, a, b: 1.0 - y * y),
    "Relu": (0.0, 0.0, lambda z, a, b: np.maximum(z, 0), lambda z, y, a, b: (z >= 0).astype(z.dtype)),
    "HardSigmoid": (0.2, 0.5, lambda z, a, b: np.clip(a * z + b, 0, 1),
                    lambda z, y, a, b: np.where((a * z + b >= 0) & (a * z + b < 1), a, 0.0).astype(z.dtype)),
    "LeakyRelu": (0.01, 0.0, lambda z, a, b: np.where(z >= 0, z, a * z),
                  lambda z, y, a, b: np.where(z >= 0, 1.0, a).astype(z.dtype)),
    "ThresholdedRelu": (1.0, 0.0, lambda z, a, b: np.where(z > a, z, 0).astype(z.dtype),
                        lambda z, y, a, b: (z >= a).astype(z.dtype)),
    "ScaledTanh": (1.0, 1.0, lambda z, a, b: a * np.tanh(b * z),
                   lambda z, y, a, b: a * b * (1.0 - np.tanh(b * z) ** 2)),
    "Affine": (1.0, 0.0, lambda z, a, b: a * z + b, lambda z, y, a, b: np.full_like(z, a)),
    "Elu": (1.0, 0.0, lambda z, a, b: np.where(z >= 0, z, a * np.expm1(np.minimum(z, 0))),
            lambda z, y, a, b: np.where(z >= 0, 1.0, y + a).astype(z.dtype)),
    "Softsign": (0.0, 0.0, lambda z, a, b: z / (1.0 + np.abs(z)), lambda z, y, a, b: 1.0 / (1.0 + np.abs(z)) ** 2),
    "Softplus": (0.0, 0.0, lambda z, a, b: _softplus(z), lambda z, y, a, b: _sigmoid(z)),
}
# which functions read α and β (the others refuse them)
USES = {"HardSigmoid": 2, "LeakyRelu": 1, "ThresholdedRelu": 1, "ScaledTanh": 2, "Affine": 2, "Elu": 1}
DEFAULTS = {"LSTM": ("Sigmoid", "Tanh", "Tanh"), "GRU": ("Sigmoid", "Tanh")}


def saturating_range(spec) -> tuple[float, float] | None:
    """(low, high): the values f approaches as z → −∞ and +∞, where it flattens out (saturates); None for a
    function unbounded on a side (Relu, Affine, ...), which has no saturated zone."""
    name, a, b = spec
    if name in ("Sigmoid", "HardSigmoid"):
        return 0.0, 1.0
    if name in ("Tanh", "Softsign"):
        return -1.0, 1.0
    if name == "ScaledTanh" and a != 0 and b != 0:
        return -abs(a), abs(a)
    return None


def apply(spec, z):
    """f(z) for spec = (name, α, β)."""
    name, a, b = spec
    return TABLE[name][2](z, a, b)


def derivative(spec, z, y):
    """f'(z) for spec = (name, α, β), given z and y = f(z)."""
    name, a, b = spec
    return TABLE[name][3](z, y, a, b)


def normalise(value, where: str = "activations"):
    """One activation as (name, α, β): a name (any capitalisation) or a (name[, α[, β]]) tuple/list."""
    if isinstance(value, str):
        name, given = value, ()
    elif isinstance(value, (tuple, list)) and value and isinstance(value[0], str):
        name, given = value[0], tuple(value[1:])
    else:
        raise ValueError(f"{where}: expected a name or a (name, alpha, beta) tuple, got {value!r}")
    canonical = {n.lower(): n for n in TABLE}.get(name.lower())
    if canonical is None:
        raise ValueError(f"{where}: expected one of {tuple(TABLE)}, got {name!r}")
    used = USES.get(canonical, 0)
    if len(given) > 2 or any(g != 0 for g in given[used:]):  # an unused slot may only hold the 0.0 we store
        raise ValueError(f"{where}: {canonical} takes {used} of alpha/beta, got {value!r}")
    for g in given:
        if isinstance(g, bool) or not isinstance(g, (int, float, np.integer, np.floating)) or not np.isfinite(g):
            raise ValueError(f"{where}: {canonical}'s alpha/beta must be finite numbers, got {g!r}")
    alpha, beta = (float(v) for v in (*given, *TABLE[canonical][:2][len(given):]))
    return canonical, alpha, beta
