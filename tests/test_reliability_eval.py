"""Evaluation and gathering refuse what would put wrong numbers in the tables: a model.pt of
another run, NaN hand-edited into an evaluation CSV (issue catalogue "silent wrong results")."""

import argparse

import numpy as np
import pandas as pd
import pytest

from msp import eval_protocols as ep
from msp import evaluate
from msp.tables import gather_runs
from msp.train import train
from toys import RotatingBlobs, toy_config


def parse(*argv):
    parser = argparse.ArgumentParser()
    evaluate.add_arguments(parser)
    return parser.parse_args(list(argv))


def test_model_pt_of_another_run_is_refused(tmp_path):
    model = train(toy_config(iterations=2), tmp_path / "mnist/lstsq/seed3", sequences=RotatingBlobs(seed=3),
                  progress=False)  # trained as mnist / lstsq / seed 3
    placed = tmp_path / "mnist_bg/lstsq/seed3/model.pt"
    placed.parent.mkdir(parents=True)
    placed.write_bytes(model.read_bytes())
    args = parse("prediction", "--checkpoint", str(placed), "--out", str(tmp_path / "p.csv"), "--device", "cpu",
                 "--expect-run", "mnist_bg/lstsq/seed3")
    with pytest.raises(ValueError, match=r"was trained as mnist/lstsq/seed3 but is evaluated for mnist_bg/lstsq/seed3"):
        evaluate.main(args)
    assert not (tmp_path / "p.csv").exists()


def test_nan_in_an_evaluation_csv_is_an_error_naming_it(tmp_path):
    path = tmp_path / "results/mnist/lstsq/seed1/eval/prediction.csv"
    path.parent.mkdir(parents=True)
    pd.DataFrame({"horizon": [1, 2], "mse": [0.01, np.nan], "mse_sem": [0.001, 0.002],
                  "n_sequences": [8, 8]}).to_csv(path, index=False)
    with pytest.raises(ValueError, match=r"prediction.csv: column mse is empty, NaN or not a number at horizon\(s\) \[2\]"):
        gather_runs("prediction", [str(path)])
    # a diverged roll-out is written as inf by msp evaluate, and gathered as such
    errors = np.array([[0.1, np.nan], [0.2, 0.3]])
    table = ep.summarize_prediction(errors)
    assert np.isinf(table.mse[1]) and table.mse[0] == pytest.approx(0.15)
    table.to_csv(path, index=False)
    assert np.isinf(gather_runs("prediction", [str(path)]).mse[1])
