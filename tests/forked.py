"""A function run in a forked child, for the engine's state after a fork (its thread pool renewed in the child)."""
from __future__ import annotations

import multiprocessing

import pytest


def run_forked(target, args: tuple, hung: str, timeout: float = 60.0):
    """target(*args, conn) in a child forked now; returns what it sent on conn. Fails the test with `hung` when
    the child has not ended within `timeout` seconds, and when it exits with an error."""
    ctx = multiprocessing.get_context("fork")
    parent, child = ctx.Pipe()
    proc = ctx.Process(target=target, args=(*args, child))
    proc.start()
    proc.join(timeout)
    if proc.is_alive():
        proc.kill()
        pytest.fail(hung)
    assert proc.exitcode == 0
    return parent.recv()
