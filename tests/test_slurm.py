"""The workflow on a real SLURM cluster, submitted with the project's profile.

Needs the one-node cluster of tests/cluster/start_slurm.sh (root; seconds to start):

    sudo bash tests/cluster/start_slurm.sh
    python -m pytest -q tests/test_slurm.py
    sudo bash tests/cluster/stop_slurm.sh

Without a cluster these tests skip; with MSP_REQUIRE_SLURM=1 (set by .ci/run) they fail
instead, so CI cannot pass by silently skipping them.

The cluster tests run
    snakemake --profile profiles/slurm --profile tests/cluster/profile
the project's profile as users run it, plus the test cluster's settings (no accounting
database, short polling, small limits), which replace the same top-level keys.
"""

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
SLURM_PROFILE = REPO / "profiles" / "slurm"
TEST_PROFILE = REPO / "tests" / "cluster" / "profile"
FAKE_GPU = Path("/dev/fakegpu0")  # made by start_slurm.sh when mknod is allowed
SNAKEMAKE_TIMEOUT_S = 300

pytestmark = pytest.mark.slurm


def cluster_problem() -> str | None:
    """Why the test cluster cannot take jobs now, or None when its node is ready."""
    start = "start it with: sudo bash tests/cluster/start_slurm.sh"
    if shutil.which("sinfo") is None:
        return f"SLURM is not installed here ({start})"
    try:
        answer = subprocess.run(
            ["sinfo", "--noheader", "--nodes=localhost", "--format=%T"],
            capture_output=True, text=True, timeout=5,
        )
    except subprocess.TimeoutExpired:
        return f"slurmctld did not answer sinfo within 5 s ({start})"
    if answer.returncode != 0:
        return f"slurmctld does not answer: {answer.stderr.strip()} ({start})"
    state = answer.stdout.strip()
    if not state.startswith(("idle", "mixed")):
        return f"the test node 'localhost' is '{state or 'unknown'}', not idle ({start})"
    return None


@pytest.fixture(scope="module")
def slurm_cluster():
    problem = cluster_problem()
    if problem is None:
        return
    if os.environ.get("MSP_REQUIRE_SLURM") == "1":
        pytest.fail(f"MSP_REQUIRE_SLURM=1 but the SLURM test cluster is not up: {problem}")
    pytest.skip(problem)


def slurm_jobs_in(workdir: Path) -> list[dict[str, str]]:
    """SLURM's records of the jobs submitted from `workdir`, finished ones included.

    Without an accounting database slurmctld keeps a finished job for MinJobAge seconds
    (300 on the test cluster), long enough to inspect it after snakemake returns.
    """
    listing = subprocess.run(
        ["scontrol", "--oneliner", "show", "job"],
        capture_output=True, text=True, timeout=30, check=True,
    ).stdout
    jobs = []
    for line in listing.splitlines():
        record = dict(re.findall(r"(\w+)=(\S*)", line))
        if record.get("WorkDir") == str(workdir):
            jobs.append(record)
    return jobs


def jobs_of_rule(jobs: list[dict[str, str]], rule: str) -> list[dict[str, str]]:
    # The plugin labels every job with the comment "rule_<name>[_wildcards_...]".
    pattern = re.compile(rf"rule_{re.escape(rule)}(_wildcards_.*)?$")
    return [job for job in jobs if pattern.match(job.get("Comment", ""))]


def asks_for_gpu(job: dict[str, str]) -> bool:
    # `sbatch --gpus=1` is recorded as TresPerJob=gres:gpu:1 (gres/gpu:1 in newer SLURM).
    return re.search(r"gres[:/]gpu(:\w+)?[:=]1\b", job.get("TresPerJob", "")) is not None


