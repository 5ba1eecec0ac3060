"""Pictures of a Trace (matplotlib, the "viz" extra): heatmaps, saturation histograms, gradient through time,
the PCA trajectory, and text coloured by a unit's activation.

Each function returns a ``matplotlib.figure.Figure`` drawn on the Agg canvas. pyplot is never imported,
so nothing here touches matplotlib's global backend or opens a window, and figures are freed when
dropped. ``png_bytes`` and ``save_png`` turn a figure into a PNG.
"""
from __future__ import annotations

import io
import os

import numpy as np

from .._optional import require
from . import views
from .trace import Trace

def _figure(width, height, layout="constrained"):
    """A Figure on the Agg canvas, without pyplot."""
    require("matplotlib", "viz")
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=90, layout=layout)
    FigureCanvasAgg(fig)
    return fig


def png_bytes(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()


def save_png(fig, path) -> str:
    """Write ``fig`` as a PNG at ``path``; returns the path."""
    path = os.fspath(path)
    fig.savefig(path, format="png")
    return path


def _direction_label(tr: Trace, layer: int, direction: int) -> str:
    layer = layer % len(tr.layers)
    return f"layer {layer}" + (" reverse" if direction == 1 else (" forward" if tr.config.bidirectional else ""))


def state_heatmaps(tr: Trace, layer: int = -1, direction: int = 0, batch: int = 0, text: str | None = None):
    """One heatmap per gate, c and h of one sequence: units (rows) × time steps (columns).

    Gates in their activation's range (σ in [0, 1], tanh in [−1, 1]: ``views.gate_ranges``); c, h and a gate
    with an unbounded activation on a symmetric scale.
    Steps past the sequence's end are NaN and left blank. ``text`` labels the time axis, one char per step.
    """
    q = tr.layers[layer][direction].quantities()
    ranges = views.gate_ranges(tr.config)  # a gate's colours span its activation's range, where it has one
    height = 1.3 + 1.25 * len(q)
    # fixed margins: the constrained layout costs more than the drawing itself with a colorbar per panel
    fig = _figure(min(3 + 0.12 * tr.steps, 16), height, layout=None)
    fig.subplots_adjust(left=0.1, right=0.98, top=1 - 0.45 / height, bottom=0.75 / height, hspace=0.15)
    axes = fig.subplots(len(q), 1, sharex=True, squeeze=False)[:, 0]
    for ax, (name, a) in zip(axes, q.items()):
        v = a[:, batch].T  # (units, T)
        if ranges.get(name) is not None:
            lo, hi = ranges[name]
        else:
            m = float(np.nanmax(np.abs(v))) if np.isfinite(v).any() else 1.0
            lo, hi = -m or -1.0, m or 1.0
        cmap = "viridis" if lo == 0 else "RdBu_r"
        im = ax.imshow(v, aspect="auto", interpolation="nearest", cmap=cmap, vmin=lo, vmax=hi)
        ax.set_ylabel(f"{name}\nunit")
        fig.colorbar(im, ax=ax, pad=0.01, fraction=0.04)
    if text is not None and tr.steps <= 80:
        axes[-1].set_xticks(range(min(len(text), tr.steps)))
        axes[-1].set_xticklabels([repr(c)[1:-1] or " " for c in text[: tr.steps]], fontsize=7, family="monospace")
    axes[-1].set_xlabel("time step")
    fig.suptitle(f"{tr.config.mode} {_direction_label(tr, layer, direction)}, sequence {batch}")
    return fig


def saturation_histograms(tr: Trace, layer: int = -1, direction: int = 0, low: float = 0.1, high: float = 0.9):
    """Per switch gate (``views.saturation``'s): histogram of its values over all valid steps and units, over its
    activation's range, saturated zones shaded, and the share of (step, unit) pairs in them."""
    sat = views.saturation(tr, low, high)[layer][direction]
    if not sat:
        raise ValueError(f"saturation_histograms: no gate of this {tr.config.mode} has a bounded activation "
                         f"({tr.config.activations[0][0]}), so none saturates")
    dt = tr.layers[layer][direction]
    fig = _figure(3.2 * len(sat), 2.8)
    axes = fig.subplots(1, len(sat), squeeze=False)[0]
    for ax, (name, s) in zip(axes, sat.items()):
        v = dt.gates[name][tr.valid].ravel()
        lo, hi = views.gate_ranges(tr.config)[name]
        below, above = s.thresholds
        ax.hist(v, bins=40, range=(lo, hi), color="#4c72b0")
        ax.axvspan(lo, below, color="#dd8452", alpha=0.25)
        ax.axvspan(above, hi, color="#dd8452", alpha=0.25)
        ax.set_title(f"{name}: {100 * s.low.mean():.0f}% < {below:g}, {100 * s.high.mean():.0f}% > {above:g}",
                     fontsize=9)
        ax.set_xlabel("gate value")
    axes[0].set_ylabel("count (steps × units)")
    fig.suptitle(f"gate saturation, {_direction_label(tr, layer, direction)}")
    return fig


def gradient_curve(tr: Trace, flow: views.GradientFlow | None = None):
    """‖∂L/∂h_t‖ against t (log scale), one line per layer and direction: vanishing or exploding gradients."""
    flow = flow or views.gradient_norms(tr)
    fig = _figure(6, 3.2)
    ax = fig.subplots()
    for l, dirs in enumerate(flow.h):
        for d in range(len(dirs)):
            curve = flow.curve(l, d)
            # a log axis cannot show exact zeros (steps the loss never reaches); NaN: no sequence runs there
            steps = np.nonzero(np.nan_to_num(curve) > 0)[0]
            ax.plot(steps, curve[steps], marker=".", label=_direction_label(tr, l, d))
    ax.set_yscale("log")
    ax.set_xlabel("time step t")
    ax.set_ylabel("mean ‖∂L/∂h_t‖")
    ax.set_title("gradient through time (loss on the last output)")
    ax.legend(fontsize=8)
    ax.grid(True, alpha=0.3)
    return fig


def pca_trajectory(tr: Trace, layer: int = -1, direction: int = 0, batch: int = 0, text: str | None = None):
    """The hidden state's path over time in its first two principal components, coloured by step."""
    p = views.pca(tr, layer, direction, batch, k=2)
    pts = p.points[tr.valid[:, batch]]
    if pts.shape[1] < 2:  # a single unit: plot it against time instead of a second axis
        pts = np.column_stack([pts[:, 0], np.zeros(len(pts))])
    fig = _figure(5, 4.2)
    ax = fig.subplots()
    ax.plot(pts[:, 0], pts[:, 1], color="0.7", lw=1, zorder=1)
    sc = ax.scatter(pts[:, 0], pts[:, 1], c=np.arange(len(pts)), cmap="plasma", s=18, zorder=2)
    if len(pts):
        ax.annotate("start", pts[0], fontsize=8)
        ax.annotate("end", pts[-1], fontsize=8)
    if text is not None and len(pts) <= 60:
        for t, (a, b) in enumerate(pts):
            ax.annotate(text[t] if t < len(text) else "", (a, b), fontsize=7, xytext=(3, 3), textcoords="offset points")
    fig.colorbar(sc, ax=ax, label="time step")
    ev = ", ".join(f"{100 * e:.0f}%" for e in p.explained)
    ax.set_xlabel("PC 1")
    ax.set_ylabel("PC 2")
    ax.set_title(f"PCA of h, {_direction_label(tr, layer, direction)} (variance {ev})", fontsize=10)
    return fig


def text_activation(text: str, values, title: str = "", width: int = 64, label: str = "value"):
    """``text`` with each character on a background coloured by ``values`` (one per character; blue < 0 < red),
    and a colour bar named ``label`` as the legend.

    values: (len(text),), e.g. one unit's h over the sequence; NaN (past the end) is grey.
    """
    require("matplotlib", "viz")
    from matplotlib import colormaps
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import Normalize

    values = np.asarray(values, np.float64)
    rows = max(1, -(-len(text) // width))
    fig = _figure(0.16 * min(width, max(len(text), 1)) + 0.6, 0.32 * rows + 0.6)
    ax = fig.subplots()
    ax.set_xlim(0, min(width, max(len(text), 1)))
    ax.set_ylim(rows, 0)
    ax.axis("off")
    m = float(np.nanmax(np.abs(values))) if np.isfinite(values).any() else 1.0
    cmap = colormaps["RdBu_r"]
    for k, ch in enumerate(text):
        r, c = divmod(k, width)
        v = values[k] if k < len(values) else np.nan
        face = "0.85" if not np.isfinite(v) else cmap(0.5 + 0.5 * v / (m or 1.0))
        shown = {"\n": "⏎", "\t": "⇥", " ": "␣"}.get(ch, ch)
        ink = "white" if np.isfinite(v) and abs(v) > 0.6 * m else "black"  # stay legible on dark cells
        ax.text(c + 0.5, r + 0.5, shown, ha="center", va="center", family="monospace", fontsize=9, color=ink,
                bbox=dict(boxstyle="square,pad=0.15", fc=face, ec="none"))
    if title:
        ax.set_title(title, fontsize=9, loc="left")
    legend = fig.colorbar(ScalarMappable(Normalize(-(m or 1.0), m or 1.0), cmap), ax=ax, orientation="horizontal",
                          fraction=0.6 / (rows + 2), aspect=40, pad=0.02)
    legend.set_label(f"{label} (grey: past the sequence's end)", fontsize=8)
    legend.ax.tick_params(labelsize=7)
    return fig


def all_figures(tr: Trace, batch: int = 0, text: str | None = None, unit: int | None = None) -> dict:
    """Every picture of a trace, by a file-friendly name -> Figure: heatmaps and saturation for each layer
    and direction, the gradient curve, the PCA trajectory of the top layer, and (with ``text``) the text
    coloured by ``unit`` of the top layer (default: the unit with the largest activation variance)."""
    figs, sat = {}, views.saturation(tr)
    for l, dirs in enumerate(tr.layers):
        for d in range(len(dirs)):
            tag = f"l{l}" + ("_reverse" if d else "")
            figs[f"heatmap_{tag}"] = state_heatmaps(tr, l, d, batch, text)
            if sat[l][d]:  # none where every switch gate's activation is unbounded
                figs[f"saturation_{tag}"] = saturation_histograms(tr, l, d)
    figs["gradient"] = gradient_curve(tr)
    figs["pca"] = pca_trajectory(tr, batch=batch, text=text)
    if text is not None:
        h = tr.layers[-1][0].h[:, batch]
        if unit is None:
            unit = int(np.nanargmax(np.nanvar(h, axis=0))) if np.isfinite(h).any() else 0
        figs["text"] = text_activation(text[: tr.steps], h[:, unit], f"top layer, unit {unit}: h per character",
                                       label=f"h of unit {unit}")
    return figs


def save_all(tr: Trace, outdir, batch: int = 0, text: str | None = None) -> dict:
    """``all_figures`` written as ``outdir/<name>.png``; returns name -> path."""
    os.makedirs(outdir, exist_ok=True)
    return {name: save_png(fig, os.path.join(outdir, f"{name}.png"))
            for name, fig in all_figures(tr, batch, text).items()}
