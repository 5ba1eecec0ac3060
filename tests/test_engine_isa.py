"""Instruction-set dispatch and threads of the native engine.

* Every instruction-set path this CPU runs passes the engine's parity sweep (tests/test_engine_vs_ref.py,
  forward, backward and cell parity against the NumPy reference; tests/test_cell_step.py, one cell step and its
  backward with the weights read in place; tests/test_bf16_training.py, bf16 mixed-precision training and its
  weight-gradient product within their bounds), each in a subprocess started with
  LSTMKIT_ISA set, which also checks that ``engine.isa()`` reports the forced path.
* Threads: results do not depend on the thread count (bit for bit), and two Python threads running two
  models at the same time get what running them one after the other gives — on lstmkit's own thread pool
  and on torch's OpenMP threads (``engine.share_openmp_team``, what ``import lstmkit.torch`` turns on), each
  test that involves the threads run under both (the ``pool`` fixture).
"""
from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from lstmkit import engine, ref
from lstmkit.params import RNNConfig, init_params

ROOT = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.skipif(not engine.available(), reason="lstmkit._engine is not built")


def _env(isa: str) -> dict:
    env = dict(os.environ, LSTMKIT_ISA=isa)
    src = str(Path(engine.__file__).resolve().parents[1])  # the lstmkit this process imported
    env["PYTHONPATH"] = os.pathsep.join([src, env.get("PYTHONPATH", "")])
    return env


@pytest.fixture(params=["own", "openmp"])
def pool(request):
    """Runs the test with the kernels' parallel work on lstmkit's own threads ("own") or on torch's OpenMP
    threads ("openmp"); the mode found is restored afterwards."""
    before = engine.openmp_team()
    if request.param == "openmp":
        import torch  # a test requirement: its OpenMP runtime is the one shared

        torch.ones(1 << 16).add_(1)  # torch's OpenMP threads exist once torch has run a parallel op
        assert engine.share_openmp_team(True), "torch is imported: its OpenMP runtime must be found"
    else:
        assert engine.share_openmp_team(False) == ""
    try:
        yield request.param
    finally:
        engine.share_openmp_team(bool(before))


def test_share_openmp_team_switches_and_checks():
    import torch  # noqa: F401 - loads the OpenMP runtime

    before = engine.openmp_team()
    try:
        path = engine.share_openmp_team(True)
        assert "omp" in Path(path).name, path
        assert engine.openmp_team() == path
        assert engine.share_openmp_team(False) == "" and engine.openmp_team() == ""
        with pytest.raises(TypeError, match="enable: expected a bool, got str"):
            engine.share_openmp_team("yes")
    finally:
        engine.share_openmp_team(bool(before))


def test_openmp_team_is_not_used_in_a_forked_child(pool):
    """An OpenMP runtime used before a fork may hang in the child (its threads are gone): the child's
    kernels run on lstmkit's own threads instead, and give the same bits."""
    from forked import run_forked

    config, params, x = _model("LSTM", 23, B=8, H=96, T=20)
    want = engine.forward(config, params, x)[0]  # the parent's threads have run a job
    team, out = run_forked(_forward_in_child, (config, params, x), "the forked child hung in its first parallel job")
    assert team == ""
    np.testing.assert_array_equal(out, want)


def _forward_in_child(config, params, x, conn):
    saved = engine.get_num_threads()
    engine.set_num_threads(2)
    try:
        conn.send((engine.openmp_team(), engine.forward(config, params, x)[0]))
    finally:
        engine.set_num_threads(saved)


def test_isa_reporting():
    assert engine.isa() in engine.supported_isas()
    assert engine.supported_isas()[0] == "scalar"
    assert set(engine.supported_isas()) <= set(engine.ISAS)


@pytest.mark.parametrize("isa", ["scalar", "avx2", "avx512", "amx"])
def test_parity_sweep_under_each_isa(isa):
    if isa not in engine.supported_isas():
        pytest.skip(f"this CPU does not run the {isa} path")
    env = _env(isa)
    got = subprocess.run([sys.executable, "-c", "from lstmkit import engine; print(engine.isa())"], env=env,
                         capture_output=True, text=True, check=True).stdout.strip()
    assert got == isa
    run = subprocess.run(
        [sys.executable, "-m", "pytest", str(ROOT / "tests" / "test_engine_vs_ref.py"),
         str(ROOT / "tests" / "test_cell_step.py"), str(ROOT / "tests" / "test_bf16_training.py"), "-q", "-x", "-p",
         "no:cacheprovider", "-k", "parity or lengths or native_step or linear_tn"],
        env=env, capture_output=True, text=True, cwd=ROOT,
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-2000:]


