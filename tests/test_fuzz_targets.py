"""The fuzz targets on seeded random bytes: no crash, only clear errors (the long runs: scripts/fuzz.py)."""
import base64
import importlib.util
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

import hostile
from fuzz_targets import TARGETS

HERE = Path(__file__).resolve().parent
RUNS = {"engine": 1500, "safetensors": 300, "onnx": 150, "keras": 60, "safetensors_json": 300, "onnx_sizes": 150,
        "keras_file": 8, "torch_file": 100}


@pytest.mark.parametrize("name", sorted(TARGETS))
def test_fuzz_target_survives_random_inputs(name):
    if name in ("keras", "keras_file"):
        pytest.importorskip("h5py")
    rng = np.random.default_rng(7)
    for _ in range(RUNS[name]):
        TARGETS[name](rng.integers(0, 256, rng.integers(0, 96), dtype=np.uint8).tobytes())


# inputs the atheris runs found, kept so they stay fixed (base64 of the fuzz bytes)
FINDINGS = [("onnx", "m2FhwZ79+yU=")]  # an initializer with an unknown data_type leaked a KeyError


@pytest.mark.parametrize("name,data", FINDINGS)
def test_fuzz_findings_stay_fixed(name, data):
    TARGETS[name](base64.b64decode(data))


# The damaging files of issue 22 as regression inputs: a leading 0 byte makes each structure-aware target
# load the rest raw. Run in a child under an address-space cap, so a regression is a MemoryError, not a
# machine out of memory.
REGRESSIONS = {
    **{f"safetensors_json: {name}": ("safetensors_json", lambda t, name=name: hostile.malformed_header(t, name))
       for name in hostile.MALFORMED_HEADERS},
    "safetensors_json: num_layers=10**7": ("safetensors_json", hostile.st_declared_layers),
    "onnx_sizes: num_layers=10**7": ("onnx_sizes", hostile.onnx_declared_layers),
    "torch_file: weight_ih_l99999999": ("torch_file", hostile.pt_declared_layers),
    "torch_file: deflate bomb": ("torch_file", lambda t: hostile.pt_deflate_bomb(t, 1 << 28)),
    "keras_file: gzip-chunk bomb": ("keras_file", hostile.keras_chunk_bomb),
    "keras_file: units=10**6": ("keras_file", hostile.keras_declared_units),
    "torch_file: weight_hh_l0 of width 0": ("torch_file", None),  # found by torch_file: ZeroDivisionError
}
# fuzz bytes (base64) that atheris runs of the structure-aware targets found, run the same way
FOUND = {"keras_file: 2**20 one-value gzip chunks (3.4 GB, 18 s in h5py)": ("keras_file", "//8k/w==")}

CHILD = textwrap.dedent("""
    import json, os, resource, sys
    if "libasan" not in os.environ.get("LD_PRELOAD", ""):  # ASan reserves terabytes of shadow address space:
        resource.setrlimit(resource.RLIMIT_AS, (3 << 30, 3 << 30))  # there the peak RSS check below bounds it
    sys.path.insert(0, {tests!r})
    from fuzz_targets import TARGETS
    cases = json.loads(sys.argv[1])
    for target in {{target for _, target, _ in cases}}:  # imports and seed files first: their memory is not a case's
        TARGETS[target](b"\\1")
    for case, target, path in cases:
        with open(path, "rb") as f:
            data = f.read()
        start = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        try:
            TARGETS[target](data)
            grew = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - start) / 1024
            print(json.dumps([case, "clean" if grew < 200 else f"peak RSS grew {{grew:.0f}} MB"]), flush=True)
        except BaseException as e:
            print(json.dumps([case, f"{{type(e).__name__}}: {{str(e)[:300]}}"]), flush=True)
""")


def _zero_width_pt(tmp: Path) -> Path:
    import torch

    path = tmp / "zero.pt"
    torch.save({"weight_ih_l0": torch.zeros(16, 3), "weight_hh_l0": torch.zeros(16, 0)}, path)
    return path


def test_damaging_inputs_are_regression_inputs_of_the_targets(tmp_path):
    pytest.importorskip("torch")
    pytest.importorskip("onnx")
    h5 = importlib.util.find_spec("h5py") is not None
    cases = []
    for k, (case, (target, build)) in enumerate(sorted(REGRESSIONS.items())):
        if target == "keras_file" and not h5:
            continue
        folder = tmp_path / str(k)
        folder.mkdir()
        data = folder / "input.bin"
        data.write_bytes(b"\0" + (build or _zero_width_pt)(folder).read_bytes())  # 0: the target loads it raw
        cases.append([case, target, str(data)])
    for k, (case, (target, text)) in enumerate(sorted(FOUND.items())):
        if target == "keras_file" and not h5:
            continue
        data = tmp_path / f"found-{k}.bin"
        data.write_bytes(base64.b64decode(text))
        cases.append([case, target, str(data)])
    child = subprocess.run([sys.executable, "-c", CHILD.format(tests=str(HERE)), json.dumps(cases)],
                           capture_output=True, text=True, timeout=600,
                           env={**os.environ, "PYTHONPATH": str(HERE.parent / "src"), "KERAS_BACKEND": "torch"})
    outcomes = dict(json.loads(line) for line in child.stdout.splitlines() if line.startswith("["))
    assert outcomes == {case: "clean" for case, _, _ in cases}, (outcomes, child.stderr[-1500:])
