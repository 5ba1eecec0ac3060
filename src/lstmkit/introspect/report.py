"""One self-contained HTML report of a model on one input: summary, findings, figures, an interactive view.

Self-contained means the file needs nothing else: the figures are inline base64 PNGs, the trace is
inline JSON, the interactive view is vanilla JavaScript drawing on a canvas; there is no network
reference at all (no CDN, no fonts, no SVG namespace URL), so it opens offline and can be mailed.

Also the input readers the command line shares: ``read_data`` (.npy arrays or char-level text).
"""
from __future__ import annotations

import base64
import html
import json
import os
from pathlib import Path

import numpy as np

from . import plots, views
from .trace import Trace, to_layer, trace

__all__ = ["write_report", "render", "read_data", "one_hot", "model_vocab"]


def one_hot(text: str, vocab, name: str = "data") -> np.ndarray:
    """(T, 1, V) float64 one-hot encoding of ``text`` over ``vocab`` (a string or list of characters).
    name: what the text is called in the error for a character outside ``vocab``."""
    index = {ch: k for k, ch in enumerate(vocab)}
    x = np.zeros((len(text), 1, len(index)))
    for t, ch in enumerate(text):
        if ch not in index:
            raise ValueError(f"{name}: character {ch!r} at position {t} is not in the vocabulary ({len(index)} chars)")
        x[t, 0, index[ch]] = 1.0
    return x


def _text_encoding(path) -> tuple:
    """(vocabulary or None, input embedding (rows, E) or None, the id of vocabulary[0]) stored in a safetensors
    model file.

    The vocabulary is metadata "vocab" (JSON list or string), or the "vocab" of its metadata "config"
    (as the task checkpoints keep it); the embedding is a task checkpoint's "model.embed.weight", in front of
    its recurrent layer. Ids below the first are reserved: ``lstmkit generate``'s id 0 is an unknown character
    (vocabulary[k] has id k + 1); ``lstmkit classify``'s 0 is padding and 1 an unknown character (id k + 2).
    Other files store neither.
    """
    if path is None or not str(path).endswith(".safetensors"):
        return None, None, 1
    from ..io.safetensors import read

    metadata, tensors = read(path)
    embedding = tensors.get("model.embed.weight")
    first = 2 if metadata.get("task") == "classify" else 1
    if "vocab" in metadata:
        try:
            return list(json.loads(metadata["vocab"])), embedding, first
        except ValueError:
            return list(metadata["vocab"]), embedding, first
    try:
        vocab = json.loads(metadata.get("config", "{}")).get("vocab")
    except (ValueError, AttributeError):
        vocab = None
    return (None if vocab is None else list(vocab)), embedding, first


def model_vocab(path) -> list | None:
    """The character vocabulary a safetensors model stores (see ``_text_encoding``), or None."""
    return _text_encoding(path)[0]


def read_data(path, layer, vocab=None, model_path=None) -> tuple:
    """Read ``--data`` for ``layer``: returns (x in the layer's layout, text or None).

    A .npy file holds (T, B, I) or (T, I) numbers (sequence-first, whatever the model's batch_first).
    Any other file is UTF-8 text, one-hot encoded per character with the model's vocabulary (its metadata),
    else ``vocab``: a string of characters, or the path of a file whose characters are the vocabulary;
    a model with an input embedding (a ``lstmkit generate`` checkpoint) gets the embedded characters.
    Errors name --data / --vocab and the file: the layer's own checks would name its argument (input).
    """
    from ..io.files import check_regular, read_text

    path = check_regular(path, ".npy or text file", "--data")  # a FIFO would block the read below
    if path.suffix == ".npy":
        return _read_array(path, layer), None
    text = read_text(path, "--data")
    if not text:
        raise ValueError(f"--data {path}: an empty text file, expected the characters to trace")
    chars, embedding, first = _text_encoding(model_path)
    if chars is None and vocab is not None:
        # a path that exists is a file to read (a FIFO or folder refused, not taken for the characters of its name)
        source = read_text(vocab, "--vocab", "text file of the vocabulary") if os.path.exists(vocab) else vocab
        chars = list(dict.fromkeys(source))  # the order given, duplicates dropped
    if chars is None:
        raise ValueError(f"--data {path} is text, but the model stores no vocabulary; give --vocab")
    if embedding is not None:
        if embedding.shape != (len(chars) + first, layer.config.input_size):
            raise ValueError(f"{model_path}: its input embedding has shape {tuple(embedding.shape)}, expected "
                             f"({len(chars) + first}, {layer.config.input_size}) for its {len(chars)} characters and "
                             f"its recurrent layer's input_size; the file is not one lstmkit wrote")
        x = one_hot(text, chars, f"--data {path}") @ embedding[first:].astype(np.float64)  # (T, 1, E): what the
        # embedding feeds the recurrent layer (vocabulary[k] has id k + first)
    elif len(chars) != layer.config.input_size:
        raise ValueError(f"--vocab: {len(chars)} characters, but the model reads {layer.config.input_size} values "
                         "per step (its input_size)")
    else:
        x = one_hot(text, chars, f"--data {path}")  # (T, 1, V)
    return (x.transpose(1, 0, 2) if layer.config.batch_first else x), text


