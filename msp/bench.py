"""Benchmark of the training step: `msp bench [--datasets ...] [--models ...] [--json FILE]`.

For each (dataset, model) at the paper's settings (configs/config.yaml through msp.runs,
docs/method.md, 'Training') and the training's speed settings (msp.performance: the defaults, the
authors' float32 numerics with --speed faithful, or both), it times training steps after a
warm-up and splits the median step into data generation, forward + backward and optimizer;
it reports peak memory, the FLOPs of one step (torch.utils.flop_counter, forward +
backward; Adam and the data generator are not counted) and the achieved fraction of the
device's peak, then estimates the compute the paper's 84 runs would take at the measured
speed (the logging diagnostics every train.log_every steps are not included). Memory: the process's peak RSS so far (it only
grows across the configurations of one call) and, on CUDA, the peak allocated per config.

On a GPU the host synchronizes only around the timed regions; a second, unsynchronized
loop gives the pipelined step time that training actually sees.
"""

import os
import resource
import statistics
import sys
import time

import torch
from torch.utils.flop_counter import FlopCounterMode

from msp import io, registry, runs
from msp.config import normalize_run_config
from msp.device import machine_facts, resolve_device
from msp.models import build_model, count_parameters
from msp.performance import apply_speed_settings

# Dense peak TFLOP/s (no sparsity) from the vendors' data sheets: fp32 (CUDA cores),
# tf32 and bf16 (tensor cores, fp32 accumulate); None where the chip has no such mode.
# First matching substring of torch.cuda.get_device_name() wins, so order matters.
GPU_PEAK_TFLOPS = [
    ("H100 PCIe", {"fp32": 51.2, "tf32": 378.0, "bf16": 756.0}),
    ("H100", {"fp32": 66.9, "tf32": 494.7, "bf16": 989.4}),  # SXM
    ("H200", {"fp32": 66.9, "tf32": 494.7, "bf16": 989.4}),
    ("A100", {"fp32": 19.5, "tf32": 156.0, "bf16": 312.0}),
    ("V100", {"fp32": 15.7, "tf32": None, "bf16": None}),  # SXM2; fp16 tensor cores only
    ("RTX 4090", {"fp32": 82.6, "tf32": 82.6, "bf16": 165.2}),
    ("RTX 3090", {"fp32": 35.6, "tf32": 35.6, "bf16": 71.0}),
    ("L40S", {"fp32": 91.6, "tf32": 183.0, "bf16": 362.1}),
    ("L40", {"fp32": 90.5, "tf32": 90.5, "bf16": 181.0}),
    ("L4", {"fp32": 30.3, "tf32": 60.0, "bf16": 121.0}),
    ("A10", {"fp32": 31.2, "tf32": 62.5, "bf16": 125.0}),
    ("T4", {"fp32": 8.1, "tf32": None, "bf16": None}),
]
PAPER_SEEDS = 3
QUICK_MODEL = {"k": 0.125, "dim_m": 8, "dim_a": 8}  # --quick: tiny widths, same image sizes


