"""The teacher's pages agree with the committed run and with themselves (issue "The course holds together")."""

from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DOCS = REPO / "docs"


def _text(name: str) -> str:
    return (DOCS / name).read_text(encoding="utf-8")


def test_teaching_plan_times_are_the_timings_table() -> None:
    text = _text("teaching.md")
    plan = text.split("## The plan", 1)[1].split("## ", 1)[0]
    timings = text.split("<!-- make_docs: timings -->", 1)[1].split("<!-- /make_docs: timings -->", 1)[0]
    measured = dict(re.findall(r"^\| `(\d\d_\w+)` \| ([^|]+?) \|", timings, flags=re.M))
    planned = {
        m.group(1): m.group(2) for m in re.finditer(r"^\| [\d–]+ \| `(\d\d_\w+)` \| [^|]+ \| ([^|]+?) \|", plan, re.M)
    }
    shared = set(measured) & set(planned)
    assert len(shared) == 6, (measured, planned)
    assert {n: planned[n] for n in shared} == {n: measured[n] for n in shared}


def test_committed_numbers_say_that_runs_differ() -> None:
    assert "±0.5 points" in _text("teaching.md")
    assert "±0.5 points" in _text("answers.md")


def test_no_low_loss_collapse_for_a_frozen_teacher() -> None:
    for name in ("glossary.md", "answers.md", "teaching.md"):
        text = " ".join(_text(name).split())
        assert "(BYOL, distillation)" not in text and "BYOL and distillation have no negatives" not in text, name
    assert "cannot collapse with a low loss" in " ".join(_text("glossary.md").split())


def test_answers_quote_only_sourced_numbers() -> None:
    text = " ".join(_text("answers.md").split())
    for slip in ("0.652", "3% with colour jitter", "0.74 → 0.60"):
        assert slip not in text, slip
    assert "8% with colour jitter" in text


RESULTS = REPO / "benchmarks" / "results"
GENERATED = re.compile(r"<!-- make_docs: (\S+) -->.*?<!-- /make_docs: \1 -->", re.S)


def _committed_accuracies() -> set[str]:
    """Every number of the committed result files, as a page would quote it (three decimals)."""
    import json

    found: set[str] = set()

    def walk(value: object) -> None:
        if isinstance(value, dict):
            [walk(v) for v in value.values()]
        elif isinstance(value, list):
            [walk(v) for v in value]
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            found.add(f"{value:.3f}")
        elif isinstance(value, str):  # headlines and verdicts quote numbers too
            found.update(f"{float(m):.3f}" for m in re.findall(r"\d\.\d{3,4}", value))

    for path in RESULTS.glob("*.json"):
        walk(json.loads(path.read_text(encoding="utf-8")))
    return found


def test_every_quoted_accuracy_is_a_committed_number() -> None:
    committed = _committed_accuracies()
    for name in ("answers.md", "teaching.md"):
        text = GENERATED.sub("", _text(name))  # generated blocks are checked by test_docs
        quoted = re.findall(r"(?<![\d.])[01]\.\d{3}(?!\d)", text)
        assert quoted and not [q for q in quoted if q not in committed], name


def test_one_cost_ratio_computed_from_the_committed_run() -> None:
    import json

    demo = {r["name"]: r for r in json.loads((RESULTS / "demo.json").read_text(encoding="utf-8"))["comparison"]}
    speed = {name: float(row["images_per_second"]) for name, row in demo.items()}
    ratio = f"{speed['ssl'] / speed['imagenet']:.1f}×"  # the trained model against the 112 px network it ties
    readme = " ".join((REPO / "README.md").read_text(encoding="utf-8").split())
    teaching, answers = (" ".join(_text(n).split()) for n in ("teaching.md", "answers.md"))
    assert f"ties the 112 px network at {ratio} its embedding speed" in readme
    assert f"ties it at {ratio} its embedding speed ({speed['ssl']:.0f} against {speed['imagenet']:.0f}" in teaching
    assert f"{speed['ssl']:.0f} images/s against {speed['imagenet']:.0f} for the 112 px network it ties, {ratio}" in (
        answers
    )
    pages = [readme, teaching, answers, *(p.read_text(encoding="utf-8") for p in (REPO / "notebooks").glob("*.ipynb"))]
    for words in ("a quarter of its embedding cost", "a third of its embedding cost", "about 3×"):
        assert not any(words in " ".join(page.split()) for page in pages), words
