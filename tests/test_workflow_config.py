"""The workflow config: the paper grid of docs/method.md ('Training'), the schema and the extra checks."""

import copy
from pathlib import Path

import jsonschema
import pytest
import yaml
from snakemake.utils import update_config, validate

from msp import registry, runs

ROOT = Path(__file__).resolve().parents[1]
SCHEMA = ROOT / "configs" / "schema.yaml"


def load(name="config.yaml") -> dict:
    config = yaml.safe_load((ROOT / "configs" / name).read_text())
    validate(config, str(SCHEMA))  # fills the schema defaults, as the workflow does
    return config


@pytest.fixture(scope="module")
def paper():
    return load()


def test_paper_grid_is_the_84_runs_of_configs_md(paper):
    grid = runs.runs(paper)
    assert len(grid) == 84
    per_dataset = {d: sum(r.dataset == d for r in grid) for d in paper["datasets"]}
    assert per_dataset == {"mnist": 15, "mnist_bg": 15, "mnist_bg_full": 15, "3dshapes": 15, "smallNORB": 15,
                           "mnist_accl": 9}
    assert {r.seed for r in grid} == {1, 2, 3}
    assert len(set(grid)) == 84


def test_run_configs_carry_the_paper_hyper_parameters(paper):
    cfg = runs.run_config(paper, "mnist", "lstsq", 2)
    assert cfg["dataset"] == {"name": "mnist", "root": "data", "source": "drive", "options": {}}
    assert cfg["model"] == {"name": "lstsq", "T_cond": 2, "T_pred": 1, "k": 2, "dim_m": 256, "dim_a": 16,
                            "n_blocks": 3, "bottom_width": 4}
    assert cfg["train"] == {"iterations": 50000, "batch_size": 32, "lr": 3e-4, "lr_decay_iter": 40000,
                            "reconst_iter": 0, "seed": 2, "checkpoint_every": 10000, "log_every": 100,
                            "device": "auto", "faithful": False, "amp": "auto", "channels_last": "auto",
                            "compile": False, "deterministic": False}
    # reconstruction "always" = the whole run (docs/method.md, 'Training')
    assert runs.run_config(paper, "mnist_bg_full", "neuralM", 1)["train"]["reconst_iter"] == 200000
    assert runs.run_config(paper, "3dshapes", "neural_trans", 1)["train"]["reconst_iter"] == 50000
    rec = runs.run_config(paper, "smallNORB", "lstsq_rec", 3)
    assert (rec["model"]["T_cond"], rec["model"]["T_pred"], rec["model"]["n_blocks"]) == (3, 0, 4)
    assert runs.run_config(paper, "mnist", "lstsq_multi", 1)["model"]["K"] == 8
    for model in ("lstsq", "holstsq", "neural_trans"):
        m = runs.run_config(paper, "mnist_accl", model, 1)["model"]
        assert (m["T_cond"], m["T_pred"]) == (5, 5), model
    assert runs.run_config(paper, "mnist_bg", "lstsq", 1)["model"]["k"] == 4


def test_run_config_is_accepted_by_the_trainer(paper):
    from msp.config import normalize_run_config

    for run in runs.runs(paper)[::7]:
        normalize_run_config(runs.run_config(paper, run.dataset, run.model, run.seed))


def test_evaluations_follow_the_paper_protocol(paper):
    count = {kind: len(runs.evaluated_runs(paper, kind)) for kind in runs.EVALUATIONS}
    # prediction: every run; equivariance: neuralM, lstsq_rec, lstsq on 5 datasets + holstsq;
    # sbd: lstsq on the 5 non-accelerated datasets; samples: every dataset x model, first seed
    assert count == {"prediction": 84, "equivariance": 5 * 3 * 3 + 3, "sbd": 5 * 3, "samples": 25 + 3}
    assert {r.model for r in runs.evaluated_runs(paper, "equivariance", "mnist_accl")} == {"holstsq"}
    assert runs.sbd_model(paper, "3dshapes") == "lstsq"
    assert runs.sbd_model(paper, "mnist_accl") is None
    assert runs.training_horizon(paper, "mnist_accl") == 5


