"""msp.reference.extract_curves reads curves back from a matplotlib vector PDF exactly
(known answer: a figure drawn here in the layout of the authors' error figures)."""

import io

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402

from msp.reference import extract_curves  # noqa: E402

CURVES = {  # legend label -> values at T_p = 1..6
    "Neural transition": [1.7, 300.1, 723.25, 1420.8, 1718.3, 1906.5],
    r"Neural $M^*$": [2.1, 354.2, 560.5, 1046.0, 1592.8, 2119.3],
    "Ours w/fixed blocks": [2.8, 3.0, 3.8, 8.7, 20.7, 37.6],
    "Ours": [2.7, 3.0, 3.9, 24.6, 27.2, 101.4],
}


def authors_style_pdf(curves, styles=("--", "o-", ":", "-.", "-")) -> bytes:
    fig, ax = plt.subplots(figsize=(6, 4))
    for (label, values), style in zip(curves.items(), styles):
        ax.plot(range(1, len(values) + 1), values, style, label=label)
    ax.set_xlabel("$T_p$")
    ax.set_ylabel("MSE")
    ax.legend()
    buf = io.BytesIO()
    fig.savefig(buf, format="pdf")
    plt.close(fig)
    return buf.getvalue()


def test_curves_come_back_at_every_horizon():
    rows = extract_curves.curve_rows("prediction", "3dshapes", authors_style_pdf(CURVES), "figure test.pdf")
    got = {(r["model"], r["horizon"]): r["mean"] for r in rows}
    models = {"Neural transition": "neural_trans", r"Neural $M^*$": "neuralM",
              "Ours w/fixed blocks": "lstsq_multi", "Ours": "lstsq"}
    assert len(rows) == 4 * 6
    for label, values in CURVES.items():
        for h, value in enumerate(values, start=1):
            assert got[(models[label], h)] == pytest.approx(value, abs=2e-3), (label, h)
    assert {r["source"] for r in rows} == {"figure test.pdf"}


def test_equivariance_legends_name_the_metric():
    assert extract_curves.model_and_metric("equivariance", "Ours pequiv") == ("lstsq", "Lp_equiv")
    assert extract_curves.model_and_metric("equivariance", "NeuralM* p") == ("neuralM", "Lp")
    assert extract_curves.model_and_metric("prediction", "Ours(2nd order)") == ("holstsq", "mse")
    with pytest.raises(ValueError, match="unknown legend label"):
        extract_curves.model_and_metric("prediction", "Something else")


def test_a_log_axis_is_refused():
    fig, ax = plt.subplots()
    ax.plot([1, 2, 3], [1, 10, 100], label="Ours")
    ax.set_yscale("log")
    ax.set_yticks([1, 10, 100], ["1", "10", "100"])
    ax.legend()
    buf = io.BytesIO()
    fig.savefig(buf, format="pdf")
    plt.close(fig)
    with pytest.raises(ValueError, match="not linear"):
        extract_curves.read_curves(buf.getvalue())


def test_merge_keeps_table_rows_with_their_std(tmp_path):
    csv = tmp_path / "ref.csv"
    csv.write_text("# a comment line\nevaluation,dataset,model,horizon,metric,mean,std,source\n"
                   "equivariance,mnist,lstsq,1,Lp,6.42,0.21,equivariance table (T_p = 1)\n"
                   "prediction,mnist,lstsq,1,mse,5.1,,prediction table (mean over seeds)\n")
    curves = [{"evaluation": "equivariance", "dataset": "mnist", "model": "lstsq", "horizon": 1, "metric": "Lp",
               "mean": 6.4217, "std": "", "source": "figure f.pdf (curve)"},
              {"evaluation": "prediction", "dataset": "mnist", "model": "lstsq", "horizon": 1, "metric": "mse",
               "mean": 5.1171, "std": "", "source": "figure g.pdf (curve)"}]
    text, overlaps = extract_curves.merge_into_reference(csv, curves)
    lines = text.splitlines()
    assert lines[0] == "# a comment line"
    assert "equivariance,mnist,lstsq,1,Lp,6.42,0.21,equivariance table (T_p = 1)" in lines
    assert "prediction,mnist,lstsq,1,mse,5.1171,,figure g.pdf (curve)" in lines and len(lines) == 4
    assert overlaps == [(("equivariance", "mnist", "lstsq", "1", "Lp"), 6.42, 6.4217)]
