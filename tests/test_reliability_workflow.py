"""The real workflow on a tiny grid (one dataset, one model, prediction only, a few steps):
moving the data or changing execution details retrains nothing, a changed experiment never
deletes a finished model, and deleted or corrupt intermediates are rebuilt with everything
made from them (issue catalogue: data loss, stuck, silent wrong results)."""

import re
import shutil

import pandas as pd
import pytest
import yaml

from workflow_helpers import snakemake, tiny_demo

pytestmark = pytest.mark.slow


def write(path, cfg):
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))


def output(result):
    return result.stdout + result.stderr


def jobs(result) -> set[str]:
    """Names of the rules a (dry) run schedules, from Snakemake's 'rule NAME:' lines."""
    return set(re.findall(r"^rule (\w+):$", output(result), flags=re.M)) - {"all"}


def test_execution_changes_rerun_nothing_and_stale_intermediates_are_rebuilt(tmp_path):
    config = tiny_demo(tmp_path)
    cfg = yaml.safe_load(config.read_text())
    cfg["datasets"]["mnist"]["models"] = {"lstsq": {}}
    cfg["models"]["lstsq"]["evaluations"] = ["prediction"]
    cfg["train"].update(log_every=2)
    write(config, cfg)
    first = snakemake(tmp_path, "--cores", "2", "--configfile", str(config))
    assert first.returncode == 0, output(first)[-6000:]
    run = tmp_path / "results/mnist/lstsq/seed1"
    model = run / "model.pt"
    stamp = model.stat().st_mtime_ns
    assert "root" not in (run / "run.yaml").read_text()  # identity only

    # 1. data moved, logging cadence, device and checkpoint cadence changed: nothing reruns
    shutil.move(tmp_path / "data", tmp_path / "data moved")
    cfg["data"]["root"] = "data moved"
    cfg["train"].update(log_every=1, device="auto", checkpoint_every=2)
    write(config, cfg)
    dry = snakemake(tmp_path, "--cores", "2", "--configfile", str(config), "-n")
    # only the copy of prepared.json from the new place (a file copy), no training or evaluation
    assert dry.returncode == 0 and jobs(dry) == {"data_used"}, output(dry)[-4000:]
    again = snakemake(tmp_path, "--cores", "2", "--configfile", str(config))
    assert again.returncode == 0, output(again)[-4000:]
    assert model.stat().st_mtime_ns == stamp

    # a changed experiment (lr) is a different run: Snakemake stops instead of deleting model.pt
    changed = {**cfg, "train": {**cfg["train"], "lr": 5e-4}}
    write(tmp_path / "changed.yaml", changed)
    refused = snakemake(tmp_path, "--cores", "2", "--configfile", str(tmp_path / "changed.yaml"))
    assert refused.returncode != 0, output(refused)[-4000:]
    assert "results/mnist/lstsq/seed1 (train.lr: 0.001 -> 0.0005)" in refused.stderr, refused.stderr[-4000:]
    assert jobs(refused) == set()  # stopped before any job
    assert model.stat().st_mtime_ns == stamp

    # 6. a corrupt per-run CSV is named; once deleted, it and the per-dataset CSV are rebuilt
    per_run = run / "eval/prediction.csv"
    frame = pd.read_csv(per_run)
    frame.loc[0, "mse"] = float("nan")
    frame.to_csv(per_run, index=False)
    bad = snakemake(tmp_path, "--cores", "2", "--configfile", str(config))
    assert bad.returncode != 0
    gather_log = (tmp_path / "results/logs/gather/mnist_prediction.log").read_text()
    assert "prediction.csv: column mse is empty, NaN or not a number" in gather_log
    per_run.unlink()
    fixed = snakemake(tmp_path, "--cores", "2", "--configfile", str(config))
    assert fixed.returncode == 0, output(fixed)[-4000:]
    gathered = pd.read_csv(tmp_path / "results/mnist/prediction_runs.csv")
    assert gathered.mse.notna().all() and len(gathered) > 0

    # 11. model.pt deleted: its evaluations and everything made from them are stale
    model.chmod(0o644)
    model.unlink()
    stale = snakemake(tmp_path, "--cores", "2", "--configfile", str(config), "-n")
    text = output(stale)
    assert stale.returncode == 0 and "Nothing to be done" not in text, text[-4000:]
    for rule in ("rule train:", "rule evaluate_prediction:", "rule gather:", "rule tables:"):
        assert rule in text, rule
