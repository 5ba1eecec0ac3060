"""The fuzz targets on seeded random bytes: no crash, only clear errors (the long runs: scripts/fuzz.py)."""
import numpy as np
import pytest

from fuzz_targets import TARGETS


@pytest.mark.parametrize("name", sorted(TARGETS))
def test_fuzz_target_survives_random_inputs(name):
    rng = np.random.default_rng(7)
    runs = {"engine": 1500, "safetensors": 300, "onnx": 150, "keras": 60}[name]
    for _ in range(runs):
        TARGETS[name](rng.integers(0, 256, rng.integers(0, 96), dtype=np.uint8).tobytes())


# inputs the atheris runs found, kept so they stay fixed (base64 of the fuzz bytes)
FINDINGS = [("onnx", "m2FhwZ79+yU=")]  # an initializer with an unknown data_type leaked a KeyError


@pytest.mark.parametrize("name,data", FINDINGS)
def test_fuzz_findings_stay_fixed(name, data):
    import base64

    TARGETS[name](base64.b64decode(data))