def _read_array(path: Path, layer) -> np.ndarray:
    """A .npy --data file as float64 in the layer's layout, its shape checked against the layer."""
    try:
        x = np.load(path, allow_pickle=False)
    except (ValueError, EOFError, OSError) as e:
        raise ValueError(f"--data {path}: not a readable .npy array ({type(e).__name__}: {e})") from None
    if not isinstance(x, np.ndarray) or not np.issubdtype(x.dtype, np.number) or np.iscomplexobj(x):
        got = type(x).__name__ if not isinstance(x, np.ndarray) else f"dtype {x.dtype}"
        raise ValueError(f"--data {path}: expected one real-valued array (np.save), got {got}")
    if not np.isfinite(x).all():  # the trace would be NaN throughout, and its views fail on it
        where = tuple(int(i) for i in np.argwhere(~np.isfinite(x))[0])
        raise ValueError(f"--data {path}: expected finite values, got NaN or inf (first at index {where})")
    size = layer.config.input_size
    if x.ndim not in (2, 3) or x.shape[-1] != size or 0 in x.shape:
        raise ValueError(f"--data {path}: expected an array (T, B, {size}) or (T, {size}), sequence-first, T and B "
                         f">= 1 ({size} values per step: the model's input_size), got shape {x.shape}")
    if x.ndim == 3 and layer.config.batch_first:
        x = x.transpose(1, 0, 2)
    return np.asarray(x, np.float64)


def _img(fig, alt) -> str:
    data = base64.b64encode(plots.png_bytes(fig)).decode("ascii")
    return f'<figure><img alt="{html.escape(alt)}" src="data:image/png;base64,{data}"><figcaption>{html.escape(alt)}' \
           f'</figcaption></figure>'


def _series(a) -> list:
    """(T, units) -> list of rows, rounded to 4 decimals, NaN (past the end) -> null."""
    a = np.round(np.asarray(a, np.float64), 4)
    return [[None if not np.isfinite(v) else float(v) for v in row] for row in a]


def view_data(tr: Trace, batch: int = 0, text: str | None = None) -> dict:
    """What the interactive view reads: per layer and direction, every quantity of sequence ``batch``."""
    directions = []
    for l, dirs in enumerate(tr.layers):
        for d, dt in enumerate(dirs):
            label = f"layer {l}" + (" reverse" if d else (" forward" if tr.config.bidirectional else ""))
            directions.append({"label": label,
                               "quantities": {name: _series(a[:, batch]) for name, a in dt.quantities().items()}})
    return {"mode": tr.config.mode, "steps": tr.steps, "length": int(tr.lengths[batch]),
            "text": text[: tr.steps] if text is not None else None, "directions": directions}


def render(tr: Trace, batch: int = 0, text: str | None = None, title: str = "lstmkit report") -> str:
    """The report's HTML text for a trace (see the module docstring for what it holds)."""
    from ..summary import summary

    figs = plots.all_figures(tr, batch, text)
    captions = {"gradient": "gradient of the loss on the last output through time",
                "pca": "hidden-state trajectory in its first two principal components",
                "text": "the input text, each character coloured by one unit's activation"}
    images = []
    for name, fig in figs.items():
        kind, _, tag = name.partition("_")
        cap = captions.get(name) or f"{'gates, cell and hidden state' if kind == 'heatmap' else 'gate saturation'}" \
                                    f" ({tag.replace('_', ' ').replace('l', 'layer ', 1)})"
        images.append(_img(fig, cap))
    found = "".join(f"<h3>{html.escape(title_)}</h3><pre>{html.escape(chr(10).join(lines))}</pre>"
                    for title_, lines in views.findings(tr, batch, text))
    data = json.dumps(view_data(tr, batch, text), separators=(",", ":"))
    # the JSON sits in a <script> element: no "<" at all, so neither "</script>" nor "<!--" (which would keep
    # the element open past its end tag) can occur; JSON reads \u003c as "<"
    data = data.replace("<", "\\u003c")
    return _TEMPLATE.format(title=html.escape(title), summary=html.escape(str(summary(tr.config))), findings=found,
                            figures="\n".join(images), data=data, script=_SCRIPT, style=_STYLE,
                            seq=f"sequence {batch} of {tr.batch}, {int(tr.lengths[batch])} of {tr.steps} steps")


