"""The variant LSTM and GRU cells of docs/variants.md, one time step, forward and backward side by side.

Every option of ``RNNConfig`` that changes the forward (peephole, input_forget, clip, activations,
layer_norm, zoneout, recurrent_dropout, linear_before_reset) is a branch here, written in the doc's
order and notation. The plain configuration runs ``ref/lstm.py`` and ``ref/gru.py`` instead (``rnn.py``
decides); with every option off these cells compute the same function.

Masks come from outside (``sample_masks`` in training, ``eval_masks`` in evaluation), like the
inter-layer dropout masks, so every backend computes the same function from the same masks.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from . import activations
from .activations import DEFAULTS

LN_EPS = 1e-5


@dataclass
class VariantMasks:
    """Masks of one forward call, per layer·direction k (k = layer · D + direction); None where unused."""

    recurrent: list | None  # per k: (B, P) keep-mask scaled by 1/(1−p), applied to h_{t−1} entering W_hh
    zoneout_c: list | None  # per k: (T, B, H), 1 = keep old c
    zoneout_h: list | None  # per k: (T, B, P), 1 = keep old h

    def at(self, k: int, t: int) -> tuple:
        """(m_rd, m_c, m_h) of direction k at step t, each None when unused."""
        return (None if self.recurrent is None else self.recurrent[k],
                None if self.zoneout_c is None else self.zoneout_c[k][t],
                None if self.zoneout_h is None else self.zoneout_h[k][t])


def sample_masks(config, steps: int, batch: int, rng, dtype) -> VariantMasks:
    """Training masks: recurrent dropout Bernoulli(1 − p)/(1 − p) once per sequence, zoneout Bernoulli(z) per step."""
    K = config.num_layers * config.num_directions
    H, P = config.hidden_size, config.output_size
    p, (z_c, z_h) = config.recurrent_dropout, config.zoneout
    keep = np.asarray(1.0 - p, dtype)
    recurrent = [_bernoulli(rng, (batch, P), 1.0 - p, dtype) / keep for _ in range(K)] if p else None
    zoneout_c = [_bernoulli(rng, (steps, batch, H), z_c, dtype) for _ in range(K)] if z_c else None
    zoneout_h = [_bernoulli(rng, (steps, batch, P), z_h, dtype) for _ in range(K)] if z_h else None
    return VariantMasks(recurrent, zoneout_c, zoneout_h)


def _bernoulli(rng, shape, p: float, dtype) -> np.ndarray:
    """1 with probability p, else 0, in dtype: uniforms drawn in dtype and compared in place (zoneout's
    per-step masks are T·B·H values drawn every training step)."""
    u = rng.random(shape, dtype=np.dtype(dtype))
    return np.less(u, p, out=u, casting="unsafe")


def eval_masks(config, steps: int, batch: int, dtype) -> VariantMasks:
    """Evaluation masks: zoneout by its expectation (the constant z), no recurrent dropout."""
    K = config.num_layers * config.num_directions
    (z_c, z_h), H, P = config.zoneout, config.hidden_size, config.output_size
    zoneout_c = [np.full((steps, batch, H), z_c, dtype) for _ in range(K)] if z_c else None
    zoneout_h = [np.full((steps, batch, P), z_h, dtype) for _ in range(K)] if z_h else None
    return VariantMasks(None, zoneout_c, zoneout_h)


# ------------------------------------------------------------------------------------------------ pieces

def layer_norm(v, gamma, beta):
    """LN(v; γ, β) over the last axis -> (y, cache)."""
    centred = v - v.mean(axis=-1, keepdims=True)
    inv_std = 1.0 / np.sqrt((centred**2).mean(axis=-1, keepdims=True) + LN_EPS)
    normed = centred * inv_std
    return gamma * normed + beta, (normed, inv_std)


def layer_norm_backward(dy, gamma, cache):
    """-> (dv, dγ, dβ)."""
    normed, inv_std = cache
    dn = dy * gamma
    dv = inv_std * (dn - dn.mean(axis=-1, keepdims=True) - normed * (dn * normed).mean(axis=-1, keepdims=True))
    return dv, (dy * normed).sum(axis=0), dy.sum(axis=0)


def clip(z, bound):
    return z if bound is None else np.clip(z, -bound, bound)


def clip_grad(dz, z, bound):
    """Back through clip; at ±bound the right-hand derivative (1 at −bound, 0 at +bound)."""
    return dz if bound is None else dz * ((z >= -bound) & (z < bound))


def activate(spec, z, bound):
    """σ(clip(z)) -> (y, cache for ``activate_grad``)."""
    zc = clip(z, bound)
    y = activations.apply(spec, zc)
    return y, (spec, z, zc, y, bound)


def activate_grad(dy, cache):
    spec, z, zc, y, bound = cache
    return clip_grad(dy * activations.derivative(spec, zc, y), z, bound)


def _masked(h, m):
    return h if m is None else h * m


def _norm_or_not(v, w, name, on):
    """LN(v) with the ``ln_{name}`` parameters when layer_norm is on, else v; -> (value, cache)."""
    return layer_norm(v, w[f"ln_{name}_weight"], w[f"ln_{name}_bias"]) if on else (v, None)


def _norm_or_not_backward(dy, w, name, cache, grads):
    if cache is None:
        return dy
    dv, grads[f"ln_{name}_weight"], grads[f"ln_{name}_bias"] = layer_norm_backward(dy, w[f"ln_{name}_weight"], cache)
    return dv


def _zoneout(m, old, new):
    return new if m is None else m * old + (1 - m) * new


class Cell:
    """A variant cell bound to its configuration; ``cell_forward(x, state, w, m_rd, m_c, m_h)`` and
    ``cell_backward(d_state, cache, w)`` as in ref/lstm.py and ref/gru.py, masks as in ``VariantMasks.at``."""

    def __init__(self, config):
        self.config = config
        specs = config.activations or tuple(activations.normalise(n) for n in DEFAULTS[config.mode])
        self.gate_act, self.cell_act = specs[0], specs[1]
        self.hidden_act = specs[2] if config.mode == "LSTM" else None
        step = {"LSTM": (self._lstm_forward, self._lstm_backward), "GRU": (self._gru_forward, self._gru_backward)}
        self.cell_forward, self.cell_backward = step[config.mode]

    # ---------------------------------------------------------------------------------------------- LSTM

    def _lstm_forward(self, x, state, w, m_rd=None, m_c=None, m_h=None):
        """x (B, I), state = (h (B, P), c (B, H)) -> ((h', c'), cache)."""
        cfg, bound = self.config, self.config.clip
        h, c = state
        hr = _masked(h, m_rd)
        a, ln_ih = _norm_or_not(x @ w["weight_ih"].T, w, "ih", cfg.layer_norm)  # (B, 4H)
        s, ln_hh = _norm_or_not(hr @ w["weight_hh"].T, w, "hh", cfg.layer_norm)
        if "bias_ih" in w:
            a, s = a + w["bias_ih"], s + w["bias_hh"]
        z_i, z_f, z_g, z_o = np.split(a + s, 4, axis=1)
        if cfg.peephole:
            p_i, p_f, p_o = np.split(w["peephole"], 3)
            z_i, z_f = z_i + p_i * c, z_f + p_f * c
        i, act_i = activate(self.gate_act, z_i, bound)
        g, act_g = activate(self.cell_act, z_g, bound)
        f, act_f = (1.0 - i, None) if cfg.input_forget else activate(self.gate_act, z_f, bound)
        c_tilde = f * c + i * g
        if cfg.peephole:
            z_o = z_o + p_o * c_tilde
        o, act_o = activate(self.gate_act, z_o, bound)
        c_normed, ln_cell = _norm_or_not(c_tilde, w, "cell", cfg.layer_norm)
        hidden, act_h = activate(self.hidden_act, c_normed, None)  # no clip on the hidden activation (ONNX)
        m = o * hidden
        h_tilde = m @ w["weight_hr"].T if "weight_hr" in w else m
        new = (_zoneout(m_h, h, h_tilde), _zoneout(m_c, c, c_tilde))
        cache = (x, h, c, hr, m_rd, m_c, m_h, ln_ih, ln_hh, i, f, g, o, c_tilde, ln_cell, hidden, m,
                 act_i, act_f, act_g, act_o, act_h)
        return new, cache

    def _lstm_backward(self, d_state, cache, w):
        """d_state = (dh' (B, P), dc' (B, H)) -> (dx, (dh, dc), grads by weight name)."""
        cfg = self.config
        (x, h, c, hr, m_rd, m_c, m_h, ln_ih, ln_hh, i, f, g, o, c_tilde, ln_cell, hidden, m,
         act_i, act_f, act_g, act_o, act_h) = cache
        dh_next, dc_next = d_state
        grads = {}
        # zoneout: h' = m_h ⊙ h + (1 − m_h) ⊙ h̃, c' likewise
        dh = 0.0 if m_h is None else dh_next * m_h
        dh_tilde = dh_next if m_h is None else dh_next * (1 - m_h)
        dc = 0.0 if m_c is None else dc_next * m_c
        dc_tilde = dc_next if m_c is None else dc_next * (1 - m_c)
        if "weight_hr" in w:
            grads["weight_hr"] = dh_tilde.T @ m
            dm = dh_tilde @ w["weight_hr"]
        else:
            dm = dh_tilde
        dz_o = activate_grad(dm * hidden, act_o)
        d_c_normed = activate_grad(dm * o, act_h)
        dc_tilde = dc_tilde + _norm_or_not_backward(d_c_normed, w, "cell", ln_cell, grads)
        if cfg.peephole:
            p_i, p_f, p_o = np.split(w["peephole"], 3)
            dc_tilde = dc_tilde + dz_o * p_o
        di, dg, df = dc_tilde * g, dc_tilde * i, dc_tilde * c
        dc = dc + dc_tilde * f
        if cfg.input_forget:  # f = 1 − i
            di, dz_f = di - df, np.zeros_like(df)
        else:
            dz_f = activate_grad(df, act_f)
        dz_i, dz_g = activate_grad(di, act_i), activate_grad(dg, act_g)
        if cfg.peephole:
            dc = dc + dz_i * p_i + dz_f * p_f
            grads["peephole"] = np.concatenate([(dz_i * c).sum(0), (dz_f * c).sum(0), (dz_o * c_tilde).sum(0)])
        d_gates = np.concatenate([dz_i, dz_f, dz_g, dz_o], axis=1)  # (B, 4H) = d(a + s)
        if "bias_ih" in w:
            grads["bias_ih"] = d_gates.sum(axis=0)
            grads["bias_hh"] = grads["bias_ih"].copy()
        d_ih = _norm_or_not_backward(d_gates, w, "ih", ln_ih, grads)
        d_hh = _norm_or_not_backward(d_gates, w, "hh", ln_hh, grads)
        grads["weight_ih"] = d_ih.T @ x
        grads["weight_hh"] = d_hh.T @ hr
        dx = d_ih @ w["weight_ih"]
        dh = dh + _masked(d_hh @ w["weight_hh"], m_rd)
        return dx, (dh, dc), grads

    # ----------------------------------------------------------------------------------------------- GRU

    def _gru_forward(self, x, state, w, m_rd=None, m_c=None, m_h=None):
        """x (B, I), state = (h (B, H),) -> ((h',), cache); m_c is unused (a GRU has no cell state)."""
        cfg, bound = self.config, self.config.clip
        (h,) = state
        hr = _masked(h, m_rd)
        a, ln_ih = _norm_or_not(x @ w["weight_ih"].T, w, "ih", cfg.layer_norm)  # (B, 3H)
        if "bias_ih" in w:
            a = a + w["bias_ih"]
        a_r, a_z, a_n = np.split(a, 3, axis=1)
        H, b_hh = cfg.hidden_size, w.get("bias_hh", 0.0)
        if cfg.linear_before_reset:
            s, ln_hh = _norm_or_not(hr @ w["weight_hh"].T, w, "hh", cfg.layer_norm)
            s_r, s_z, s_n = np.split(s + b_hh, 3, axis=1)
        else:  # the n rows see r ⊙ h, so only the r, z rows are computed now
            s_r, s_z = np.split(hr @ w["weight_hh"][:2 * H].T + (b_hh[:2 * H] if "bias_hh" in w else 0.0), 2, axis=1)
            ln_hh = None
        r, act_r = activate(self.gate_act, a_r + s_r, bound)
        z, act_z = activate(self.gate_act, a_z + s_z, bound)
        if cfg.linear_before_reset:
            n, act_n = activate(self.cell_act, a_n + r * s_n, bound)
        else:
            s_n = (r * hr) @ w["weight_hh"][2 * H:].T + (b_hh[2 * H:] if "bias_hh" in w else 0.0)
            n, act_n = activate(self.cell_act, a_n + s_n, bound)
        h_tilde = (1.0 - z) * n + z * h
        cache = (x, h, hr, m_rd, m_h, ln_ih, ln_hh, r, z, n, s_n, act_r, act_z, act_n)
        return (_zoneout(m_h, h, h_tilde),), cache

    def _gru_backward(self, d_state, cache, w):
        """d_state = (dh' (B, H),) -> (dx, (dh,), grads by weight name)."""
        cfg, H = self.config, self.config.hidden_size
        x, h, hr, m_rd, m_h, ln_ih, ln_hh, r, z, n, s_n, act_r, act_z, act_n = cache
        (dh_next,) = d_state
        grads = {}
        dh_tilde = dh_next if m_h is None else dh_next * (1 - m_h)
        dh = dh_tilde * z + (0.0 if m_h is None else dh_next * m_h)
        dz_n = activate_grad(dh_tilde * (1.0 - z), act_n)
        dz_z = activate_grad(dh_tilde * (h - n), act_z)
        if cfg.linear_before_reset:
            dz_r = activate_grad(dz_n * s_n, act_r)
            d_s = np.concatenate([dz_r, dz_z, dz_n * r], axis=1)  # (B, 3H)
            if "bias_hh" in w:
                grads["bias_hh"] = d_s.sum(axis=0)
            d_s = _norm_or_not_backward(d_s, w, "hh", ln_hh, grads)
            grads["weight_hh"] = d_s.T @ hr
            d_hr = d_s @ w["weight_hh"]
        else:  # s_n = W_hn (r ⊙ hr) + b_hn
            dq = dz_n @ w["weight_hh"][2 * H:]
            dz_r = activate_grad(dq * hr, act_r)
            d_rz = np.concatenate([dz_r, dz_z], axis=1)
            grads["weight_hh"] = np.concatenate([d_rz.T @ hr, dz_n.T @ (r * hr)], axis=0)
            if "bias_hh" in w:
                grads["bias_hh"] = np.concatenate([d_rz, dz_n], axis=1).sum(axis=0)
            d_hr = d_rz @ w["weight_hh"][:2 * H] + dq * r
        d_a = np.concatenate([dz_r, dz_z, dz_n], axis=1)
        if "bias_ih" in w:
            grads["bias_ih"] = d_a.sum(axis=0)
        d_a = _norm_or_not_backward(d_a, w, "ih", ln_ih, grads)
        grads["weight_ih"] = d_a.T @ x
        dx = d_a @ w["weight_ih"]
        return dx, (dh + _masked(d_hr, m_rd),), grads
