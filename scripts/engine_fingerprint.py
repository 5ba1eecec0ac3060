"""Bit-exact fingerprint of the native engine: a sha256 per case of everything it computes, so that a C++
refactor can be checked to change no bit.

    PYTHONPATH=src python scripts/engine_fingerprint.py --out before.json            # record
    PYTHONPATH=src python scripts/engine_fingerprint.py --compare before.json        # check (exit 1 on a diff)
    LSTMKIT_ISA=avx2 PYTHONPATH=src python scripts/engine_fingerprint.py --out avx2.json

Cases (fixed seeds): the plain LSTM/GRU forward, train_forward and backward, every variant option (alone and
combined, with and without sampled masks) forward, train_forward and backward, quantised int8/bf16 forward,
and streams (float, quantised, variant), over shapes that reach every schedule of the sequence driver: one
thread (small H), the unit split and lockstep pair (B = 1, 2 at H = 128), per-step splits (lengths), and the
row split (B = 48; and B = 5, 9, 16 at H = 128, either side of the row split's threshold).
Each case runs at 1 and 2 threads; the script itself fails when the two differ (the results must not depend
on the thread count). Record with one build, compare with another under the same LSTMKIT_ISA.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import sys
from itertools import product

import numpy as np

from lstmkit import engine
from lstmkit.params import RNNConfig, init_params
from lstmkit.quantize import QuantizedRNN
from lstmkit.ref.variants import VariantMasks
from lstmkit.stream import Stream

STEPS = 6
SHAPES = [  # (B, H, lengths: False, True (random) or "tail")
    (1, 16, False), (2, 16, True), (1, 128, False), (2, 128, False), (2, 128, True), (16, 32, True),
    (16, 128, False), (48, 64, False), (48, 64, True), (48, 64, "tail"), (5, 128, False), (9, 128, True),
]
# "tail": 25 rows run every step, so under the row split (tiles of 4 or 6 rows over 2 threads) a thread's
# share of the last steps is one row while the step has 25
TAIL_LENGTHS = [STEPS] * 25 + [3] * 13 + [1] * 10
VARIANTS = [
    {"peephole": True}, {"input_forget": True}, {"clip": 0.3}, {"layer_norm": True},
    {"activations": ("hardsigmoid", "relu", "softsign")}, {"zoneout": (0.2, 0.1)}, {"recurrent_dropout": 0.25},
    {"peephole": True, "layer_norm": True, "clip": 0.5, "zoneout": (0.1, 0.3)},
]
GRU_VARIANTS = [
    {"linear_before_reset": False}, {"clip": 0.3}, {"layer_norm": True}, {"zoneout": (0.0, 0.2)},
    {"activations": ("hardsigmoid", "elu")}, {"recurrent_dropout": 0.25},
    {"linear_before_reset": False, "clip": 0.5, "recurrent_dropout": 0.2, "zoneout": (0.0, 0.3)},
    {"layer_norm": True, "recurrent_dropout": 0.2, "zoneout": (0.0, 0.3)},
]


def digest(*arrays) -> str:
    h = hashlib.sha256()
    for a in arrays:
        if isinstance(a, dict):
            for k in sorted(a):
                h.update(k.encode())
                h.update(np.ascontiguousarray(a[k]).tobytes())
        elif isinstance(a, (tuple, list)):
            h.update(digest(*a).encode())
        else:
            h.update(np.ascontiguousarray(a).tobytes())
    return h.hexdigest()[:24]


def inputs(config: RNNConfig, B: int, with_lengths: bool, dtype, seed: int):
    rng = np.random.default_rng(seed)
    params = init_params(config, seed=seed, dtype=dtype)
    for k, v in params.items():  # init gives γ = 1, β = 0, p = 0 for the variant parameters: make them count
        params[k] = (v + rng.normal(0, 0.1, v.shape)).astype(dtype)
    x = rng.normal(size=(STEPS, B, config.input_size)).astype(dtype)
    L, D, H, P = config.num_layers, config.num_directions, config.hidden_size, config.output_size
    state = [rng.normal(size=(L * D, B, P)).astype(dtype)]
    if config.mode == "LSTM":
        state.append(rng.normal(size=(L * D, B, H)).astype(dtype))
    lengths = rng.integers(0, STEPS + 1, size=B) if with_lengths else None
    if lengths is not None:
        lengths[0] = STEPS
    if with_lengths == "tail":
        lengths = rng.permutation(np.array(TAIL_LENGTHS[:B]))
    return params, x, tuple(state), lengths, rng


def lens_tag(lens) -> str:
    return {False: "full", True: "len"}.get(lens, lens)


def masks_for(config: RNNConfig, B: int, dtype, rng):
    """Sampled training masks for the options that use them, else None."""
    L, D, H, P = config.num_layers, config.num_directions, config.hidden_size, config.output_size
    k = L * D
    rec = [(rng.random((B, P)) > 0.25).astype(dtype) / dtype(0.75) for _ in range(k)] \
        if config.recurrent_dropout else None
    zc = [(rng.random((STEPS, B, H)) < config.zoneout[0]).astype(dtype) for _ in range(k)] \
        if config.mode == "LSTM" and config.zoneout[0] else None
    zh = [(rng.random((STEPS, B, P)) < config.zoneout[1]).astype(dtype) for _ in range(k)] \
        if config.zoneout[1] else None
    if rec is None and zc is None and zh is None:
        return None
    return VariantMasks(rec, zc, zh)


def sequence_case(config, B, with_lengths, dtype, seed, masks: bool):
    params, x, state, lengths, rng = inputs(config, B, with_lengths, dtype, seed)
    vm = masks_for(config, B, dtype, rng) if masks else None
    out, final = engine.forward(config, params, x, state, lengths, vm)
    out2, final2, ws = engine.train_forward(config, params, x, state, lengths, vm)
    d_out = rng.normal(size=out.shape).astype(dtype)
    d_final = tuple(rng.normal(size=s.shape).astype(dtype) for s in final)
    dx, d_state, grads = engine.backward(config, params, x, d_out, d_final, state, lengths, vm, workspace=ws)
    return digest(out, final) + ":" + digest(out2, final2, ws) + ":" + digest(dx, d_state, grads)


def quant_case(config, B, with_lengths, qtype, seed):
    params, x, state, lengths, _ = inputs(config, B, with_lengths, np.float32, seed)
    q = QuantizedRNN(config, params, qtype)
    hx = state if config.mode == "LSTM" else state[0]
    out, final = q(x, hx, lengths)
    return digest(out, final)


def stream_case(config, B, dtype, seed, quantized=None):
    params, x, _, _, _ = inputs(config, B, False, dtype, seed)
    st = Stream(config, params, B, quantized=quantized)
    outs = [st.step(x[t]) for t in range(STEPS)]
    return digest(outs, st.state)


def cases():
    """(name, thunk) for every case."""
    out = []
    seed = 0
    for mode, (B, H, lens), layers, bidir, dtype in product(("LSTM", "GRU"), SHAPES, (1, 2), (False, True),
                                                            (np.float32, np.float64)):
        if dtype is np.float64 and (H > 64 or B > 16) and not (B == 1 and H == 128):
            continue
        projs = (0, H // 2) if mode == "LSTM" and layers == 2 and not bidir else (0,)
        for proj in projs:
            seed += 1
            cfg = RNNConfig(mode, 8, H, num_layers=layers, bidirectional=bidir, proj_size=proj)
            tag = f"{mode} B{B} H{H} L{layers} D{int(bidir) + 1} P{proj} {lens_tag(lens)} {dtype.__name__}"
            out.append((f"plain {tag}", lambda c=cfg, b=B, ln=lens, d=dtype, s=seed: sequence_case(c, b, ln, d, s,
                                                                                                    False)))
            if dtype is np.float32:
                for qt in ("int8", "bfloat16"):
                    out.append((f"quant {qt} {tag}", lambda c=cfg, b=B, ln=lens, q=qt, s=seed: quant_case(c, b, ln, q,
                                                                                                      s)))
    for mode, opts_list in (("LSTM", VARIANTS), ("GRU", GRU_VARIANTS)):
        for i, opts in enumerate(opts_list):
            for (B, H, lens), layers, bidir in product(SHAPES, (1, 2), (False, True)):
                if (layers == 2) == (B in (1, 48)) or (bidir and H > 64 and B > 2):
                    continue  # a subset: every shape, both layer counts, both directions somewhere
                for proj in ((0, H // 2) if mode == "LSTM" and i % 2 == 0 and not bidir else (0,)):
                    seed += 1
                    cfg = RNNConfig(mode, 8, H, num_layers=layers, bidirectional=bidir, proj_size=proj, **opts)
                    tag = f"{mode} {opts} B{B} H{H} L{layers} D{int(bidir) + 1} P{proj} {lens_tag(lens)}"
                    for masks in (False, True):
                        out.append((f"variant {tag} masks={masks}",
                                    lambda c=cfg, b=B, ln=lens, s=seed, m=masks: sequence_case(c, b, ln, np.float32, s,
                                                                                               m)))
            seed += 1
            cfg = RNNConfig(mode, 8, 32, num_layers=2, **opts)
            out.append((f"variant f64 {mode} {opts}", lambda c=cfg, s=seed: sequence_case(c, 2, True, np.float64, s,
                                                                                          True)))
    for mode, (B, H), layers in product(("LSTM", "GRU"), ((1, 16), (1, 128), (3, 32), (16, 128)), (1, 2)):
        seed += 1
        cfg = RNNConfig(mode, 8, H, num_layers=layers)
        tag = f"{mode} B{B} H{H} L{layers}"
        out.append((f"stream f32 {tag}", lambda c=cfg, b=B, s=seed: stream_case(c, b, np.float32, s)))
        out.append((f"stream f64 {tag}", lambda c=cfg, b=B, s=seed: stream_case(c, b, np.float64, s)))
        for qt in ("int8", "bfloat16"):
            out.append((f"stream {qt} {tag}", lambda c=cfg, b=B, s=seed, q=qt: stream_case(c, b, np.float32, s, q)))
        opts = {"peephole": True, "clip": 0.4} if mode == "LSTM" else {"linear_before_reset": False}
        cfg = RNNConfig(mode, 8, H, num_layers=layers, **opts)
        out.append((f"stream variant {tag}", lambda c=cfg, b=B, s=seed: stream_case(c, b, np.float32, s)))
    return out


def run(threads=(1, 2)) -> tuple[dict, list]:
    """Hashes by case name, and the cases whose hash depends on the thread count."""
    result, unstable = {}, []
    for name, thunk in cases():
        hashes = []
        for n in threads:
            engine.set_num_threads(n)
            hashes.append(thunk())
        result[name] = hashes[0]
        if len(set(hashes)) > 1:
            unstable.append(name)
    return result, unstable


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", help="write the hashes (JSON) here")
    ap.add_argument("--compare", help="compare with hashes recorded earlier (JSON); exit 1 on a difference")
    ap.add_argument("--threads", default="1,2", help="thread counts each case runs at (default 1,2)")
    args = ap.parse_args()
    threads = tuple(int(n) for n in args.threads.split(","))
    result, unstable = run(threads)
    print(f"isa {engine.isa()}: {len(result)} cases at threads {threads}")
    status = 0
    if unstable:
        print(f"{len(unstable)} cases depend on the thread count:", *unstable[:20], sep="\n  ")
        status = 1
    if args.out:
        with open(args.out, "w") as f:
            json.dump({"isa": engine.isa(), "hashes": result}, f, indent=0, sort_keys=True)
    if args.compare:
        with open(args.compare) as f:
            before = json.load(f)
        if before["isa"] != engine.isa():
            print(f"warning: recorded under isa {before['isa']}, running {engine.isa()}")
        old = before["hashes"]
        differ = [k for k in result if k in old and old[k] != result[k]]
        missing = sorted(set(old) ^ set(result))
        print(f"{len(result) - len(differ)} identical, {len(differ)} differ, {len(missing)} not in both")
        for k in differ[:40]:
            print("  differs:", k)
        status |= bool(differ or missing)
    return status


if __name__ == "__main__":
    sys.exit(main())
