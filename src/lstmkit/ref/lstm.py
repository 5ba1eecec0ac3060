"""The LSTM cell, one time step, forward and backward side by side (torch's formulation).

    i = σ(W_ii x + b_ii + W_hi h + b_hi)        input gate
    f = σ(W_if x + b_if + W_hf h + b_hf)        forget gate
    g = tanh(W_ig x + b_ig + W_hg h + b_hg)     candidate cell
    o = σ(W_io x + b_io + W_ho h + b_ho)        output gate
    c' = f ⊙ c + i ⊙ g
    h' = o ⊙ tanh(c')                           (with proj_size: h' = W_hr (o ⊙ tanh(c')))

Weights are stacked by rows in torch's gate order (i, f, g, o): weight_ih (4H, I), weight_hh (4H, P),
bias_ih and bias_hh (4H,), weight_hr (P, H) only when projecting; P = proj_size or H.
"""
import numpy as np


def sigmoid(x):
    # σ(x) = ½(1 + tanh(x/2)): the same function, without exp overflow for large |x|
    return 0.5 * (1.0 + np.tanh(0.5 * x))


def cell_forward(x, state, w):
    """One step. x (B, I), state = (h (B, P), c (B, H)) -> ((h' (B, P), c' (B, H)), cache)."""
    h, c = state
    gates = x @ w["weight_ih"].T + h @ w["weight_hh"].T  # (B, 4H)
    if "bias_ih" in w:
        gates = gates + w["bias_ih"] + w["bias_hh"]
    i, f, g, o = np.split(gates, 4, axis=1)  # each (B, H)
    i, f, g, o = sigmoid(i), sigmoid(f), np.tanh(g), sigmoid(o)
    c_next = f * c + i * g
    tanh_c = np.tanh(c_next)
    m = o * tanh_c  # (B, H)
    h_next = m @ w["weight_hr"].T if "weight_hr" in w else m  # (B, P)
    return (h_next, c_next), (x, h, c, i, f, g, o, tanh_c, m)


def cell_backward(d_state, cache, w):
    """Gradients of one step. d_state = (dh' (B, P), dc' (B, H)) -> (dx, (dh, dc), grads by weight name)."""
    dh_next, dc_next = d_state
    x, h, c, i, f, g, o, tanh_c, m = cache
    grads = {}
    if "weight_hr" in w:
        grads["weight_hr"] = dh_next.T @ m  # (P, H)
        dm = dh_next @ w["weight_hr"]
    else:
        dm = dh_next
    do = dm * tanh_c
    dc = dc_next + dm * o * (1.0 - tanh_c**2)
    di, df, dg, dc_prev = dc * g, dc * c, dc * i, dc * f
    d_gates = np.concatenate(  # (B, 4H), back through σ and tanh
        [di * i * (1.0 - i), df * f * (1.0 - f), dg * (1.0 - g**2), do * o * (1.0 - o)], axis=1
    )
    grads["weight_ih"] = d_gates.T @ x
    grads["weight_hh"] = d_gates.T @ h
    if "bias_ih" in w:
        grads["bias_ih"] = d_gates.sum(axis=0)
        grads["bias_hh"] = grads["bias_ih"].copy()
    dx = d_gates @ w["weight_ih"]
    dh = d_gates @ w["weight_hh"]
    return dx, (dh, dc_prev), grads