def test_demo_covers_every_family_and_model():
    demo = load("demo.yaml")
    runs.check_config(demo)
    families = {registry.dataset(d).family for d in demo["datasets"]}
    assert families == {"mnist", "mnist_bg", "3dshapes", "smallNORB"}
    assert {r.model for r in runs.runs(demo)} == {"lstsq", "lstsq_multi", "lstsq_rec", "holstsq", "neuralM",
                                                  "neural_trans"}
    assert demo["data"]["source"] == "embedded" and demo["results"] != "results"
    for kind in runs.EVALUATIONS:
        assert runs.evaluated_runs(demo, kind), kind




def test_a_model_override_sets_its_own_iterations():
    """datasets.D.models.M.iterations / lr_decay_iter win over the dataset's (the demo trains
    MSP longer than the tiny models beside it); a decay past the end is refused."""
    demo = load("demo.yaml")
    mnist = demo["datasets"]["mnist"]
    mnist["models"]["neuralM"] = {"iterations": 7, "lr_decay_iter": 5}
    assert runs.run_config(demo, "mnist", "neuralM", 1)["train"]["iterations"] == 7
    assert runs.run_config(demo, "mnist", "neuralM", 1)["train"]["lr_decay_iter"] == 5
    assert runs.run_config(demo, "mnist", "lstsq", 1)["train"]["iterations"] == mnist["iterations"]
    runs.check_config(demo)
    mnist["models"]["neuralM"] = {"iterations": 7}  # the dataset's decay iteration lies beyond 7
    with pytest.raises(ValueError, match=r"datasets.mnist.models.neuralM'.*lr_decay_iter"):
        runs.check_config(demo)

def test_reconstruction_warmup_reaches_the_run_config():
    """datasets.D.reconst_warmup sets reconst_iter of every model (a model override wins, a
    whole-run reconst wins over both); absent = 0, the paper; longer than the run is refused."""
    demo = load("demo.yaml")
    mnist = demo["datasets"]["mnist"]
    assert runs.run_config(demo, "mnist", "lstsq", 1)["train"]["reconst_iter"] == 500  # the demo's MSP
    assert runs.run_config(demo, "mnist", "lstsq", 1)["train"]["lr"] == 3e-4  # its own lr
    assert runs.run_config(demo, "mnist", "lstsq_multi", 1)["train"]["lr"] == demo["train"]["lr"] == 1e-3
    assert runs.run_config(demo, "mnist", "lstsq_multi", 1)["train"]["reconst_iter"] == 0
    mnist["models"]["lstsq"] = {}
    assert runs.run_config(demo, "mnist", "lstsq", 1)["train"]["reconst_iter"] == 0
    mnist["reconst_warmup"] = 3
    mnist["models"]["lstsq_multi"] = {"reconst_warmup": 2, "iterations": 10, "lr_decay_iter": 8}
    assert runs.run_config(demo, "mnist", "lstsq", 1)["train"]["reconst_iter"] == 3
    assert runs.run_config(demo, "mnist", "lstsq_multi", 1)["train"]["reconst_iter"] == 2
    neural = runs.run_config(demo, "mnist", "neuralM", 1)["train"]
    assert neural["reconst_iter"] == neural["iterations"]
    runs.check_config(demo)
    mnist["models"]["lstsq_multi"]["reconst_warmup"] = 11
    with pytest.raises(ValueError, match=r"datasets.mnist.models.lstsq_multi'.*reconst_warmup = 11"):
        runs.check_config(demo)


def test_cpu_config_has_the_models_of_claims_1_to_4():
    """configs/cpu.yaml (README, "Learning on a CPU"): Sequential MNIST with the paper's five
    models and generator settings, first and second order on accelerated MNIST, one seed."""
    cpu = load("cpu.yaml")
    runs.check_config(cpu)
    assert {r.model for r in runs.runs(cpu) if r.dataset == "mnist"} == {"lstsq", "lstsq_multi", "lstsq_rec",
                                                                         "neuralM", "neural_trans"}
    assert {r.model for r in runs.runs(cpu) if r.dataset == "mnist_accl"} == {"lstsq", "holstsq"}
    assert cpu["datasets"]["mnist"]["options"] == {} and cpu["train"]["device"] == "cpu"
    assert len(cpu["seeds"]) == 1 and cpu["results"] not in ("results", "results/demo")
    assert {r.model for r in runs.evaluated_runs(cpu, "equivariance", "mnist")} >= {"lstsq", "neuralM", "lstsq_rec"}


