"""Four Python threads running four models at once give exactly what running them one by one gives."""
import threading

import numpy as np

import lstmkit


def _models():
    return [lstmkit.LSTM(16, 48, num_layers=2, seed=1, dtype="float64"),
            lstmkit.GRU(16, 32, bidirectional=True, seed=2),
            lstmkit.LSTM(16, 40, proj_size=8, seed=3),
            lstmkit.GRU(16, 24, num_layers=3, seed=4, dtype="float64")]


def _work(model, x, lengths):
    """Forward and backward several times, as a serving/training thread would."""
    results = []
    for _ in range(5):
        out, _ = model.train()(x, lengths=lengths)
        g = model.backward(np.ones_like(out))
        results.append((out, g.input, g.params["weight_hh_l0"]))
    stream = model.eval().stream(batch=x.shape[1]) if not model.config.bidirectional else None
    if stream is not None:
        results.append(tuple(stream.step(x[t]) for t in range(x.shape[0])))
    return results


def test_four_threads_four_models_match_sequential_runs():
    rng = np.random.default_rng(0)
    models = _models()
    inputs = [rng.standard_normal((30, 6, 16)).astype(m.dtype) for m in models]
    lengths = [30, 12, 1, 30, 0, 25]
    expected = [_work(m, x, lengths) for m, x in zip(models, inputs)]
    got = [None] * 4

    def run(k):
        got[k] = _work(models[k], inputs[k], lengths)

    threads = [threading.Thread(target=run, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    for k in range(4):
        for a, b in zip(expected[k], got[k]):
            for u, v in zip(a, b):
                np.testing.assert_array_equal(u, v, err_msg=f"model {k}")


def _run_script(code: str, timeout: float = 120.0):
    """(exit status, stderr) of ``code`` run by a fresh interpreter with lstmkit importable; None on a hang."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    env = dict(os.environ, PYTHONPATH=str(Path(lstmkit.__file__).parents[1]))
    try:
        run = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return None, "hung"
    return run.returncode, run.stderr


def test_a_dataloader_worker_importing_lstmkit_torch_after_torchs_openmp_ran_does_not_hang():
    """The parent ran a torch op (torch's OpenMP threads started) and never imported lstmkit; a forked DataLoader
    worker imports lstmkit.torch and runs a module: it attached the engine to the OpenMP team whose threads the
    fork left behind, and hung on its first call. Where torch runs one thread (as in a worker) nothing is shared."""
    code = """
import torch
torch.set_num_threads(2)
a = torch.randn(256, 256)
(a @ a).sum()
class Data(torch.utils.data.Dataset):
    def __len__(self):
        return 2
    def __getitem__(self, i):
        import lstmkit.torch as lt
        return lt.LSTM(4, 32)(torch.randn(20, 8, 4))[0].sum().detach()
loader = torch.utils.data.DataLoader(Data(), num_workers=1, multiprocessing_context="fork", timeout=60)
print([float(v) for v in loader])
"""
    status, err = _run_script(code)
    assert status == 0, err[-2000:]


def test_a_daemon_thread_inside_a_native_call_at_exit_does_not_abort():
    """A daemon thread in an engine call when the interpreter shut down took the GIL back, was ended by
    pthread_exit, and the unwinding through a noexcept destructor aborted the process (rc 134, "terminate called
    without an active exception"; 10 of 10 runs). An atexit hook (engine.prepare_exit) has such a thread wait for
    the exit instead. (torch.nn in a daemon thread aborts the same way, in torch's own native calls.)"""
    code = """
import threading, time
import numpy as np
import lstmkit
layer = lstmkit.GRU(8, 16).eval()  # short calls: the thread is often waiting for the GIL when the exit comes
x = np.random.default_rng(0).standard_normal((3, 2, 8)).astype(np.float32)
def work():
    while True:
        layer(x)
threading.Thread(target=work, daemon=True).start()
time.sleep(0.3)
"""
    for _ in range(3):
        status, err = _run_script(code, timeout=60)
        assert status == 0 and "terminate" not in err, (status, err[-2000:])


def test_forks_beside_a_busy_thread_start_fresh():
    """A fork while another thread held one of the engine's mutexes (the lockstep probes', the contention
    tracker's) left the child's copy locked: it hung in set_num_threads or its first call (1 to 4 forks in 150).
    The child renews them with its pool. Each child here gets 20 s."""
    code = """
import os, signal, threading
import numpy as np
import lstmkit
from lstmkit import engine
layer = lstmkit.GRU(8, 16).eval()
x = np.random.default_rng(0).standard_normal((3, 2, 8)).astype(np.float32)
stop = False
def busy():
    while not stop:
        layer(x)
threading.Thread(target=busy, daemon=True).start()
hung = 0
for _ in range(120):
    pid = os.fork()
    if pid == 0:
        signal.alarm(20)
        engine.set_num_threads(2)
        layer(x)
        os._exit(0)
    _, status = os.waitpid(pid, 0)
    hung += status != 0
stop = True
print("hung", hung)
assert hung == 0, hung
"""
    status, err = _run_script(code, timeout=300)
    assert status == 0, err[-2000:]


def test_a_stream_being_stepped_at_a_fork_is_named_so_in_the_child():
    """A child forked while a parent thread was stepping a stream inherits its busy flag, set by a thread it does
    not have, and a state the step may have left half written: it said "already in use by another thread" for
    ever; it says what happened (make a new stream). No leak report at exit from the thread kept in its call."""
    code = """
import os, threading
import numpy as np
import lstmkit
stream = lstmkit.LSTM(256, 512).eval().stream(64)
x = np.random.default_rng(0).standard_normal((64, 256)).astype(np.float32)
def busy():
    while True:
        stream.step(x)
threading.Thread(target=busy, daemon=True).start()
seen = set()
for _ in range(10):
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            stream.step(x)
            message = "ok"
        except RuntimeError as e:
            message = str(e)
        os.write(w, message.encode())
        os._exit(0)
    os.close(w)
    seen.add(os.read(r, 4096).decode())
    os.waitpid(pid, 0)
assert seen <= {"ok", "stream: it was being stepped by a thread of the parent process when this process forked, so "
                "its state may be half written; make a new stream here"}, seen
assert seen != {"ok"}, "the parent's thread was never caught stepping (a step of this size takes milliseconds)"
"""
    status, err = _run_script(code)
    assert status == 0 and "leaked" not in err, err[-2000:]
