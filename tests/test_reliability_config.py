"""Everything a training or evaluation job would reject stops the workflow before any job,
with the key and the fix named (issue catalogue, "wrong or unclear messages")."""

import copy
from pathlib import Path

import pytest
import yaml

from msp import runs
from workflow_helpers import snakemake

ROOT = Path(__file__).resolve().parents[1]
DEMO = yaml.safe_load((ROOT / "configs/demo.yaml").read_text())


def with_simclr(c, evaluations):
    c["models"]["simclr"] = {"label": "SimCLR", "T_cond": 2, "T_pred": 1, "reconst": False,
                             "evaluations": evaluations}
    c["datasets"]["mnist"]["models"]["simclr"] = {}


CASES = {
    "k below 1/32": (lambda c: c["datasets"]["mnist"]["network"].update(k=1 / 64),
                     r"dataset 'mnist', model 'lstsq': the model cannot run on mnist images"),
    "lr NaN": (lambda c: c["train"].update(lr=float("nan")), r"config key 'train.lr' is nan; it must be a finite number"),
    "k inf": (lambda c: c["datasets"]["mnist"]["network"].update(k=float("inf")),
              r"config key 'datasets.mnist.network.k' is inf"),
    "T_pred 0 on a predictive model": (lambda c: c["models"]["lstsq"].update(T_pred=0),
                                       r"model 'lstsq': T_pred = 0: model lstsq learns by predicting"),
    "more frames than 3dshapes has": (lambda c: c["datasets"]["3dshapes"]["models"].update(holstsq={}),
                                      r"'3dshapes', model 'holstsq': T_cond \+ T_pred = 10 frames, but 3dshapes"),
    "sbd of a model without M": (lambda c: c["models"]["neural_trans"].update(evaluations=["prediction", "sbd"]),
                                 r"model 'neural_trans' has no transition matrix, so \['sbd'\] do not apply"),
    "prediction of a model without decoder": (lambda c: with_simclr(c, ["prediction"]),
                                              r"evaluation 'prediction' needs a model with a decoder; simclr"),
    "image size the network cannot make": (lambda c: c["datasets"]["smallNORB"]["network"].update(bottom_width=5),
                                           r"'smallNORB', model 'lstsq': bottom_width 5 x 2\^n_blocks"),
    "K not dividing dim_a": (lambda c: c["datasets"]["mnist"]["network"].update(dim_a=15),
                             r"model 'lstsq_multi': dim_a = 15 is not divisible"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_what_a_job_would_reject_is_refused_at_parse_time(case):
    mutate, message = CASES[case]
    config = copy.deepcopy(DEMO)
    mutate(config)
    with pytest.raises(ValueError, match=message):
        runs.check_config(config)


def test_the_shipped_configs_pass():
    for name in ("config.yaml", "demo.yaml"):
        runs.check_config(yaml.safe_load((ROOT / "configs" / name).read_text()))


def test_results_path_with_a_space_stops_before_any_job(tmp_path):
    config = copy.deepcopy(DEMO)
    config["results"] = "my results"
    path = tmp_path / "spaced.yaml"
    path.write_text(yaml.safe_dump(config))
    result = snakemake(tmp_path, "-n", "--configfile", str(path))
    text = result.stdout + result.stderr
    assert result.returncode != 0
    assert "results: 'my results' is not allowed here" in text and "whitespace" in text, text[-3000:]
    assert not (tmp_path / "my results").exists() and not (tmp_path / "my").exists()
