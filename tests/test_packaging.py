"""The package stands alone: every import declared, the conda env and constraints.txt in step
with pyproject.toml, the paper defaults shipped inside the package, a non-editable install
that runs from another directory, and workflow jobs that need no installed `msp`."""

import ast
import importlib.metadata
import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


def name_of(requirement: str) -> str:
    """'snakemake>=9,<10' -> 'snakemake' (normalized distribution name)."""
    return re.match(r"[A-Za-z0-9_.-]+", requirement)[0].lower().replace("_", "-")


def test_paper_defaults_shipped_with_the_package_equal_the_workflow_config():
    shipped = (ROOT / "msp" / "paper_config.yaml").read_text()
    assert shipped == (ROOT / "configs" / "config.yaml").read_text(), (
        "msp/paper_config.yaml must be a copy of configs/config.yaml: cp configs/config.yaml msp/paper_config.yaml")


def test_conda_env_lists_exactly_the_dependencies_of_pyproject():
    env = yaml.safe_load((ROOT / "envs" / "msp.yaml").read_text())
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    assert pip == PROJECT["dependencies"]
    assert "python" + PROJECT["requires-python"] in env["dependencies"]


def test_every_third_party_import_is_a_declared_dependency():
    sources = list((ROOT / "msp").rglob("*.py")) + list((ROOT / "rules").glob("*.smk"))
    modules = set()
    for path in sources:
        text = path.read_text()
        if path.suffix == ".smk":  # only its Python import lines parse as Python
            text = "\n".join(line for line in text.splitlines() if line.startswith(("import ", "from ")))
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, ast.Import):
                modules |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                modules.add(node.module.split(".")[0])
    third_party = sorted(modules - set(sys.stdlib_module_names) - {"msp"})
    distributions = importlib.metadata.packages_distributions()
    declared = {name_of(r) for r in PROJECT["dependencies"]}
    undeclared = {m: distributions.get(m) for m in third_party
                  if not {name_of(d) for d in distributions.get(m, [m])} & declared}
    assert not undeclared, f"imported but not in pyproject.toml dependencies: {undeclared}"


def test_constraints_pin_every_declared_dependency():
    lines = [ln.split("#")[0].strip() for ln in (ROOT / "constraints.txt").read_text().splitlines()]
    pins = dict(ln.split("==") for ln in lines if ln)
    wanted = PROJECT["dependencies"] + [r for extra in PROJECT["optional-dependencies"].values() for r in extra]
    assert {name_of(r) for r in wanted} == {name_of(p) for p in pins}
    assert all(re.fullmatch(r"[0-9][0-9A-Za-z.]*", v) for v in pins.values()), pins


def clean_env(**extra):
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    return {**env, **extra}


@pytest.mark.slow
def test_non_editable_install_runs_from_another_directory(tmp_path):
    src = tmp_path / "src"  # only what a wheel is built from: no configs/, no rules/
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, src / name)
    shutil.copytree(ROOT / "msp", src / "msp", ignore=shutil.ignore_patterns("__pycache__"))
    site = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation",
                    "--target", str(site), str(src)], cwd=tmp_path, check=True, capture_output=True, text=True)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = clean_env(PYTHONPATH=str(site))

    def msp(*args):
        return subprocess.run([sys.executable, "-m", "msp", *args], cwd=elsewhere, env=env,
                              capture_output=True, text=True, timeout=300)

    assert msp("--help").returncode == 0
    probe = ("import msp, msp.runs, msp.tables; print(msp.__file__); "
             "print(msp.runs.load_workflow_config()['seeds'], msp.tables.REFERENCE_CSV.is_file())")
    out = subprocess.run([sys.executable, "-c", probe], cwd=elsewhere, env=env, capture_output=True, text=True,
                         check=True).stdout.split("\n")
    assert out[0].startswith(str(site)) and out[1] == "[1, 2, 3] True", out
    done = msp("data", "download", "--dataset", "mnist", "--source", "embedded", "--root", "data")
    assert done.returncode == 0 and (elsewhere / "data/raw/embedded/mnist/manifest.json").is_file(), done.stderr
    missing = msp("bench", "--quick", "--workflow-config", "nowhere.yaml")  # never silently the paper's
    assert missing.returncode == 1 and "nowhere.yaml does not exist" in missing.stderr, missing.stderr


@pytest.mark.slow
def test_a_job_runs_the_workflows_own_msp_without_an_installed_one(tmp_path):
    """What `--sdm conda` relies on, without conda (not available here): a job's command runs
    with `python` of an environment holding the dependencies and the workflow folder on
    PYTHONPATH. The environment is a venv with --system-site-packages (the dependencies cannot
    be installed offline into an isolated one), so it also sees this machine's editable `msp`;
    the test shows that jobs import the *workflow copy's* package instead, and that they do not
    need an `msp` script on PATH."""
    workflow = tmp_path / "workflow"
    workflow.mkdir()
    shutil.copy(ROOT / "Snakefile", workflow / "Snakefile")
    for name in ("rules", "configs", "envs", "msp", "profiles"):
        shutil.copytree(ROOT / name, workflow / name, ignore=shutil.ignore_patterns("__pycache__"))
    with open(workflow / "msp" / "__init__.py", "a") as f:  # a marker: which msp did a process import?
        f.write("\nimport os as _os, sys as _sys\nif _os.environ.get('MSP_IMPORT_LOG'):\n"
                "    open(_os.environ['MSP_IMPORT_LOG'], 'a').write(f'{_sys.argv[0]} {__file__}\\n')\n")
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", "--without-pip", str(venv)], check=True)
    log = tmp_path / "imports.log"
    env = clean_env(PATH=f"{venv / 'bin'}:/usr/bin:/bin", MSP_IMPORT_LOG=str(log))
    work = tmp_path / "work"
    result = subprocess.run(
        [str(venv / "bin" / "python"), "-m", "snakemake", "-s", str(workflow / "Snakefile"), "--directory", str(work),
         "--replace-workflow-config", "--configfile", str(workflow / "configs" / "demo.yaml"), "--cores", "1",
         "data/raw/embedded/mnist/manifest.json"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert (work / "data/raw/embedded/mnist/manifest.json").is_file()
    jobs = [line.split(" ", 1)[1] for line in log.read_text().splitlines() if line.startswith("-m ")]
    assert jobs and all(path == str(workflow / "msp" / "__init__.py") for path in jobs), log.read_text()


def test_test_files_never_import_each_other():
    """Shared fixtures live in tests/conftest.py, shared helpers in plain modules (toys.py, ...)."""
    offenders = [f"{path.name}: {line.strip()}" for path in sorted((ROOT / "tests").glob("*.py"))
                 for line in path.read_text().splitlines()
                 if re.match(r"\s*(from|import) test_\w+", line)]
    assert not offenders, offenders
