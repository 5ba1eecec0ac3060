"""CPU timing of the LSTM variants (docs/variants.md) against the plain fused LSTM, and against a
Python-level torch cell computing the same variant (issue 9's speed target).

    PYTHONPATH=src python benchmarks/bench_variants.py [--repeats 9] [--out docs/variants_speed.md]

Case: engine benchmark (c), B=64, H=256, X=64, T=100, float32, 2 threads for everyone
(lstmkit.set_num_threads(2), torch.set_num_threads(2)). For each variant, interleaved in the same rounds
(bench_engine.interleaved: rotating order, untimed calls for at least 20 ms before each timed one, median of the rounds;
9 rounds for inference, 3 for training by default):
  * lstmkit plain: the NumPy layer without options (native fused kernels);
  * lstmkit variant: the NumPy layer with the option (native variant kernels);
  * torch Python cell: the variant's equations written step by step in torch ops, the way a researcher
    writes a custom cell (torch.nn.functional.layer_norm, torch.sigmoid, ...), same weights.
"inference" is the forward in eval mode (zoneout by its expectation, no recurrent dropout); "training"
is forward + backward in training mode (masks sampled; torch: autograd). Ratios: variant / plain (the
target is ≤ 1.3) and torch cell / variant (above 1: lstmkit is faster). Measures only; asserts nothing.
"""
from __future__ import annotations

import argparse
import datetime as _dt
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_engine import THREADS, cpu_name, interleaved  # noqa: E402
from report import write_keeping_notes  # noqa: E402

import lstmkit  # noqa: E402
from lstmkit import engine  # noqa: E402

B, H, X, T = 64, 256, 64, 100
TARGET = 1.3
VARIANTS = {
    "peephole": dict(peephole=True),
    "input_forget": dict(input_forget=True),
    "clip=3": dict(clip=3.0),
    "activations (HardSigmoid, Softsign, Softsign)": dict(activations=("HardSigmoid", "Softsign", "Softsign")),
    "layer_norm": dict(layer_norm=True),
    "zoneout=(0.1, 0.05)": dict(zoneout=(0.1, 0.05)),
    "recurrent_dropout=0.25": dict(recurrent_dropout=0.25),
    "all of the above but activations": dict(peephole=True, input_forget=True, clip=3.0, layer_norm=True,
                                             zoneout=(0.1, 0.05), recurrent_dropout=0.25),
}

TORCH_ACTS = {
    "Sigmoid": lambda z, a, b: torch.sigmoid(z), "Tanh": lambda z, a, b: torch.tanh(z),
    "HardSigmoid": lambda z, a, b: torch.clamp(a * z + b, 0, 1), "Softsign": lambda z, a, b: z / (1 + z.abs()),
    "Relu": lambda z, a, b: torch.relu(z),
}


def torch_cell_run(cfg, p: dict, x: torch.Tensor, training: bool) -> torch.Tensor:
    """The LSTM variant of ``cfg`` as a Python loop of torch ops over x (T, B, X) -> output (T, B, H)."""
    acts = cfg.activations or (("Sigmoid", 0, 0), ("Tanh", 0, 0), ("Tanh", 0, 0))
    sg, sc, sh = [(lambda z, s=s: TORCH_ACTS[s[0]](z, s[1], s[2])) for s in acts]
    clip = (lambda z: z.clamp(-cfg.clip, cfg.clip)) if cfg.clip else (lambda z: z)
    ln = torch.nn.functional.layer_norm
    Tn, Bn = x.shape[:2]
    h = x.new_zeros(Bn, H)
    c = x.new_zeros(Bn, H)
    z_c, z_h = cfg.zoneout
    rd = None
    if training and cfg.recurrent_dropout:
        keep = 1 - cfg.recurrent_dropout
        rd = x.new_empty(Bn, H).bernoulli_(keep) / keep
    a_all = x @ p["weight_ih_l0"].T
    if cfg.layer_norm:
        a_all = ln(a_all, (4 * H,), p["ln_ih_weight_l0"], p["ln_ih_bias_l0"])
    a_all = a_all + p["bias_ih_l0"]
    outs = []
    for t in range(Tn):
        s = (h if rd is None else h * rd) @ p["weight_hh_l0"].T
        if cfg.layer_norm:
            s = ln(s, (4 * H,), p["ln_hh_weight_l0"], p["ln_hh_bias_l0"])
        zi, zf, zg, zo = (a_all[t] + s + p["bias_hh_l0"]).chunk(4, 1)
        if cfg.peephole:
            pi, pf, po = p["peephole_l0"].chunk(3)
            zi, zf = zi + pi * c, zf + pf * c
        i, g = sg(clip(zi)), sc(clip(zg))
        f = 1 - i if cfg.input_forget else sg(clip(zf))
        ct = f * c + i * g
        if cfg.peephole:
            zo = zo + po * ct
        o = sg(clip(zo))
        cn = ln(ct, (H,), p["ln_cell_weight_l0"], p["ln_cell_bias_l0"]) if cfg.layer_norm else ct
        ht = o * sh(cn)
        if z_c or z_h:
            mc = x.new_empty(Bn, H).bernoulli_(z_c) if training else z_c
            mh = x.new_empty(Bn, H).bernoulli_(z_h) if training else z_h
            c, h = mc * c + (1 - mc) * ct, mh * h + (1 - mh) * ht
        else:
            c, h = ct, ht
        outs.append(h)
    return torch.stack(outs)


