"""Derived views of a Trace: saturation, correlations, active units, PCA, gradient through time, text units.

All NumPy. Each view reads only valid steps (``Trace.valid``); layer and direction are chosen by index
(``layer=-1`` is the top layer). Shapes: T steps, B sequences, H hidden units, P = proj_size or H.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..ref import activations
from ..ref.rnn import backprop_direction
from .trace import Trace


@dataclass
class GateSaturation:
    """Per unit, the share of valid (t, b) where the gate is below ``low`` / above ``high``; each (H,). The
    thresholds are gate values (for σ gates and the defaults, 0.1 and 0.9)."""

    low: np.ndarray
    high: np.ndarray
    thresholds: tuple = (0.1, 0.9)

    @property
    def total(self) -> np.ndarray:
        """(H,) share of time the gate is saturated either way."""
        return self.low + self.high


def gate_ranges(config) -> dict:
    """Each gate's activation range (low, high), by gate name, or None where its activation is unbounded:
    LSTM i, f, o and GRU r, z take the first activation (σ unless ``activations=`` says otherwise), LSTM g and
    GRU n the second (tanh)."""
    specs = config.activations or tuple(activations.normalise(n) for n in activations.DEFAULTS[config.mode])
    switch, candidate = (activations.saturating_range(spec) for spec in specs[:2])
    names = ("i", "f", "g", "o") if config.mode == "LSTM" else ("r", "z", "n")
    return {name: candidate if name in ("g", "n") else switch for name in names}


def saturation(tr: Trace, low: float = 0.1, high: float = 0.9) -> list:
    """``sat[l][d][gate]`` -> GateSaturation for the switch gates (LSTM i, f, o; GRU r, z).

    ``low``/``high`` are shares of the gate's activation range (σ's (0, 1): the values 0.1 and 0.9; a Softsign
    gate's (−1, 1): −0.8 and 0.8). g and n are candidates, not switches, so they are left out, as is a gate
    whose activation is unbounded (Relu, ...): it has no saturated zone.
    """
    ranges = gate_ranges(tr.config)
    out = []
    for directions in tr.layers:
        per_direction = []
        for dt in directions:
            per_gate = {}
            for name, a in dt.gates.items():
                if name in ("g", "n") or ranges[name] is None:
                    continue
                lo, hi = ranges[name]
                below, above = lo + low * (hi - lo), lo + high * (hi - lo)
                v = a[tr.valid]  # (N, H) valid steps of all sequences
                n = max(len(v), 1)
                per_gate[name] = GateSaturation((v < below).sum(0) / n, (v > above).sum(0) / n, (below, above))
            per_direction.append(per_gate)
        out.append(per_direction)
    return out


def unit_input_correlation(tr: Trace, layer: int = 0, direction: int = 0, quantity: str = "h") -> np.ndarray:
    """(units, I_l) Pearson correlation of each unit's ``quantity`` with each input feature of the layer.

    Over all valid (t, b); a constant unit or feature gives 0 rather than NaN.
    """
    a = tr.layers[layer][direction].quantities()[quantity][tr.valid]  # (N, units)
    x = tr.layer_input(layer % len(tr.layers))[tr.valid]  # (N, I_l)
    a, x = a - a.mean(0), x - x.mean(0)
    denom = np.sqrt(np.outer((a**2).sum(0), (x**2).sum(0)))
    with np.errstate(invalid="ignore", divide="ignore"):
        corr = (a.T @ x) / denom
    return np.where(denom > 0, corr, 0.0)


def top_units(tr: Trace, steps, layer: int = -1, direction: int = 0, batch: int = 0, k: int = 5,
              quantity: str = "h") -> dict:
    """For each step t in ``steps``: the k units with the largest |value| as [(unit, value), ...]."""
    a = tr.layers[layer][direction].quantities()[quantity][:, batch]  # (T, units)
    out = {}
    for t in steps:
        row = a[t]
        if np.all(np.isnan(row)):
            out[int(t)] = []
            continue
        order = np.argsort(-np.abs(np.nan_to_num(row)))[:k]
        out[int(t)] = [(int(u), float(row[u])) for u in order]
    return out


@dataclass
class PCA:
    """Hidden states projected on their principal axes.

    points: (T, k) coordinates per step of sequence ``batch`` (NaN past its end);
    components: (k, units); explained: (k,) share of the variance each axis explains.
    """

    points: np.ndarray
    components: np.ndarray
    explained: np.ndarray


def pca(tr: Trace, layer: int = -1, direction: int = 0, batch: int = 0, k: int = 2, quantity: str = "h") -> PCA:
    """PCA (NumPy SVD) of the states of all valid (t, b), then the trajectory of sequence ``batch``."""
    a = tr.layers[layer][direction].quantities()[quantity]
    v = a[tr.valid]  # (N, units)
    mean = v.mean(0)
    _, s, vt = np.linalg.svd(v - mean, full_matrices=False)
    k = min(k, vt.shape[0])
    var = s**2
    explained = var[:k] / var.sum() if var.sum() > 0 else np.zeros(k)
    points = (a[:, batch] - mean) @ vt[:k].T  # NaN rows stay NaN
    return PCA(points, vt[:k], explained)


@dataclass
class GradientFlow:
    """‖∂L/∂h_t‖ per layer, direction and step, for a loss L that reads the output at the end only.

    h[l][d]: (T, B) the norm over units; dh[l][d]: (T, B, P) the gradients themselves (the total
    derivative: through the recurrence and through the layers above). dx: (T, B, I) ∂L/∂x_t.
    valid: (T, B) the steps inside each sequence (``Trace.valid``), or None for all.
    """

    h: list
    dh: list
    dx: np.ndarray
    valid: np.ndarray | None = None

    def curve(self, layer: int = -1, direction: int = 0) -> np.ndarray:
        """(T,) the gradient-through-time curve: at each step the norm averaged over the sequences that still
        run there (a padded step's zero is not a vanishing gradient); NaN where none does."""
        norms = self.h[layer][direction]
        if self.valid is None:
            return norms.mean(axis=1)
        count = self.valid.sum(axis=1)
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(count > 0, (norms * self.valid).sum(axis=1) / count, np.nan)


class _Recorder:
    """A cell that records the state gradient BPTT hands each step, then defers to the reference cell."""

    def __init__(self, cell, steps, reverse):
        # the order backprop_direction visits the steps in
        self.cell, self.seen = cell, []
        self.order = list(range(steps)) if reverse else list(reversed(range(steps)))

    def cell_backward(self, d_state, cache, w):
        self.seen.append(d_state)
        return self.cell.cell_backward(d_state, cache, w)

    def by_step(self):
        """The recorded gradients re-indexed by t: tuple of (T, B, n) arrays."""
        out = [None] * len(self.order)
        for t, d in zip(self.order, self.seen):
            out[t] = d
        return tuple(np.stack([o[j] for o in out]) for j in range(len(out[0])))


def gradient_norms(tr: Trace, d_last=None) -> GradientFlow:
    """BPTT of a loss that reads the output at each sequence's last valid step only.

    d_last: (B, D·P) ∂L/∂y at that step (default ones: L = Σ of the last output). The backward pass is the
    reference's (``ref.rnn.backprop_direction``, layer by layer as ``ref.backward`` runs it); a recording
    cell keeps the gradient of h each step receives — ∂L/∂h_t — which ``ref.backward`` sums away. They are
    zero past a sequence's end (the mask). (The c it receives is only the recurrent part of ∂L/∂c_t — the
    path through h_t is added inside the cell — so it is not reported.)
    """
    cfg, cache = tr.config, tr.cache
    T, B = tr.steps, tr.batch
    D = cfg.num_directions
    d_out = np.zeros_like(tr.output)
    last = np.clip(tr.lengths - 1, 0, None)
    d_last = np.ones((B, tr.output.shape[2])) if d_last is None else np.asarray(d_last, np.float64)
    has = tr.lengths > 0
    d_out[last[has], np.nonzero(has)[0]] = d_last[has]
    cell = cache["cell"]  # the textbook or the variant cell, the one the forward ran
    norms_h, grads_h = [None] * cfg.num_layers, [None] * cfg.num_layers
    d_layer = d_out
    for layer in reversed(range(cfg.num_layers)):
        input_size, directions = cache["layers"][layer]
        d_dirs = np.split(d_layer, D, axis=2)
        d_input = 0
        nh, gh = [], []
        for d, (w, caches) in enumerate(directions):
            rec = _Recorder(cell, T, d == 1)
            zero = tuple(np.zeros((B, n)) for n in ((cfg.output_size, cfg.hidden_size) if cfg.mode == "LSTM"
                                                     else (cfg.hidden_size,)))
            dx, _, _ = backprop_direction(rec, d_dirs[d], zero, caches, w, cache["mask"], d == 1, input_size)
            d_input = d_input + dx
            recorded = rec.by_step()
            gh.append(recorded[0])
            nh.append(np.linalg.norm(recorded[0], axis=2))
        norms_h[layer], grads_h[layer] = nh, gh
        d_layer = d_input
    return GradientFlow(norms_h, grads_h, d_layer, tr.valid)


def forget_resets(tr: Trace, layer: int = -1, direction: int = 0, batch: int = 0, threshold: float = 0.5) -> list:
    """Steps t where the mean "keep" gate over units is below ``threshold``: the cell is mostly rewritten.

    LSTM: the forget gate f (c_t = f ⊙ c_{t−1} + i ⊙ g). GRU: the update gate z, which keeps h_{t−1}
    (h_t = (1 − z) ⊙ n + z ⊙ h_{t−1}). Returns [(t, mean gate)].
    """
    name = "f" if tr.config.mode == "LSTM" else "z"
    g = tr.layers[layer][direction].gates[name][:, batch]  # (T, H)
    out = []
    for t in range(tr.steps):
        if tr.valid[t, batch]:
            m = float(g[t].mean())
            if m < threshold:
                out.append((t, m))
    return out


def char_responses(tr: Trace, text: str, unit: int, layer: int = -1, direction: int = 0, batch: int = 0,
                   k: int = 8, quantity: str = "h") -> list:
    """What a unit responds to in char-level text: the k characters with the highest mean activation.

    ``text`` is the sequence ``batch`` of the trace, one character per step. Returns
    [(char, mean activation, count)], highest first.
    """
    a = tr.layers[layer][direction].quantities()[quantity][:, batch, unit]  # (T,)
    sums, counts = {}, {}
    for t, ch in enumerate(text[: tr.steps]):
        if tr.valid[t, batch]:
            sums[ch] = sums.get(ch, 0.0) + float(a[t])
            counts[ch] = counts.get(ch, 0) + 1
    ranked = sorted(((ch, sums[ch] / counts[ch], counts[ch]) for ch in sums), key=lambda r: -r[1])
    return ranked[:k]


def findings(tr: Trace, batch: int = 0, text: str | None = None, k: int = 5, reset_threshold: float = 0.5,
             saturated_share: float = 0.5) -> list:
    """What a reader should know about one input, as [(section title, [lines])]: the most active units of
    the top layer (with the characters that drive each, given ``text``), the steps where the forget gate
    (GRU: the update gate) mostly rewrites the state, saturation warnings, and the gradient's decay."""
    cfg = tr.config
    label = lambda l, d: f"layer {l}" + (" reverse" if d else (" forward" if cfg.bidirectional else ""))  # noqa: E731
    top = tr.layers[-1][0].h[:, batch]
    ok = tr.valid[:, batch]
    lines = []
    if ok.any():
        strength = np.abs(top[ok]).mean(0)  # (P,)
        for u in np.argsort(-strength)[:k]:
            line = f"unit {u}: mean |h| {strength[u]:.3f}, peak {np.nanmax(np.abs(top[:, u])):.3f} " \
                   f"at step {int(np.nanargmax(np.abs(top[:, u])))}"
            if text is not None:
                chars = char_responses(tr, text, int(u), batch=batch, k=3)
                line += "; highest on " + ", ".join(f"{c!r} ({m:+.2f})" for c, m, _ in chars)
            lines.append(line)
    else:
        lines.append(f"sequence {batch} is empty (length 0)")
    sections = [(f"top units ({label(cfg.num_layers - 1, 0)}, by mean |h| over {int(ok.sum())} steps)", lines)]

    gate = "f" if cfg.mode == "LSTM" else "z"
    lines = []
    for l, dirs in enumerate(tr.layers):
        for d in range(len(dirs)):
            resets = forget_resets(tr, l, d, batch, reset_threshold)
            shown = ", ".join(f"{t}" + (f" {text[t]!r}" if text is not None and t < len(text) else "") +
                              f" ({m:.2f})" for t, m in resets[:20])
            more = f" … and {len(resets) - 20} more" if len(resets) > 20 else ""
            lines.append(f"{label(l, d)}: {len(resets)} step(s)" + (f": {shown}{more}" if resets else ""))
    sections.append((f"resets: steps where the mean {gate} < {reset_threshold} (the state is mostly rewritten)",
                     lines))

    lines = []
    for l, dirs in enumerate(saturation(tr)):
        for d, gates in enumerate(dirs):
            for name, s in gates.items():
                units = np.nonzero(s.total > saturated_share)[0]
                if len(units):
                    which = ", ".join(map(str, units[:12])) + (" …" if len(units) > 12 else "")
                    below, above = (f"{v:g}" for v in s.thresholds)
                    lines.append(f"warning: {label(l, d)} gate {name} is saturated (< {below} or > {above}) more than "
                                 f"{100 * saturated_share:.0f}% of the time in {len(units)}/{len(s.total)} "
                                 f"unit(s): {which}")
    lines = lines or [f"no gate is saturated more than {100 * saturated_share:.0f}% of the time in any unit"]
    unbounded = [name for name, r in gate_ranges(cfg).items() if r is None and name not in ("g", "n")]
    if unbounded:
        lines.append(f"gate(s) {', '.join(unbounded)}: activation {cfg.activations[0][0]} is unbounded, so they have "
                     "no saturated zone (not checked)")
    sections.append(("saturation", lines))

    curve = gradient_norms(tr).h[-1][0][:, batch]
    n = int(tr.lengths[batch])
    lines = []
    if n > 1 and curve[n - 1] > 0:
        ratio = curve[0] / curve[n - 1]
        verdict = "vanishing" if ratio < 1e-3 else "exploding" if ratio > 1e3 else "stable"
        lines.append(f"‖∂L/∂h_0‖ / ‖∂L/∂h_{n - 1}‖ = {ratio:.3g} over {n} steps ({verdict}; loss on the last output)")
    sections.append(("gradient through time (top layer)", lines or ["too short to tell"]))
    return sections
