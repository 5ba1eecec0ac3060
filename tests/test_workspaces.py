"""lstmkit.workspaces: the training workspaces' memory is recycled only once nothing views it."""
from __future__ import annotations

import gc

import numpy as np
import pytest

from lstmkit import engine, workspaces
from lstmkit.params import RNNConfig, init_params


@pytest.fixture(autouse=True)
def _empty_cache():
    workspaces.release()
    yield
    workspaces.release()


def _address(a: np.ndarray) -> int:
    return a.__array_interface__["data"][0]


def _block(a: np.ndarray) -> np.ndarray:
    """The pool's block under a workspace (its lease's)."""
    return a.base.block


def _pooled() -> list:
    """The blocks the pool holds: idle, and given back since the last empty()."""
    return [*workspaces._idle, *workspaces._returned]


def test_memory_comes_back_only_when_released():
    a = workspaces.empty(1000, np.float32)
    b = workspaces.empty(1000, np.float32)
    assert _address(a) != _address(b)  # a is still in use
    where = _address(a)
    del a
    c = workspaces.empty(900, np.float32)  # fits: at least 900 and at most twice as many values
    assert _address(c) == where and c.shape == (900,) and c.dtype == np.float32


def test_blocks_of_another_dtype_or_far_larger_are_not_handed_out():
    a = workspaces.empty(1000, np.float32)
    block = _block(a)
    del a  # idle now
    for size, dtype in ((1000, np.float64), (400, np.float32), (1001, np.float32)):  # more than twice; too small
        other = workspaces.empty(size, dtype)
        assert _block(other) is not block
        assert any(b is block for b in _pooled())
        workspaces._idle[:] = [block]  # only the block under test stays idle
        del other
        workspaces._returned.clear()
    assert _block(workspaces.empty(600, np.float32)) is block


def test_a_view_or_torch_tensor_keeps_the_block_in_use():
    torch = pytest.importorskip("torch")
    a = workspaces.empty(1000, np.float64)
    block = _block(a)
    t = torch.from_numpy(a)
    del a
    gc.collect()
    assert not any(b is block for b in _pooled())  # the tensor still views it
    del t
    assert any(b is block for b in _pooled())


def test_idle_blocks_are_bounded_and_release_frees_them():
    arrays = [workspaces.empty(100 + i, np.float32) for i in range(5)]
    del arrays
    workspaces.empty(1, np.float64)  # the next call takes the returned blocks in, keeping KEEP of them
    assert len(workspaces._idle) == workspaces.KEEP
    workspaces.release()
    assert _pooled() == []


def test_training_steps_reuse_one_workspace_and_stay_exact():
    """Consecutive train_forward/backward calls get the same memory back, and the recycled (dirty)
    block gives the same bits as a fresh one."""
    config = RNNConfig("LSTM", 3, 8, num_layers=2, proj_size=4, layer_norm=True, peephole=True)
    params = init_params(config, seed=0, dtype="float64")
    x = np.random.default_rng(0).standard_normal((5, 2, 3))
    d_out = np.random.default_rng(1).standard_normal((5, 2, 4))
    _, _, ws = engine.train_forward(config, params, x)
    first, where = engine.backward(config, params, x, d_out, workspace=ws), _address(ws)
    ws[:] = np.nan  # what a previous step leaves behind
    del ws
    _, _, ws = engine.train_forward(config, params, x)
    assert _address(ws) == where
    again = engine.backward(config, params, x, d_out, workspace=ws)
    np.testing.assert_array_equal(first[0], again[0])
    for name in params:
        np.testing.assert_array_equal(first[2][name], again[2][name])


def test_a_view_of_a_workspace_keeps_its_memory_from_the_next_call():
    """numpy gives a slice's views the slice's base, not the slice: a workspace handed out as a slice of its block
    went back to the pool when the slice died, while a view of it (ws[:], a reshape) still held the gradients'
    tape; the next train_forward wrote over it (dW_hh 0.26 off). The lease under every view prevents that."""
    config = RNNConfig("LSTM", 3, 8)
    params = init_params(config, seed=0, dtype="float32")
    rng = np.random.default_rng(0)
    x, other = rng.standard_normal((2, 5, 2, 3)).astype(np.float32)
    d_out = rng.standard_normal((5, 2, 8)).astype(np.float32)
    _, _, ws = engine.train_forward(config, params, x)
    want = engine.backward(config, params, x, d_out, workspace=ws.copy())
    for view in (lambda a: a[:], lambda a: a.reshape(1, -1), lambda a: a[::1]):
        _, _, ws = engine.train_forward(config, params, x)
        kept = view(ws)
        del ws
        gc.collect()
        _, _, fresh = engine.train_forward(config, params, other)  # must not get kept's memory
        assert _address(fresh) != _address(kept)
        got = engine.backward(config, params, x, d_out, workspace=kept.reshape(-1))
        np.testing.assert_array_equal(got[2]["weight_hh_l0"], want[2]["weight_hh_l0"])


def _collect_inside_empty(conn) -> None:
    """Workspaces dropped in reference cycles while the cyclic GC runs often: some collection lands inside
    empty()'s critical section and finalizes a workspace there."""
    gc.set_threshold(5)
    for _ in range(3000):
        cycle = {"ws": workspaces.empty(64, np.float32)}
        cycle["self"] = cycle  # collected only by the cyclic GC, which may run inside the next empty()
        del cycle
    conn.send("done")


def test_a_workspace_collected_inside_empty_does_not_deadlock():
    """The garbage collector can finalize a dropped workspace while empty() holds the pool's lock, in the same
    thread: its finalizer only queues the block, so the call goes on (it took the lock again: a deadlock).
    In a forked child, so a regression fails the test instead of hanging the suite."""
    from forked import run_forked

    assert run_forked(_collect_inside_empty, (), "workspaces.empty deadlocked in a finalizer") == "done"