def test_lower_isa_is_forced_and_unknown_value_warns():
    best = engine.supported_isas()[-1]
    out = subprocess.run(
        [sys.executable, "-W", "always", "-c", "from lstmkit import engine; print(engine.isa())"],
        env=_env("bogus"), capture_output=True, text=True, check=True,
    )
    assert out.stdout.strip() == best
    assert "LSTMKIT_ISA" in out.stderr and "RuntimeWarning" in out.stderr


def test_a_path_this_cpu_cannot_run_warns():
    """LSTMKIT_ISA=avx512 on a CPU without it ran avx2 without a word; a path it runs says nothing."""
    for isa in engine.ISAS:
        out = subprocess.run(
            [sys.executable, "-W", "always", "-c", "from lstmkit import engine; print(engine.isa())"],
            env=_env(isa), capture_output=True, text=True, check=True,
        )
        runs = isa in engine.supported_isas()
        assert out.stdout.strip() == (isa if runs else engine.supported_isas()[-1])
        assert ("does not run that path" in out.stderr) == (not runs), (isa, out.stderr)


def test_unknown_int8_kernel_warns():
    env = dict(_env(engine.supported_isas()[-1]), LSTMKIT_INT8_KERNEL="bogus")
    out = subprocess.run(
        [sys.executable, "-W", "always", "-c", "from lstmkit import _engine; print(_engine.quant_int8_kernel())"],
        env=env, capture_output=True, text=True, check=True,
    )
    assert out.stdout.strip() in ("madd", "pairs", "vnni", "amx", "portable")
    assert "LSTMKIT_INT8_KERNEL='bogus'" in out.stderr and "RuntimeWarning" in out.stderr


def test_set_num_threads_checks():
    n = engine.get_num_threads()
    assert n >= 1
    for bad in (0, engine.max_threads() + 1, 10**6, 2**31, 2**63):  # 10**6 once left hundreds of threads behind;
        with pytest.raises(ValueError, match=f"n: expected 1 to {engine.max_threads()} threads.*got {bad}$"):
            engine.set_num_threads(bad)  # 2**31 and 2**63 gave nanobind's "incompatible function arguments"
    assert engine.max_threads() >= 4 * (os.cpu_count() or 1)
    with pytest.raises(TypeError):
        engine.set_num_threads(2.0)
    assert engine.get_num_threads() == n


def _model(mode, seed, dtype="float32", H=48, I=24, B=32, T=16, proj=0, layers=2, bidirectional=False):
    config = RNNConfig(mode, input_size=I, hidden_size=H, num_layers=layers, proj_size=proj,
                       bidirectional=bidirectional)
    params = init_params(config, seed=seed, dtype=dtype)
    x = np.random.default_rng(seed).standard_normal((T, B, I)).astype(dtype)
    return config, params, x


@pytest.mark.parametrize("mode,proj", [("LSTM", 0), ("LSTM", 16), ("GRU", 0)])
def test_thread_count_does_not_change_results(mode, proj):
    config, params, x = _model(mode, 3, proj=proj)
    lengths = np.random.default_rng(1).integers(1, x.shape[0] + 1, size=x.shape[1])
    d_out = np.random.default_rng(2).standard_normal((x.shape[0], x.shape[1], config.output_size)).astype(x.dtype)
    saved = engine.get_num_threads()
    try:
        results = []
        for n in (1, 2, 3):
            engine.set_num_threads(n)
            out, state = engine.forward(config, params, x, None, lengths)
            dx, _, grads = engine.backward(config, params, x, d_out, None, None, lengths)
            results.append((out, state, dx, grads))
    finally:
        engine.set_num_threads(saved)
    out1, state1, dx1, grads1 = results[0]
    want, _, _ = ref.forward(config, params, x, None, lengths)
    np.testing.assert_allclose(out1, want, rtol=1e-5, atol=1e-6)
    for out, state, dx, grads in results[1:]:
        np.testing.assert_array_equal(out, out1)
        for a, b in zip(state, state1):
            np.testing.assert_array_equal(a, b)
        np.testing.assert_array_equal(dx, dx1)
        for k in grads:  # weight-gradient sums may split differently
            np.testing.assert_allclose(grads[k], grads1[k], rtol=1e-5, atol=1e-6)


