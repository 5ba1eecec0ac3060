"""The LSTM and GRU of docs/variants.md in torch ops only: any device, any dtype, differentiable any number of times.

The same function as ``lstmkit.ref.rnn.forward`` (the NumPy spec), written with torch ops so that autograd
derives its backward (and the backward's backward: double backward uses it), and so that it runs where
lstmkit's CPU kernels do not (CUDA, meta). Every option of ``RNNConfig`` is here: peephole, input_forget,
clip, activations with α/β, layer_norm, zoneout, recurrent dropout, linear_before_reset, proj_size;
lengths with packed-sequence semantics, directions, layers and inter-layer dropout masks.

Shapes: x (T, B, I) sequence-first; a state is a tuple (h (L·D, B, P), c (L·D, B, H)) for the LSTM, (h,)
for the GRU; params are keyed by torch's names (``weight_ih_l0``, ``..._reverse``); masks as in
``lstmkit.ref.rnn.forward`` (dropout_masks L − 1 tensors (T, B, D·P), variant_masks a ``VariantMasks`` of
tensors, None for evaluation: zoneout by its expectation, no recurrent dropout).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from ..params import RNNConfig
from ..ref.activations import DEFAULTS, normalise
from ..ref.rnn import layer_weights
from ..ref.variants import LN_EPS

__all__ = ["activation", "forward", "gru_step", "lstm_step"]

Tensor = torch.Tensor


def _softplus(z, a, b):
    # log(1 + e^z) without overflow, exactly as the reference (F.softplus switches to z above a threshold)
    return torch.clamp(z, min=0) + torch.log1p(torch.exp(-z.abs()))


# ONNX's activation functions (ref/activations.py), as f(z, α, β) in torch ops
ACTIVATIONS = {
    "Sigmoid": lambda z, a, b: torch.sigmoid(z),
    "Tanh": lambda z, a, b: torch.tanh(z),
    "Relu": lambda z, a, b: torch.relu(z),
    "HardSigmoid": lambda z, a, b: torch.clamp(a * z + b, 0.0, 1.0),
    "LeakyRelu": lambda z, a, b: torch.where(z >= 0, z, a * z),
    "ThresholdedRelu": lambda z, a, b: torch.where(z > a, z, torch.zeros_like(z)),
    "ScaledTanh": lambda z, a, b: a * torch.tanh(b * z),
    "Affine": lambda z, a, b: a * z + b,
    "Elu": lambda z, a, b: torch.where(z >= 0, z, a * torch.expm1(torch.clamp(z, max=0))),
    "Softsign": lambda z, a, b: z / (1.0 + z.abs()),
    "Softplus": _softplus,
}


def activation(spec):
    """f(z) for spec = (name, α, β) as ``RNNConfig.activations`` stores it."""
    name, a, b = spec
    f = ACTIVATIONS[name]
    return lambda z: f(z, a, b)


class _Cell:
    """One configuration's step functions: ``step(x_proj, state, w, m_rd, m_c, m_h) -> new state``.

    x_proj is LN(W_ih x) + b_ih of the step, computed for the whole sequence at once by ``_input_projection``.
    """

    def __init__(self, config: RNNConfig):
        self.config = config
        specs = config.activations or tuple(normalise(n) for n in DEFAULTS[config.mode])
        self.gate, self.cell = activation(specs[0]), activation(specs[1])
        self.hidden = activation(specs[2]) if config.mode == "LSTM" else None

    def act(self, f, z):
        """σ(clip(z)): the clip bounds every gate pre-activation."""
        bound = self.config.clip
        return f(z if bound is None else torch.clamp(z, -bound, bound))


def _layer_norm(v, w, name, on):
    if not on:
        return v
    gamma, beta = w[f"ln_{name}_weight"], w[f"ln_{name}_bias"]
    return F.layer_norm(v, gamma.shape, gamma, beta, LN_EPS)


def _zoneout(m, old, new):
    return new if m is None else m * old + (1 - m) * new


def _input_projection(config, x, w):
    """a = LN(W_ih x; γ_ih, β_ih) + b_ih for every step: x (T, B, I) -> (T, B, G·H)."""
    a = _layer_norm(x @ w["weight_ih"].T, w, "ih", config.layer_norm)
    return a + w["bias_ih"] if "bias_ih" in w else a


def lstm_step(cell: _Cell, a, state, w, m_rd=None, m_c=None, m_h=None):
    """One LSTM step of docs/variants.md. a (B, 4H) the input projection; state (h (B, P), c (B, H))."""
    cfg = cell.config
    h, c = state
    hr = h if m_rd is None else h * m_rd
    s = _layer_norm(hr @ w["weight_hh"].T, w, "hh", cfg.layer_norm)
    if "bias_hh" in w:
        s = s + w["bias_hh"]
    z_i, z_f, z_g, z_o = (a + s).chunk(4, dim=-1)  # torch's gate order i, f, g, o; each (B, H)
    if cfg.peephole:
        p_i, p_f, p_o = w["peephole"].chunk(3)
        z_i, z_f = z_i + p_i * c, z_f + p_f * c
    i, g = cell.act(cell.gate, z_i), cell.act(cell.cell, z_g)
    f = 1.0 - i if cfg.input_forget else cell.act(cell.gate, z_f)
    c_tilde = f * c + i * g
    if cfg.peephole:
        z_o = z_o + p_o * c_tilde
    o = cell.act(cell.gate, z_o)
    m = o * cell.hidden(_layer_norm(c_tilde, w, "cell", cfg.layer_norm))  # no clip on the hidden activation
    h_tilde = m @ w["weight_hr"].T if "weight_hr" in w else m
    return _zoneout(m_h, h, h_tilde), _zoneout(m_c, c, c_tilde)


def gru_step(cell: _Cell, a, state, w, m_rd=None, m_c=None, m_h=None):
    """One GRU step of docs/variants.md. a (B, 3H) the input projection; state (h (B, H),); m_c unused."""
    cfg, H = cell.config, cell.config.hidden_size
    (h,) = state
    hr = h if m_rd is None else h * m_rd
    a_r, a_z, a_n = a.chunk(3, dim=-1)  # torch's gate order r, z, n
    b_hh = w.get("bias_hh")
    if cfg.linear_before_reset:
        s = _layer_norm(hr @ w["weight_hh"].T, w, "hh", cfg.layer_norm)
        s_r, s_z, s_n = (s if b_hh is None else s + b_hh).chunk(3, dim=-1)
    else:  # the n rows see r ⊙ h: only the r, z rows are computed now
        s_rz = hr @ w["weight_hh"][:2 * H].T
        s_r, s_z = (s_rz if b_hh is None else s_rz + b_hh[:2 * H]).chunk(2, dim=-1)
    r = cell.act(cell.gate, a_r + s_r)
    z = cell.act(cell.gate, a_z + s_z)
    if not cfg.linear_before_reset:
        s_n = (r * hr) @ w["weight_hh"][2 * H:].T
        s_n = s_n if b_hh is None else s_n + b_hh[2 * H:]
        n = cell.act(cell.cell, a_n + s_n)
    else:
        n = cell.act(cell.cell, a_n + r * s_n)
    h_tilde = (1.0 - z) * n + z * h
    return (_zoneout(m_h, h, h_tilde),)


def _eval_masks(config):
    """Evaluation masks of every step: zoneout by its expectation (a Python float broadcasts), no dropout."""
    z_c, z_h = config.zoneout
    return lambda t: (None, z_c or None, z_h or None)


def _run_direction(cell, step, a, state, w, mask, reverse, masks_at):
    """One direction of one layer over a (T, B, G·H) -> (y (T, B, P), final state).

    mask (T, B, 1) or None: 1 while a sequence runs, 0 after its end (state frozen, output zero), which for
    the reverse direction means it starts from the initial state at each sequence's last valid step.
    """
    T = a.shape[0]
    ys = [None] * T
    for t in reversed(range(T)) if reverse else range(T):
        new = step(cell, a[t], state, w, *masks_at(t))
        if mask is None:
            state, ys[t] = new, new[0]
        else:
            m = mask[t]  # (B, 1)
            state = tuple(m * n + (1 - m) * s for n, s in zip(new, state))
            ys[t] = m * new[0]
    return ys, state


def _scan_direction(cell, step, a, state, w, mask, reverse, masks_at):
    """``_run_direction`` as one ``torch.scan`` over time (a loop an exported graph keeps: ONNX Scan), for
    evaluation (masks_at gives the same masks at every step). mask (T, B, 1) or None."""
    from torch._higher_order_ops.scan import scan

    masks = masks_at(0)
    steps = (a,) if mask is None else (a, mask)

    def combine(state, xs):
        new = step(cell, xs[0], state, w, *masks)
        y = new[0].clone() if mask is None else xs[1] * new[0]  # a scan output may not alias the carry
        if mask is not None:
            m = xs[1]  # (B, 1)
            new = tuple(m * n + (1 - m) * s for n, s in zip(new, state))
        return tuple(new), y

    final, ys = scan(combine, tuple(state), steps, reverse=reverse)
    return ys, final


def _step_mask(lengths, steps, like):
    """(T, B, 1) in like's dtype and device: 1 where t < lengths[b]; None without lengths."""
    if lengths is None:
        return None
    t = torch.arange(steps, device=like.device)
    return (t[:, None] < lengths.to(like.device)[None, :]).to(like.dtype)[:, :, None]


