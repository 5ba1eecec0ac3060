"""The engine's float32 tanh and σ (csrc/core/simd.h), swept densely against float64, on every ISA path.

They are not exposed one by one, so a one-step GRU cell isolates each (its update h' = (1 − z)·n + z·h is
exact when z or n is 0 or 1):
  tanh: z's pre-activation −100 (z = 0 exactly, 1 − z = 1), n's pre-activation x, W_hh = 0  ->  h' = tanh(x)
  σ:    n's pre-activation 0 (n = 0), z's pre-activation x, h = 1                           ->  h' = σ(x)
Bounds (simd.h derives them): σ within 2 ulp of the float64 value rounded to float32's spacing, tanh within
2.5 (measured: 1.96 and 2.15); saturation to ±1 / 0 / 1 within one float32 step, NaN in gives NaN out.
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from lstmkit import engine

# (±inf cannot go through the cell: the zero weights of the other gates would make 0·inf = NaN there)
EXTREMES = np.array([-1e30, -100.0, -88.0, -20.0, -9.5, 9.5, 20.0, 88.0, 100.0, 1e30], np.float32)


def through_gru_cell(x: np.ndarray, which: str) -> np.ndarray:
    n = len(x)
    w_ih = {"tanh": [[0], [0], [1]], "sigmoid": [[0], [1], [0]]}[which]
    b_ih = {"tanh": [0, -100, 0], "sigmoid": [0, 0, 0]}[which]
    h0 = np.full((n, 1), 0.0 if which == "tanh" else 1.0, np.float32)
    w = dict(weight_ih=np.array(w_ih, np.float32), weight_hh=np.zeros((3, 1), np.float32),
             bias_ih=np.array(b_ih, np.float32), bias_hh=np.zeros(3, np.float32))
    return engine.cell_forward("GRU", x[:, None], (h0,), w)[0][:, 0]


def float64_value(x: np.ndarray, which: str) -> np.ndarray:
    x = x.astype(np.float64)
    return np.tanh(x) if which == "tanh" else 0.5 * (1 + np.tanh(x / 2))


ULP_BOUND = {"tanh": 2.5, "sigmoid": 2.0}


@pytest.mark.parametrize("which", ["tanh", "sigmoid"])
def test_within_the_ulp_bound_over_a_dense_sweep(which):
    x = np.linspace(-12, 12, 2_000_001, dtype=np.float32)
    got = through_gru_cell(x, which)
    want = float64_value(x, which)
    ulp = np.abs(got - want) / np.abs(np.spacing(want.astype(np.float32))).astype(np.float64)
    worst = int(ulp.argmax())
    assert ulp.max() <= ULP_BOUND[which], f"{which} on {engine.isa()}: {ulp.max():.2f} ulp at x = {x[worst]!r}"


@pytest.mark.parametrize("which", ["tanh", "sigmoid"])
def test_saturation_and_nan(which):
    """Far out, tanh is ±1 within one float32 step (it is clamped at |x| = 9, where 1 − 2/(e^18 + 1)
    rounds to 1 − 2^-24) and σ is 0 or 1 within one step; no overflow to inf or NaN; NaN stays NaN."""
    got = through_gru_cell(np.append(EXTREMES, np.float32(np.nan)), which)
    want = float64_value(EXTREMES, which)
    assert np.all(np.isfinite(got[:-1]))
    np.testing.assert_allclose(got[:-1], want, rtol=0, atol=6e-8)
    assert np.isnan(got[-1])


def test_the_scalar_path_too():
    """The baseline (SSE2) build of the same functions passes the same sweep."""
    if engine.isa() == "scalar":
        pytest.skip("already running on the scalar path")
    env = dict(os.environ, LSTMKIT_ISA="scalar")
    src = str(Path(engine.__file__).resolve().parents[1])
    env["PYTHONPATH"] = os.pathsep.join([src, env.get("PYTHONPATH", "")])
    run = subprocess.run([sys.executable, "-m", "pytest", __file__, "-q", "-p", "no:cacheprovider", "-k", "not scalar"],
                         env=env, capture_output=True, text=True)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-2000:]
