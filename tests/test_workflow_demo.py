"""End to end: the real workflow on the embedded data (a trimmed configs/demo.yaml: one
dataset, two models, one seed, a few steps), then `snakemake --report`. Slow (about a
minute on 2 cores) but part of CI: it is the only test that runs every rule for real."""

import json

import pandas as pd
import pytest
import yaml

from msp.device import cpu_model
from workflow_helpers import snakemake, tiny_demo


@pytest.mark.slow
def test_demo_runs_end_to_end_with_tables_figures_and_report(tmp_path):
    config = tiny_demo(tmp_path)
    result = snakemake(tmp_path, "--cores", "2", "--configfile", str(config))
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-6000:]

    results = tmp_path / "results"
    run = results / "mnist/lstsq/seed1"
    assert (run / "model.pt").is_file() and (run / "checkpoints").is_dir() and (run / "train.benchmark.tsv").is_file()
    for kind in ("prediction", "equivariance", "sbd"):
        for ext in ("csv", "md", "tex"):
            assert (results / f"tables/{kind}.{ext}").stat().st_size > 0, (kind, ext)
    prediction = pd.read_csv(results / "tables/prediction.csv")
    assert set(prediction.model) == {"lstsq", "neural_trans", "baseline_copy_last", "baseline_mean_frame"}
    assert prediction.h1_mean.gt(0).all()
    assert prediction[~prediction.model.str.startswith("baseline_")].h1_ref_mean.notna().all()
    assert (results / "mnist/baseline_mean_frame/eval/equivariance.csv").is_file()  # once, no seed folder
    claims = pd.read_csv(results / "tables/claims.csv")
    assert list(claims.claim) == [1, 2, 3, 4, 5]
    assert set(claims.verdict) <= {"held", "not held", "not checked"}
    assert claims.set_index("claim").loc[4, "verdict"] == "not checked"  # no mnist_accl in this grid
    names = ["comp_error_mnist", "equiv_error_mnist", "sbd_mnist", "sbd_mnist_components", "disentangle_mnist",
             "gen_images/mnist_lstsq", "gen_images/mnist_neural_trans", "training_curves_mnist"]
    for name in names:
        for ext in ("png", "pdf"):
            assert (results / f"figures/{name}.{ext}").stat().st_size > 1000, name
    summary = (results / "report.md").read_text()
    assert "Claim 1" in summary and "figures/sbd_mnist.png" in summary
    first_table = next(line for line in summary.splitlines() if line.startswith("| "))
    assert "Our deciding number" in first_table and "The authors' number" in first_table
    assert summary.index(first_table) < summary.index("figures/training_curves_mnist.png")
    assert len(pd.read_csv(results / "tables/claims_summary.csv")) == 5
    machines = summary.split("## Where the runs were trained")[1]  # every run was trained here, by this process tree
    assert f"| {cpu_model()} (" in machines and "not recorded" not in machines

    # a second run has nothing to do, and the HTML report collects every flagged output
    again = snakemake(tmp_path, "--cores", "2", "--configfile", str(config), "-n")
    assert "Nothing to be done" in again.stdout + again.stderr
    report = snakemake(tmp_path, "--configfile", str(config), "--report", str(tmp_path / "report.html"))
    assert report.returncode == 0, report.stderr[-4000:]
    html = (tmp_path / "report.html").read_text(errors="replace")
    for needle in ("comp_error_mnist.png", "claims.csv", "sbd_mnist_components.png", "gen_images",
                   "training_curves_mnist.png", "claims_summary.csv", "Our deciding number"):
        assert needle in html, needle


@pytest.mark.slow
def test_killed_training_resumes_instead_of_restarting(tmp_path):
    """Only DIR/model.pt is declared: the checkpoints of an unfinished run survive Snakemake's
    clean-up of incomplete outputs, and the rerun continues from them."""
    config = tiny_demo(tmp_path)
    cfg = yaml.safe_load(config.read_text())
    cfg["datasets"]["mnist"]["models"] = {"lstsq": {}}
    cfg["train"].update(checkpoint_every=3, log_every=1)
    config.write_text(yaml.safe_dump(cfg))
    target = "results/mnist/lstsq/seed1/model.pt"
    result = snakemake(tmp_path, target, "--cores", "1", "--configfile", str(config))
    assert result.returncode == 0, result.stderr[-4000:]
    run = tmp_path / "results/mnist/lstsq/seed1"
    # simulate a kill after the checkpoint at step 3: drop the completion marker and the last checkpoint
    (run / "model.pt").unlink()
    for ckpt in sorted((run / "checkpoints").glob("step_*.pt"))[1:]:
        ckpt.unlink()
    assert [p.name for p in (run / "checkpoints").glob("step_*.pt")] == ["step_00000003.pt"]
    result = snakemake(tmp_path, target, "--cores", "1", "--configfile", str(config))
    assert result.returncode == 0, result.stderr[-4000:]
    assert "resuming" in (run / "train.log").read_text()
    steps = [json.loads(line)["step"] for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert steps == sorted(steps) and steps[-1] == 6
