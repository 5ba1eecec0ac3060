"""report and explain on what the task commands leave behind: a run folder, raw numeric sequences for a
classify model (standardised as the model saw them in training), and a forecast model's own series (the
window predict reads, built from the histories the model carries)."""
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
    """The task checkpoint's config ({} for a plain layer file), from the file's header alone: the model's
    own read (to_layer, Forecaster.load) reads the tensors and checks the hashes."""
    if not path.endswith(".safetensors"):
        return {}
    from ..io.safetensors import read_metadata

    metadata = read_metadata(path)
    try:
        return json.loads(metadata.get("config", "{}")) if metadata.get("task") else {}
    except ValueError:
        return {}


def scaled(path: str, x: np.ndarray, data: str, time_axis: int) -> np.ndarray:
    """A classify model's raw numeric input, in its layer's layout ((T, C), (T, B, C), or (B, T, C) with the
    time axis 1), standardised as in training (each case z-normalised over its T steps first when the model was
    fitted with normalize='case', then the training mean/std): the layer sees exactly what it saw in training.
    Other models' input is returned as given."""
    config = task_config(path)
    if "mean" not in config or not str(data).endswith(".npy"):
        return x
    mean, std = np.asarray(config["mean"]), np.asarray(config["std"])
    if x.shape[-1] != len(mean):
        raise ValueError(f"--data {data} has {x.shape[-1]} values per step; the classify model reads {len(mean)} "
                         "channels")
    if config.get("normalize") == "case":
        sd = x.std(axis=time_axis, keepdims=True)  # estimator.normalize_case's arithmetic, over each case's steps
        x = (x - x.mean(axis=time_axis, keepdims=True)) / np.where(sd > 0, sd, 1.0)
    return (x - mean) / std


def layer_and_input(args) -> tuple:
    """(NumPy layer, x in its layout, text or None, a title) for report/explain: ``args.model`` (a file or a
    run folder) with ``args.data`` (and ``--vocab``), or a forecast model's series ``args.series``."""
    from ..introspect.report import read_data
    from ..introspect.trace import to_layer

    model = resolve(args.model)
    if task_config(model).get("horizon") is not None:  # only a forecast checkpoint has a horizon
        return forecast_input(model, args)
    if task_config(model).get("arch") == "lstm-fcn":
        raise ValueError(f"{model} is an LSTM-FCN classifier (arch='lstm-fcn'): report and explain show a recurrent "
                         "layer reading a sequence over time, and its LSTM reads the dimension-shuffled series beside "
                         "a convolutional branch they cannot show; use lstmkit predict, or an arch='lstm' model")
    if task_config(model).get("ensemble", 1) > 1:
        raise ValueError(f"{model} is an ensemble of {task_config(model)['ensemble']} networks (ensemble="
                         f"{task_config(model)['ensemble']}): report and explain show one recurrent layer; give one "
                         "member's model, RUN/member-K/best.safetensors")
    if args.series is not None:
        raise ValueError(f"--series: {model} is not a forecast model; give its input with --data")
    if args.data is None:
        raise ValueError(f"--data is needed for {model} (only a forecast model builds its input from its series)")
    if args.vocab is not None and str(args.data).endswith(".npy"):
        raise ValueError(f"--vocab: only for text --data, not the array {args.data}, got {args.vocab!r}")
    layer = to_layer(model)
    x, text = read_data(args.data, layer, args.vocab, model)
    time_axis = 1 if x.ndim == 3 and layer.config.batch_first else 0
    return layer, scaled(model, x, args.data, time_axis), text, f"lstmkit report: {args.model}"


def forecast_input(model: str, args) -> tuple:
    """A forecast model's member-0 recurrent layer and the window it reads for series ``args.series``."""
    from ..introspect.trace import to_layer
    from ..tasks.forecast import Forecaster

    if args.data is not None:
        raise ValueError(f"--data: {model} is a forecast model, whose input is built from its own series; pick one "
                         "with --series ID (default: the first)")
    if args.vocab is not None:
        raise ValueError(f"--vocab: {model} is a forecast model, which reads numbers, not characters; got "
                         f"{args.vocab!r}")
    fc = Forecaster.load(model)
    if fc.config.get("dilations") is not None:
        raise ValueError(f"{model} is an ES-RNN with a dilated stack (dilations {fc.config['dilations']}): report "
                         "and explain show one recurrent layer reading the windows step by step, and its layers "
                         "read each other's outputs, d origins apart; use lstmkit predict, or a model without "
                         "--dilations")
    uid, x = fc.window_input(args.series)  # (L/P, In)
    layer = to_layer(fc.models[0].rnn)
    x = np.asarray(x, np.float64)[:, None, :]  # (T, 1, In), sequence-first
    if layer.config.batch_first:
        x = x.transpose(1, 0, 2)
    return layer, x, None, f"lstmkit report: {args.model}, series {uid} (its last window, member 0)"
