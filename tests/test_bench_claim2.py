"""bench/claim2_gpu.py, the prepared device check of claim 2: its sizing and its config by
known answers, and the whole script once on a CPU with --quick (tiny networks). No timing
thresholds: the numbers it prints belong to the machine that runs it."""

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from msp.runs import load_workflow_config

REPO = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("claim2_gpu", REPO / "bench" / "claim2_gpu.py")
claim2_gpu = importlib.util.module_from_spec(spec)
spec.loader.exec_module(claim2_gpu)


def test_iterations_fit_the_budget_with_every_step_run_in_turn():
    steps = {"lstsq": 0.02, "lstsq_multi": 0.02, "neuralM": 0.03, "neural_trans": 0.03}  # 0.1 s a round
    assert claim2_gpu.plan_iterations(steps, 300.0) == 3000
    assert claim2_gpu.plan_iterations(steps, 312.0) == 3100  # rounded down to 100
    assert claim2_gpu.plan_iterations(steps, 1.0) == 100     # never fewer than one round_to
    assert claim2_gpu.plan_iterations(steps, 7.0, round_to=10) == 70


def test_config_is_the_papers_mnist_for_the_four_models():
    paper = load_workflow_config(REPO / "configs" / "config.yaml")
    config = claim2_gpu.claim2_config(paper, data_root="/d", iterations=5000, device="cuda", quick=False)
    assert list(config["datasets"]) == ["mnist"]
    mnist = config["datasets"]["mnist"]
    assert list(mnist["models"]) == ["lstsq", "lstsq_multi", "neuralM", "neural_trans"]
    assert (mnist["iterations"], mnist["lr_decay_iter"]) == (5000, 4000)  # lr / 3 at 80%, as the paper
    assert mnist["network"] == paper["datasets"]["mnist"]["network"]       # the paper's width
    assert config["train"]["batch_size"] == paper["train"]["batch_size"] == 32
    assert config["data"] == {**paper["data"], "root": "/d", "source": "embedded"}
    assert paper["datasets"]["mnist"]["iterations"] == 50000               # the paper's config is untouched


@pytest.mark.slow
def test_quick_run_end_to_end(tmp_path):
    done = subprocess.run([sys.executable, str(REPO / "bench" / "claim2_gpu.py"), "--out", str(tmp_path),
                           "--quick", "--budget-minutes", "0.05", "--device", "cpu", "--threads", "1"],
                          capture_output=True, text=True, cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    result = json.loads((tmp_path / "claim2.json").read_text())
    assert result["iterations"] >= 10 and result["claim2"] in ("held", "not held")
    assert set(result["errors"]) == {"lstsq", "lstsq_multi", "neuralM", "neural_trans", "baseline_mean_frame"}
    assert all(set(e) == {"1", "18"} for e in result["errors"].values())  # JSON keys: T_p = 1 and 18
    assert set(result["paired_last_horizon"]["vs"]) == {"neuralM", "neural_trans"}
    for p in result["paired_last_horizon"]["vs"].values():
        assert p["low95"] <= p["diff"] <= p["high95"] and 0 <= p["share_a_lower"] <= 1
    run = yaml.safe_load((tmp_path / "mnist" / "lstsq" / "seed1" / "run.yaml").read_text())
    assert run["train"]["iterations"] == result["iterations"] and run["dataset"]["source"] == "embedded"
    assert "claim 2:" in done.stdout and "paired" in done.stdout