def write_report(model, x, path, text: str | None = None, lengths=None, batch: int = 0, overwrite: bool = False,
                 title: str = "lstmkit report") -> Path:
    """Trace ``model`` on ``x`` and write the report to ``path`` (one HTML file); returns the path.

    model: anything ``trace`` takes (a layer, a torch module, a model file). x: as the model takes it.
    text: the characters of sequence ``batch``, one per step, to label steps and find what units respond to.
    Refuses to replace an existing file unless ``overwrite``.
    """
    from ..io.files import atomic_write, check_not_source, check_writable

    path = check_writable(path, overwrite)  # before the work; atomic_write checks again before the rename
    if isinstance(model, (str, Path)):
        check_not_source(path, model, "path", "the model file")
    layer = to_layer(model)
    tr = trace(layer, x, lengths=lengths)
    if not 0 <= batch < tr.batch:
        raise ValueError(f"batch: expected a sequence index in [0, {tr.batch}), got {batch}")
    page = render(tr, batch, text, title)
    # through a temp file: a full disk or a crash never leaves half a report, nor destroys the one replaced
    return atomic_write(path, lambda tmp: Path(tmp).write_text(page, encoding="utf-8"), overwrite)


_STYLE = """
body{font:14px/1.4 system-ui,sans-serif;margin:1.5em auto;max-width:1100px;padding:0 1em;color:#222}
pre{background:#f5f5f5;padding:.6em;overflow-x:auto;font-size:12px}
#findings pre{white-space:pre-wrap}
figure{margin:1em 0}img{max-width:100%}figcaption{color:#555;font-size:12px}
#view{border:1px solid #ccc;padding:.8em;border-radius:6px;background:#fafafa}
#view label{margin-right:1em}#readout{font-family:monospace;margin:.5em 0;white-space:pre}
canvas{border:1px solid #ddd;background:#fff;display:block;margin-top:.4em}
#step{width:60%;vertical-align:middle}#textline{font-family:monospace;white-space:pre-wrap;margin:.4em 0}
#textline span.cur{background:#fc6;outline:1px solid #c80}
"""

