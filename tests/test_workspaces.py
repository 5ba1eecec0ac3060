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
    block = a.base
    del a  # idle now
    for size, dtype in ((1000, np.float64), (400, np.float32), (1001, np.float32)):  # more than twice; too small
        other = workspaces.empty(size, dtype)
        assert other.base is not block
        assert any(b is block for b in workspaces._idle)
        workspaces._idle[:] = [block]  # only the block under test stays idle
        del other
    assert workspaces.empty(600, np.float32).base is block


def test_a_view_or_torch_tensor_keeps_the_block_in_use():
    torch = pytest.importorskip("torch")
    a = workspaces.empty(1000, np.float64)
    block = a.base
    t = torch.from_numpy(a)
    del a
    gc.collect()
    assert not any(b is block for b in workspaces._idle)  # the tensor still views it
    del t
    assert any(b is block for b in workspaces._idle)


def test_idle_blocks_are_bounded_and_release_frees_them():
    arrays = [workspaces.empty(100 + i, np.float32) for i in range(5)]
    del arrays
    assert len(workspaces._idle) == workspaces.KEEP
    workspaces.release()
    assert workspaces._idle == []


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
