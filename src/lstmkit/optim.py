"""Optimizers over a dict of live numpy parameters, updated in place: SGD (momentum) and Adam.

    opt = Adam(layer.parameters(), lr=1e-2)
    opt.step(grads)            # grads: keys of the params (missing keys and None gradients are left alone)

Arguments are checked as torch.optim checks them (ValueError naming the argument), and every gradient of a
step is checked against its parameter (known key, same shape) before any parameter changes. Given a layer's
own dict (``layer.parameters()``), a step marks it changed, so a backward still pending from a forward before
the step raises instead of mixing old and new weights (lstmkit.layers).
"""
from __future__ import annotations

import math

import numpy as np


def clip_grad_norm(grads: dict, max_norm: float) -> float:
    """Scale all grads in place so their joint L2 norm is at most max_norm (0 gives zeros, as torch's
    clip_grad_norm_); returns the norm before. None gradients are skipped."""
    max_norm = _number("max_norm", max_norm, lambda v: v >= 0, "a number >= 0")
    present = [g for g in grads.values() if g is not None]
    total = float(np.sqrt(sum(float(np.sum(g * g)) for g in present)))
    if total > max_norm:
        scale = max_norm / (total + 1e-12)
        for g in present:
            g *= scale
    return total


class SGD:
    """p ← p − lr·v with v ← momentum·v + g (torch's convention)."""

    def __init__(self, params: dict, lr: float = 0.01, momentum: float = 0.0):
        self.params = params
        self.lr = _number("lr", lr, lambda v: 0 < v < math.inf, "a positive finite learning rate")
        self.momentum = _number("momentum", momentum, lambda v: 0 <= v < math.inf, "a finite number >= 0")
        self.velocity = {name: np.zeros_like(p) for name, p in params.items()}

    def step(self, grads: dict) -> None:
        """One update from ``grads`` (name -> array of the parameter's shape, or None to skip it)."""
        for name, g in _checked(self.params, grads):
            v = self.velocity[name]
            v *= self.momentum
            v += g
            self.params[name] -= self.lr * v
        _mark_changed(self.params)


class Adam:
    """Adam (Kingma & Ba) with bias correction, as torch.optim.Adam without weight decay.

    Each parameter counts its own steps (``steps``), as torch's per-parameter state["step"]: one first updated
    at the fourth step() call gets the bias correction of a first step. ``t`` counts the step() calls.
    """

    def __init__(self, params: dict, lr: float = 1e-3, betas=(0.9, 0.999), eps: float = 1e-8):
        self.params = params
        self.lr = _number("lr", lr, lambda v: 0 < v < math.inf, "a positive finite learning rate")
        self.betas = _betas(betas)
        self.eps = _number("eps", eps, lambda v: 0 <= v < math.inf, "a finite number >= 0")
        self.m = {name: np.zeros_like(p) for name, p in params.items()}
        self.v = {name: np.zeros_like(p) for name, p in params.items()}
        self.steps = {name: 0 for name in params}
        self.t = 0

    def step(self, grads: dict) -> None:
        """One update from ``grads`` (name -> array of the parameter's shape, or None to skip it)."""
        self.t += 1
        b1, b2 = self.betas
        for name, g in _checked(self.params, grads):
            t = self.steps[name] = self.steps.get(name, 0) + 1
            self.m[name] = b1 * self.m[name] + (1 - b1) * g
            self.v[name] = b2 * self.v[name] + (1 - b2) * g * g
            m_hat = self.m[name] / (1 - b1**t)
            v_hat = self.v[name] / (1 - b2**t)
            self.params[name] -= (self.lr * m_hat / (np.sqrt(v_hat) + self.eps)).astype(self.params[name].dtype)
        _mark_changed(self.params)


def _checked(params: dict, grads: dict) -> list:
    """(name, gradient) for every gradient that is not None, all checked before any parameter changes: a
    gradient of another shape would broadcast into the update silently."""
    out = []
    for name, g in grads.items():
        if g is None:  # no gradient this step (torch skips a parameter whose .grad is None)
            continue
        if name not in params:
            raise KeyError(f"grads[{name!r}]: not a parameter of this optimizer; expected keys among {list(params)}")
        g = np.asarray(g)
        if g.shape != params[name].shape:
            raise ValueError(f"grads[{name!r}]: expected shape {params[name].shape} (the parameter's), got {g.shape}")
        out.append((name, g))
    return out


def _mark_changed(params) -> None:
    """Tell a layer's parameter dict that a step wrote it (lstmkit.layers.Parameters; plain dicts have no count)."""
    mark = getattr(params, "mark_changed", None)
    if callable(mark):
        mark()


def _number(name: str, value, ok, expected: str) -> float:
    """A real-number argument that satisfies ``ok`` (NaN never does), as a float; ValueError naming it otherwise."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise ValueError(f"{name}: expected {expected}, got {value!r} ({type(value).__name__})")
    if not ok(float(value)):
        raise ValueError(f"{name}: expected {expected}, got {value!r}")
    return float(value)


def _betas(betas) -> tuple[float, float]:
    """Adam's (beta1, beta2), each in [0, 1) as torch.optim.Adam requires."""
    if not isinstance(betas, (tuple, list)) or len(betas) != 2:
        raise ValueError(f"betas: expected a pair (beta1, beta2), each in [0, 1), got {betas!r}")
    return tuple(_number(f"betas[{i}]", b, lambda v: 0 <= v < 1, "a number in [0, 1)") for i, b in enumerate(betas))