_TEMPLATE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<style>{style}</style></head>
<body>
<h1>{title}</h1>
<p>{seq}</p>
<h2>Model</h2><pre id="summary">{summary}</pre>
<h2>Interactive view</h2>
<div id="view">
<label>layer / direction <select id="direction"></select></label>
<label>quantity <select id="quantity"></select></label>
<label>unit <select id="unit"></select></label><br>
<label>time step <input type="range" id="step" min="0" max="0" value="0"></label>
<div id="textline"></div>
<div id="readout">loading…</div>
<canvas id="plot" width="900" height="180"></canvas>
<canvas id="bars" width="900" height="140"></canvas>
</div>
<h2>Findings</h2><div id="findings">{findings}</div>
<h2>Figures</h2>
{figures}
<script type="application/json" id="trace-data">{data}</script>
<script>{script}</script>
</body></html>
"""

_SCRIPT = r"""
"use strict";
const D = JSON.parse(document.getElementById("trace-data").textContent);
const $ = (id) => document.getElementById(id);
const sel = {dir: $("direction"), q: $("quantity"), unit: $("unit"), step: $("step")};
function fill(select, items) {
  const keep = select.value;
  select.innerHTML = "";
  items.forEach(([value, label]) => { const o = document.createElement("option"); o.value = value; o.textContent = label; select.appendChild(o); });
  if (items.some(([v]) => String(v) === keep)) select.value = keep;
}
function current() { return D.directions[+sel.dir.value].quantities[sel.q.value]; }
function refill() {
  fill(sel.q, Object.keys(D.directions[+sel.dir.value].quantities).map((k) => [k, k]));
  const units = current()[0].length;
  fill(sel.unit, Array.from({length: units}, (_, u) => [u, "unit " + u]));
}
function fmt(v) { return v === null ? "n/a (past the end)" : v.toFixed(4); }
function draw() {
  const rows = current(), u = +sel.unit.value, t = +sel.step.value;
  const series = rows.map((r) => r[u]);
  const ch = D.text ? " " + JSON.stringify(D.text[t] || "") : "";
  $("readout").textContent = `t=${t}${ch}  ${D.directions[+sel.dir.value].label}  ${sel.q.value}[unit ${u}] = ${fmt(series[t])}`;
  if (D.text) {
    const tl = $("textline"); tl.innerHTML = "";
    Array.from(D.text).forEach((c, k) => { const s = document.createElement("span"); s.textContent = c; if (k === t) s.className = "cur"; tl.appendChild(s); });
  }
  const cv = $("plot"), g = cv.getContext("2d"), W = cv.width, H = cv.height, pad = 30;
  g.clearRect(0, 0, W, H);
  const vals = series.filter((v) => v !== null);
  let lo = Math.min(0, ...vals), hi = Math.max(0, ...vals);
  if (hi - lo < 1e-9) { hi += 1; lo -= 1; }
  const X = (k) => pad + (W - 2 * pad) * (D.steps > 1 ? k / (D.steps - 1) : 0.5);
  const Y = (v) => H - pad + (v - lo) / (hi - lo) * (2 * pad - H);
  g.strokeStyle = "#bbb"; g.beginPath(); g.moveTo(pad, Y(0)); g.lineTo(W - pad, Y(0)); g.stroke();
  g.strokeStyle = "#1f77b4"; g.lineWidth = 1.5; g.beginPath();
  let pen = false;
  series.forEach((v, k) => { if (v === null) { pen = false; return; } if (pen) g.lineTo(X(k), Y(v)); else g.moveTo(X(k), Y(v)); pen = true; });
  g.stroke();
  g.strokeStyle = "#d62728"; g.beginPath(); g.moveTo(X(t), 5); g.lineTo(X(t), H - 5); g.stroke();
  if (series[t] !== null) { g.fillStyle = "#d62728"; g.beginPath(); g.arc(X(t), Y(series[t]), 4, 0, 2 * Math.PI); g.fill(); }
  g.fillStyle = "#333"; g.font = "11px sans-serif";
  g.fillText(hi.toFixed(3), 2, pad - 4); g.fillText(lo.toFixed(3), 2, H - pad + 12);
  g.fillText(`${sel.q.value}, unit ${u}, over time`, pad, 12);
  const bv = $("bars"), b = bv.getContext("2d"), BW = bv.width, BH = bv.height, row = rows[t];
  b.clearRect(0, 0, BW, BH);
  const m = Math.max(1e-9, ...row.filter((v) => v !== null).map(Math.abs)), w = (BW - 2 * pad) / row.length;
  b.strokeStyle = "#bbb"; b.beginPath(); b.moveTo(pad, BH / 2); b.lineTo(BW - pad, BH / 2); b.stroke();
  row.forEach((v, k) => {
    if (v === null) return;
    b.fillStyle = k === u ? "#d62728" : (v >= 0 ? "#e08a6b" : "#6b9be0");
    const hgt = (v / m) * (BH / 2 - 14);
    b.fillRect(pad + k * w + 1, BH / 2 - Math.max(hgt, 0), Math.max(w - 2, 1), Math.abs(hgt));
  });
  b.fillStyle = "#333"; b.font = "11px sans-serif"; b.fillText(`all units of ${sel.q.value} at t=${t} (selected in red)`, pad, 12);
}
fill(sel.dir, D.directions.map((d, k) => [k, d.label]));
refill();
sel.step.max = String(D.steps - 1);
sel.dir.addEventListener("change", () => { refill(); draw(); });
sel.q.addEventListener("change", () => { refill(); draw(); });
sel.unit.addEventListener("change", draw);
sel.step.addEventListener("input", draw);
document.addEventListener("keydown", (e) => {
  if (e.key === "ArrowRight" || e.key === "ArrowLeft") { sel.step.value = String(+sel.step.value + (e.key === "ArrowRight" ? 1 : -1)); draw(); }
});
draw();
"""
