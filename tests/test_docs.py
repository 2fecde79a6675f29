"""README.md and docs/: generated parts are current, every link and referenced file exists, README stays short."""

from __future__ import annotations

import glob
import importlib.util
import json
import re
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"
DOCS = sorted((REPO / "docs").glob("*.md"))
PAGES = [README, *DOCS]
# Backticked or code-block paths under these roots must exist (runs/, data/ and user paths are examples, not files).
SOURCE_ROOTS = ("src/", "notebooks/", "benchmarks/", "data_scripts/", "tests/", "docs/", ".ci/")
TOP_LEVEL_FILES = ("Makefile", "pyproject.toml", "requirements.txt", "environment.yml", "README.md")


def _load_make_docs():
    spec = importlib.util.spec_from_file_location("make_docs", REPO / "data_scripts" / "make_docs.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("make_docs", module)
    spec.loader.exec_module(module)
    return module


make_docs = _load_make_docs()


def _rel(path: Path) -> str:
    return str(path.relative_to(REPO))


# ------------------------------------------------------------------------------------------------ generated parts
@pytest.mark.parametrize("name", ["README.md", "docs/api.md", "docs/benchmarks.md"])
def test_generated_file_matches_generator(name: str) -> None:
    path = REPO / name
    expected = make_docs.expected_files()[path]()
    assert path.is_file(), f"{name} is missing: run `python data_scripts/make_docs.py`"
    assert path.read_text(encoding="utf-8") == expected, (
        f"{name} differs from what data_scripts/make_docs.py generates from the code and "
        f"benchmarks/results/*.json: run `python data_scripts/make_docs.py` and commit the result"
    )


def test_every_committed_result_names_its_machine() -> None:
    results = make_docs.load_results()
    assert "demo" in results, "benchmarks/results/demo.json is missing: `make demo`, then make_docs.py --from-run"
    for name, result in results.items():
        machine = result.get("machine")
        assert isinstance(machine, str) and "CPU" in machine and "\n" not in machine, (
            f"benchmarks/results/{name}.json: 'machine' must be one line naming the CPU/GPU, got {machine!r}"
        )


def test_readme_results_table_shows_the_demo_numbers() -> None:
    demo = make_docs.load_results()["demo"]
    section = make_docs.readme_results({"demo": demo})
    for row in demo["comparison"]:
        assert f"{row['knn_accuracy']:.3f}" in section, f"kNN of {row['name']} missing from the README table"
    assert "load avg" not in section, "README shows what the machine is, not how busy it was"


def test_readme_figure_comes_from_a_demo_run() -> None:
    figure = make_docs.DEMO_FIGURE
    assert figure.is_file(), "docs/images/demo_compare_umap.png: `make demo`, then make_docs.py --from-run runs/demo"
    assert figure.stat().st_size < 400_000, "keep the README figure small (make_docs.py downsizes it)"
    assert _rel(figure) in README.read_text(encoding="utf-8")


# ------------------------------------------------------------------------------------------------ generator pieces
def test_replace_between_markers_keeps_the_rest() -> None:
    text = "a\n<!-- make_docs: x -->\nold\n<!-- /make_docs: x -->\nb\n"
    assert make_docs.replace_between_markers(text, "x", "new") == (
        "a\n<!-- make_docs: x -->\nnew\n<!-- /make_docs: x -->\nb\n"
    )
    with pytest.raises(SystemExit, match="expected one"):
        make_docs.replace_between_markers("no markers", "x", "new")


def test_escape_markdown_leaves_code_spans_alone() -> None:
    assert make_docs.escape_markdown("root/<class> `a<b>` ``c<d>``") == "root/&lt;class&gt; `a<b>` ``c<d>``"


def test_readme_results_from_a_synthetic_demo() -> None:
    demo = {
        "machine": "2026-01-01 00:00 UTC | Some CPU | 2 logical CPUs (2 usable) | load avg 1.00 | GPU: none",
        "images": 3000,
        "classes": 10,
        "total_seconds": 125.0,
        "comparison": [
            {"name": "imagenet", "knn_accuracy": 0.5, "linear_probe_accuracy": 0.4},
            {"name": "ssl", "knn_accuracy": 0.75, "linear_probe_accuracy": 0.7},
        ],
    }
    section = make_docs.readme_results({"demo": demo})
    rows = [line for line in section.splitlines() if line.startswith("| ") and "0." in line]
    assert "0.750" in rows[0] and "0.500" in rows[1], "best kNN first"
    assert "2 min 05 s" in section and "Some CPU" in section and "load avg" not in section


def test_github_anchor() -> None:
    assert make_docs.github_anchor("The demo (`make demo`)") == "the-demo-make-demo"
    assert make_docs.github_anchor("`embedlab.datasets`") == "embedlabdatasets"


# ------------------------------------------------------------------------------------------------ README rules
def test_readme_is_short_and_keeps_the_ci_command() -> None:
    text = README.read_text(encoding="utf-8")
    assert len(text.splitlines()) <= 200, "README.md is for a five-minute read: move reference material to docs/"
    assert "make test" in text and "make demo" in text
    assert "make test" in (REPO / ".ci" / "run").read_text(encoding="utf-8"), "CI runs the README's test command"


@pytest.mark.parametrize(
    "phrase",
    ["load average", "load avg", "other jobs", "busy machine", "idle machine", "measured later", "earlier run"],
)
def test_readme_is_not_a_diary(phrase: str) -> None:
    assert phrase not in README.read_text(encoding="utf-8").lower(), f"README.md should not say {phrase!r}"


# ------------------------------------------------------------------------------------------------ links and files
FENCE = re.compile(r"^```.*?^```", re.MULTILINE | re.DOTALL)
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")
HTML_REF = re.compile(r"(?:src|href)=\"([^\"]+)\"")
CODE_SPAN = re.compile(r"(`+)(.+?)\1", re.DOTALL)


def _headings(path: Path) -> set[str]:
    """GitHub anchors of a page's headings (duplicates get -1, -2, ...)."""
    anchors: set[str] = set()
    for line in FENCE.sub("", path.read_text(encoding="utf-8")).splitlines():
        if re.match(r"^#{1,6} ", line):
            base = make_docs.github_anchor(line.lstrip("#").strip())
            anchor, n = base, 0
            while anchor in anchors:
                n += 1
                anchor = f"{base}-{n}"
            anchors.add(anchor)
    return anchors


def _links(page: Path) -> list[str]:
    text = FENCE.sub("", page.read_text(encoding="utf-8"))
    text = CODE_SPAN.sub("", text)
    return LINK.findall(text) + HTML_REF.findall(text)


def _mentioned_paths(page: Path) -> list[str]:
    """Repository paths written in code spans and code blocks (relative to the repository root)."""
    text = page.read_text(encoding="utf-8")
    chunks = [m.group(2) for m in CODE_SPAN.finditer(FENCE.sub("", text))] + FENCE.findall(text)
    found = []
    for chunk in chunks:
        for token in re.split(r"[\s=(]+", chunk):
            token = token.strip("`'\",;:)").removeprefix("./")
            if re.search(r"[<>{}$]", token) or "..." in token:
                continue  # a placeholder such as benchmarks/results/<name>.json
            if token.startswith(SOURCE_ROOTS) or token in TOP_LEVEL_FILES:
                found.append(token)
    return found


@pytest.mark.parametrize("page", PAGES, ids=[_rel(p) for p in PAGES])
def test_relative_links_resolve(page: Path) -> None:
    broken = []
    for target in _links(page):
        if re.match(r"^[a-z]+:", target):
            continue  # https:, mailto: ...: not checked offline
        path_part, _, anchor = target.partition("#")
        resolved = (page.parent / path_part).resolve() if path_part else page
        if not resolved.exists():
            broken.append(f"{target} (no such file)")
        elif anchor and resolved.suffix == ".md" and anchor not in _headings(resolved):
            broken.append(f"{target} (no heading with anchor #{anchor})")
    assert not broken, f"{_rel(page)}: broken links: {broken}"


@pytest.mark.parametrize("page", PAGES, ids=[_rel(p) for p in PAGES])
def test_referenced_files_exist(page: Path) -> None:
    missing = [p for p in _mentioned_paths(page) if not glob.glob(str(REPO / p))]
    assert not missing, f"{_rel(page)} names files that do not exist: {missing}"


TEACHER_PAGES = {"docs/answers.md"}  # the answer key: linked from docs/teaching.md, not from README or the notebooks


def test_every_docs_page_is_linked_from_readme() -> None:
    linked = {t.partition("#")[0] for t in _links(README)}
    unlinked = [_rel(p) for p in DOCS if _rel(p) not in linked and _rel(p) not in TEACHER_PAGES]
    assert not unlinked, f"docs pages not linked from README.md: {unlinked}"
    teaching = {t.partition("#")[0] for t in _links(REPO / "docs" / "teaching.md")}
    assert {page.removeprefix("docs/") for page in TEACHER_PAGES} <= teaching, "teaching.md links the answer key"
    for notebook in (REPO / "notebooks").glob("*.ipynb"):
        assert "answers.md" not in notebook.read_text(encoding="utf-8"), f"{notebook.name} links the answer key"


def test_demo_result_has_comparison_rows() -> None:
    data = json.loads((REPO / "benchmarks" / "results" / "demo.json").read_text(encoding="utf-8"))
    assert data["comparison"], "demo.json holds no comparison rows"
    assert {"name", "knn_accuracy"} <= set(data["comparison"][0]), "demo.json rows need name and knn_accuracy"


def test_reliability_page_covers_every_command() -> None:
    """docs/reliability.md says what is guaranteed per command: every `embedlab` command has a row there."""
    import argparse

    from embedlab.cli import build_parser

    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    text = (REPO / "docs" / "reliability.md").read_text(encoding="utf-8")
    section = text.split("## Per command and per notebook", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("| `")]
    missing = [name for name in sub.choices if not any(f"`{name}`" in row.split(" | ")[0] for row in rows)]
    assert not missing, f"docs/reliability.md has no row for {missing}"
