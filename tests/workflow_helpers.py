"""Running the real workflow from the tests: a trimmed demo config and the snakemake command."""

import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


def tiny_demo(tmp_path) -> Path:
    config = yaml.safe_load((ROOT / "configs" / "demo.yaml").read_text())
    config["results"] = "results"
    config["seeds"] = [1]
    config["evaluation"]["n_batches"] = 1
    config["evaluation"]["batch_size"] = 8
    config["evaluation"]["extra_args"] = {"sbd": "--epochs 5 --component-batches 1 --restarts 1"}
    mnist = config["datasets"]["mnist"]
    mnist.update(iterations=6, lr_decay_iter=4, batch_size=4)
    mnist["network"].update(dim_m=8, k=0.125)
    mnist["models"] = {"lstsq": {}, "neural_trans": {}}
    config["datasets"] = {"mnist": mnist}
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def snakemake(tmp_path, *args):
    """The workflow in tmp_path; a --configfile among args replaces the paper config (a whole config)."""
    cmd = [sys.executable, "-m", "snakemake", "-s", str(ROOT / "Snakefile"), "--directory", str(tmp_path),
           "--replace-workflow-config", *args]
    return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=900)