def peers(options: dict, training: bool) -> dict:
    plain = lstmkit.LSTM(X, H, seed=0, dtype="float32").train(training)
    variant = lstmkit.LSTM(X, H, seed=0, dtype="float32", **options).train(training)
    tp = {k: torch.from_numpy(v.copy()).requires_grad_(training) for k, v in variant.params.items()}
    x = np.random.default_rng(0).standard_normal((T, B, X)).astype(np.float32)
    dy = np.random.default_rng(1).standard_normal((T, B, H)).astype(np.float32)
    xt, dyt = torch.from_numpy(x), torch.from_numpy(dy)

    def layer_run(layer):
        def run():
            out, _ = layer(x)
            if training:
                layer.backward(dy)
        return run

    def torch_run():
        if training:
            for v in tp.values():
                v.grad = None
            torch_cell_run(variant.config, tp, xt, True).backward(dyt)
        else:
            with torch.inference_mode():
                torch_cell_run(variant.config, tp, xt, False)

    return {"plain": layer_run(plain), "variant": layer_run(variant), "torch cell": torch_run}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repeats", type=int, default=9)
    ap.add_argument("--out", default="docs/variants_speed.md")
    ap.add_argument("--only", default="", help="comma-separated substrings of variant names")
    args = ap.parse_args()
    lstmkit.set_num_threads(THREADS)
    torch.set_num_threads(THREADS)
    rows = []
    for name, options in VARIANTS.items():
        if args.only and not any(s in name for s in args.only.split(",")):
            continue
        for training in (False, True):
            # one warm-up call each: the torch cell's training pass takes seconds
            t = interleaved(peers(options, training), args.repeats if not training else max(3, args.repeats // 3),
                            warmup=1)
            rows.append((name, "training fwd+bwd" if training else "inference", t))
            print(f"{name:48s} {rows[-1][1]:17s} plain {t['plain'] * 1e3:7.1f} ms  variant "
                  f"{t['variant'] * 1e3:7.1f} ms  ({t['variant'] / t['plain']:.2f}×)  torch cell "
                  f"{t['torch cell'] * 1e3:7.1f} ms ({t['torch cell'] / t['variant']:.1f}× slower)", flush=True)
    lines = [
        "# LSTM variants: speed against the plain fused LSTM and a Python torch cell",
        "",
        f"`PYTHONPATH=src python benchmarks/bench_variants.py --repeats {args.repeats}` on {cpu_name()}, "
        f"{_dt.date.today().isoformat()}, lstmkit ISA {engine.isa()}, {THREADS} threads for lstmkit and torch "
        f"{torch.__version__}. Engine benchmark (c): B={B}, H={H}, X={X}, T={T}, float32. Median of interleaved "
        f"rounds ({args.repeats} for inference, {max(3, args.repeats // 3)} for training). Target (issue 9): "
        f"variant / plain ≤ {TARGET}.",
        "",
        "| variant | pass | plain (ms) | variant (ms) | variant / plain | torch Python cell (ms) "
        "| torch cell / variant |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for name, what, t in rows:
        ratio = t["variant"] / t["plain"]
        mark = "" if ratio <= TARGET else " (over target)"
        lines.append(f"| {name} | {what} | {t['plain'] * 1e3:.1f} | {t['variant'] * 1e3:.1f} | {ratio:.2f}{mark} | "
                     f"{t['torch cell'] * 1e3:.1f} | {t['torch cell'] / t['variant']:.1f} |")
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out:
        write_keeping_notes(args.out, text)


if __name__ == "__main__":
    main()
