"""CPU timing of lstmkit's native engine against torch (nn.LSTM/GRU, LSTMCell, autograd), ONNX Runtime and OpenVINO.

    PYTHONPATH=src python benchmarks/bench_engine.py [--repeats 15] [--out docs/benchmarks.md] [--only a,e]

Everyone gets 2 threads: torch.set_num_threads(2), ORT intra_op_num_threads=2 (inter_op 1),
OpenVINO INFERENCE_NUM_THREADS=2 with PERFORMANCE_HINT LATENCY, lstmkit.set_num_threads(2). OpenVINO
(pip install 'lstmkit[bench]'; skipped when missing) reads the same ONNX file as ORT and runs it twice, with
INFERENCE_PRECISION_HINT f32 and, where its CPU plugin reports BF16, bf16. float32 otherwise. Peers of a case
are run interleaved (per round, each peer in rotating order: a pause, untimed calls for at least 20 ms, then
one timed call; see ``interleaved``) and each gets the median over the rounds, so a noisy neighbour on the
machine hits them alike. Ratios are peer time / lstmkit time: above 1, lstmkit is faster.

All peers share this one process; a pause before each peer's calls keeps the previous peer's pool
threads, which spin for a while after a call (ORT's ~55 ms, OpenVINO's and lstmkit's a few ms), off the
cores: at least GAP_S (0.1 s), and on until the process has been idle for 20 ms (``pause``). The longest
pause after each peer is printed under the table.

Roofline column: the machine's rates measured at the start (``machine_peaks``, 2 threads): the fp32 GEMM
rate (torch.mm of a 2048² square, oneDNN/MKL), the bf16 one where the CPU has AVX512_BF16 or AMX, and an
L2-resident read rate (NumPy sgemv, one 2-D matrix per thread re-read over a broadcast batch axis,
each thread's matrix the size of half of (a)'s W_hh). Each row gives its GMAC/s (the multiply-adds of the
products, 4H·(X+H) per row and step for an LSTM, 3H·(X+H) for a GRU, training three times the forward) and
its share of the fp32 peak (bf16 rows: of the bf16 peak; int8 rows: no peak measured); B=1 rows instead give
the bytes of W_hh read per step over the time per step (training: twice, forward and backward) and their
share of the L2 rate.

Case (k), contention: a busy process (a Python spin loop) pinned to one of the two CPUs, against the same
runs without it. (a), (b) and (e) per call (per step for (e)), lstmkit and ORT interleaved as above, each
round timing every call for 40 ms; median and p95 of the calls pooled over rounds. The verdict compares
ORT / lstmkit under contention with the same ratio measured quietly in the same run.

Cases (issue 5): (a) inference B=1, H=128, X=32, T=100; (b) B=16 same; (c) B=64, H=256, X=64, T=100;
(d) B=128, H=512, X=128, T=50; (e) streaming one step per call, B=1, H=128, X=32 (torch LSTMCell,
nn.LSTM called per step with its state, ORT per step with state in/out from lstmkit.io.onnx's
streaming export), and the same paced as a real-time stream, one step every 1 ms, each step's call timed
(LSTM and GRU; lstmkit, the torch cell, ORT; no target: not an issue's case); (f) training forward+backward
for (a), (b), (c) vs torch autograd (lstmkit: the
NumPy layer's forward and backward, which run natively), and mixed-precision training of (c), LSTM and GRU:
lstmkit.torch under torch.autocast("cpu", bfloat16) (bf16 products, float32 state) vs torch.nn in float32
(the target) and under the same autocast, and lstmkit.torch in float32; (g) GRU for (a) and (e); (h) variable lengths
uniform in 10..100 at B=64, H=256, X=64, T=100 (torch: PackedSequence, and padded ignoring the
lengths; ORT with a lengths input); (i) lstmkit.quantize bf16 and int8 for (b), (c) and (d), and GRU int8 for
(c), against the float32 peers (lstmkit float32 among them), with the quantised output's error against
lstmkit float32 in the row label;
(k) contention, see above; (m) peak RSS of training (c): a fresh process per library (each imports
both and builds both models), the peak reset just before three training steps (Linux clear_refs), then
the peak during them (VmHWM) in MB, and in brackets how much it rose above the RSS before them.

Writes the table (markdown) to stdout and to --out with the CPU name. Measures only; asserts nothing.
"""
from __future__ import annotations

import argparse
import atexit
import datetime as _dt
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch

import lstmkit
from lstmkit import engine
from lstmkit.io.onnx import to_onnx
from report import write_cpu_section

try:
    import openvino as ov
except ImportError:  # the OpenVINO peers are skipped
    ov = None

