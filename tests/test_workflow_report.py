"""`msp report`: gather, tables, claims, figures and summary on small fake evaluation files
written in the layout and formats of docs/interfaces.md (the real evaluations are tested by the
end-to-end demo test)."""

import json
import subprocess
import sys

import matplotlib.image
import numpy as np
import pandas as pd
import pytest
import torch

from msp import claims, figures, table_format, tables
from msp.cli import main as msp_main
from msp.device import cpu_model, describe_machine, machine_facts

LABELS = ["lstsq=MSP", "lstsq_rec=Rec. model", "neuralM=Neural M*", "neural_trans=Neural trans."]
# mse at horizon h = curve[model](h) * seed factor; seeds 1 and 2 -> factors 1 and 3 (mean 2, std sqrt 2)
PRED = {
    "lstsq": lambda h: 2.0 + 0.5 * h,  # slow growth: best at long horizons
    "lstsq_rec": lambda h: 10.0 + 2.0 * h,  # clearly worse than MSP
    "neural_trans": lambda h: 0.5 + 3.0 * (h - 1) ** 2,  # best at T_p = 1, degrades fast
}
EQUIV = {"lstsq": (1.0, 1.1), "neuralM": (0.8, 5.0), "lstsq_rec": (6.0, 7.0)}  # (Lp, Lp_equiv) at T_p = 1
FACTOR = {1: 1.0, 2: 3.0}


def run(*argv):
    """`msp ...` in-process; returns its exit status."""
    with pytest.raises(SystemExit) as exit_info:
        msp_main(list(map(str, argv)))
    return exit_info.value.code


def write_fake_results(root, pred=PRED):
    """Per-run evaluation files under root/results/mnist/MODEL/seedN/eval/."""
    files = {"prediction": [], "equivariance": [], "sbd": []}
    rng = np.random.default_rng(0)
    for seed, factor in FACTOR.items():
        for model, curve in pred.items():
            out = root / f"results/mnist/{model}/seed{seed}/eval/prediction.csv"
            out.parent.mkdir(parents=True, exist_ok=True)
            (out.parent.parent / "metrics.jsonl").write_text("".join(  # loss falls as 100 / step
                json.dumps({"step": step, "lr": 1e-3, "loss": factor * 100.0 / step}) + "\n" for step in (10, 20, 30)))
            pd.DataFrame({"horizon": range(1, 19), "mse": [curve(h) * factor for h in range(1, 19)],
                          "mse_sem": 0.1, "n_sequences": 32}).to_csv(out, index=False)
            files["prediction"].append(out)
        for model, (lp, le) in EQUIV.items():
            out = root / f"results/mnist/{model}/seed{seed}/eval/equivariance.csv"
            out.parent.mkdir(parents=True, exist_ok=True)
            pd.DataFrame({"horizon": range(1, 9), "Lp": [lp * factor * h for h in range(1, 9)],
                          "Lp_equiv": [le * factor * h for h in range(1, 9)], "n_sequences": 32}).to_csv(out, index=False)
            files["equivariance"].append(out)
        sbd_dir = root / f"results/mnist/lstsq/seed{seed}/eval/sbd"
        sbd_dir.mkdir(parents=True, exist_ok=True)
        blocks = [[0, 1, 2, 3, 4], [5, 6, 7, 8, 9], [10, 11, 12, 13, 14, 15]]
        (sbd_dir / "sbd.json").write_text(json.dumps({
            "method": "algebraic", "block_sizes": [5, 5, 6], "blocks": blocks, "finest_block_sizes": [5, 5, 6],
            "finest": True, "commutant_dim": 3, "gap": 1e6 * seed, "offblock_energy_before": 0.6,
            "offblock_energy_after": 0.1 * seed, "offblock_energy_chance": 0.66,
            "factor_names": ["rotation", "hue", "translation"],
            "factor_blocks": {"rotation": [0], "hue": [1], "translation": [2]},
            "factor_dims": {"rotation": 5, "hue": 5, "translation": 6}, "shared_blocks": [], "static_blocks": [],
            "static_dims": 0, "disjoint": True, "finest_and_disjoint": True}))
        after = np.kron(np.eye(3), np.ones((6, 6)))[:16, :16]
        np.savez(sbd_dir / "sbd_maps.npz", before=rng.random((16, 16)), after=after, perm=np.arange(16),
                 U=np.eye(16), components=np.stack([after * (i + 1) for i in range(3)]),
                 disentangle=rng.random((1, 3, 6, 3, 16, 16)).astype(np.float32),
                 disentangle_cond=rng.random((1, 2, 3, 16, 16)), disentangle_target=rng.random((1, 6, 3, 16, 16)),
                 disentangle_all=rng.random((1, 6, 3, 16, 16)))
        files["sbd"].append(sbd_dir / "sbd.json")
    samples = root / "results/mnist/lstsq/seed1/eval/samples.npz"
    np.savez(samples, cond=rng.random((5, 2, 3, 16, 16)), target=rng.random((5, 4, 3, 16, 16)),
             pred=rng.random((5, 4, 3, 16, 16)), pred_equiv=rng.random((5, 4, 3, 16, 16)))
    return files, samples


