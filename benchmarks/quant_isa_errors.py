"""bf16 and int8 error of the quantised products and models on every instruction-set path this CPU runs
(docs/quantization.md's per-path table).

    PYTHONPATH=src python benchmarks/quant_isa_errors.py

Each path runs tests/test_quantize.py's probe in a subprocess with LSTMKIT_ISA set (the same products and
model the test checks). Printed per path: the bf16 product error against float64 as a share of Σ|x·w| (rows of
normal numbers), the share of the test's derived bound used, and the quantised model's error against its
float32 self (max |q − f| / max |f|). Measures only; the test asserts.
"""
from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
import test_quantize as tq  # noqa: E402  (the probe and the bound live with the test)

from lstmkit import engine  # noqa: E402


def path_errors(isa: str, out: Path) -> dict:
    subprocess.run([sys.executable, "-c", tq._PROBE, str(out)], env=tq._env(isa), check=True)
    d = dict(np.load(out))
    rounds_rows = str(d["quant_isa"]) in tq.ROUNDS_ROWS
    share, used = 0.0, 0.0
    for key in (k for k in d if k.startswith("bfloat16_")):
        shape = key.split("_", 1)[1]
        x, w = d["x_" + shape], d["w_" + shape]
        err = np.abs(d[key] - x.astype(np.float64) @ w.astype(np.float64).T)
        used = max(used, float((err / tq.bf16_product_bound(x, w, rounds_rows)).max()))
        magnitude = np.abs(x[:-1].astype(np.float64)) @ np.abs(w.astype(np.float64)).T  # the last row is tiny
        ok = magnitude > 0
        if ok.any():
            share = max(share, float((err[:-1][ok] / magnitude[ok]).max()))
    model = {dtype: tq._rel(d[f"model_{dtype}"], d["model_float32"]) for dtype in ("bfloat16", "int8")}
    return {"quant": str(d["quant_isa"]), "share": share, "used": used, "bf16": model["bfloat16"],
            "int8": model["int8"]}


def main() -> None:
    print(f"CPU paths: {engine.supported_isas()}")
    print("| path | quant path | bf16 product error / Σ|x·w| | share of the bound used | model bf16 | model int8 |")
    print("|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        for isa in engine.supported_isas():
            e = path_errors(isa, Path(tmp) / f"{isa}.npz")
            print(f"| {isa} | {e['quant']} | {e['share']:.2g} | {e['used']:.2f} | {e['bf16']:.2g} | {e['int8']:.2g} |")


if __name__ == "__main__":
    main()