def merged_cpu_config(*overlays) -> dict:
    """configs/cpu.yaml with the named overlays merged over it in order, as Snakemake merges
    several --configfile (snakemake.utils.update_config), then validated and checked."""
    config = yaml.safe_load((ROOT / "configs" / "cpu.yaml").read_text())
    for name in overlays:
        update_config(config, yaml.safe_load((ROOT / "configs" / name).read_text()))
    validate(config, str(SCHEMA))
    runs.check_config(config)
    return config


def test_cpu_10k_steps_overlay_lengthens_only_the_mnist_schedule():
    """configs/cpu_10k_steps.yaml is merged over cpu.yaml as Snakemake merges two --configfile
    (snakemake.utils.update_config): the same grid, the mnist trainings at 10,000 steps with the
    decay still at 80%, its own results folder, nothing else changed."""
    merged = merged_cpu_config("cpu_10k_steps.yaml")
    short_config = load("cpu.yaml")

    def grid(config):
        return [(r.dataset, r.model, r.seed) for r in runs.runs(config)]

    assert grid(merged) == grid(short_config)
    mnist = merged["datasets"]["mnist"]
    assert (mnist["iterations"], mnist["lr_decay_iter"]) == (10000, 8000)
    assert merged["results"] != short_config["results"]
    for run in runs.runs(merged):
        long = runs.run_config(merged, run.dataset, run.model, run.seed)
        short = runs.run_config(short_config, run.dataset, run.model, run.seed)
        if run.dataset == "mnist":
            changed = {k for k in long["train"] if long["train"][k] != short["train"][k]}
            assert changed <= {"iterations", "lr_decay_iter", "reconst_iter"}, (run, changed)
            long["train"], short["train"] = {}, {}
        assert long == short, run


def test_cpu_10k_tpred3_overlay_changes_only_the_predicted_frames_of_the_four_claim_2_models():
    """configs/cpu_10k_tpred3.yaml, merged over cpu.yaml and cpu_10k_steps.yaml in that order:
    the same grid, MSP, MSP fixed blocks, Neural M* and the neural transition on mnist with
    T_pred 3, every other key of every run (the reconstruction model, mnist_accl, the schedule)
    as the 10,000-step overlay has it, in its own results folder."""
    ten_k = merged_cpu_config("cpu_10k_steps.yaml")
    tpred3 = merged_cpu_config("cpu_10k_steps.yaml", "cpu_10k_tpred3.yaml")
    assert [(r.dataset, r.model, r.seed) for r in runs.runs(tpred3)] == \
        [(r.dataset, r.model, r.seed) for r in runs.runs(ten_k)]
    assert tpred3["results"] not in (ten_k["results"], "results/cpu")
    changed = set()
    for run in runs.runs(tpred3):
        new = runs.run_config(tpred3, run.dataset, run.model, run.seed)
        old = runs.run_config(ten_k, run.dataset, run.model, run.seed)
        if new != old:
            assert (old["model"]["T_pred"], new["model"]["T_pred"]) == (1, 3), run
            new["model"]["T_pred"] = 1
            assert new == old, run
            changed.add((run.dataset, run.model))
    assert changed == {("mnist", m) for m in ("lstsq", "lstsq_multi", "neuralM", "neural_trans")}