THREADS = 2
GAP_S = 0.1  # least idle time before each peer's calls in a round (ORT's pool threads spin ~55 ms after a run)
QUIET_S, MAX_GAP_S = 0.02, 0.5  # the pause ends once the process used under 2.5 % of a CPU for QUIET_S
PAUSES: dict = {}  # previous peer -> the longest pause after it (s)
WARM_S = 0.02  # untimed calls after the pause, at least this long (the CPU's clock climbs back meanwhile)
# Issue 19's targets. Case id or row label -> [(peer, factor)]: lstmkit must be `factor` times as fast as
# `peer` (a name prefix); "best" is the fastest float32 peer (never OpenVINO bf16 or lstmkit's own float32),
# "peak" the row's share of the machine's peak (roofline column) instead of a speed ratio. A third element names
# what the CPU must have for the target to apply ("bf16": AVX512_BF16 or AMX, a bf16 peak in the roofline).
BEST_FP32 = [("best", 1.0), ("peak", 0.85)]
QUANTIZED = [("best", 1.6), ("OpenVINO bf16", 1.1)]
TARGETS = {
    "a": [("best", 1.5)],
    "b": BEST_FP32,
    "c": BEST_FP32,
    "d": BEST_FP32,
    "e": [("ORT", 6.0), ("torch LSTMCell", 10.0)],
    "GRU streaming, per step, B=1 H=128 X=32": [("ORT", 6.0), ("torch GRUCell", 10.0)],
    "LSTM streaming, one step every 1 ms, per step, B=1 H=128 X=32": [],  # not an issue's case: no target
    "GRU streaming, one step every 1 ms, per step, B=1 H=128 X=32": [],
    "LSTM training fwd+bwd, (a)": [("torch autograd", 3.0)],
    "LSTM training fwd+bwd, (b)": [("torch autograd", 1.2)],
    "LSTM training fwd+bwd, (c)": [("torch autograd", 1.2)],
    "LSTM training bf16 products (autocast), (c)": [("torch autograd", 1.8, "bf16")],
    "LSTM bf16, (b)": QUANTIZED,
    "LSTM int8, (b)": QUANTIZED,
    "LSTM bf16, (c)": QUANTIZED,
    "LSTM int8, (c)": QUANTIZED,
    "LSTM bf16, (d)": QUANTIZED,
    "LSTM int8, (d)": QUANTIZED,
    "m": [("torch autograd", 1.0)],  # peak RSS no more than torch's
}
ERROR_KEY = "error vs float32"  # case (i): reported in the row's label, not timed
ABSENT_KEY = "peers absent"  # a peer that cannot run on this CPU: named in the row's label, not timed


def _cpuinfo() -> dict:
    """The first processor's fields in /proc/cpuinfo ({} where there is none)."""
    info = {}
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if not line.strip():
                break
            key, _, value = line.partition(":")
            info.setdefault(key.strip(), value.strip())
    except OSError:
        pass
    return info


def cpu_flags() -> set:
    return set(_cpuinfo().get("flags", "").split())


def cpu_key() -> str:
    """The CPU model as docs/benchmarks.md names its sections: model name, family and model."""
    info = _cpuinfo()
    name = info.get("model name") or platform.processor() or "unknown CPU"
    return f"{name} (family {info.get('cpu family', '?')}, model {info.get('model', '?')})"


def cpu_name() -> str:
    """cpu_key() with the instruction-set flags the engine and its peers care about."""
    isa = [f for f in ("avx2", "avx512f", "avx512_bf16", "avx512_vnni", "amx_bf16", "amx_int8") if f in cpu_flags()]
    return cpu_key()[:-1] + f"; ISA flags {', '.join(isa) or 'none of avx2, avx512f'})"


def amd_core(family: int, model: int) -> str:
    """AMD's core generation from cpuid family/model ("" when not known here); VMs often report only "AMD EPYC"."""
    if family == 23:
        return "Zen 2" if model >= 0x30 else "Zen / Zen+"
    if family == 25:
        return "Zen 4" if 0x10 <= model <= 0x1F or 0x60 <= model <= 0x7F or 0xA0 <= model <= 0xAF else "Zen 3"
    return "Zen 5" if family == 26 else ""


def cpu_heading() -> str:
    """The section's heading: cpu_key() and, for AMD, the core generation; for Intel, AMX where it has it (a
    virtual machine may report another model number than the silicon's: the features tell)."""
    info = _cpuinfo()
    family, model = info.get("cpu family", ""), info.get("model", "")
    core = ""
    if info.get("vendor_id") == "AuthenticAMD" and family.isdigit() and model.isdigit():
        core = amd_core(int(family), int(model))
    elif info.get("vendor_id") == "GenuineIntel" and "amx_tile" in cpu_flags():
        core = "Sapphire Rapids or later (AMX)"
    return f"{cpu_key()}, {core}" if core else cpu_key()


def pause(previous: str | None) -> None:
    """Sleep until the previous peer's pool threads have stopped spinning: at least GAP_S, ending with
    QUIET_S in which the whole process used under 2.5 % of one CPU (at most MAX_GAP_S). ORT's threads spin
    ~55 ms after a call on a quiet machine, longer on a busy one (its spin counts iterations, not time).
    The pause is recorded against the previous peer."""
    start = time.perf_counter()
    time.sleep(GAP_S - QUIET_S)
    while True:
        cpu0 = time.process_time()
        time.sleep(QUIET_S)
        if time.process_time() - cpu0 < 0.025 * QUIET_S or time.perf_counter() - start > MAX_GAP_S:
            break
    if previous is not None:
        PAUSES[previous] = max(PAUSES.get(previous, 0.0), time.perf_counter() - start)


def interleaved(peers: dict, repeats: int, warmup: int = 2) -> dict:
    """{name: fn} -> {name: median seconds}, peers interleaved round by round in rotating order.

    In each round a peer waits GAP_S, then runs untimed for at least WARM_S (one call at least), then
    once timed: the pause and the untimed calls absorb what the previous peer leaves behind on a
    2-core machine (torch's OpenMP and ORT's pool threads spin for a while after a call, and so do
    lstmkit's), so each peer is timed on its own, yet every round sees the same background load for
    all peers. The pause must outlast the longest spin: ORT's intra-op thread keeps a core busy for
    about 55 ms after a run (process CPU time during a sleep), so with the former 0.05 s the peer timed
    after ORT shared its second core with it.

    The untimed calls must outlast the CPU's climb back to speed after the pause: on the machine
    here, a B=1 sequence after 0.1 s idle took (ms, calls 1, 2, 3, 6) ORT 0.92, 0.54, 0.50, 0.46 and
    lstmkit 1.0, 0.5, 0.44, 0.33, so with a single untimed call (this function until 2026-11-23) the
    short cases timed that climb, not the libraries. Calls of 20 ms or more get one untimed call, as before.
    """
    for fn in peers.values():
        for _ in range(warmup):
            fn()
    times = {n: [] for n in peers}
    for n in rounds(list(peers), repeats):
        warm(peers[n])
        t0 = time.perf_counter()
        peers[n]()
        times[n].append(time.perf_counter() - t0)
    return {n: statistics.median(v) for n, v in times.items()}