# B = 1: each step split by hidden units over the pool; 8, 12: the time loop split by hidden units over
# two threads (rnn.h, lockstep_pair); 32, 50: by rows.
@pytest.mark.parametrize("mode,B,bidirectional", [("LSTM", 1, False), ("LSTM", 8, False), ("LSTM", 32, False),
                                                  ("LSTM", 50, False), ("GRU", 1, True), ("GRU", 12, False),
                                                  ("LSTM", 8, True)])
def test_thread_count_bitwise_without_lengths(mode, B, bidirectional, pool):
    config, params, x = _model(mode, 7, B=B, H=128 if B == 1 else 96, bidirectional=bidirectional)
    saved = engine.get_num_threads()
    try:
        outs = []
        for n in (1, 2):
            engine.set_num_threads(n)
            outs.append(engine.forward(config, params, x)[0])
    finally:
        engine.set_num_threads(saved)
    np.testing.assert_array_equal(outs[0], outs[1])


# Training without lengths: B = 1 and 8 run the time loop split by hidden units on two threads (forward
# with its tape, and the backward's lockstep loop); 32 by rows. The forward, its workspace and the
# state/input gradients are the same bits on 1 and 2 threads.
@pytest.mark.parametrize("mode,B,bidirectional", [("LSTM", 1, False), ("GRU", 1, True), ("LSTM", 8, True),
                                                  ("GRU", 8, False), ("LSTM", 32, False)])
def test_thread_count_bitwise_training(mode, B, bidirectional, pool):
    config, params, x = _model(mode, 11, B=B, H=128 if B == 1 else 96, bidirectional=bidirectional)
    d_out = np.random.default_rng(3).standard_normal(x.shape[:2] + (config.num_directions * config.output_size,))
    d_out = d_out.astype(x.dtype)
    saved = engine.get_num_threads()
    try:
        runs = []
        for n in (1, 2):
            engine.set_num_threads(n)
            out, final, workspace = engine.train_forward(config, params, x)
            dx, d_state0, grads = engine.backward(config, params, x, d_out, workspace=workspace)
            runs.append((out, final, workspace.copy(), dx, d_state0, grads))
    finally:
        engine.set_num_threads(saved)
    (out1, final1, ws1, dx1, ds1, g1), (out2, final2, ws2, dx2, ds2, g2) = runs
    for a, b in [(out1, out2), (ws1, ws2), (dx1, dx2), *zip(final1, final2), *zip(ds1, ds2)]:
        np.testing.assert_array_equal(a, b)
    for name in g1:  # weight-gradient sums over all rows may split differently
        np.testing.assert_allclose(g1[name], g2[name], rtol=1e-5, atol=1e-6, err_msg=name)



def _by_thread_count(run, counts=(1, 2)) -> list:
    """run() at each thread count (the setting restored afterwards)."""
    saved = engine.get_num_threads()
    try:
        results = []
        for n in counts:
            engine.set_num_threads(n)
            results.append(run())
        return results
    finally:
        engine.set_num_threads(saved)


# B = 48 runs the time loop split by rows (whole register tiles of 4 or 6 rows per thread); with 25 sequences
# running the last steps, a thread's share of those steps is one row while the step has 25. That share
# must not take the GEMM's one-row kernel (another summation order): main gave other last bits on 2 threads
# (up to 3e-8), forward and backward, plain and variant cells.
@pytest.mark.parametrize("mode,options", [("LSTM", {}), ("GRU", {}), ("LSTM", {"peephole": True}),
                                          ("GRU", {"clip": 0.5}), ("LSTM", {"proj_size": 16})])