def gather_all(root, files):
    gathered = []
    for kind, paths in files.items():
        out = root / f"results/mnist/{kind}_runs.csv"
        assert run("report", "gather", "--kind", kind, "--dataset", "mnist", "--inputs", *paths, "--out", out) == 0
        gathered.append(out)
    return gathered


def test_tables_give_mean_std_over_seeds_next_to_the_reference(tmp_path):
    files, _ = write_fake_results(tmp_path)
    gathered = gather_all(tmp_path, files)
    runs = pd.read_csv(gathered[0])
    assert set(runs.columns) >= {"evaluation", "dataset", "model", "seed", "horizon", "mse"}
    assert len(runs) == 2 * 3 * 18
    out = tmp_path / "results/tables"
    assert run("report", "tables", "--inputs", *gathered, "--labels", *LABELS, "--out-dir", out) == 0

    pred = pd.read_csv(out / "prediction.csv").set_index("model")
    # lstsq at T_p = 1: 2.5 * {1, 3} -> mean 5, std 2.5 (ddof 0, the authors' np.std) or
    # 2.5 * sqrt(2) (ddof 1); paper (their figure's curve): 5.1171 at T_p 1, 73.8079 at 18
    assert pred.loc["lstsq", "h1_mean"] == pytest.approx(5.0)
    assert pred.loc["lstsq", "h1_std"] == pytest.approx(2.5)
    assert pred.loc["lstsq", "h1_std_ddof1"] == pytest.approx(2.5 * np.sqrt(2), rel=1e-5)
    assert pred.loc["lstsq", "h1_ref_mean"] == pytest.approx(5.1171)
    assert pred.loc["lstsq", "H"] == 18 and pred.loc["lstsq", "hH_ref_mean"] == pytest.approx(73.8079)
    assert pred.loc["lstsq", "hH_mean"] == pytest.approx((2 + 0.5 * 18) * 2)
    assert pred["like_for_like"].all()  # 18 horizons, as the authors' mnist figure
    md = (out / "prediction.md").read_text()
    assert "| MSP" in md and "5.00 ± 2.50" in md and "5.12" in md and "ddof = 0" in md
    tex = (out / "prediction.tex").read_text()
    assert r"5.00 $\pm$ 2.50" in tex and r"\begin{tabular}" in tex and "Neural trans." in tex

    # every horizon next to the authors' curve
    horizons = pd.read_csv(out / "prediction_horizons.csv")
    lstsq = horizons[horizons.model == "lstsq"].set_index("horizon")
    assert list(lstsq.index) == list(range(1, 19))
    assert lstsq.loc[7, "ours_mean"] == pytest.approx((2 + 0.5 * 7) * 2)
    assert lstsq.loc[7, "ref_mean"] > 0 and lstsq.loc[7, "ratio"] == pytest.approx(11.0 / lstsq.loc[7, "ref_mean"])
    assert "T_p=18" in (out / "prediction_horizons.md").read_text()
    eh = pd.read_csv(out / "equivariance_horizons.csv")
    assert set(eh.metric) == {"Lp", "Lp_equiv"} and eh.horizon.max() == 8 and eh.ref_mean.notna().all()

    equiv = pd.read_csv(out / "equivariance.csv").set_index("model")
    assert equiv.loc["neuralM", "Lp_equiv_mean"] == pytest.approx(10.0)
    assert equiv.loc["neuralM", "Lp_equiv_ref_mean"] == pytest.approx(64.25)
    assert equiv.loc["neuralM", "Lp_equiv_ref_std"] == pytest.approx(2.59)  # their np.std, ddof 0
    assert equiv.loc["neuralM", "Lp_equiv_ref_std_ddof1"] == pytest.approx(2.59 * np.sqrt(1.5))
    sbd = pd.read_csv(out / "sbd.csv")
    assert sbd.loc[0, "offblock_energy_after_mean"] == pytest.approx(0.15)
    assert sbd.loc[0, "log10_gap_mean"] == pytest.approx((6 + 6.30103) / 2)
    assert sbd.loc[0, "finest_and_disjoint_seeds"] == "2/2" and sbd.loc[0, "block_sizes"] == "[5, 5, 6] / [5, 5, 6]"
    assert "rotation 5, translation 6" in (out / "sbd.md").read_text()