def _mutations():
    def unknown_key(c):
        c["datasets"]["mnist"]["iteratons"] = 10

    def wrong_type(c):
        c["train"]["lr"] = "fast"

    def unknown_model(c):
        c["datasets"]["mnist"]["models"]["lstsqq"] = {}

    def unknown_dataset(c):
        c["datasets"]["mnist_big"] = copy.deepcopy(c["datasets"]["mnist"])

    def empty_seeds(c):
        c["seeds"] = []

    def bad_source(c):
        c["data"]["source"] = "gdrive"

    def negative_iterations(c):
        c["datasets"]["3dshapes"]["iterations"] = -1

    return [
        (unknown_key, "datasets.mnist", "iteratons"),
        (wrong_type, "train.lr", "fast"),
        (unknown_model, "datasets.mnist.models", "lstsqq"),
        (unknown_dataset, "datasets", "mnist_big"),
        (empty_seeds, "seeds", "non-empty"),
        (bad_source, "data.source", "gdrive"),
        (negative_iterations, "datasets.3dshapes.iterations", "minimum"),
    ]


@pytest.mark.parametrize("mutate,key,word", _mutations(), ids=lambda v: getattr(v, "__name__", str(v)))
def test_schema_rejects_bad_config_naming_the_key(paper, mutate, key, word):
    config = yaml.safe_load((ROOT / "configs" / "config.yaml").read_text())
    mutate(config)
    with pytest.raises(Exception):
        validate(config, str(SCHEMA))
    message = runs.describe_schema_errors(config, yaml.safe_load(SCHEMA.read_text()))
    assert f"- {key}:" in message and word in message, message


def test_every_schema_key_is_described():
    schema = yaml.safe_load(SCHEMA.read_text())
    jsonschema.Draft202012Validator.check_schema(schema)

    def walk(node, where):
        if isinstance(node, dict):
            for name, sub in node.get("properties", {}).items():
                assert "description" in sub or "$ref" in sub, f"{where}.{name} has no description"
                walk(sub, f"{where}.{name}")
            if node.get("type") == "object" and "properties" in node:
                assert node.get("additionalProperties") is False, f"{where} accepts unknown keys"
            for name, sub in node.get("$defs", {}).items():
                walk(sub, f"$defs.{name}")

    walk(schema, "config")


def test_check_config_names_cross_reference_errors(paper):
    bad = copy.deepcopy(paper)
    bad["datasets"]["mnist"]["lr_decay_iter"] = 60000
    with pytest.raises(ValueError, match=r"datasets\.mnist\.lr_decay_iter"):
        runs.check_config(bad)
    bad = copy.deepcopy(paper)
    bad["models"]["lstsq_multi"]["options"] = {"KK": 8}
    with pytest.raises(ValueError, match=r"KK.*models\.lstsq_multi\.options"):
        runs.check_config(bad)
    bad = copy.deepcopy(paper)
    del bad["models"]["holstsq"]
    with pytest.raises(ValueError, match=r"datasets\.mnist_accl\.models\.holstsq"):
        runs.check_config(bad)
    bad = copy.deepcopy(paper)
    bad["seeds"] = [1, 1]
    with pytest.raises(ValueError, match="seeds"):
        runs.check_config(bad)
    bad = copy.deepcopy(paper)  # capabilities come from the model registry
    bad["models"]["neural_trans"]["evaluations"] = ["prediction", "equivariance"]
    with pytest.raises(ValueError, match=r"'neural_trans' has no transition matrix.*models\.neural_trans\.evaluations"):
        runs.check_config(bad)
    bad = copy.deepcopy(paper)  # sources come from the dataset registry
    bad["data"]["source"] = "official"
    with pytest.raises(ValueError, match=r"'data.source' is 'official' but dataset mnist_bg comes only from"):
        runs.check_config(bad)


def test_schema_names_exactly_the_registered_datasets_and_models():
    """configs/schema.yaml lists the registry's names (add a new one there too)."""
    schema = yaml.safe_load(SCHEMA.read_text())
    props = schema["properties"]
    from msp.data.sources import SOURCES

    assert sorted(props["datasets"]["properties"]) == sorted(registry.dataset_names())
    assert sorted(props["models"]["properties"]) == sorted(registry.model_names())
    assert sorted(schema["$defs"]["dataset"]["properties"]["models"]["properties"]) == sorted(registry.model_names())
    assert props["data"]["properties"]["source"]["enum"] == list(SOURCES)
