"""Optimizers over a dict of live numpy parameters, updated in place: SGD (momentum) and Adam.

    opt = Adam(model_params, lr=1e-2)
    opt.step(grads)            # grads: same keys as the params (missing keys are left alone)
"""
from __future__ import annotations

import numpy as np


def clip_grad_norm(grads: dict, max_norm: float) -> float:
    """Scale all grads in place so their joint L2 norm is at most max_norm; returns the norm before."""
    total = float(np.sqrt(sum(float(np.sum(g * g)) for g in grads.values())))
    if total > max_norm > 0:
        for g in grads.values():
            g *= max_norm / (total + 1e-12)
    return total


class SGD:
    """p ← p − lr·v with v ← momentum·v + g (torch's convention)."""

    def __init__(self, params: dict, lr: float = 0.01, momentum: float = 0.0):
        if lr <= 0:
            raise ValueError(f"lr: expected a positive learning rate, got {lr}")
        self.params, self.lr, self.momentum = params, lr, momentum
        self.velocity = {name: np.zeros_like(p) for name, p in params.items()}

    def step(self, grads: dict) -> None:
        for name, g in grads.items():
            v = self.velocity[name]
            v *= self.momentum
            v += g
            self.params[name] -= self.lr * v


class Adam:
    """Adam (Kingma & Ba) with bias correction, as torch.optim.Adam without weight decay."""

    def __init__(self, params: dict, lr: float = 1e-3, betas=(0.9, 0.999), eps: float = 1e-8):
        if lr <= 0:
            raise ValueError(f"lr: expected a positive learning rate, got {lr}")
        self.params, self.lr, self.betas, self.eps = params, lr, betas, eps
        self.m = {name: np.zeros_like(p) for name, p in params.items()}
        self.v = {name: np.zeros_like(p) for name, p in params.items()}
        self.t = 0

    def step(self, grads: dict) -> None:
        self.t += 1
        b1, b2 = self.betas
        for name, g in grads.items():
            self.m[name] = b1 * self.m[name] + (1 - b1) * g
            self.v[name] = b2 * self.v[name] + (1 - b2) * g * g
            m_hat = self.m[name] / (1 - b1**self.t)
            v_hat = self.v[name] / (1 - b2**self.t)
            self.params[name] -= (self.lr * m_hat / (np.sqrt(v_hat) + self.eps)).astype(self.params[name].dtype)