def test_claims_follow_the_numbers(tmp_path):
    files, _ = write_fake_results(tmp_path)
    gathered = gather_all(tmp_path, files)
    out_csv, out_md = tmp_path / "claims.csv", tmp_path / "claims.md"
    assert run("report", "claims", "--inputs", *gathered, "--labels", *LABELS, "--out", out_csv, out_md) == 0
    verdicts = pd.read_csv(out_csv).set_index("claim")
    assert list(verdicts.verdict) == ["held", "held", "held", "not checked", "held"]
    assert list(verdicts.reference_verdict) == ["held", "held", "held", "held", "not checked"]
    assert "x4." in verdicts.loc[3, "evidence"]  # rec / MSP mean error ratio is printed
    assert "Claim 3: **held**" in out_md.read_text()

    # a reconstruction model only 10% worse than MSP breaks claim 3, and only claim 3
    worse = dict(PRED, lstsq_rec=lambda h: 1.1 * PRED["lstsq"](h))
    other = tmp_path / "other"
    files, _ = write_fake_results(other, worse)
    gathered = gather_all(other, files)
    assert run("report", "claims", "--inputs", *gathered, "--out", out_csv) == 0
    assert list(pd.read_csv(out_csv).verdict) == ["held", "held", "not held", "not checked", "held"]


