"""report and explain on what the task commands leave behind: a run folder, and raw numeric sequences for a
classify model (standardised as the model saw them in training)."""
import json
import os

import numpy as np

MODEL_FILES = ("model.safetensors", "best.safetensors")


def resolve(path: str) -> str:
    """A model file, or a run folder of ``lstmkit classify|forecast|generate`` -> the model file in it."""
    if not os.path.isdir(path):
        return path
    for name in MODEL_FILES:
        if os.path.isfile(os.path.join(path, name)):
            return os.path.join(path, name)
    raise FileNotFoundError(f"{path}: a folder without {' or '.join(MODEL_FILES)}; give a run folder of "
                            "lstmkit classify/forecast/generate or a model file")


def task_config(path: str) -> dict:
    """The task checkpoint's config ({} for a plain layer file)."""
    if not path.endswith(".safetensors"):
        return {}
    from ..io.safetensors import read

    metadata, _ = read(path)
    try:
        return json.loads(metadata.get("config", "{}")) if metadata.get("task") else {}
    except ValueError:
        return {}


def scaled(path: str, x: np.ndarray, data: str) -> np.ndarray:
    """A classify model's raw numeric input (..., C) standardised with its training mean/std: the layer sees
    exactly what it saw in training. Other models' input is returned as given."""
    config = task_config(path)
    if "mean" not in config or not str(data).endswith(".npy"):
        return x
    mean, std = np.asarray(config["mean"]), np.asarray(config["std"])
    if x.shape[-1] != len(mean):
        raise ValueError(f"data: {data} has {x.shape[-1]} values per step; the classify model reads {len(mean)} "
                         "channels")
    return (x - mean) / std
