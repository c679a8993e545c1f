"""The one device resolver of `msp train`, `msp evaluate`, `msp bench` and the data layer, and
the facts about the machine that a run records (its last digits depend on them)."""

import os
import platform
from pathlib import Path

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


def cpu_model() -> str:
    """The CPU's model name (Linux: /proc/cpuinfo), else what the platform module knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_facts(device: torch.device) -> dict:
    """Where a run computes, as plain strings and ints (a checkpoint keeps loading with
    weights_only=True). On the CPU, oneDNN picks its convolution kernels by the instruction set,
    so another CPU gives other digits (docs/cpu_scale.md, 'The same runs on another CPU')."""
    facts = {"torch": str(torch.__version__),  # a TorchVersion, which weights_only=True would refuse
             "device": str(device), "threads": torch.get_num_threads(), "cpu": cpu_model(),
             "cpu_capability": str(torch.backends.cpu.get_cpu_capability())}
    for limit in ("ONEDNN_MAX_CPU_ISA", "DNNL_MAX_CPU_ISA"):  # a user's cap on oneDNN's kernels
        if os.environ.get(limit):
            facts[limit.lower()] = os.environ[limit]
    if device.type == "cuda":
        facts.update(gpu=str(torch.cuda.get_device_name(device)), cuda=str(torch.version.cuda or ""))
    return facts


def describe_machine(facts: dict) -> str:
    """machine_facts -> one line, e.g. 'AMD EPYC (AVX512), 1 thread, torch 2.13.0+cpu'."""
    threads = f"{facts['threads']} thread" + ("s" if facts["threads"] != 1 else "")
    limits = "".join(f", {key.upper()}={value}" for key, value in facts.items() if key.endswith("max_cpu_isa"))
    where = f"{facts['cpu']} ({facts['cpu_capability']}{limits}), {threads}"
    if "gpu" in facts:
        where = f"{facts['gpu']} (CUDA {facts['cuda']}) on {where}"
    return f"{where}, torch {facts['torch']}"
