"""Speed settings of a training run, each switchable (train config) and measured by `msp bench`.

faithful: the authors' numerics — float32 everywhere, unfused layers, no TF32, no compile.
Otherwise, by default: fused residual blocks (exact reformulations, msp.networks), a fused
Adam, and on CUDA bf16 autocast and TF32 for the networks (the latent dynamics — Gram, solve,
M, roll-out — and the losses stay true float32: msp.dynamics.float32_math), and channels-last activations. torch.compile is opt-in.
"""

import contextlib
import os
import warnings

import torch

from msp.networks import set_fused_kernels


def _on(setting, device: torch.device, faithful: bool) -> bool:
    """'auto' means on for CUDA runs that are not faithful."""
    if setting == "auto":
        return device.type == "cuda" and not faithful
    return bool(setting) and setting != "off"


def cpu_has_native_bf16() -> bool:
    """True when this CPU computes bf16 in hardware (x86 AVX512-BF16 or AMX tiles). Elsewhere
    bf16 autocast is emulated and usually slower than float32, so `train.speed.amp: bf16` on
    the CPU only pays off where this is True (README, "Speed, memory and determinism")."""
    probes = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")  # private torch.cpu probes
    try:
        return any(getattr(torch.cpu, name, lambda: False)() for name in probes)
    except RuntimeError:  # a torch build without cpuinfo
        return False


def apply_speed_settings(model: torch.nn.Module, train_cfg: dict, device: torch.device):
    """Configure `model` in place; returns (autocast context factory, Adam keyword arguments)."""
    faithful = train_cfg.get("faithful", False)
    set_fused_kernels(model, not faithful)
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = not faithful
        torch.backends.cudnn.allow_tf32 = not faithful
        torch.backends.cudnn.benchmark = not (faithful or train_cfg.get("deterministic", False))
    if train_cfg.get("deterministic", False):
        # cuBLAS needs a fixed workspace for deterministic results (set before the first matmul)
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True, warn_only=True)
    if _on(train_cfg.get("channels_last", "auto"), device, faithful):
        model.to(memory_format=torch.channels_last)
        model.memory_format = torch.channels_last
    if train_cfg.get("compile", False) and not faithful:
        try:
            for name in ("encoder", "decoder", "M_net"):
                if hasattr(model, name):
                    getattr(model, name).compile()  # in place: state_dict keys are unchanged
        except Exception as err:  # no compiler toolchain, unsupported platform, ...
            warnings.warn(f"torch.compile unavailable ({err}); training uncompiled")
    amp = train_cfg.get("amp", "auto")
    use_bf16 = amp == "bf16" or (amp == "auto" and device.type == "cuda" and not faithful)
    if use_bf16 and device.type == "cpu" and not cpu_has_native_bf16():
        warnings.warn("train.speed.amp: bf16 on a CPU without native bf16 (AVX512-BF16/AMX): bf16 is "
                      "emulated and usually slower than float32; set amp: \"off\"")

    def autocast():
        if use_bf16:
            return torch.autocast(device.type, dtype=torch.bfloat16)
        return contextlib.nullcontext()

    # One fused kernel per step instead of a dozen passes over the weights (5x on CPU too).
    adam_kwargs = {} if faithful else {"fused": True}
    return autocast, adam_kwargs