def test_claims_say_when_the_seeds_disagree(tmp_path):
    """The verdict is on the mean over seeds; each seed is also checked alone. Seed 2's neural
    transition at T_p = 1 (8.0) is worse than its MSP (7.5), so claim 2's short-horizon half
    fails on seed 2 alone, while on the mean (4.25 vs 5.0) and on seed 1 (0.5 vs 2.5) it holds."""
    files, _ = write_fake_results(tmp_path)
    seed2 = tmp_path / "results/mnist/neural_trans/seed2/eval/prediction.csv"
    frame = pd.read_csv(seed2)
    frame.loc[frame.horizon == 1, "mse"] = 8.0
    frame.to_csv(seed2, index=False)
    gathered = gather_all(tmp_path, files)
    out_csv, out_md, compact = tmp_path / "claims.csv", tmp_path / "claims.md", tmp_path / "claims_summary.csv"
    assert run("report", "claims", "--inputs", *gathered, "--labels", *LABELS, "--out", out_csv, out_md,
               "--compact", compact) == 0
    verdicts = pd.read_csv(out_csv, keep_default_na=False).set_index("claim")
    assert list(verdicts.verdict) == ["held", "held", "held", "not checked", "held"]
    assert verdicts.loc[2, "per_seed"] == "seed 1: held; seed 2: not held"
    assert verdicts.loc[1, "per_seed"] == "seed 1: held; seed 2: held"
    table = pd.read_csv(compact).set_index(pd.RangeIndex(1, 6))
    assert table.loc[2, "Verdict"] == "held (held on 1 of 2 seeds)"
    assert list(table.Verdict.drop(2)) == ["held", "held", "not checked", "held"]  # seeds agree: no note
    assert "- ours, each seed alone: seed 1: held; seed 2: not held" in out_md.read_text()
    # a seed that lacks a claim's runs is "not checked" alone and does not count against the mean
    frame = pd.read_csv(out_csv, keep_default_na=False)
    frame.loc[frame.claim == 3, ["per_seed", "seeds_checked", "seeds_held"]] = ["seed 1: held; seed 2: not checked", 1, 1]
    assert list(claims.compact_frame(frame).Verdict)[1:3] == ["held (held on 1 of 2 seeds)", "held"]  # read back (report.md)
    assert list(claims.compact_frame(frame.drop(columns=["seeds_checked", "seeds_held"])).Verdict)[1] == "held"  # older csv

    # one seed: no per-seed column content, the verdicts as before
    one = tmp_path / "one"
    files, _ = write_fake_results(one)
    for kind, paths in files.items():
        files[kind] = [path for path in paths if "seed1" in str(path)]
    gathered = gather_all(one, files)
    assert run("report", "claims", "--inputs", *gathered, "--out", out_csv, "--compact", compact) == 0
    assert (pd.read_csv(out_csv, keep_default_na=False).per_seed == "").all()
    assert list(pd.read_csv(compact).Verdict) == ["held", "held", "held", "not checked", "held"]


def test_claim_5_fails_on_merged_or_shared_blocks(tmp_path):
    """A coarser partition (two factors' blocks merged) is neither finest nor disjoint: claim 5
    must not hold on it, although its off-block energy is as low as the right one's."""
    files, _ = write_fake_results(tmp_path)
    for path in files["sbd"]:
        info = json.loads(path.read_text())
        info.update(block_sizes=[10, 6], blocks=[list(range(10)), list(range(10, 16))], finest=False,
                    factor_blocks={"rotation": [], "hue": [], "translation": [1]}, shared_blocks=[0],
                    disjoint=False, finest_and_disjoint=False)
        path.write_text(json.dumps(info))
    gathered = gather_all(tmp_path, files)
    out_csv = tmp_path / "claims.csv"
    assert run("report", "claims", "--inputs", *gathered, "--out", out_csv, tmp_path / "claims.md") == 0
    claim5 = pd.read_csv(out_csv).set_index("claim").loc[5]
    assert claim5.verdict == "not held"
    assert "not finest" in claim5.evidence and "1 shared, not disjoint" in claim5.evidence


def test_other_sequence_lengths_are_labelled_not_like_for_like():
    """mnist_bg's published curve has 8 horizons (T = 10): an evaluation with 18 is flagged."""
    reference = tables.read_reference()
    ours = reference[(reference.evaluation == "prediction") & (reference.dataset == "mnist")].assign(dataset="mnist_bg")
    table = tables.prediction_table(ours, reference, {})
    assert not table.like_for_like.any() and (table.H == 8).all()
    assert "not the paper's T" in table_format.display_frame("prediction", table).H.iloc[0]
    same = reference[(reference.evaluation == "prediction") & (reference.dataset == "mnist_bg")]
    assert tables.prediction_table(same, reference, {}).like_for_like.all()


def test_reference_curves_hold_every_horizon_of_the_authors_figures():
    reference = tables.read_reference()
    pred = reference[reference.evaluation == "prediction"]
    last = pred.groupby("dataset").horizon.max().to_dict()
    assert last == {"mnist": 18, "mnist_bg": 8, "mnist_bg_full": 18, "mnist_accl": 15, "3dshapes": 6, "smallNORB": 4}
    counts = pred.groupby(["dataset", "model"]).horizon.nunique()
    assert all(counts[(d, m)] == last[d] for d, m in counts.index)  # no gaps
    assert not reference.duplicated(["evaluation", "dataset", "model", "horizon", "metric"]).any()
    raw = pd.read_csv(tables.REFERENCE_CSV, comment="#")
    assert raw.source.str.len().gt(0).all()


