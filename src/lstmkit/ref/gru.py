"""The GRU cell, one time step, forward and backward side by side (torch's formulation).

    r = σ(W_ir x + b_ir + W_hr h + b_hr)            reset gate
    z = σ(W_iz x + b_iz + W_hz h + b_hz)            update gate
    n = tanh(W_in x + b_in + r ⊙ (W_hn h + b_hn))   candidate (r applied after the hidden matmul)
    h' = (1 − z) ⊙ n + z ⊙ h

Weights are stacked by rows in torch's gate order (r, z, n): weight_ih (3H, I), weight_hh (3H, H),
bias_ih and bias_hh (3H,). This is Keras' reset_after=True and ONNX's linear_before_reset=1.
"""
import numpy as np

from .lstm import sigmoid


def cell_forward(x, state, w):
    """One step. x (B, I), state = (h (B, H),) -> ((h' (B, H),), cache)."""
    (h,) = state
    gi = x @ w["weight_ih"].T  # (B, 3H)
    gh = h @ w["weight_hh"].T  # (B, 3H)
    if "bias_ih" in w:
        gi = gi + w["bias_ih"]
        gh = gh + w["bias_hh"]
    gi_r, gi_z, gi_n = np.split(gi, 3, axis=1)  # each (B, H)
    gh_r, gh_z, gh_n = np.split(gh, 3, axis=1)
    r = sigmoid(gi_r + gh_r)
    z = sigmoid(gi_z + gh_z)
    n = np.tanh(gi_n + r * gh_n)
    h_next = (1.0 - z) * n + z * h
    return (h_next,), (x, h, r, z, n, gh_n)


def cell_backward(d_state, cache, w):
    """Gradients of one step. d_state = (dh' (B, H),) -> (dx, (dh,), grads by weight name)."""
    (dh_next,) = d_state
    x, h, r, z, n, gh_n = cache
    dn = dh_next * (1.0 - z)
    dz = dh_next * (h - n)
    dn_pre = dn * (1.0 - n**2)
    dr = dn_pre * gh_n
    dr_pre = dr * r * (1.0 - r)
    dz_pre = dz * z * (1.0 - z)
    d_gi = np.concatenate([dr_pre, dz_pre, dn_pre], axis=1)  # (B, 3H)
    d_gh = np.concatenate([dr_pre, dz_pre, dn_pre * r], axis=1)  # (B, 3H)
    grads = {"weight_ih": d_gi.T @ x, "weight_hh": d_gh.T @ h}
    if "bias_ih" in w:
        grads["bias_ih"] = d_gi.sum(axis=0)
        grads["bias_hh"] = d_gh.sum(axis=0)
    dx = d_gi @ w["weight_ih"]
    dh = dh_next * z + d_gh @ w["weight_hh"]
    return dx, (dh,), grads