def run_snakemake(workdir: Path, *extra: str) -> subprocess.CompletedProcess:
    """Submit the workflow in `workdir` to SLURM with the project's profile."""
    # Neither a user's default profile nor an enclosing SLURM job may leak into the run.
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("SNAKEMAKE_PROFILE", "SLURM_"))}
    command = [
        sys.executable, "-m", "snakemake",
        "--profile", str(SLURM_PROFILE), "--profile", str(TEST_PROFILE),
        *extra,
    ]
    try:
        result = subprocess.run(
            command, cwd=workdir, env=env, capture_output=True, text=True,
            timeout=SNAKEMAKE_TIMEOUT_S,
        )
    except subprocess.TimeoutExpired as err:
        # Do not leave jobs of a hung run on the cluster for the next test.
        ids = [job["JobId"] for job in slurm_jobs_in(workdir)]
        if ids:
            subprocess.run(["scancel", *ids], timeout=30)
        stderr = err.stderr or b""
        stderr = stderr.decode(errors="replace") if isinstance(stderr, bytes) else stderr
        pytest.fail(f"snakemake on SLURM did not finish within {SNAKEMAKE_TIMEOUT_S} s:\n"
                    f"{stderr[-4000:]}")
    if result.returncode != 0:
        slurm_logs = sorted((workdir / ".snakemake" / "slurm_logs").rglob("*.log"))
        logs = "\n".join(f"--- {p}\n{p.read_text()[-2000:]}" for p in slurm_logs)
        pytest.fail(f"snakemake exited with {result.returncode}\n{' '.join(command)}\n"
                    f"{result.stderr[-6000:]}\n{logs}")
    # Repeated --profile options merge only in recent snakemake (9.27 does); an older one
    # would silently use the last profile alone.
    used = next((line for line in result.stderr.splitlines()
                 if line.startswith("Using profile")), "")
    assert str(SLURM_PROFILE) in used and str(TEST_PROFILE) in used, (
        f"snakemake did not merge both profiles (needs a snakemake that accepts repeated "
        f"--profile options): {used!r}")
    return result


# A workflow shaped like the project's: a GPU training rule, a CPU evaluation rule and a
# local rule, each writing down where it ran.
TINY_WORKFLOW = r"""
ENV = "SLURM_JOB_ID=${{SLURM_JOB_ID:-none}} CUDA_VISIBLE_DEVICES=${{CUDA_VISIBLE_DEVICES:-none}}"


rule all:
    input:
        "summary.txt",


rule train:
    output:
        "train.env",
    threads: 1
    resources:
        gpu=1,
        mem_mb=300,
        runtime=5,
    shell:
        f"echo {ENV} > {{output}}"


rule evaluate:
    input:
        "train.env",
    output:
        "evaluate.env",
    shell:
        f"echo {ENV} > {{output}}"


rule summarize:
    input:
        "evaluate.env",
    output:
        "summary.txt",
    localrule: True
    shell:
        f"echo {ENV} > {{output}}"
"""


def read_env(path: Path) -> dict[str, str]:
    return dict(item.split("=", 1) for item in path.read_text().split())


def test_profile_submits_gpu_training_and_cpu_jobs_to_slurm(slurm_cluster, tmp_path):
    (tmp_path / "Snakefile").write_text(TINY_WORKFLOW)
    run_snakemake(tmp_path)

    train = read_env(tmp_path / "train.env")
    evaluate = read_env(tmp_path / "evaluate.env")
    summarize = read_env(tmp_path / "summary.txt")
    assert train["SLURM_JOB_ID"].isdigit() and evaluate["SLURM_JOB_ID"].isdigit()
    assert summarize["SLURM_JOB_ID"] == "none", "the local rule ran as a SLURM job"
    if FAKE_GPU.is_char_device():
        # SLURM bound the node's (fake) GPU to the training job, and only to it.
        assert train["CUDA_VISIBLE_DEVICES"] == "0"
        assert evaluate["CUDA_VISIBLE_DEVICES"] == "none"

    jobs = {job["JobId"]: job for job in slurm_jobs_in(tmp_path)}
    assert set(jobs) == {train["SLURM_JOB_ID"], evaluate["SLURM_JOB_ID"]}
    train_job, evaluate_job = jobs[train["SLURM_JOB_ID"]], jobs[evaluate["SLURM_JOB_ID"]]
    assert train_job["JobState"] == evaluate_job["JobState"] == "COMPLETED"
    assert jobs_of_rule([train_job], "train") and jobs_of_rule([evaluate_job], "evaluate")
    assert asks_for_gpu(train_job), train_job.get("TresPerJob")
    assert not asks_for_gpu(evaluate_job), evaluate_job.get("TresPerJob")
    # The rule's own runtime wins; a rule without one gets the profile's default.
    assert train_job["TimeLimit"] == "00:05:00"
    assert evaluate_job["TimeLimit"] == "00:10:00"
    assert train_job["Partition"] == evaluate_job["Partition"] == "test"


