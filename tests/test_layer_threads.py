"""A NumPy layer's forward context is kept per thread: two threads calling forward/backward on one layer each
get the gradient of their own forward (issue 18 saw 102 of 33,659 calls return the other thread's input gradient).

The interleaving is forced, not raced: thread A runs a forward, thread B runs a forward on other input, then
A runs its backward, which must equal a single-threaded forward/backward of A's input exactly (same code,
same inputs, so the same bits).
"""
from __future__ import annotations

import queue
import threading

import numpy as np
import pytest

import lstmkit


class Worker:
    """A thread that runs the callables it is given, one at a time, and hands back their results."""

    def __init__(self):
        self._jobs, self._results = queue.Queue(), queue.Queue()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()

    def _loop(self):
        while True:
            job = self._jobs.get()
            if job is None:
                return
            try:
                self._results.put((True, job()))
            except Exception as e:  # noqa: BLE001 - handed back to the test thread
                self._results.put((False, e))

    def run(self, job):
        self._jobs.put(job)
        ok, value = self._results.get(timeout=60)
        if not ok:
            raise value
        return value

    def stop(self):
        self._jobs.put(None)
        self._thread.join()


LAYERS = {
    "LSTM-native": lambda: lstmkit.LSTM(3, 4, num_layers=2, seed=0),
    "LSTM-dropout-train": lambda: lstmkit.LSTM(3, 4, num_layers=2, dropout=0.5, seed=0),
    "GRU-variant": lambda: lstmkit.GRU(3, 4, seed=0, layer_norm=True),
    "LSTM-reference": lambda: lstmkit.LSTM(3, 4, seed=0, backend="reference"),
}


@pytest.mark.parametrize("name", list(LAYERS))
def test_backward_uses_the_calling_threads_forward(name):
    rng = np.random.default_rng(1)
    x_a, x_b = rng.standard_normal((2, 5, 2, 3)).astype(np.float32)
    dy = rng.standard_normal((5, 2, 4)).astype(np.float32)
    single = LAYERS[name]()
    single(x_a)
    want = single.backward(dy)

    layer = LAYERS[name]()
    a, b = Worker(), Worker()
    try:
        a.run(lambda: layer(x_a))
        b.run(lambda: layer(x_b))  # another thread's forward in between
        got = a.run(lambda: layer.backward(dy))
        other = b.run(lambda: layer.backward(dy))
    finally:
        a.stop()
        b.stop()
    np.testing.assert_array_equal(got.input, want.input)
    for key, value in want.params.items():
        np.testing.assert_array_equal(got.params[key], value, err_msg=key)
    assert not np.array_equal(other.input, want.input)  # B got the gradient of its own input


def test_cell_and_linear_keep_a_context_per_thread():
    rng = np.random.default_rng(2)
    for make, x_shape, dy_shape in ((lambda: lstmkit.GRUCell(3, 4, seed=0), (2, 3), (2, 4)),
                                    (lambda: lstmkit.Linear(3, 4, seed=0), (2, 3), (2, 4))):
        x_a, x_b = rng.standard_normal((2, *x_shape)).astype(np.float32)
        dy = rng.standard_normal(dy_shape).astype(np.float32)
        single = make()
        single(x_a)
        want = single.backward(dy)
        layer = make()
        a, b = Worker(), Worker()
        try:
            a.run(lambda: layer(x_a))
            b.run(lambda: layer(x_b))
            got = a.run(lambda: layer.backward(dy))
        finally:
            a.stop()
            b.stop()
        for key, value in want.params.items():
            np.testing.assert_array_equal(got.params[key], value, err_msg=key)


def test_backward_before_forward_in_this_thread_is_refused():
    layer = lstmkit.LSTM(3, 4, seed=0)
    layer(np.zeros((2, 1, 3), np.float32))
    w = Worker()
    try:
        with pytest.raises(RuntimeError, match="backward: call the layer on an input first"):
            w.run(lambda: layer.backward(np.zeros((2, 1, 4), np.float32)))
    finally:
        w.stop()