def forward(config: RNNConfig, params: dict, x: Tensor, state0=None, lengths=None, dropout_masks=None,
            variant_masks=None, *, loop: str = "python") -> tuple[Tensor, tuple]:
    """Stacked, optionally bidirectional RNN over x (T, B, I), as ``lstmkit.ref.rnn.forward`` without its cache.

    state0: tuple as described in the module docstring, or None for zeros; lengths (B,) int tensor or None;
    dropout_masks None/[] or L − 1 tensors (T, B, D·P); variant_masks a ``VariantMasks`` of tensors (training)
    or None (evaluation); loop: "python" (a Python loop over time), or "scan" (one ``torch.scan``, which
    torch.export keeps as a loop: evaluation only). Returns (output (T, B, D·P), final state tuple
    (h_n (L·D, B, P)[, c_n (L·D, B, H)])).
    """
    if loop not in ("python", "scan") or (loop == "scan" and variant_masks is not None):
        raise ValueError(f"loop: expected 'python', or 'scan' without training masks, got {loop!r}")
    run = _scan_direction if loop == "scan" else _run_direction
    cell = _Cell(config)
    step = lstm_step if config.mode == "LSTM" else gru_step
    T, B = x.shape[0], x.shape[1]
    D, P, H = config.num_directions, config.output_size, config.hidden_size
    if state0 is None:
        state0 = (x.new_zeros((config.num_layers * D, B, P)),)
        state0 += (x.new_zeros((config.num_layers * D, B, H)),) if config.mode == "LSTM" else ()
    mask = _step_mask(lengths, T, x)
    finals = [[] for _ in state0]
    layer_input = x
    for layer in range(config.num_layers):
        outputs = []
        for d in range(D):
            k = layer * D + d
            w = layer_weights(params, layer, d)
            masks_at = _eval_masks(config) if variant_masks is None else (lambda t, k=k: variant_masks.at(k, t))
            a = _input_projection(config, layer_input, w)  # (T, B, G·H)
            ys, final = run(cell, step, a, tuple(s[k] for s in state0), w, mask, d == 1, masks_at)
            outputs.append(ys if loop == "scan" else torch.stack(ys) if T else x.new_zeros((0, B, P)))
            for j, s in enumerate(final):
                finals[j].append(s)
        layer_input = torch.cat(outputs, dim=2)  # (T, B, D·P)
        if dropout_masks and layer < config.num_layers - 1:
            layer_input = layer_input * dropout_masks[layer]
    return layer_input, tuple(torch.stack(f) for f in finals)