def test_claims_hold_on_the_authors_numbers():
    reference = tables.read_reference()
    result = claims.check_claims(reference, None, {}, accl_train_horizon=5)
    assert [c.verdict for c in result] == ["held"] * 4 + ["not checked"]
    assert {"mnist", "mnist_bg", "mnist_bg_full", "3dshapes", "smallNORB", "mnist_accl"} == {
        d.split(":")[0] for d in result[1].details}


@pytest.mark.parametrize("name", ["comp_error", "equiv_error", "sbd", "sbd_components", "disentangle", "gen_images",
                                  "training_curves"])
def test_every_figure_is_drawn_as_png_and_pdf(tmp_path, name):
    files, samples = write_fake_results(tmp_path)
    gathered = dict(zip(files, gather_all(tmp_path, files)))
    sbd_dir = tmp_path / "results/mnist/lstsq/seed1/eval/sbd"
    inputs = {"comp_error": [gathered["prediction"]], "equiv_error": [gathered["equivariance"]],
              "gen_images": [samples], "training_curves": sorted(tmp_path.glob("results/mnist/*/seed*/metrics.jsonl")),
              }.get(name, [sbd_dir / "sbd_maps.npz", sbd_dir / "sbd.json"])
    png, pdf = tmp_path / f"fig/{name}.png", tmp_path / f"fig/{name}.pdf"
    assert run("report", "figure", name, "--inputs", *inputs, "--labels", *LABELS, "--out", png, pdf) == 0
    image = matplotlib.image.imread(png)
    assert image.shape[0] > 100 and image.shape[1] > 100 and image[..., :3].std() > 0.05
    assert pdf.read_bytes().startswith(b"%PDF")


def test_summary_links_tables_claims_and_figures(tmp_path):
    (tmp_path / "tables").mkdir()
    (tmp_path / "tables/prediction.md").write_text("| a |\n|---|\n| 1 |\n")
    (tmp_path / "tables/claims.md").write_text("# The paper's claims, checked\n")
    (tmp_path / "figures").mkdir()
    (tmp_path / "figures/comp_error_mnist.png").write_bytes(b"png")
    out = tmp_path / "report.md"
    assert run("report", "summary", "--tables", tmp_path / "tables/prediction.md", "--claims",
               tmp_path / "tables/claims.md", "--figures", tmp_path / "figures/comp_error_mnist.png",
               "--out", out) == 0
    text = out.read_text()
    assert "## prediction" in text and "![comp_error_mnist](figures/comp_error_mnist.png)" in text


def test_summary_lists_the_machines_that_trained_the_runs(tmp_path):
    """Each model.pt records where its training sessions ran (msp.train); the report groups the
    runs by machine, a resumed run under each of its machines, an older model under 'not recorded'."""
    cpu = {"torch": "2.13.0+cpu", "device": "cpu", "threads": 1, "cpu": "AMD EPYC", "cpu_capability": "AVX512"}
    gpu = {**cpu, "device": "cuda:0", "threads": 8, "cpu": "Intel Xeon", "gpu": "NVIDIA H100", "cuda": "12.4"}
    runs = {"mnist/lstsq/seed1": [{"from_step": 0, **cpu}],
            "mnist/lstsq/seed2": [{"from_step": 0, **cpu}, {"from_step": 500, **gpu}],
            "mnist/neuralM/seed1": None}  # trained before machines were recorded
    paths = []
    for name, machines in runs.items():
        path = tmp_path / "results" / name / "model.pt"
        path.parent.mkdir(parents=True)
        torch.save({"step": 1, **({"machines": machines} if machines else {})}, path)
        paths.append(path)
    (tmp_path / "claims.md").write_text("# The paper's claims, checked\n")
    out = tmp_path / "report.md"
    assert run("report", "summary", "--claims", tmp_path / "claims.md", "--runs", *paths, "--out", out) == 0
    rows = [line for line in out.read_text().split("## Where the runs were trained")[1].splitlines()
            if line.startswith("| ") and "machine" not in line]
    assert rows == [
        "| AMD EPYC (AVX512), 1 thread, torch 2.13.0+cpu | 2 | mnist/lstsq/seed1, mnist/lstsq/seed2 |",
        "| NVIDIA H100 (CUDA 12.4) on Intel Xeon (AVX512), 8 threads, torch 2.13.0+cpu | 1 | mnist/lstsq/seed2 |",
        "| not recorded (an older or imported model) | 1 | mnist/neuralM/seed1 |",
    ]