def test_thread_count_bitwise_when_a_share_has_one_row(mode, options):
    T = 6
    config = RNNConfig(mode, input_size=8, hidden_size=64, **options)
    params = init_params(config, seed=5)
    rng = np.random.default_rng(5)
    x = rng.standard_normal((T, 48, 8)).astype(np.float32)
    lengths = rng.permutation(np.array([T] * 25 + [3] * 13 + [1] * 10))
    d_out = rng.standard_normal((T, 48, config.output_size)).astype(np.float32)

    def run():
        out, final = engine.forward(config, params, x, None, lengths)
        out_t, _, ws = engine.train_forward(config, params, x, None, lengths)
        dx, d_state0, _ = engine.backward(config, params, x, d_out, None, None, lengths, workspace=ws)
        return [out, *final, out_t, ws.copy(), dx, *d_state0]

    one, two = _by_thread_count(run)
    for i, (a, b) in enumerate(zip(one, two)):
        np.testing.assert_array_equal(a, b, err_msg=f"result {i}")


# The variant and quantised cells on the lockstep pair (B = 1 and 4, H = 128, every row running every step):
# each thread computes its half of the units with the operations of the one-thread step, so the bits are
# the same, the tapes and gradients included.
@pytest.mark.parametrize("mode,options,B", [
    ("LSTM", {"peephole": True, "clip": 0.5, "zoneout": (0.2, 0.1)}, 1),
    ("LSTM", {"input_forget": True, "activations": ("hardsigmoid", "relu", "softsign")}, 4),
    ("GRU", {"clip": 0.5, "zoneout": (0.0, 0.2)}, 1),
    ("GRU", {"activations": ("hardsigmoid", "elu")}, 4),
])
def test_thread_count_bitwise_variant_lockstep(mode, options, B):
    from lstmkit.ref.variants import VariantMasks

    config = RNNConfig(mode, input_size=8, hidden_size=128, num_layers=2, **options)
    params = init_params(config, seed=9)
    rng = np.random.default_rng(9)
    x = rng.standard_normal((12, B, 8)).astype(np.float32)
    d_out = rng.standard_normal((12, B, 128)).astype(np.float32)
    zoneout_h = [(rng.random((12, B, 128)) < 0.2).astype(np.float32) for _ in range(2)]
    recurrent = [(rng.random((B, 128)) > 0.25).astype(np.float32) / np.float32(0.75) for _ in range(2)]
    masks = VariantMasks(recurrent, None, zoneout_h)

    def run():
        out, final = engine.forward(config, params, x)
        out_t, _, ws = engine.train_forward(config, params, x, variant_masks=masks)
        dx, d_state0, _ = engine.backward(config, params, x, d_out, variant_masks=masks, workspace=ws)
        return [out, *final, out_t, ws.copy(), dx, *d_state0]

    one, two = _by_thread_count(run)
    for i, (a, b) in enumerate(zip(one, two)):
        np.testing.assert_array_equal(a, b, err_msg=f"result {i}")


@pytest.mark.parametrize("mode,qtype", [("LSTM", "int8"), ("LSTM", "bfloat16"), ("GRU", "int8"), ("GRU", "bfloat16")])
def test_thread_count_bitwise_quantized_lockstep(mode, qtype):
    from lstmkit.quantize import QuantizedRNN

    config = RNNConfig(mode, input_size=8, hidden_size=128, num_layers=2)
    model = QuantizedRNN(config, init_params(config, seed=4), qtype)
    x = np.random.default_rng(4).standard_normal((12, 2, 8)).astype(np.float32)
    one, two = _by_thread_count(lambda: model(x))
    np.testing.assert_array_equal(one[0], two[0])


def _assert_training_bits(config, params, x, d_out, want_out, want_dx, where: str) -> None:
    """engine.forward, and train_forward + backward, give exactly want_out and want_dx (one thread's)."""
    np.testing.assert_array_equal(engine.forward(config, params, x)[0], want_out, err_msg=where)
    out, _, ws = engine.train_forward(config, params, x)
    np.testing.assert_array_equal(out, want_out, err_msg=where)
    dx = engine.backward(config, params, x, d_out, workspace=ws)[0]
    np.testing.assert_array_equal(dx, want_dx, err_msg=where)


