"""The repository holds no absolute path of a development machine and no citation of files
that are not in it (the background notes the project was built from). Documentation lives
in docs/; comments and captions point there.

The patterns are assembled from pieces so that this file does not match itself.
"""

import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SLASH, BS = "/", "\\"

# Absolute paths that only exist on one machine. Not flagged: system paths that a script
# uses on purpose (/etc/slurm, /dev/null, /tmp as a scratch location), URLs, and paths
# relative to a data or results root (ROOT/raw/..., results/...).
_NOT_AFTER = r"(?<![\w/.:~-])"  # a path of its own, not the tail of a URL or a longer path
MACHINE_PATHS = [
    re.compile(_NOT_AFTER + SLASH + "work" + SLASH),
    re.compile(_NOT_AFTER + SLASH + "home" + SLASH + r"[A-Za-z0-9_.-]+" + SLASH),
    re.compile(_NOT_AFTER + SLASH + "root" + SLASH),
    re.compile(_NOT_AFTER + SLASH + "Users" + SLASH + r"[A-Za-z0-9_. -]+" + SLASH),
    re.compile(_NOT_AFTER + SLASH + "tmp" + SLASH + "pytest-of-"),
    re.compile(r"\b[A-Z]:" + re.escape(BS) + r"{1,2}(?:Users|Documents and Settings|home|work|projects)\b",
               re.IGNORECASE),
]

# Citations of the background notes ("spec" files) instead of the project's own docs/.
SPEC = "spec"
SPEC_CITATIONS = [
    re.compile(r"\b" + SPEC + r" [a-z-]+\.md\b", re.IGNORECASE),
    re.compile(r"\b" + SPEC + r" \d+(?:\.\d+)*\b", re.IGNORECASE),
    re.compile(r"shared" + SLASH + SPEC, re.IGNORECASE),
    re.compile(r"reference" + "-results" + r"\.md"),
    re.compile(r"\bconfigs" + r"\.md"),
    # a bare name of a background note, e.g. "(method" ".md, model 3)"; docs/method.md is fine
    re.compile(r"(?<![\w/.-])(?:method|datasets|evaluation)" + r"\.md\b"),
    re.compile(r"(?:\b|_)the[_ ]" + SPEC + r"(?:\b|_)", re.IGNORECASE),  # test names like ..._follow_the_<note>
]


def tracked_text_files() -> list[Path]:
    try:
        out = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("not a git checkout: the hygiene checks read `git ls-files`")
    files = []
    for name in out.decode().split("\0"):
        path = ROOT / name
        if not name or not path.is_file():
            continue  # deleted in the work tree, or a submodule
        if b"\0" in path.read_bytes()[:8192]:
            continue  # binary (images, archives)
        files.append(path)
    return files


def shown(path: Path) -> str:
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)


def find(patterns, files) -> list[str]:
    """'file:line: match' for every line of `files` that one of `patterns` matches."""
    hits = []
    for path in files:
        text = path.read_bytes().decode("utf-8", errors="replace")
        for number, line in enumerate(text.splitlines(), start=1):
            for pattern in patterns:
                match = pattern.search(line)
                if match:
                    hits.append(f"{shown(path)}:{number}: {match.group(0)!r} in {line.strip()[:120]!r}")
    return hits


def test_no_absolute_machine_paths():
    hits = find(MACHINE_PATHS, tracked_text_files())
    assert not hits, "absolute machine paths in tracked files (use relative paths or a neutral wording):\n" + "\n".join(hits)


def test_no_citations_of_files_outside_the_repository():
    hits = find(SPEC_CITATIONS, tracked_text_files())
    assert not hits, "citations of files that are not in the repository (point into docs/ instead):\n" + "\n".join(hits)


def test_docs_cited_by_the_code_exist():
    """Every documentation file (docs/ + name + .md) that a tracked file mentions exists."""
    cited = re.compile(r"\bdocs/([A-Za-z0-9_-]+\.md)\b")
    missing = []
    for path in tracked_text_files():
        for number, line in enumerate(path.read_bytes().decode("utf-8", errors="replace").splitlines(), start=1):
            for name in cited.findall(line):
                if not (ROOT / "docs" / name).is_file():
                    missing.append(f"{shown(path)}:{number}: docs/{name}")
    assert not missing, "pointers to documentation files that do not exist:\n" + "\n".join(missing)