def test_machine_facts_are_plain_data_and_name_a_cap_on_onednn(monkeypatch):
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX2")
    facts = machine_facts(torch.device("cpu"))
    assert all(type(v) in (str, int) for v in facts.values()), facts  # no subclass: loads with weights_only=True
    assert facts["onednn_max_cpu_isa"] == "AVX2" and facts["cpu"] == cpu_model() and facts["cpu"]
    assert describe_machine(facts).startswith(f"{cpu_model()} ({facts['cpu_capability']}, ONEDNN_MAX_CPU_ISA=AVX2), ")


def test_bad_inputs_get_clear_errors(tmp_path):
    stray = tmp_path / "prediction.csv"
    stray.write_text("horizon,mse\n1,2\n")
    result = subprocess.run([sys.executable, "-m", "msp", "report", "gather", "--kind", "prediction",
                             "--inputs", str(stray), "--out", str(tmp_path / "x.csv")], capture_output=True, text=True)
    assert result.returncode != 0 and "results/DATASET/MODEL/seedN/eval/FILE" in result.stderr
    files, _ = write_fake_results(tmp_path)
    with pytest.raises(SystemExit, match="use .png or .pdf"):
        msp_main(["report", "figure", "comp_error", "--inputs", str(gather_all(tmp_path, files)[0]),
                  "--out", str(tmp_path / "f.jpg")])


def write_fake_baselines(root, files):
    """Seedless baseline files: copy-last grows with the horizon; the mean frame is flat and
    beats every model at long horizons (as on Sequential MNIST)."""
    curves = {"baseline_copy_last": lambda h: 30.0 + 4.0 * h, "baseline_mean_frame": lambda h: 9.0}
    for model, curve in curves.items():
        out = root / f"results/mnist/{model}/eval/prediction.csv"
        out.parent.mkdir(parents=True, exist_ok=True)
        pd.DataFrame({"horizon": range(1, 19), "mse": [curve(h) for h in range(1, 19)], "mse_sem": 0.1,
                      "n_sequences": 32}).to_csv(out, index=False)
        files["prediction"].append(out)
        out = out.with_name("equivariance.csv")
        pd.DataFrame({"horizon": range(1, 9), "Lp": [curve(h) for h in range(1, 9)],
                      "Lp_equiv": [curve(h) for h in range(1, 9)], "n_sequences": 32}).to_csv(out, index=False)
        files["equivariance"].append(out)
    return files


