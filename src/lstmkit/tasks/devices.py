"""Where a task estimator trains and predicts: ``device=`` ('cpu', 'cuda', 'cuda:N', 'mps' or a torch.device).

The model's parameters are moved there once; the training loop (``lstmkit.tasks.training.fit``) and predict
move each batch to the device of the model's parameters, so the data stays on the CPU (a GPU holds only the
batch in flight) and one code path serves every device. lstmkit.torch's LSTM/GRU compute on a non-CPU device
with torch's own kernels (``lstmkit.torch.devices``).
"""
from __future__ import annotations

KINDS = ("cpu", "cuda", "mps")


class DeviceUnavailableError(ValueError, RuntimeError):
    """``device=`` names an accelerator this machine (or this torch build) does not have."""


def resolve(device) -> "torch.device":  # noqa: F821 (torch is imported lazily)
    """'cpu', 'cuda', 'cuda:N', 'mps' or a torch.device -> torch.device, checked before any work.

    Raises ValueError for anything else and DeviceUnavailableError when the accelerator is missing."""
    import torch

    if device is None:
        return torch.device("cpu")
    if not isinstance(device, (str, torch.device)):
        raise ValueError(f"device: expected 'cpu', 'cuda', 'cuda:N', 'mps' or a torch.device, got "
                         f"{type(device).__name__} {device!r}")
    try:
        dev = torch.device(device)
    except RuntimeError:
        raise ValueError(f"device: expected 'cpu', 'cuda', 'cuda:N', 'mps' or a torch.device, got {device!r}") \
            from None
    if dev.type not in KINDS:
        raise ValueError(f"device: expected one of {', '.join(KINDS)} (a task trains there), got {str(dev)!r}")
    if dev.type == "cuda":
        _check_cuda(dev, torch)
    if dev.type == "mps" and not torch.backends.mps.is_available():
        raise DeviceUnavailableError(f"device: {str(dev)!r} asked for, but torch.backends.mps.is_available() is "
                                     "False on this machine; use device='cpu'")
    return dev


def _check_cuda(dev, torch) -> None:
    if not torch.cuda.is_available():
        build = "this torch build has no CUDA" if torch.version.cuda is None else "no CUDA GPU is visible"
        raise DeviceUnavailableError(f"device: {str(dev)!r} asked for, but torch.cuda.is_available() is False "
                                     f"({build}); use device='cpu'")
    count = torch.cuda.device_count()
    if dev.index is not None and dev.index >= count:
        raise DeviceUnavailableError(f"device: {str(dev)!r} asked for, but this machine has {count} CUDA "
                                     f"device(s) (cuda:0..cuda:{count - 1})")


def of(model) -> "torch.device":  # noqa: F821
    """The device of ``model``'s parameters (the CPU for a model without any)."""
    import torch

    first = next(iter(model.parameters()), None)
    return torch.device("cpu") if first is None else first.device


def to(batch: tuple, device) -> tuple:
    """Each tensor of ``batch`` on ``device`` (a no-op for tensors already there)."""
    return tuple(t.to(device) for t in batch)


PRECISIONS = ("float32", "bfloat16", "auto")  # a task's training precision (estimators' and CLIs' ``precision``)


def precision_used(precision: str, device) -> str:
    """A task's training ``precision`` resolved for ``device`` (a torch.device): 'bfloat16' on the CPU when asked
    for, or for 'auto' where the CPU multiplies bfloat16 natively (``native_bf16``); 'float32' otherwise."""
    if device.type != "cpu" or precision == "float32":
        return "float32"
    return "bfloat16" if precision == "bfloat16" or native_bf16() else "float32"


def emulated_bf16_note(precision: str, device) -> str | None:
    """A line for the log when ``precision`` gives bfloat16 training on ``device`` (a torch.device), a CPU without
    bf16 instructions, where torch and lstmkit emulate its products and train slower than in float32 (a char LM on
    an AMD Zen 3: 4,300 characters/s against 8,600, docs/generate.md); None otherwise."""
    if precision_used(precision, device) != "bfloat16" or native_bf16():
        return None
    return ("note: this CPU has no bfloat16 instructions (AVX512_BF16 or AMX): bfloat16 products are emulated and "
            "train slower than float32 here; --precision auto picks float32 on such a CPU")


def native_bf16() -> bool:
    """Whether this CPU multiplies bfloat16 natively (AVX512_BF16 or AMX-BF16 in /proc/cpuinfo's flags), where
    bfloat16 convolutions run ~2x faster than float32; elsewhere torch emulates them, slower than float32.
    False where the flags cannot be read (not Linux)."""
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as f:
            for line in f:
                if line.startswith("flags"):
                    flags = set(line.split(":", 1)[1].split())
                    return bool(flags & {"avx512_bf16", "amx_bf16"})
    except OSError:
        pass
    return False