def test_two_thread_time_loops_under_contention(pool):
    """The lockstep loops (B = 1: forward, training forward and backward) while a busy Python thread
    competes for the two cores, so that a loop thread is often descheduled mid-sequence and its partner
    takes its parts: every call still gives the one-thread bits."""
    config, params, x = _model("LSTM", 13, B=1, H=128, T=40)
    d_out = np.random.default_rng(4).standard_normal((40, 1, 128)).astype(x.dtype)
    saved = engine.get_num_threads()
    engine.set_num_threads(1)
    want_out, _, want_ws = engine.train_forward(config, params, x)
    want_dx = engine.backward(config, params, x, d_out, workspace=want_ws)[0]
    stop = threading.Event()

    def burn():  # numpy releases the GIL on large arrays: this thread takes a core, not the interpreter
        a = np.ones(1 << 18)
        while not stop.is_set():
            np.sqrt(a, out=a)

    burner = threading.Thread(target=burn)
    try:
        engine.set_num_threads(2)
        burner.start()
        for i in range(100):
            _assert_training_bits(config, params, x, d_out, want_out, want_dx, f"call {i}")
    finally:
        stop.set()
        if burner.is_alive():
            burner.join()
        engine.set_num_threads(saved)


@pytest.mark.skipif(not hasattr(os, "sched_setaffinity"), reason="needs os.sched_setaffinity (Linux)")
def test_late_partner_falls_back_to_one_thread(pool):
    """Caller, pool thread (ours, or torch's OpenMP thread) and a busy thread all on one CPU: the pool thread
    is descheduled while it holds its part of a step, the caller finds it late, finishes the loop alone and
    runs the next calls alone for a while (threads.cpp, Contention). The lockstep loops (B = 1 and 8,
    forward, training forward and backward) and a streaming step split by units still give the one-thread
    bits, and the fallback did run."""
    import lstmkit
    from lstmkit import _engine

    runs = [(_model("LSTM", 17, B=B, H=128, T=30), B) for B in (1, 8)]
    layer = lstmkit.LSTM(24, 128, num_layers=2, seed=17, dtype="float32")
    xs = runs[0][0][2]  # (30, 1, 24)
    saved, mask = engine.get_num_threads(), os.sched_getaffinity(0)
    engine.set_num_threads(1)
    wants = []
    for (config, params, x), B in runs:
        d_out = np.random.default_rng(5).standard_normal((30, B, 128)).astype(x.dtype)
        out, _, ws = engine.train_forward(config, params, x)
        wants.append((out, d_out, engine.backward(config, params, x, d_out, workspace=ws)[0]))
    stream = layer.stream(batch=1)
    want_steps = np.stack([stream.step(xs[t]) for t in range(30)])
    stop = threading.Event()

    def burn():
        a = np.ones(1 << 16)
        while not stop.is_set():
            np.sqrt(a, out=a)

    before = _engine.pool_stats()
    try:
        _pin_every_thread({min(mask)})  # torch's OpenMP threads too; the burner inherits it
        engine.set_num_threads(2)  # restarts the pool threads, now on that CPU
        burner = threading.Thread(target=burn)
        burner.start()
        for i in range(60):
            _engine.reset_schedule_probes()  # the lockstep loops run on the pair (their probes would pick one thread)
            for ((config, params, x), _), (want, d_out, want_dx) in zip(runs, wants):
                _assert_training_bits(config, params, x, d_out, want, want_dx, f"call {i}")
            stream = layer.stream(batch=1)  # a new stream's first steps are split (its ScheduleProbe starts there)
            steps = np.stack([stream.step(xs[t]) for t in range(30)])
            np.testing.assert_array_equal(steps, want_steps, err_msg=f"stream, call {i}")
    finally:
        stop.set()
        if "burner" in locals() and burner.is_alive():
            burner.join()
        _pin_every_thread(mask)
        engine.set_num_threads(saved)  # pool threads restarted with the whole mask
    after = _engine.pool_stats()
    assert after["late_partners"] > before["late_partners"], (before, after)
    assert after["solo_jobs"] > before["solo_jobs"], (before, after)