def test_baselines_in_tables_and_figures_but_not_in_claims(tmp_path):
    files, _ = write_fake_results(tmp_path)
    gathered = gather_all(tmp_path, write_fake_baselines(tmp_path, files))
    runs = pd.read_csv(gathered[0])
    assert runs[runs.model == "baseline_copy_last"].seed.isna().all() and len(runs) == (2 * 3 + 2) * 18
    out = tmp_path / "results/tables"
    assert run("report", "tables", "--inputs", *gathered, "--labels", *LABELS, "--out-dir", out) == 0
    pred = pd.read_csv(out / "prediction.csv").set_index("model")
    assert pred.loc["baseline_mean_frame", "hH_mean"] == pytest.approx(9.0)
    assert pred.loc["baseline_copy_last", "h1_mean"] == pytest.approx(34.0)
    assert np.isnan(pred.loc["baseline_copy_last", "h1_ref_mean"])  # the authors publish none
    md = (out / "prediction.md").read_text()
    assert "| mean training frame" in md and "| copy last frame" in md
    assert "copy last frame" in (out / "prediction.tex").read_text()
    equiv = pd.read_csv(out / "equivariance.csv").set_index("model")
    assert equiv.loc["baseline_mean_frame", "Lp_mean"] == equiv.loc["baseline_mean_frame", "Lp_equiv_mean"] == 9.0
    # said plainly under the table, against the better baseline (the flat mean frame, 9): at T_p = 1
    # ours MSP (5) and Neural trans. (1) are below it, the Rec. model (24) is not; the authors' MSP (5.1)
    # and Neural trans. (3.4) are, their Rec. model (46.5) not; at T_p = 18 nothing is: ours 22, 92,
    # 1735; the authors' 73.8, 115.8, 86.9
    assert ("- mnist, T_p = 1: mean training frame 9.00; below it: ours MSP, Neural trans., "
            "the authors' published MSP, Neural trans.") in md
    assert ("- mnist, T_p = 18: mean training frame 9.00; below it: ours **none of 3**, "
            "the authors' published **none of 3**") in md
    assert md.endswith((out / "baselines.md").read_text())  # also on its own, for the top of report.md
    report = tmp_path / "report.md"
    claims_md = tmp_path / "claims_for_summary.md"
    claims_md.write_text("# claims\n")
    assert run("report", "summary", "--claims", claims_md, "--tables", out / "prediction.md", out / "baselines.md",
               "--out", report) == 0
    text = report.read_text()
    assert text.index("## Read every error against the trivial baselines") < text.index("### prediction")
    assert text.count("**none of 3**") == 2 * 2  # (ours, theirs) at the top and under the prediction table

    # the mean frame beats MSP at T_p = 18 (9 < 2 * (2 + 9)), yet claim 2 compares models only
    out_csv = tmp_path / "claims.csv"
    assert run("report", "claims", "--inputs", *gathered, "--labels", *LABELS, "--out", out_csv) == 0
    assert list(pd.read_csv(out_csv).verdict) == ["held", "held", "held", "not checked", "held"]
    assert "baseline" not in pd.read_csv(out_csv).evidence.str.cat()
    assert "seed 1: off-block" in pd.read_csv(out_csv).evidence[4]  # seeds stay integers beside seedless rows

    for name, data, n_models in (("comp_error", gathered[0], 3), ("equiv_error", gathered[1], 3)):
        frame = pd.read_csv(data)
        fig = getattr(figures, name)(frame, dict(p.split("=") for p in LABELS))
        grey = [line for line in fig.axes[0].lines if line.get_color() == "0.55"]
        assert [line.get_label() for line in grey][:1] in (["copy last frame"], ["copy last frame: $L^p = L^p_{equiv}$"])
        assert len(grey) == 2 and len(fig.axes[0].lines) == 2 + n_models * (1 if name == "comp_error" else 2)
        np.testing.assert_allclose(grey[1].get_ydata(), 9.0)