def test_cited_doc_sections_exist():
    """A pointer like docs/method.md, 'Least squares' names a heading of that file."""
    cited = re.compile(r"\bdocs/([A-Za-z0-9_-]+\.md),? *\(?[\"']([^\"']+)[\"']")
    missing = []
    for path in tracked_text_files():
        for number, line in enumerate(path.read_bytes().decode("utf-8", errors="replace").splitlines(), start=1):
            for name, section in cited.findall(line):
                doc = ROOT / "docs" / name
                headings = [h.lstrip("#").strip() for h in doc.read_text().splitlines() if h.startswith("#")] \
                    if doc.is_file() else []
                if not any(h.startswith(section) for h in headings):
                    missing.append(f"{shown(path)}:{number}: docs/{name}, '{section}'")
    assert not missing, "pointers to documentation sections that do not exist:\n" + "\n".join(missing)


def test_code_named_in_docs_exists():
    """docs/*.md name modules, functions and files of the code (msp.dynamics.least_squares_transition,
    msp/sbd.py): each must still exist, so the documentation cannot drift silently."""
    import importlib

    missing = []
    for doc in sorted((ROOT / "docs").glob("*.md")):
        text = doc.read_text()
        for dotted in sorted(set(re.findall(r"\b(msp(?:\.[A-Za-z_]\w*)+)", text))):
            parts, obj, rest = dotted.split("."), None, []
            for i in range(len(parts), 0, -1):
                try:
                    obj, rest = importlib.import_module(".".join(parts[:i])), parts[i:]
                    break
                except ImportError:
                    continue
            for attr in rest:
                obj = getattr(obj, attr, None)
            if obj is None:
                missing.append(f"{doc.name}: {dotted}")
        for path in sorted(set(re.findall(r"`((?:msp|rules|configs|tests|bench)/[\w./-]+\.(?:py|smk|yaml|csv|md))`", text))):
            if not (ROOT / path).is_file():
                missing.append(f"{doc.name}: {path}")
    assert not missing, "documentation names code that does not exist (update docs/):\n" + "\n".join(missing)


@pytest.mark.parametrize("line", [
    "data = '" + SLASH + "work" + SLASH + "main/data'",
    "# transcribed from " + SLASH + "home" + SLASH + "alice" + SLASH + "notes.md",
    "cache: " + SLASH + "root" + SLASH + ".cache",
    "open('" + SLASH + "Users" + SLASH + "bob" + SLASH + "x.csv')",
    "path = 'C:" + BS + BS + "Users" + BS + BS + "carol'",
    "log at " + SLASH + "tmp" + SLASH + "pytest-of-dave/x",
])
def test_machine_path_patterns_catch(line, tmp_path):
    sample = tmp_path / "sample.py"
    sample.write_text(line + "\n")
    assert len(find(MACHINE_PATHS, [sample])) == 1


@pytest.mark.parametrize("line", [
    "Path(root) / 'raw' / source",
    "ROOT" + SLASH + "raw" + SLASH + "SOURCE" + SLASH + "FAMILY" + SLASH,
    "https://storage.googleapis.com" + SLASH + "3d-shapes" + SLASH + "3dshapes.h5",
    "https://example.org" + SLASH + "home" + SLASH + "user" + SLASH + "page",
    "configs in " + SLASH + "etc" + SLASH + "slurm",
    "apt_log=" + SLASH + "tmp" + SLASH + "start.log",
    "raise ValueError(f'model:" + BS + "n  - ' + x)",
    "data_root" + SLASH + "prepared" + SLASH,
])
def test_machine_path_patterns_ignore(line, tmp_path):
    sample = tmp_path / "sample.py"
    sample.write_text(line + "\n")
    assert find(MACHINE_PATHS, [sample]) == []


@pytest.mark.parametrize("line, expected", [
    ("# see " + SPEC + " method" + ".md", 1),
    ('"""' + SPEC.capitalize() + " evaluation" + ".md 3.5: ..." + '"""', 1),
    ("(" + SPEC + " 3.1)", 1),
    ("copied from shared" + SLASH + SPEC + SLASH + "x", 1),
    ("numbers of reference" + "-results" + ".md", 1),
    ("grid of configs" + ".md", 1),
    ("frames 2..T (method" + ".md, model 3)", 1),
    ("see docs/method.md, 'lstsq'", 0),
    ("def test_cli_defaults_follow_the_" + SPEC + "(tmp_path):", 1),
    ("# docs/method.md, 'Least squares'", 0),
    ("class DatasetSpec:", 0),
    ("for name, spec in meta.items():", 0),
])
def test_spec_citation_patterns(line, expected, tmp_path):
    sample = tmp_path / "sample.py"
    sample.write_text(line + "\n")
    assert bool(find(SPEC_CITATIONS, [sample])) == bool(expected)
