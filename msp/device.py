"""The one device resolver of `msp train`, `msp evaluate`, `msp bench` and the data layer."""

import torch

DEVICE_HELP = "auto (CUDA when available, else CPU) | cpu | cuda | cuda:N"


def resolve_device(name="auto") -> torch.device:
    """'auto' | 'cpu' | 'cuda' | 'cuda:N' (or a torch.device) -> torch.device.

    Asking for CUDA where there is none is an error that names the fix, not a traceback
    from deep inside torch.
    """
    name = str(name)
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ValueError(f"unknown device {name!r}: use {DEVICE_HELP}") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise RuntimeError(
                f"CUDA requested (device {name!r}) but not available here (torch {torch.__version__}); "
                "set train.device: cpu (or auto) in the config, or pass --device cpu")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise RuntimeError(f"device {name!r} requested but only {torch.cuda.device_count()} CUDA "
                               "device(s) are visible; use cuda:0 .. or --device auto")
    elif device.type != "cpu":
        raise ValueError(f"unsupported device {name!r}: use {DEVICE_HELP}")
    return device