def rounds(names: list, repeats: int):
    """Yields the names round by round, each round in a rotated order, each after pause()."""
    previous = None
    for r in range(repeats):
        k = r % len(names)
        for n in names[k:] + names[:k]:
            pause(previous)  # let the previous peer's pool threads stop spinning and park
            previous = n
            yield n


def warm(fn) -> None:
    """Untimed calls of fn for at least WARM_S, one at least."""
    start = time.perf_counter()
    fn()
    while time.perf_counter() - start < WARM_S:
        fn()


_TMP = tempfile.TemporaryDirectory(prefix="bench_engine_")
atexit.register(_TMP.cleanup)


def onnx_file(model) -> str:
    """Writes the ONNX model to a file that ORT and OpenVINO both read; returns its path."""
    path = Path(_TMP.name) / f"model{len(os.listdir(_TMP.name))}.onnx"
    path.write_bytes(model.SerializeToString())
    return str(path)


def ort_session(path: str) -> ort.InferenceSession:
    so = ort.SessionOptions()
    so.intra_op_num_threads = THREADS
    so.inter_op_num_threads = 1
    return ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])


def ov_precisions() -> list[str]:
    """OpenVINO's inference precisions run here: f32, and bf16 where its CPU plugin has it."""
    if ov is None:
        return []
    return ["f32"] + (["bf16"] if "BF16" in ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES") else [])


def ov_requests(path: str) -> dict:
    """{"OpenVINO f32": request, "OpenVINO bf16": request} for the ONNX file (LATENCY hint, THREADS threads)."""
    core = ov.Core() if ov is not None else None
    out = {}
    for precision in ov_precisions():
        compiled = core.compile_model(path, "CPU", {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_NUM_THREADS": THREADS,
                                                    "INFERENCE_PRECISION_HINT": precision})
        out[f"OpenVINO {precision}"] = compiled.create_infer_request()
    return out


def models(mode, X, H, seed=0):
    layer = (lstmkit.LSTM if mode == "LSTM" else lstmkit.GRU)(X, H, seed=seed, dtype="float32")
    layer.eval()
    tm = getattr(torch.nn, mode)(X, H)
    tm.load_state_dict({k: torch.from_numpy(v) for k, v in layer.params.items()})
    tm.eval()
    return layer, tm


def sequence_peers(mode, layer, tm, x) -> dict:
    """torch nn.LSTM/GRU, ORT and OpenVINO running the same sequence x as ``layer``."""
    xt = torch.from_numpy(x)
    path = onnx_file(to_onnx(layer))
    sess = ort_session(path)

    def run_torch():
        with torch.inference_mode():
            tm(xt)

    peers = {f"torch nn.{mode}": run_torch, "ORT": lambda: sess.run(None, {"input": x})}
    for name, req in ov_requests(path).items():
        peers[name] = lambda req=req: req.infer({"input": x})
    return peers


def case_sequence(mode, B, H, X, T, repeats):
    layer, tm = models(mode, X, H)
    x = np.random.default_rng(0).standard_normal((T, B, X)).astype(np.float32)
    return interleaved({"lstmkit": lambda: layer(x), **sequence_peers(mode, layer, tm, x)}, repeats)


def case_quantized(mode, dtype, B, H, X, T, repeats):
    """(i): lstmkit.quantize(layer, dtype) against the float32 peers, lstmkit's own float32 included;
    also the output's max |error| / max |output| against lstmkit float32."""
    layer, tm = models(mode, X, H)
    x = np.random.default_rng(0).standard_normal((T, B, X)).astype(np.float32)
    q = lstmkit.quantize(layer, dtype)
    want = layer(x)[0]
    error = float(np.abs(q(x)[0] - want).max() / np.abs(want).max())
    med = interleaved({"lstmkit": lambda: q(x), "lstmkit float32": lambda: layer(x),
                       **sequence_peers(mode, layer, tm, x)}, repeats)
    return {**med, ERROR_KEY: error}


def stream_setup(mode, B, H, X, steps):
    """What the streaming cases share: (layer, tm, xs (steps, B, X) and as a tensor, torch's cell with the
    layer's weights, the path of lstmkit.io.onnx's streaming export)."""
    layer, tm = models(mode, X, H)
    xs = np.random.default_rng(0).standard_normal((steps, B, X)).astype(np.float32)
    cell = getattr(torch.nn, mode + "Cell")(X, H)
    cell.load_state_dict({k[:-3]: torch.from_numpy(v) for k, v in layer.params.items()})
    return layer, tm, xs, torch.from_numpy(xs), cell, onnx_file(to_onnx(layer, streaming=True))


def zero_feeds(mode, B, H) -> dict:
    """The streaming ONNX model's state inputs at zero (h0, and c0 for an LSTM)."""
    return {name: np.zeros((1, B, H), np.float32) for name in (("h0", "c0") if mode == "LSTM" else ("h0",))}


def case_stream(mode, B, H, X, steps, repeats):
    layer, tm, xs, xts, cell, path = stream_setup(mode, B, H, X, steps)
    sess = ort_session(path)
    lstm = mode == "LSTM"
    s = layer.stream(batch=B)

    def run_lstmkit():
        s.reset()
        for t in range(steps):
            s.step(xs[t])

    def run_cell():
        with torch.inference_mode():
            h = torch.zeros(B, H)
            state = (h, torch.zeros(B, H)) if lstm else h
            for t in range(steps):
                state = cell(xts[t], state)

    def run_module():
        with torch.inference_mode():
            hx = (torch.zeros(1, B, H), torch.zeros(1, B, H)) if lstm else torch.zeros(1, B, H)
            for t in range(steps):
                _, hx = tm(xts[t:t + 1], hx)

    def run_ort():
        feeds = zero_feeds(mode, B, H)
        for t in range(steps):
            feeds["input"] = xs[t]
            res = sess.run(None, feeds)
            feeds["h0"] = res[1]
            if lstm:
                feeds["c0"] = res[2]

    def run_ov(req):
        feeds = zero_feeds(mode, B, H)
        for t in range(steps):
            feeds["input"] = xs[t]
            res = req.infer(feeds)  # copies of the outputs
            feeds["h0"] = res[1]
            if lstm:
                feeds["c0"] = res[2]

    med = interleaved({
        "lstmkit": run_lstmkit,
        f"torch {mode}Cell": run_cell,
        f"torch nn.{mode}/step": run_module,
        "ORT": run_ort,
        **{name: (lambda req=req: run_ov(req)) for name, req in ov_requests(path).items()},
    }, repeats)
    return {k: v / steps for k, v in med.items()}  # per step


def case_stream_paced(mode, B, H, X, steps, every_s, repeats):
    """A real-time stream: one step every ``every_s`` seconds (a frame of audio or a sensor reading), each
    step's call timed on its own; lstmkit, torch's cell and ORT per step with its state in and out, as in
    case_stream. Per peer the median over all steps of all rounds. The peers' threads stay as each leaves them
    between steps (spinning or asleep), which is what such a program meets."""
    layer, _, xs, xts, cell, path = stream_setup(mode, B, H, X, steps)
    sess = ort_session(path)
    lstm = mode == "LSTM"
    s = layer.stream(batch=B)
    state = {}

    def lstmkit_step(t):
        s.step(xs[t])

    def cell_step(t):
        with torch.inference_mode():
            state["cell"] = cell(xts[t], state["cell"])

    def ort_step(t):
        feeds = state["ort"]
        feeds["input"] = xs[t]
        res = sess.run(None, feeds)
        feeds["h0"] = res[1]
        if lstm:
            feeds["c0"] = res[2]

    def reset():
        s.reset()
        h = torch.zeros(B, H)
        state["cell"] = (h, torch.zeros(B, H)) if lstm else h
        state["ort"] = zero_feeds(mode, B, H)

    peers = {"lstmkit": lstmkit_step, f"torch {mode}Cell": cell_step, "ORT": ort_step}
    times = {n: [] for n in peers}
    for n in rounds(list(peers), repeats):
        reset()
        step, took = peers[n], []
        for t in range(steps):
            due = time.perf_counter() + every_s
            t0 = time.perf_counter()
            step(t)
            took.append(time.perf_counter() - t0)
            time.sleep(max(0.0, due - time.perf_counter()))
        times[n] += took[5:]  # not the round's first steps: the peer waking from the pause between rounds
    return {n: statistics.median(v) for n, v in times.items()}


def case_training(mode, B, H, X, T, repeats):
    layer, tm = models(mode, X, H)
    layer.train()
    x = np.random.default_rng(0).standard_normal((T, B, X)).astype(np.float32)
    dy = np.random.default_rng(1).standard_normal((T, B, H)).astype(np.float32)
    xt, dyt = torch.from_numpy(x).requires_grad_(True), torch.from_numpy(dy)
    tm.train()

    def run_lstmkit():
        layer(x)
        layer.backward(dy)

    def run_torch():
        tm.zero_grad(set_to_none=True)
        out, _ = tm(xt)
        out.backward(dyt)

    return interleaved({"lstmkit": run_lstmkit, "torch autograd": run_torch}, repeats)


def case_training_bf16(mode, B, H, X, T, repeats):
    """Mixed-precision training as a torch user writes it: forward under torch.autocast("cpu", bfloat16),
    backward, the float32 master weights' gradients. lstmkit.torch's module (bf16 products, float32 state) vs
    torch.nn's module in float32 (the target's peer) and under the same autocast (torch's own bf16 path), and
    lstmkit.torch without autocast (its float32 products)."""
    import lstmkit.torch as lt

    rng = np.random.default_rng(0)
    x = torch.from_numpy(rng.standard_normal((T, B, X)).astype(np.float32)).requires_grad_(True)
    dy = torch.from_numpy(rng.standard_normal((T, B, H)).astype(np.float32))
    ours, theirs = getattr(lt, mode)(X, H), getattr(torch.nn, mode)(X, H)
    theirs.load_state_dict(ours.state_dict())

    def step(module, autocast):
        def run():
            module.zero_grad(set_to_none=True)
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
                out, _ = module(x)
            out.backward(dy.to(out.dtype))
        return run

    peers = {"lstmkit": step(ours, True), "torch autograd": step(theirs, False),
             "torch autograd bf16 autocast": step(theirs, True), "lstmkit float32": step(ours, False)}
    try:
        peers["torch autograd bf16 autocast"]()
    except RuntimeError:  # oneDNN has no bf16 LSTM without AVX-512 ("could not create a primitive descriptor")
        del peers["torch autograd bf16 autocast"]
        return {**interleaved(peers, repeats), ABSENT_KEY: "torch's bf16 autocast fails on this CPU"}
    return interleaved(peers, repeats)


def case_lengths(mode, B, H, X, T, repeats):
    layer, tm = models(mode, X, H)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((T, B, X)).astype(np.float32)
    lengths = rng.integers(10, T + 1, size=B)
    lengths[0] = T
    xt, lt = torch.from_numpy(x), torch.from_numpy(lengths)
    path = onnx_file(to_onnx(layer, lengths=True))
    sess = ort_session(path)
    ln64 = lengths.astype(np.int64)

    def run_packed():
        with torch.inference_mode():
            packed = torch.nn.utils.rnn.pack_padded_sequence(xt, lt, enforce_sorted=False)
            out, _ = tm(packed)
            torch.nn.utils.rnn.pad_packed_sequence(out, total_length=T)

    def run_padded():
        with torch.inference_mode():
            tm(xt)

    return interleaved({
        "lstmkit": lambda: layer(x, lengths=lengths),
        "torch PackedSequence": run_packed,
        "torch padded": run_padded,
        "ORT": lambda: sess.run(None, {"input": x, "lengths": ln64}),
        **{name: (lambda req=req: req.infer({"input": x, "lengths": ln64})) for name, req in ov_requests(path).items()},
    }, repeats)


def _status_mb(field: str) -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024  # kB
    raise RuntimeError(f"/proc/self/status has no {field}")


def training_peak_rss(which: str, B=64, H=256, X=64, T=100, steps=3) -> tuple[float, float]:
    """In this process: three training steps of (c) with `which` ("lstmkit" or "torch autograd"); returns
    (peak RSS during them, RSS before them) in MB. Both libraries are imported and both models built
    either way, so the two processes differ only in whose training ran; the peak is reset first (importing
    the libraries peaks higher than training does)."""
    layer, tm = models("LSTM", X, H)
    layer.train()
    tm.train()
    x = np.random.default_rng(0).standard_normal((T, B, X)).astype(np.float32)
    dy = np.random.default_rng(1).standard_normal((T, B, H)).astype(np.float32)
    xt, dyt = torch.from_numpy(x).requires_grad_(True), torch.from_numpy(dy)
    Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM to the current RSS
    before = _status_mb("VmRSS")
    for _ in range(steps):
        if which == "lstmkit":
            layer(x)
            layer.backward(dy)
        else:
            tm.zero_grad(set_to_none=True)
            out, _ = tm(xt)
            out.backward(dyt)
    return _status_mb("VmHWM"), before


def case_training_memory() -> tuple[dict, dict]:
    """Peak RSS (MB) of training (c), each library in a fresh process (see training_peak_rss), and how
    much each rose above the RSS before the steps."""
    peak, rise = {}, {}
    for which in ("lstmkit", "torch autograd"):
        proc = subprocess.run([sys.executable, __file__, "--rss-child", which], capture_output=True, text=True,
                              check=True)
        hwm, before = map(float, proc.stdout.strip().splitlines()[-1].split())
        peak[which], rise[which] = hwm, hwm - before
    return peak, rise


# ---- roofline: the machine's rates and each case's work ------------------------------------------------


def _best_rate(fn, amount: float, reps: int) -> float:
    """amount / the fastest of `reps` timed calls of fn (after two untimed ones), per second."""
    fn()
    fn()
    best = float("inf")
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return amount / best


def l2_read_rate(nbytes: int, threads: int = THREADS, batch: int = 400, reps: int = 15) -> float:
    """Bytes per second that `threads` threads read from their own L2: each re-reads its own float32
    matrix of `nbytes` (128 columns) `batch` times in one NumPy sgemv call over a broadcast batch axis
    (no copy; the BLAS runs once per batch item, so per-call overheads stay out of the rate)."""
    rates = [0.0] * threads

    def work(i):
        w = np.random.default_rng(i).random((nbytes // 4 // 128, 128), dtype=np.float32)  # (rows, 128)
        wb = np.broadcast_to(w, (batch,) + w.shape)  # (batch, rows, 128), stride 0 on batch
        v = np.ones((128, 1), np.float32)
        out = np.empty((batch, w.shape[0], 1), np.float32)
        rates[i] = _best_rate(lambda: np.matmul(wb, v, out=out), nbytes * batch, reps)

    pool = [threading.Thread(target=work, args=(i,)) for i in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    return sum(rates)


@dataclass(frozen=True)
class Peaks:
    """This machine's rates on THREADS threads, measured by machine_peaks()."""
    fp32_gmacs: float  # torch.mm of a large square, fp32
    bf16_gmacs: float | None  # the same in bf16, where the CPU has AVX512_BF16 or AMX
    l2_gbs: float  # L2-resident read rate, bytes of half of (a)'s W_hh per thread


def machine_peaks(n: int = 2048) -> Peaks:
    a, b = torch.randn(n, n), torch.randn(n, n)  # (n, n) each
    fp32 = _best_rate(lambda: torch.mm(a, b), n ** 3, 5) / 1e9
    bf16 = None
    if cpu_flags() & {"avx512_bf16", "amx_bf16"}:
        ab, bb = a.bfloat16(), b.bfloat16()
        bf16 = _best_rate(lambda: torch.mm(ab, bb), n ** 3, 5) / 1e9
    w_hh_half = 4 * 128 * 128 * 4 // 2  # bytes of (a)'s float32 W_hh per thread
    return Peaks(fp32, bf16, l2_read_rate(w_hh_half) / 1e9)


@dataclass(frozen=True)
class Work:
    """What a row computes, for the roofline column: multiply-adds of the products (peak: "fp32",
    "bf16", or None where no peak is measured), or with `w_hh_bytes` the bytes of W_hh read per
    `steps` (B=1 rows, bound by L2)."""
    macs: float = 0.0
    peak: str | None = "fp32"
    w_hh_bytes: float = 0.0
    steps: int = 0


def rnn_macs(mode: str, B: int, H: int, X: int, steps: int, factor: int = 1) -> float:
    """Multiply-adds of the products of `steps` steps of B rows, G·H·(X + H) per row and step (`factor` 3:
    training, the forward and the backward's two products per weight)."""
    return factor * steps * B * (4 if mode == "LSTM" else 3) * H * (X + H)


def w_hh_work(mode: str, H: int, steps: int, passes: int = 1, dtype_bytes: int = 4) -> Work:
    return Work(w_hh_bytes=passes * (4 if mode == "LSTM" else 3) * H * H * dtype_bytes, steps=steps)


def roofline(work: Work | None, seconds: float, peaks: Peaks) -> tuple[str, float | None]:
    """The roofline cell of a row (achieved rate and its share of the machine's matching peak) and that
    share (None without a peak)."""
    if work is None:
        return "", None
    if work.w_hh_bytes:
        gbs = work.w_hh_bytes * work.steps / seconds / 1e9
        return f"{gbs:.0f} GB/s of W_hh, {100 * gbs / peaks.l2_gbs:.0f} % of L2", gbs / peaks.l2_gbs
    gmacs = work.macs / seconds / 1e9
    peak = {"fp32": peaks.fp32_gmacs, "bf16": peaks.bf16_gmacs}.get(work.peak) if work.peak else None
    if not peak:
        return f"{gmacs:.1f} GMAC/s", None
    return f"{gmacs:.1f} GMAC/s, {100 * gmacs / peak:.0f} % of {work.peak} peak", gmacs / peak


# ---- (k): contention -------------------------------------------------------------------------------------


def busy_process(cpu: int) -> subprocess.Popen:
    """A Python spin loop pinned to `cpu` (the caller stops it)."""
    code = f"import os\nos.sched_setaffinity(0, {{{cpu}}})\nwhile True:\n    pass\n"
    return subprocess.Popen([sys.executable, "-c", code])


def call_times(peers: dict, repeats: int, per_round_s: float = 0.04) -> dict:
    """{name: fn} -> {name: [seconds of every timed call]}: rounds as in ``interleaved`` (pause, untimed
    calls for WARM_S), then every call timed for `per_round_s`."""
    times = {n: [] for n in peers}
    for n in rounds(list(peers), repeats):
        warm(peers[n])
        start = time.perf_counter()
        while time.perf_counter() - start < per_round_s:
            t0 = time.perf_counter()
            peers[n]()
            times[n].append(time.perf_counter() - t0)
    return times


def contention_peers(which: str) -> dict:
    """lstmkit and ORT for (a) "a", (b) "b" or one streaming step of (e) "e" (each call one step)."""
    B = 16 if which == "b" else 1
    layer, _ = models("LSTM", 32, 128)
    if which != "e":
        x = np.random.default_rng(0).standard_normal((100, B, 32)).astype(np.float32)  # (T, B, X)
        sess = ort_session(onnx_file(to_onnx(layer)))
        return {"lstmkit": lambda: layer(x), "ORT": lambda: sess.run(None, {"input": x})}
    xs = np.random.default_rng(0).standard_normal((1 << 12, 1, 32)).astype(np.float32)  # steps to cycle through
    sess = ort_session(onnx_file(to_onnx(layer, streaming=True)))
    stream = layer.stream(batch=1)
    feeds = {"h0": np.zeros((1, 1, 128), np.float32), "c0": np.zeros((1, 1, 128), np.float32)}
    count = {"lstmkit": 0, "ORT": 0}

    def step_lstmkit():
        stream.step(xs[count["lstmkit"] % len(xs)])
        count["lstmkit"] += 1

    def step_ort():
        feeds["input"] = xs[count["ORT"] % len(xs)]
        _, feeds["h0"], feeds["c0"] = sess.run(None, feeds)
        count["ORT"] += 1

    return {"lstmkit": step_lstmkit, "ORT": step_ort}


def case_contention(repeats: int) -> list[str]:
    """Rows of (k): per case and condition (quiet, busy CPU) the median and p95 of lstmkit and ORT."""
    cpus = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
    if len(cpus) < 2:
        return ["| (k) | skipped: needs os.sched_setaffinity and two CPUs | | | | | |"]
    rows = []
    for which, label in [("a", "(a) B=1 sequence"), ("b", "(b) B=16 sequence"), ("e", "(e) streaming step")]:
        peers = contention_peers(which)
        ratios = {}
        for condition in ("quiet", f"busy process on CPU {cpus[-1]}"):
            busy = busy_process(cpus[-1]) if condition != "quiet" else None
            try:
                if busy is not None:
                    time.sleep(0.2)  # let it start spinning
                times = call_times(peers, repeats)
            finally:
                if busy is not None:
                    busy.kill()
                    busy.wait()
            stats = {n: (statistics.median(v), float(np.percentile(v, 95)), len(v)) for n, v in times.items()}
            (ours_med, ours_p95, n_ours), (ort_med, ort_p95, n_ort) = stats["lstmkit"], stats["ORT"]
            ratios[condition] = (ort_med / ours_med, ort_p95 / ours_p95)
            verdict = ""
            if busy is not None:
                (q_med, q_p95), (b_med, b_p95) = ratios["quiet"], ratios[condition]
                verdict = (f"median {b_med / q_med:.2f}×, p95 {b_p95 / q_p95:.2f}× of the quiet ratio: "
                           f"{'met' if b_med >= q_med and b_p95 >= q_p95 else 'MISSED'}")
            med_ratio, p95_ratio = ratios[condition]
            rows.append(f"| {label} | {condition} | {fmt_ms(ours_med)} / {fmt_ms(ours_p95)} | "
                        f"{fmt_ms(ort_med)} / {fmt_ms(ort_p95)} | {med_ratio:.2f}× / {p95_ratio:.2f}× | "
                        f"{n_ours} / {n_ort} | {verdict} |")
            print(rows[-1], flush=True)
    return rows


def fmt_ms(s: float) -> str:
    ms = s * 1e3
    return f"{ms:.4f}" if ms < 0.1 else f"{ms:.3f}" if ms < 10 else f"{ms:.1f}"


def lengths_steps(B: int = 64, T: int = 100) -> int:
    """Σ lengths of case (h) (the same draw as case_lengths)."""
    rng = np.random.default_rng(0)
    rng.standard_normal((T, B, 64))
    lengths = rng.integers(10, T + 1, size=B)
    lengths[0] = T
    return int(lengths.sum())


def case_list(R: int) -> list:
    """(id, label, thunk, Work for the roofline column)."""
    d, fc = max(5, R // 3), max(5, R // 2)
    mac = rnn_macs
    return [
        ("a", "LSTM inference B=1 H=128 X=32 T=100", lambda: case_sequence("LSTM", 1, 128, 32, 100, R),
         w_hh_work("LSTM", 128, 100)),
        ("b", "LSTM inference B=16 H=128 X=32 T=100", lambda: case_sequence("LSTM", 16, 128, 32, 100, R),
         Work(mac("LSTM", 16, 128, 32, 100))),
        ("c", "LSTM inference B=64 H=256 X=64 T=100", lambda: case_sequence("LSTM", 64, 256, 64, 100, R),
         Work(mac("LSTM", 64, 256, 64, 100))),
        ("d", "LSTM inference B=128 H=512 X=128 T=50", lambda: case_sequence("LSTM", 128, 512, 128, 50, d),
         Work(mac("LSTM", 128, 512, 128, 50))),
        ("e", "LSTM streaming, per step, B=1 H=128 X=32", lambda: case_stream("LSTM", 1, 128, 32, 200, R),
         w_hh_work("LSTM", 128, 1)),
        ("e", "LSTM streaming, one step every 1 ms, per step, B=1 H=128 X=32",
         lambda: case_stream_paced("LSTM", 1, 128, 32, 100, 1e-3, R), w_hh_work("LSTM", 128, 1)),
        ("e", "GRU streaming, one step every 1 ms, per step, B=1 H=128 X=32",
         lambda: case_stream_paced("GRU", 1, 128, 32, 100, 1e-3, R), w_hh_work("GRU", 128, 1)),
        ("f", "LSTM training fwd+bwd, (a)", lambda: case_training("LSTM", 1, 128, 32, 100, R),
         w_hh_work("LSTM", 128, 100, passes=2)),
        ("f", "LSTM training fwd+bwd, (b)", lambda: case_training("LSTM", 16, 128, 32, 100, R),
         Work(mac("LSTM", 16, 128, 32, 100, 3))),
        ("f", "LSTM training fwd+bwd, (c)", lambda: case_training("LSTM", 64, 256, 64, 100, fc),
         Work(mac("LSTM", 64, 256, 64, 100, 3))),
        ("f", "LSTM training bf16 products (autocast), (c)",
         lambda: case_training_bf16("LSTM", 64, 256, 64, 100, fc), Work(mac("LSTM", 64, 256, 64, 100, 3), "bf16")),
        ("f", "GRU training bf16 products (autocast), (c)",
         lambda: case_training_bf16("GRU", 64, 256, 64, 100, fc), Work(mac("GRU", 64, 256, 64, 100, 3), "bf16")),
        ("g", "GRU inference B=1 H=128 X=32 T=100", lambda: case_sequence("GRU", 1, 128, 32, 100, R),
         w_hh_work("GRU", 128, 100)),
        ("g", "GRU streaming, per step, B=1 H=128 X=32", lambda: case_stream("GRU", 1, 128, 32, 200, R),
         w_hh_work("GRU", 128, 1)),
        ("h", "LSTM lengths 10..100, B=64 H=256 X=64 T=100", lambda: case_lengths("LSTM", 64, 256, 64, 100, R),
         Work(mac("LSTM", 1, 256, 64, lengths_steps()))),
        ("i", "LSTM bf16, (b)", lambda: case_quantized("LSTM", "bfloat16", 16, 128, 32, 100, R),
         Work(mac("LSTM", 16, 128, 32, 100), "bf16")),
        ("i", "LSTM int8, (b)", lambda: case_quantized("LSTM", "int8", 16, 128, 32, 100, R),
         Work(mac("LSTM", 16, 128, 32, 100), None)),
        ("i", "LSTM bf16, (c)", lambda: case_quantized("LSTM", "bfloat16", 64, 256, 64, 100, R),
         Work(mac("LSTM", 64, 256, 64, 100), "bf16")),
        ("i", "LSTM int8, (c)", lambda: case_quantized("LSTM", "int8", 64, 256, 64, 100, R),
         Work(mac("LSTM", 64, 256, 64, 100), None)),
        ("i", "LSTM bf16, (d)", lambda: case_quantized("LSTM", "bfloat16", 128, 512, 128, 50, d),
         Work(mac("LSTM", 128, 512, 128, 50), "bf16")),
        ("i", "LSTM int8, (d)", lambda: case_quantized("LSTM", "int8", 128, 512, 128, 50, d),
         Work(mac("LSTM", 128, 512, 128, 50), None)),
        ("i", "GRU int8, (c)", lambda: case_quantized("GRU", "int8", 64, 256, 64, 100, R),
         Work(mac("GRU", 64, 256, 64, 100), None)),
        ("m", "LSTM training (c), peak RSS in MB (not ms; rise during training in brackets)", case_training_memory,
         None),
    ]


def verdicts(label: str, cid: str, med: dict, ours: float, share: float | None, peaks: Peaks | None) -> str:
    """The target cell: each of the row's targets (TARGETS) met or MISSED, or said not to apply on this CPU.
    share: the row's fraction of the machine's peak (None: no peak for this row)."""
    out = []
    for peer, factor, *needs in TARGETS.get(label.split(";")[0], TARGETS.get(cid, [])):
        if needs == ["bf16"] and (peaks is None or peaks.bf16_gmacs is None):
            out.append(f"≥{factor}× {peer}: a target for CPUs with AVX512_BF16 or AMX")
            continue
        if peer == "peak":
            if share is not None:
                out.append(f"≥{100 * factor:.0f} % of peak: {'met' if share >= factor else 'MISSED'}")
            continue
        if peer == "best":
            fp32 = [v for k, v in med.items() if "bf16" not in k and not k.startswith("lstmkit")]
            ref_t, peer_name = min(fp32), "best fp32 peer"
        else:
            match = [k for k in med if k.startswith(peer)]
            if not match:
                continue
            ref_t, peer_name = med[match[0]], match[0]
        out.append(f"≥{factor}× {peer_name}: {'met' if ref_t / ours >= factor else 'MISSED'}")
    return "; ".join(out)


def header_lines(R: int, peaks: Peaks | None, note: str = "") -> list[str]:
    lines = [
        f"CPU: {cpu_name()}",
        f"lstmkit engine ISA path: {engine.isa()} (CPU supports {', '.join(engine.supported_isas())}); "
        f"threads: lstmkit {lstmkit.get_num_threads()}, torch {torch.get_num_threads()}, ORT intra_op {THREADS}, "
        + (f"OpenVINO {THREADS} (LATENCY; {', '.join(ov_precisions())})" if ov else "OpenVINO not installed"),
        f"torch {torch.__version__}, onnxruntime {ort.__version__}, "
        + (f"openvino {ov.__version__.split('-')[0]}, " if ov else "")
        + f"numpy {np.__version__}; float32; median of {R} interleaved rounds ((d): {max(5, R // 3)}, "
        f"(f)(c): {max(5, R // 2)}); {_dt.datetime.now(_dt.timezone.utc).strftime('%Y-%m-%d %H:%M UTC')}",
    ]
    if note:
        lines.append(f"Conditions: {note}")
    if peaks:
        lines.append(f"Machine rates on {THREADS} threads (roofline column): fp32 GEMM {peaks.fp32_gmacs:.0f} GMAC/s"
                     + (f", bf16 GEMM {peaks.bf16_gmacs:.0f} GMAC/s" if peaks.bf16_gmacs else ", no bf16 peak")
                     + f" (torch.mm 2048²), L2-resident read {peaks.l2_gbs:.0f} GB/s (NumPy sgemv)")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--out", default="docs/benchmarks.md")
    parser.add_argument("--only", default="", help="comma-separated case letters (default: all)")
    parser.add_argument("--note", default="", help="the run's conditions, for the section's header (e.g. 'quiet')")
    parser.add_argument("--rss-child", default="", help=argparse.SUPPRESS)  # internal: one process of case (m)
    args = parser.parse_args()
    if not engine.available():
        raise SystemExit("lstmkit._engine is not built")
    torch.set_num_threads(THREADS)
    lstmkit.set_num_threads(THREADS)
    if args.rss_child:
        print(*training_peak_rss(args.rss_child))
        return
    only = set(filter(None, args.only.split(",")))
    R = args.repeats
    peaks = machine_peaks()
    header = header_lines(R, peaks, args.note)
    lines = ["| case | what | lstmkit ms | peers ms | peer / lstmkit (>1: lstmkit faster) | lstmkit roofline "
             "| target |",
             "|---|---|---|---|---|---|---|"]
    print("\n".join(header), flush=True)
    for cid, label, thunk, work in case_list(R):
        if only and cid not in only:
            continue
        med = thunk()
        if ERROR_KEY in med:
            label += f"; output error vs float32 {med.pop(ERROR_KEY):.1e}"
        if ABSENT_KEY in med:
            label += f"; {med.pop(ABSENT_KEY)}"
        rise = {}
        if cid == "m":  # memory: (peak, rise above the RSS before)
            med, rise = med
        ours = med.pop("lstmkit")
        fmt = (lambda v: f"{v:.0f}") if cid == "m" else fmt_ms
        extra = (lambda k: f" (+{rise[k]:.0f})") if rise else (lambda k: "")
        peers = "; ".join(f"{k} {fmt(v)}{extra(k)}" for k, v in med.items())
        ratios = "; ".join(f"{k} {v / ours:.2f}×" for k, v in med.items())
        roof, share = roofline(work, ours, peaks)
        verdict = verdicts(label, cid, med, ours, share, peaks)
        line = f"| {cid} | {label} | {fmt(ours)}{extra('lstmkit')} | {peers} | {ratios} | {roof} | {verdict} |"
        lines.append(line)
        print(line, flush=True)
    contention = []
    if not only or "k" in only:
        contention = ["| case | condition | lstmkit median / p95 ms | ORT median / p95 ms | ORT / lstmkit "
                      "(median / p95) | calls timed | target: ratio no worse than quiet |",
                      "|---|---|---|---|---|---|---|"]
        print("\n" + "\n".join(contention), flush=True)
        contention += case_contention(R)
    spin = "; ".join(f"{k} {v:.2f}" for k, v in sorted(PAUSES.items()))
    notes = ["Streaming rows ((e), (g) streaming) are per step: the median over rounds of 200 steps, divided by 200. "
             "Each timed call follows untimed calls of the same peer for at least 20 ms "
             "(see `interleaved` in the script).",
             f"All peers run in this one process, each after a pause of at least {GAP_S:.1f} s that lasts until "
             f"the process has been idle for {1e3 * QUIET_S:.0f} ms (the previous peer's threads have stopped "
             f"spinning). Longest pause after each peer (s): {spin}."]
    print("\n" + notes[1])
    body = "\n".join(lines) + "\n\n" + "\n\n".join(notes) + "\n"
    if contention:
        body += ("\n(k) Contention: a Python spin loop pinned to one of the two CPUs; per call (per step for (e)), "
                 f"{R} interleaved rounds of 40 ms each, every call timed.\n\n" + "\n".join(contention) + "\n")
    if args.out and not only:
        write_cpu_section(args.out, "Engine benchmarks", cpu_key(), "\n\n".join(header) + "\n\n" + body,
                          heading=cpu_heading())
        print(f"\nwrote {args.out} (section {cpu_key()})")


if __name__ == "__main__":
    main()