def tiny_demo_config(tmp_path: Path) -> Path:
    """configs/demo.yaml cut to one short MSP run on MNIST, trained on a (fake) GPU.

    One training, one evaluation, the tables and figures: every kind of job of the
    workflow reaches SLURM (or stays local), in about a minute on the test node.
    """
    config = yaml.safe_load((REPO / "configs" / "demo.yaml").read_text())
    dataset, model = "mnist", "lstsq"
    config["seeds"] = config["seeds"][:1]
    config["datasets"] = {dataset: {**config["datasets"][dataset], "iterations": 20,
                                    "lr_decay_iter": 16, "models": {model: {}}}}
    config["models"] = {model: {**config["models"][model], "evaluations": ["prediction"]}}
    small = {"threads": 1, "mem_mb": 1000, "runtime": 10}
    # The GPU is fake: SLURM binds it (CUDA_VISIBLE_DEVICES) but training runs on the CPU.
    config["train"].update(checkpoint_every=10, log_every=5, device="cpu",
                           resources={**small, "gpu": 1})
    config["evaluation"].update(device="cpu", resources={**small, "gpu": 0})
    path = tmp_path / "slurm_demo.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def test_demo_workflow_runs_on_slurm(slurm_cluster, tmp_path):
    config = tiny_demo_config(tmp_path)
    # Outputs go to tmp_path; the workflow, its rules and profiles/default come from REPO.
    run_snakemake(tmp_path, "--snakefile", str(REPO / "Snakefile"), "--replace-workflow-config",
                  "--configfile", str(config))

    jobs = slurm_jobs_in(tmp_path)
    trainings = jobs_of_rule(jobs, "train")
    assert len(trainings) == 1, f"jobs that reached SLURM: {[j.get('Comment') for j in jobs]}"
    assert asks_for_gpu(trainings[0]), trainings[0].get("TresPerJob")
    evaluations = jobs_of_rule(jobs, "evaluate_prediction")
    assert len(evaluations) == 1 and not asks_for_gpu(evaluations[0])
    assert all(job["JobState"] == "COMPLETED" for job in jobs)
    for local_rule in ("download", "prepare", "run_config", "gather", "summary"):
        assert not jobs_of_rule(jobs, local_rule), f"local rule {local_rule} went to SLURM"
    assert list(tmp_path.glob("results/**/report.md")), "the workflow wrote no report.md"


def test_workflow_profile_leaves_cluster_settings_to_the_slurm_profile():
    """profiles/default is read after profiles/slurm and replaces the keys they share.

    A `resources: gpu=N` there caps the number of GPU jobs on the whole cluster at N
    (snakemake counts the global resource for SLURM jobs too), and other shared keys
    silently replace the cluster settings.
    """
    workflow_profile = REPO / "profiles" / "default" / "config.yaml"
    if not workflow_profile.exists():
        pytest.skip("no workflow profile profiles/default/config.yaml")
    local = yaml.safe_load(workflow_profile.read_text()) or {}
    cluster = yaml.safe_load((SLURM_PROFILE / "config.yaml").read_text())
    assert "resources" not in local, (
        "profiles/default sets `resources`, which would limit the jobs of "
        "`snakemake --profile profiles/slurm` across the whole cluster; pass "
        "`--resources gpu=1` on the local command line instead")
    clashes = {key: (cluster[key], local[key]) for key in cluster.keys() & local.keys()
               if cluster[key] != local[key]}
    assert not clashes, f"profiles/default overrides profiles/slurm (slurm, default): {clashes}"