def cuda_sync(device: torch.device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def gpu_peak(name: str) -> dict:
    for key, peaks in GPU_PEAK_TFLOPS:
        if key.lower() in name.lower():
            return {"matched": key, **peaks, "source": "data sheet table (msp.bench.GPU_PEAK_TFLOPS)"}
    return {"matched": None, "fp32": None, "tf32": None, "bf16": None,
            "source": f"no entry for {name!r} in msp.bench.GPU_PEAK_TFLOPS: fractions of peak are left empty"}


def cpu_gemm_shapes(n: int) -> list[tuple[int, int, int]]:
    """(m, k, c) GEMM shapes timed for the CPU peak: square n, and the tall-skinny products a
    convolution lowers to (rows = pixels x batch, k = 9 x channels, c = channels), which
    oneDNN runs closer to the hardware's peak than one square matmul."""
    return [(n, n, n), (n // 2, n // 2, n // 2), (8 * n, 9 * n // 16, n // 16), (4 * n, 9 * n // 8, n // 8)]


def measure_cpu_matmul_peak(n: int = 2048, repeats: int = 3, dtype=torch.float32) -> tuple[float, tuple]:
    """Best throughput over the GEMM shapes of `cpu_gemm_shapes(n)` in `dtype`, in TFLOP/s,
    and the shape that gave it (best of `repeats` each, after a warm-up)."""
    best_tflops, best_shape = 0.0, None
    for m, k, c in cpu_gemm_shapes(n):
        a, b = torch.randn(m, k).to(dtype), torch.randn(k, c).to(dtype)
        a @ b  # warm-up: thread pool, caches, kernel choice
        best = float("inf")
        for _ in range(repeats):
            t0 = time.perf_counter()
            a @ b
            best = min(best, time.perf_counter() - t0)
        tflops = 2 * m * k * c / best / 1e12
        if tflops > best_tflops:
            best_tflops, best_shape = tflops, (m, k, c)
    return best_tflops, best_shape


def device_info(device: torch.device, cpu_peak_size: int) -> dict:
    info = {**machine_facts(device), "cpu_count": os.cpu_count()}  # what a training run records, and the cores
    if device.type == "cuda":
        info.update(name=info["gpu"], peak_tflops=gpu_peak(info["gpu"]),
                    tf32_matmul=torch.backends.cuda.matmul.allow_tf32, tf32_conv=torch.backends.cudnn.allow_tf32)
    else:
        fp32, fp32_shape = measure_cpu_matmul_peak(cpu_peak_size)
        bf16, bf16_shape = measure_cpu_matmul_peak(cpu_peak_size, dtype=torch.bfloat16)
        from msp.performance import cpu_has_native_bf16

        native = "native bf16" if cpu_has_native_bf16() else "no native bf16: keep amp off"
        info.update(name=f"CPU ({info['cpu']}, {info['threads']} threads, {native})",
                    peak_tflops={"matched": None, "fp32": fp32, "tf32": None, "bf16": bf16,
                                 "source": f"measured: best of {len(cpu_gemm_shapes(cpu_peak_size))} GEMM shapes "
                                           f"(fp32 best at {fp32_shape}, bf16 at {bf16_shape})"})
    return info


def bench_run_config(workflow: dict, dataset: str, model: str, quick: bool, batch_size: int | None,
                     faithful: bool = False) -> dict:
    """The paper's run config for (dataset, model), validated and completed by msp.config;
    --quick shrinks widths and batch; `faithful` selects the authors' numerics."""
    if dataset not in workflow["datasets"]:
        raise ValueError(f"dataset {dataset!r} is not in the workflow config: choose from {list(workflow['datasets'])}")
    if model not in workflow["datasets"][dataset]["models"]:
        raise ValueError(f"the paper does not train {model!r} on {dataset!r}: "
                         f"choose from {list(workflow['datasets'][dataset]['models'])}")
    cfg = runs.run_config(workflow, dataset, model, 1)
    if quick:
        cfg["model"].update(QUICK_MODEL)
        cfg["train"]["batch_size"] = 2
    if batch_size:
        cfg["train"]["batch_size"] = batch_size
    cfg["train"]["faithful"] = faithful
    return normalize_run_config(cfg)


def make_batches(cfg: dict, device: torch.device, data: str, data_root: str):
    """-> (sample(batch_size) function, image shape, description of the data)."""
    d, m = cfg["dataset"], cfg["model"]
    T = m["T_cond"] + m["T_pred"]
    if data == "auto":
        from msp.data import build_sequences

        seqs = build_sequences(d["name"], root=data_root, source="embedded", split="train", T=T,
                               device=device, seed=0, **d["options"])
        return seqs.sample, tuple(seqs.image_shape), "msp.data.build_sequences, source embedded"
    shape = registry.dataset(d["name"]).image_shape
    return (lambda n: torch.rand(n, T, *shape, device=device)), shape, "random tensors (--data random)"


def count_step_flops(model, xs, reconst: bool, autocast) -> int:
    """FLOPs of one forward + backward on the batch xs (optimizer excluded)."""
    with FlopCounterMode(display=False) as counter:
        with autocast():
            loss, _ = model.loss(xs, reconst=reconst)
        loss.backward()
    model.zero_grad(set_to_none=True)
    return counter.get_total_flops()


def evaluation_throughput(model, cfg: dict, image_shape, device, autocast, repeats: int) -> dict:
    """Sequences per second of the prediction protocol (docs/evaluation.md, 'Prediction error': batches of 16,
    T_cond frames in, T - T_cond predicted), or {} for models that cannot predict."""
    if not model.has_decoder:
        return {}
    from msp.eval_protocols import protocol_for

    protocol = protocol_for(cfg["dataset"]["name"])
    Tc, n_rolls, batch = protocol.T_cond, protocol.prediction_T - protocol.T_cond, 16
    xs = torch.rand(batch, Tc, *image_shape, device=device)
    model.eval()
    times = []
    with torch.no_grad(), autocast():
        for i in range(repeats + 1):
            cuda_sync(device)
            t0 = time.perf_counter()
            model.predict(xs, n_rolls)
            cuda_sync(device)
            if i:  # the first call warms up
                times.append(time.perf_counter() - t0)
    model.train()
    return {"eval_horizons": n_rolls, "eval_sequences_per_s": batch / statistics.median(times)}


def bench_one(cfg: dict, device: torch.device, steps: int, warmup: int, data: str, data_root: str) -> dict:
    """Time one (dataset, model) with the speed settings of cfg.train, as msp.train applies them."""
    tc = cfg["train"]
    torch.manual_seed(0)
    sample, image_shape, data_desc = make_batches(cfg, device, data, data_root)
    model = build_model(cfg["model"], image_shape).to(device).train()
    autocast, adam_kwargs = apply_speed_settings(model, tc, device)
    optimizer = torch.optim.Adam(model.parameters(), lr=tc["lr"], **adam_kwargs)
    reconst = tc["reconst_iter"] > 0  # the paper's runs reconstruct for all or none of their steps
    batch = tc["batch_size"]
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)

    def timed(fn):
        cuda_sync(device)
        t0 = time.perf_counter()
        out = fn()
        cuda_sync(device)
        return out, time.perf_counter() - t0

    def forward_backward(xs):
        optimizer.zero_grad(set_to_none=True)
        with autocast():
            loss, _ = model.loss(xs, reconst=reconst)
        loss.backward()

    parts = {"data": [], "forward_backward": [], "optimizer": []}
    for i in range(warmup + steps):
        xs, t_data = timed(lambda: sample(batch))
        _, t_fb = timed(lambda: forward_backward(xs))
        _, t_opt = timed(optimizer.step)
        if i >= warmup:
            for key, t in zip(parts, (t_data, t_fb, t_opt)):
                parts[key].append(t)
    step_times = [sum(ts) for ts in zip(*parts.values())]
    row = {
        "dataset": cfg["dataset"]["name"], "model": cfg["model"]["name"],
        "speed": "faithful" if tc["faithful"] else "default", "batch_size": batch,
        "T": cfg["model"]["T_cond"] + cfg["model"]["T_pred"], "image_shape": list(image_shape),
        "k": cfg["model"]["k"], "dim_m": cfg["model"]["dim_m"], "dim_a": cfg["model"]["dim_a"],
        "n_blocks": cfg["model"]["n_blocks"], "reconst": reconst, "parameters": count_parameters(model),
        "data_source": data_desc, "steps": steps, "warmup": warmup,
        "step_s": statistics.median(step_times),
        **{f"{key}_s": statistics.median(ts) for key, ts in parts.items()},
        "iterations": tc["iterations"],
    }
    if device.type == "cuda":  # what training sees: no host sync between steps
        cuda_sync(device)
        t0 = time.perf_counter()
        for _ in range(steps):
            forward_backward(sample(batch))
            optimizer.step()
        cuda_sync(device)
        row["step_pipelined_s"] = (time.perf_counter() - t0) / steps
        row["cuda_max_allocated_mb"] = torch.cuda.max_memory_allocated(device) / 2**20
    row.update(evaluation_throughput(model, cfg, image_shape, device, autocast, steps))
    row["flops_per_step"] = count_step_flops(model, sample(batch), reconst, autocast)
    row["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB
    return row


def add_peak_fractions(row: dict, peaks: dict):
    """achieved TFLOP/s and its fraction of each peak. A fraction above 1 means the peak is no
    peak (a measured CPU peak that the step's kernels beat): it is left empty, not printed."""
    step = row.get("step_pipelined_s", row["step_s"])
    row["achieved_tflops"] = row["flops_per_step"] / step / 1e12
    for precision in ("fp32", "tf32", "bf16"):
        peak = peaks.get(precision)
        fraction = row["achieved_tflops"] / peak if peak else None
        row[f"fraction_of_{precision}_peak"] = fraction if fraction is not None and fraction <= 1 else None


def paper_estimate(workflow: dict, rows: list[dict]) -> dict:
    """Device-hours of the paper's runs (datasets x models x seeds) at the measured step times."""
    measured = {(r["dataset"], r["model"]): r.get("step_pipelined_s", r["step_s"]) for r in rows}
    pairs, missing = {}, set()
    for run in runs.runs(workflow):
        key = (run.dataset, run.model)
        if key not in measured:
            missing.add(key)
            continue
        iterations = int(workflow["datasets"][run.dataset]["iterations"])
        entry = pairs.setdefault(key, {"dataset": run.dataset, "model": run.model, "iterations": iterations,
                                       "seeds": 0, "hours": 0.0})
        entry["seeds"] += 1
        entry["hours"] += iterations * measured[key] / 3600
    return {
        "n_runs_total": len(runs.runs(workflow)),
        "n_runs_estimated": sum(p["seeds"] for p in pairs.values()),
        "hours_estimated": sum(p["hours"] for p in pairs.values()),
        "per_pair": list(pairs.values()),
        "not_measured": sorted(f"{d}/{m}" for d, m in missing),
    }


def add_arguments(parser):
    parser.add_argument("--datasets", nargs="+", default=None, help="default: all six (--quick: mnist)")
    parser.add_argument("--models", nargs="+", default=None,
                        help="default: each dataset's paper models (--quick: lstsq)")
    parser.add_argument("--steps", type=int, default=None, help="timed steps (default 10; --quick 2)")
    parser.add_argument("--warmup", type=int, default=None, help="untimed steps first (default 2; --quick 1)")
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    parser.add_argument("--batch-size", type=int, help="override the paper's batch size (32)")
    parser.add_argument("--speed", choices=("default", "faithful", "both"), default="default",
                        help="training speed settings (msp.performance): the defaults, the authors' numerics "
                             "(train.faithful), or both")
    parser.add_argument("--data", choices=("auto", "random"), default="auto",
                        help="auto: msp.data embedded sequences when available; random: random tensors")
    parser.add_argument("--data-root", default="data", help="data root for embedded sequences")
    parser.add_argument("--quick", action="store_true", help="tiny widths, batch 2, 2 steps: a smoke test in seconds")
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch's choice; --quick: 1)")
    parser.add_argument("--cpu-peak-size", type=int, default=2048, help="size n of the GEMM shapes timed for the CPU peak (msp.bench.cpu_gemm_shapes)")
    parser.add_argument("--workflow-config", help="workflow config with the settings (default: the paper's, shipped with the package)")
    parser.add_argument("--json", help="also write the results to this JSON file")


def format_report(info: dict, rows: list[dict], estimates: dict, quick: bool) -> str:
    import pandas as pd

    table = pd.DataFrame(rows)
    cols = ["dataset", "model", "speed", "batch_size", "T", "step_s", "data_s", "forward_backward_s", "optimizer_s",
            "step_pipelined_s", "flops_per_step", "achieved_tflops", "fraction_of_fp32_peak",
            "fraction_of_bf16_peak", "eval_sequences_per_s", "peak_rss_mb", "cuda_max_allocated_mb"]
    table = table[[c for c in cols if c in table and table[c].notna().any()]].copy()
    table["gflop_per_step"] = table.pop("flops_per_step") / 1e9
    peak = info["peak_tflops"]
    unit = "GPU" if info["device"].startswith("cuda") else "CPU"
    lines = [
        f"device: {info['name']}; torch {info['torch']}; peak fp32 {peak['fp32']} TFLOP/s ({peak['source']})",
        f"data: {rows[0]['data_source']}" if rows else "",
        table.to_markdown(index=False, floatfmt=".4g"),
    ]
    for speed, estimate in estimates.items():
        lines += [
            "",
            f"paper compute at these step times ({speed} speed settings): {estimate['hours_estimated']:.1f} "
            f"{unit}-hours for {estimate['n_runs_estimated']} of the {estimate['n_runs_total']} runs"
            + (f" ({len(estimate['not_measured'])} dataset/model pairs not measured: see the JSON)"
               if estimate["not_measured"] else "")
            + (" [--quick: tiny widths, NOT the paper's cost]" if quick else ""),
        ]
        if estimate["per_pair"]:
            lines.append(pd.DataFrame(estimate["per_pair"]).to_markdown(index=False, floatfmt=".1f"))
    return "\n".join(lines)


def main(args):
    threads = args.threads or (1 if args.quick else None)  # --quick: one thread, robust on busy CI hosts
    if threads:
        torch.set_num_threads(threads)
    device = resolve_device(args.device)
    steps = args.steps or (2 if args.quick else 10)
    warmup = args.warmup if args.warmup is not None else (1 if args.quick else 2)
    if steps < 1 or warmup < 0:
        raise ValueError(f"--steps must be >= 1 and --warmup >= 0, got {steps} and {warmup}")
    workflow = runs.load_workflow_config(args.workflow_config)
    datasets = args.datasets or (["mnist"] if args.quick else list(workflow["datasets"]))
    default_models = ["lstsq"] if args.quick else None
    pairs = [(d, m) for d in datasets
             for m in (args.models or default_models or workflow["datasets"].get(d, {}).get("models", [None]))]
    variants = {"default": [False], "faithful": [True], "both": [True, False]}[args.speed]
    configs = [bench_run_config(workflow, d, m, args.quick, args.batch_size, faithful)
               for d, m in pairs for faithful in variants]
    info = device_info(device, 256 if args.quick else args.cpu_peak_size)
    rows = []
    for cfg in configs:
        speed = "faithful" if cfg["train"]["faithful"] else "default"
        print(f"bench {cfg['dataset']['name']}/{cfg['model']['name']} ({speed}) ...", file=sys.stderr, flush=True)
        row = bench_one(cfg, device, steps, warmup, args.data, args.data_root)
        add_peak_fractions(row, info["peak_tflops"])
        rows.append(row)
    estimates = {speed: paper_estimate(workflow, [r for r in rows if r["speed"] == speed])
                 for speed in dict.fromkeys(r["speed"] for r in rows)}
    print(format_report(info, rows, estimates, args.quick))
    if args.json:
        io.write_json(args.json, {"device": info, "quick": args.quick, "results": rows, "paper_estimate": estimates})
    return 0
