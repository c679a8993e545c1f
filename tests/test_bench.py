"""`msp bench`: the quick CLI run writes the documented JSON; the cost arithmetic is right.

No timing thresholds: speed numbers come from bench/bench_train.py, not from tests.
"""

import json
import subprocess
import sys

import pytest

from msp.bench import add_peak_fractions, cpu_gemm_shapes, gpu_peak, paper_estimate
from msp.runs import load_workflow_config


def test_quick_bench_writes_expected_json(tmp_path):
    out = tmp_path / "bench.json"
    cmd = [sys.executable, "-m", "msp", "bench", "--quick", "--device", "cpu", "--data-root", str(tmp_path / "data"),
           "--speed", "both", "--json", str(out)]
    done = subprocess.run(cmd, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    report = json.loads(out.read_text())
    assert report["quick"] is True and report["device"]["peak_tflops"]["fp32"] > 0
    assert report["device"]["peak_tflops"]["bf16"] > 0 and "best of 4 GEMM shapes" in report["device"]["peak_tflops"]["source"]
    faithful, row = report["results"]
    assert (faithful["speed"], row["speed"]) == ("faithful", "default")
    assert (row["dataset"], row["model"], row["image_shape"]) == ("mnist", "lstsq", [3, 32, 32])
    for key in ("step_s", "data_s", "forward_backward_s", "optimizer_s", "flops_per_step", "achieved_tflops",
                "fraction_of_fp32_peak", "peak_rss_mb", "parameters", "eval_sequences_per_s"):
        assert row[key] > 0, key
    assert row["step_s"] == pytest.approx(row["data_s"] + row["forward_backward_s"] + row["optimizer_s"], rel=0.5)
    assert "msp.data" in row["data_source"]
    estimate = report["paper_estimate"]["default"]
    assert estimate["n_runs_total"] == 84 and estimate["n_runs_estimated"] == 3
    assert estimate["hours_estimated"] == pytest.approx(50000 * 3 * row["step_s"] / 3600)
    assert set(report["paper_estimate"]) == {"faithful", "default"}
    assert "| mnist" in done.stdout and "CPU-hours" in done.stdout


def test_paper_estimate_counts_runs_and_hours():
    workflow = load_workflow_config()
    rows = [{"dataset": "mnist", "model": "lstsq", "step_s": 1.0},
            {"dataset": "mnist_bg_full", "model": "neuralM", "step_s": 0.5, "step_pipelined_s": 0.36}]
    estimate = paper_estimate(workflow, rows)
    assert estimate["n_runs_total"] == 84 and estimate["n_runs_estimated"] == 6
    # mnist 50k iterations x 3 seeds x 1 s; mnist_bg_full 200k x 3 x 0.36 s (pipelined time wins)
    assert estimate["hours_estimated"] == pytest.approx((50000 * 3 * 1.0 + 200000 * 3 * 0.36) / 3600)
    assert len(estimate["not_measured"]) == 28 - 2


@pytest.mark.parametrize("name, matched", [
    ("NVIDIA H100 80GB HBM3", "H100"), ("NVIDIA H100 PCIe", "H100 PCIe"), ("NVIDIA H200", "H200"),
    ("NVIDIA A100-SXM4-80GB", "A100"), ("NVIDIA A10", "A10"), ("NVIDIA L40S", "L40S"), ("NVIDIA L4", "L4"),
    ("NVIDIA GeForce RTX 4090", "RTX 4090"), ("Tesla V100-SXM2-16GB", "V100"), ("Some Future GPU", None),
])
def test_gpu_peak_table_matches_device_names(name, matched):
    assert gpu_peak(name)["matched"] == matched


def test_a_peak_the_step_beats_is_no_peak():
    """A fraction of peak above 1 (kernels faster than the measured 'peak') is left empty."""
    row = {"step_s": 1.0, "flops_per_step": 2e12}  # 2 TFLOP/s achieved
    add_peak_fractions(row, {"fp32": 1.5, "tf32": None, "bf16": 4.0})
    assert row["achieved_tflops"] == pytest.approx(2.0)
    assert row["fraction_of_fp32_peak"] is None and row["fraction_of_tf32_peak"] is None
    assert row["fraction_of_bf16_peak"] == pytest.approx(0.5)


def test_cpu_peak_times_square_and_convolution_like_gemms():
    shapes = cpu_gemm_shapes(2048)
    assert (2048, 2048, 2048) in shapes and any(m > 4 * c for m, _, c in shapes)  # tall-skinny im2col products


def test_cpu_bf16_detection_and_warning(monkeypatch):
    """amp: bf16 on a CPU without native bf16 warns (emulated bf16 is slower than float32);
    with native bf16 it is silent. The detection itself answers a plain bool."""
    import warnings

    import torch

    from msp import performance
    from msp.seqae import SeqAE, SeqAEConfig

    assert isinstance(performance.cpu_has_native_bf16(), bool)
    model = SeqAE(SeqAEConfig(dim_m=2, dim_a=2, k=0.125, n_blocks=1, bottom_width=16), (1, 32, 32))
    cfg = {"amp": "bf16", "channels_last": "off"}
    monkeypatch.setattr(performance, "cpu_has_native_bf16", lambda: False)
    with pytest.warns(UserWarning, match="without native bf16"):
        autocast, _ = performance.apply_speed_settings(model, cfg, torch.device("cpu"))
    with autocast():  # still bf16 when asked: the warning advises, it does not override
        assert torch.get_autocast_dtype("cpu") == torch.bfloat16 and torch.is_autocast_enabled("cpu")
    monkeypatch.setattr(performance, "cpu_has_native_bf16", lambda: True)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        performance.apply_speed_settings(model, cfg, torch.device("cpu"))