@pytest.mark.skipif(not hasattr(os, "sched_setaffinity"), reason="needs os.sched_setaffinity (Linux)")
@pytest.mark.parametrize("pool", ["own"], indirect=True)
def test_lasting_contention_is_remembered_across_a_pause(pool):
    """Caller, pool thread and a busy thread on one CPU: a partner is late, the program pauses (no calls) for
    longer than 4 of the solo spells that started, and calls again until a partner is late again. Where the pool
    has not run 4 spells' worth of two-thread work on time in between, the contention lasted and the spell doubles
    (threads.cpp, Contention::on_time); counted in wall time, as before, the pause made every such spell the
    shortest, and each burst of calls after a pause paid a late wait every few ms. On one CPU shared three ways
    some calls between two late partners are on time (a quarter of the cycles here reached the 4 spells), so
    the test runs 6 cycles of pause and late partner and asks for a doubled spell in one at least."""
    from lstmkit import _engine

    config, params, x = _model("LSTM", 19, B=1, H=128, T=200)
    saved, mask = engine.get_num_threads(), os.sched_getaffinity(0)
    stop = threading.Event()

    def burn():
        a = np.ones(1 << 16)
        while not stop.is_set():
            np.sqrt(a, out=a)

    def late_spell(calls: int = 3000) -> float:
        """Lockstep calls until a partner is late: the solo spell (ms) that started."""
        before = _engine.pool_stats()["late_partners"]
        for _ in range(calls):
            _engine.reset_schedule_probes()  # the loop runs on the pair (its probe could pick one thread)
            engine.forward(config, params, x)
            stats = _engine.pool_stats()
            if stats["late_partners"] > before:
                return stats["solo_spell_ms"]
        pytest.fail(f"no late partner in {calls} calls")

    burner = threading.Thread(target=burn)
    try:
        _pin_every_thread({min(mask)})  # the burner inherits it
        engine.set_num_threads(2)  # restarts the pool thread, now on that CPU
        burner.start()
        spells = [late_spell()]
        for _ in range(6):
            time.sleep(4 * spells[-1] / 1e3 + 0.05)  # a pause longer than 4 spells (and the solo spell is over)
            spells.append(late_spell())
    finally:
        stop.set()
        if burner.is_alive():
            burner.join()
        _pin_every_thread(mask)
        engine.set_num_threads(saved)
    assert any(b >= min(2 * a, 256.0) for a, b in zip(spells, spells[1:])), spells


def _pin_every_thread(cpus) -> None:
    """Sets the CPU affinity of every thread of this process (Linux: /proc/self/task)."""
    for tid in os.listdir("/proc/self/task"):
        try:
            os.sched_setaffinity(int(tid), cpus)
        except ProcessLookupError:  # a thread that ended meanwhile
            pass


def test_two_python_threads_run_two_models_at_once(pool):
    models = [_model("LSTM", 5, proj=12), _model("GRU", 6, H=64, B=40)]
    alone = [engine.forward(c, p, x) for c, p, x in models]
    saved = engine.get_num_threads()
    engine.set_num_threads(2)
    results: dict = {}
    errors: list = []
    start = threading.Barrier(2)

    def run(i):
        try:
            c, p, x = models[i]
            start.wait()
            results[i] = [engine.forward(c, p, x) for _ in range(5)]
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(2)]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        engine.set_num_threads(saved)
    assert not errors, errors
    for i in range(2):
        for out, state in results[i]:
            np.testing.assert_array_equal(out, alone[i][0])
            for a, b in zip(state, alone[i][1]):
                np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("mode", ["LSTM", "GRU"])
def test_lockstep_probe_switching_schedules_keeps_the_bits(mode, pool):
    """A lockstep loop is timed against the caller running it alone (threads.cpp, LockstepProbes): the first
    probe tries the other schedule from the 17th call for 24 calls, and the faster is kept. 60 calls of the
    forward and of training (forward, backward) cross it; every call's bits equal one thread's."""
    from lstmkit import _engine

    config, params, x = _model(mode, 23, B=1, H=128, T=20, layers=1)
    d_out = np.random.default_rng(4).standard_normal((20, 1, 128)).astype(x.dtype)
    saved = engine.get_num_threads()
    try:
        engine.set_num_threads(1)
        want = engine.forward(config, params, x)[0]
        want_dx = engine.backward(config, params, x, d_out)[0]
        engine.set_num_threads(2)  # forgets earlier timings: each loop starts on the pair
        before = _engine.pool_stats()["probed_alone"]
        for i in range(60):
            _assert_training_bits(config, params, x, d_out, want, want_dx, f"call {i}")
        assert _engine.pool_stats()["probed_alone"] >= before + 3 * 24  # each loop's probe ran it alone
    finally:
        engine.set_num_threads(saved)
