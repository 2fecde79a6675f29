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