def test_claims_open_with_one_compact_table(tmp_path):
    """claims.md and the summary start with ONE table: claim | verdict | our deciding number |
    the authors' number, one row per claim; the paragraphs of numbers come after the figures."""
    files, _ = write_fake_results(tmp_path)
    gathered = gather_all(tmp_path, files)
    out_csv, out_md, compact = tmp_path / "claims.csv", tmp_path / "claims.md", tmp_path / "claims_summary.csv"
    assert run("report", "claims", "--inputs", *gathered, "--labels", *LABELS, "--out", out_csv, out_md,
               "--compact", compact) == 0
    table = pd.read_csv(compact)
    assert list(table.columns) == ["Claim", "Verdict", "Our deciding number", "The authors' number"]
    assert len(table) == 5 and table.Claim.str.startswith(tuple(f"{n}: " for n in range(1, 6))).all()
    # claim 3 on mnist: rec / MSP = (10 + 2 h) / (2 + h / 2) averaged over h = 1..18 -> 29 / 6.75
    assert table.loc[2, "Our deciding number"] == "mnist: mean error Rec. model / MSP = x4.30 (needs >= 1.25)"
    assert table.loc[2, "The authors' number"].startswith("mnist: mean error Rec. model / MSP = x")
    assert table.loc[3, "Verdict"] == "not checked" and table.loc[3, "Our deciding number"] == "–"
    # claim 1: MSP's L^p_equiv 2 * 1.1 vs the closest other model, Neural M* at 2 * 5.0
    assert table.loc[0, "Our deciding number"] == "mnist: L^p_equiv at T_p=1: MSP 2.20 vs Neural M* 10.00"

    figure = tmp_path / "figures/comp_error_mnist.png"
    figure.parent.mkdir()
    figure.write_bytes(b"png")
    (tmp_path / "prediction.md").write_text("| a |\n|---|\n| 1 |\n")
    out = tmp_path / "report.md"
    assert run("report", "summary", "--claims", out_csv, "--tables", tmp_path / "prediction.md",
               "--figures", figure, "--out", out) == 0
    text = out.read_text()
    tables_in_text = [line for line in text.splitlines() if line.startswith("| ")]
    header = tables_in_text[0]
    assert [c.strip() for c in header.strip("|").split("|")] == list(table.columns)
    first_table = text[text.index(header):].split("\n\n")[0].splitlines()
    assert len(first_table) == 2 + 5  # header, rule, one row per claim
    assert text.index(header) < text.index("![comp_error_mnist]") < text.index("### prediction") \
        < text.index("### Claim 1: **held**")
    assert text.count("### Claim") == 5


def test_training_curves_read_each_runs_log(tmp_path):
    write_fake_results(tmp_path)
    # model.pt paths as the workflow gives them; neuralM's runs have no log here (left out)
    logs = figures.training_logs([p.parent / "model.pt" for p in tmp_path.glob("results/mnist/*/seed*/eval")])
    assert set(logs.model) == set(PRED) and set(logs.seed) == {1, 2} and len(logs) == 3 * 2 * 3
    fig = figures.training_curves(logs, {"lstsq": "MSP"})
    ax = fig.axes[0]
    mean_lines = [line for line in ax.lines if line.get_linewidth() > 1.5]
    assert len(mean_lines) == 3 and len(ax.lines) == 3 + 3 * 2 and ax.get_yscale() == "log"
    msp = next(line for line in mean_lines if line.get_label() == "MSP (2 seeds)")
    np.testing.assert_allclose(msp.get_ydata(), [2 * 100 / s for s in (10, 20, 30)])  # seeds x1, x3: mean x2
    with pytest.raises(ValueError, match="results/DATASET/MODEL/seedN"):
        figures.training_logs([tmp_path / "metrics.jsonl"])


def test_error_figures_draw_the_authors_curves_behind_ours(tmp_path):
    from msp import figures

    files, _ = write_fake_results(tmp_path)
    prediction, equivariance, _ = gather_all(tmp_path, files)
    reference = tables.read_reference()
    ref = reference[(reference.evaluation == "prediction") & (reference.dataset == "mnist") & (reference.model == "lstsq")]
    fig = figures.comp_error(pd.read_csv(prediction), {}, "", reference)
    dashed = [line for line in fig.axes[0].get_lines() if line.get_linestyle() == "--" and len(line.get_xdata())]
    assert len(dashed) == 3  # one authors' curve per model of ours (neural_trans, lstsq_rec, lstsq)
    theirs = next(line for line in dashed if np.allclose(line.get_ydata(), ref.sort_values("horizon")["mean"]))
    ours = next(line for line in fig.axes[0].get_lines() if line.get_label() == "lstsq")
    assert theirs.get_zorder() < ours.get_zorder() and theirs.get_color() == ours.get_color()
    assert "the authors' (published)" in [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    figures.plt.close(fig)
    fig = figures.equiv_error(pd.read_csv(equivariance), {}, "", reference)
    assert len([line for line in fig.axes[0].get_lines() if line.get_linestyle() == ":" and len(line.get_xdata())]) == 6
    figures.plt.close(fig)
    fig = figures.comp_error(pd.read_csv(prediction), {}, "")  # without a reference: ours only
    assert not [line for line in fig.axes[0].get_lines() if line.get_linestyle() == "--"]
    figures.plt.close(fig)
