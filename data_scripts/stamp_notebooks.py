#!/usr/bin/env python
"""Stamp the same Colab badge, setup cell and "next" links into every notebook and strip outputs.

    python data_scripts/stamp_notebooks.py notebooks/*.ipynb          # rewrite in place
    python data_scripts/stamp_notebooks.py --check notebooks/*.ipynb  # exit 1 if any notebook would change

The repository's address comes from one place, `[project.urls] Repository` in pyproject.toml (a fork changes that
line and reruns this script). The badge cell (tag `stamp-badge`) is the first cell; the setup cell (tag
`stamp-setup`) follows the title cell; every link to another notebook in a markdown cell that starts with
"**Next:**" gets an "open in Colab" companion (the relative link works in Jupyter, the Colab one in Colab).
Outputs, execution counts and editor metadata are removed so git only ever holds clean notebooks. Every assignment
of the `parameters` cell gets Colab's form annotation (`# @param ...`, a comment papermill and Python ignore), chosen
from the value and from what embedlab accepts for that name (colab_form), so Colab shows the cell as a form.
It also records every notebook's `parameters` cell values in src/embedlab/course/presets/notebook_defaults.json, so
a preset can tell which values the learner changed (params.check); --check fails when that file is out of date.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path
from typing import Any

import tomllib

PYPROJECT = Path(__file__).resolve().parents[1] / "pyproject.toml"
DEFAULTS_JSON = PYPROJECT.parent / "src" / "embedlab" / "course" / "presets" / "notebook_defaults.json"
BADGE_TAG = "stamp-badge"
SETUP_TAG = "stamp-setup"
NEXT_PREFIX = "**Next:**"
KEEP_CELL_METADATA = ("tags", "nbmake")
KERNELSPEC = {"display_name": "Python 3", "language": "python", "name": "python3"}
COLAB_GPU = {"accelerator": "GPU", "colab": {"gpuType": "T4", "provenance": []}}  # a badge opens a T4 runtime
_NOTEBOOK_LINK = re.compile(r"\[([^\]]+)\]\((\d\d_[\w.-]+\.ipynb)\)")
_COLAB_COMPANION = re.compile(r" \(\[open in Colab\]\([^)]*\)\)")
_ASSIGNMENT = re.compile(r"^(?P<code>[A-Za-z_]\w* = .*?)(?:  # (?P<comment>.*))?$")
_FORM = re.compile(r"^@param (?:\{[^}]*\}|\[[^\]]*\](?: \{allow-input: true\})?)(?:  # (?P<rest>.*))?$")
MAX_LINE = 120  # ruff's line length (pyproject.toml), which lints the notebooks too


def repository_url(pyproject: Path = PYPROJECT) -> str:
    """The public repository address: `[project.urls] Repository` of pyproject.toml, without a trailing slash."""
    with open(pyproject, "rb") as handle:
        url = tomllib.load(handle)["project"]["urls"]["Repository"]
    if not re.fullmatch(r"https://github\.com/[\w.-]+/[\w.-]+/?", url):
        raise SystemExit(f"{pyproject}: [project.urls] Repository must be https://github.com/<owner>/<name>, got {url}")
    return url.rstrip("/")


def colab_url(name: str, repo_url: str | None = None) -> str:
    """Open notebooks/<name> of the repository's main branch in Colab."""
    slug = (repo_url or repository_url()).removeprefix("https://github.com/")
    return f"https://colab.research.google.com/github/{slug}/blob/main/notebooks/{name}"


def badge_source(name: str, repo_url: str | None = None) -> str:
    """Markdown of the Open-in-Colab badge for notebooks/<name>."""
    return (
        f'<a href="{colab_url(name, repo_url)}" target="_parent"><img '
        f'src="https://colab.research.google.com/assets/colab-badge.svg" alt="Open In Colab"/></a>'
    )


def release_tag(pyproject: Path = PYPROJECT) -> str:
    """The tag of the release the notebooks are stamped for (`v` + pyproject's version): a class installs one code."""
    with open(pyproject, "rb") as handle:
        return "v" + tomllib.load(handle)["project"]["version"]


def install_source(repo_url: str | None = None) -> str:
    """Where the setup cell installs embedlab from: the repository at the stamped release's tag."""
    return f"git+{repo_url or repository_url()}@{release_tag()}"


def install_line(repo_url: str | None = None) -> str:
    """The setup cell's Colab install: embedlab alone (no extras), so Colab's torch and ipykernel stay as they are;
    pinned to the release tag, so students of one class get the same code whatever day they open it."""
    return f'%pip install --quiet "embedlab @ {install_source(repo_url)}"'


def setup_source(repo_url: str | None = None) -> str:
    """The setup cell: install on Colab only, then print versions (locally `make venv` already installed it)."""
    return f"""\
# Setup: on Colab install embedlab (about a minute); locally `make venv` already did. Then print versions.
import sys

if "google.colab" in sys.modules:
    {install_line(repo_url)}
import embedlab

embedlab.show_versions()"""


def next_links(text: str, repo_url: str | None = None) -> str:
    """Give every relative link to a notebook an "(open in Colab)" companion link (idempotent)."""
    text = _COLAB_COMPANION.sub("", text)
    return _NOTEBOOK_LINK.sub(lambda m: f"{m.group(0)} ([open in Colab]({colab_url(m.group(2), repo_url)}))", text)


def _lines(text: str) -> list[str]:
    """Source as nbformat's list of lines (each but the last ends with a newline)."""
    parts = text.split("\n")
    return [p + "\n" for p in parts[:-1]] + ([parts[-1]] if parts[-1] else [])


def _has_tag(cell: dict[str, Any], tag: str) -> bool:
    return tag in cell.get("metadata", {}).get("tags", [])


def _stamp_cell(cell_type: str, source: str, tag: str, cell_id: str) -> dict[str, Any]:
    cell: dict[str, Any] = {
        "cell_type": cell_type,
        "id": cell_id,
        "metadata": {"tags": [tag]},
        "source": _lines(source),
    }
    if cell_type == "code":
        cell.update(execution_count=None, outputs=[])
    return cell


def clean_cell(cell: dict[str, Any]) -> dict[str, Any]:
    """Drop outputs, execution counts and editor metadata; keep tags, the nbmake mock and markdown attachments."""
    meta = {k: v for k, v in cell.get("metadata", {}).items() if k in KEEP_CELL_METADATA}
    out: dict[str, Any] = {
        "cell_type": cell["cell_type"],
        "id": cell.get("id"),
        "metadata": meta,
        "source": cell["source"],
    }
    if isinstance(out["source"], str):
        out["source"] = _lines(out["source"])
    if out["id"] is None:
        del out["id"]
    if cell["cell_type"] == "markdown" and cell.get("attachments"):
        out["attachments"] = cell["attachments"]  # the diagrams (data_scripts/make_diagrams.py): not outputs
    if cell["cell_type"] == "code":
        out.update(execution_count=None, outputs=[])
    return out


def _stamp_next(cell: dict[str, Any], repo_url: str) -> dict[str, Any]:
    """A markdown "**Next:**" cell with Colab companions for its notebook links; other cells unchanged."""
    text = "".join(cell["source"])
    if cell["cell_type"] != "markdown" or not text.startswith(NEXT_PREFIX):
        return cell
    return {**cell, "source": _lines(next_links(text, repo_url))}


# ------------------------------------------------------------------------------------- Colab forms (# @param)
def _choices(name: str) -> tuple[tuple[str, ...], bool]:
    """The names embedlab knows for a text parameter (a dropdown), and whether other text is allowed (a folder, a
    'torchvision/<name>' backbone, a weights file); empty for free text."""
    from embedlab import registry
    from embedlab.datasets import DATASETS
    from embedlab.settings import CLASSIFIER_MODES, PROJECTION_METHODS

    table: dict[str, tuple[tuple[str, ...], bool]] = {
        "dataset": (tuple(DATASETS), True),
        "method": (registry.method_names(), False),
        "backbone": (registry.backbone_names(), True),
        "imagenet_model": (registry.backbone_names(), True),
        "augment": (tuple(registry.AUGMENT_PRESETS), False),
        "projection": (PROJECTION_METHODS, False),
        "classifier_mode": (CLASSIFIER_MODES, False),
    }
    return table.get(name, ((), True))


def _takes_other_types(name: str, value: Any) -> bool:
    """True when the parameter also accepts None or a value of another type ('auto' or a number): raw Python."""
    from embedlab.course.params import EXTRA_CHECKS
    from embedlab.settings import field_check

    check = EXTRA_CHECKS.get(name) or field_check(name)
    probes = [None, "auto", True] + ([] if isinstance(value, float) else [1])
    for probe in (p for p in probes if type(p) is not type(value)):
        try:
            check(name, probe)  # type: ignore[misc]
            return True
        except Exception:  # noqa: BLE001 - any refusal means: not this type
            continue
    return False


def colab_form(name: str, value: Any) -> str:
    """Colab's form annotation for one parameter: a checkbox, a number box, a dropdown of the names embedlab knows,
    a text box, or raw Python for None, lists, dicts and parameters that take several types."""
    if isinstance(value, bool):
        return '@param {type:"boolean"}'
    if value is None or not isinstance(value, (int, float, str)) or _takes_other_types(name, value):
        return '@param {type:"raw"}'
    if isinstance(value, int):
        return '@param {type:"integer"}'
    if isinstance(value, float):
        return '@param {type:"number"}'
    choices, other = _choices(name)
    if not choices:
        return '@param {type:"string"}'
    return f"@param {json.dumps(list(choices))}" + (" {allow-input: true}" if other else "")


def _form_line(line: str) -> list[str]:
    """One parameters-cell line with its Colab annotation; a note that no longer fits moves to a line above."""
    import ast

    match = _ASSIGNMENT.match(line)
    if match is None:
        return [line]
    code, comment = match["code"], match["comment"] or ""
    form = _FORM.match(comment)
    note = (form["rest"] or "") if form else comment
    node = ast.parse(code).body[0]
    annotated = f"{code}  # {colab_form(node.targets[0].id, ast.literal_eval(node.value))}"  # type: ignore[attr-defined]
    if not note:
        return [annotated]
    if len(f"{annotated}  # {note}") <= MAX_LINE:
        return [f"{annotated}  # {note}"]
    return [f"# {note}", annotated]


def stamp_forms(cell: dict[str, Any]) -> dict[str, Any]:
    """The `parameters` cell with a Colab form annotation on every assignment; other cells unchanged."""
    if cell["cell_type"] != "code" or not _has_tag(cell, "parameters"):
        return cell
    lines = "".join(cell["source"]).split("\n")
    return {**cell, "source": _lines("\n".join(out for line in lines for out in _form_line(line)))}


def stamp(nb: dict[str, Any], name: str, repo_url: str | None = None) -> dict[str, Any]:
    """Return the notebook with the badge, setup cell and next links stamped in and everything else stripped."""
    repo_url = repo_url or repository_url()
    cells = [c for c in nb["cells"] if not (_has_tag(c, BADGE_TAG) or _has_tag(c, SETUP_TAG))]
    cells = [stamp_forms(_stamp_next(clean_cell(c), repo_url)) for c in cells]
    badge = _stamp_cell("markdown", badge_source(name, repo_url), BADGE_TAG, "colab-badge")
    setup = _stamp_cell("code", setup_source(repo_url), SETUP_TAG, "setup")
    title_at = next((i for i, c in enumerate(cells) if c["cell_type"] == "markdown"), -1)
    cells.insert(title_at + 1, setup)
    cells.insert(0, badge)
    language = {"name": "python"}
    return {
        "cells": cells,
        "metadata": {"kernelspec": KERNELSPEC, "language_info": language, **COLAB_GPU},
        "nbformat": 4,
        "nbformat_minor": 5,
    }


def render(nb: dict[str, Any]) -> str:
    """Serialise like Jupyter does (1-space indent, sorted keys, trailing newline)."""
    return json.dumps(nb, indent=1, sort_keys=True, ensure_ascii=False) + "\n"


def process(path: Path, check: bool) -> bool:
    """Stamp one notebook; return True when it was already clean (check mode) or rewrite it."""
    text = path.read_text(encoding="utf-8")
    new = render(stamp(json.loads(text), path.name))
    if new == text:
        return True
    if not check:
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_text(new, encoding="utf-8")
        tmp.replace(path)
    return False


def parameter_defaults(nb: dict[str, Any]) -> dict[str, Any]:
    """The literal assignments of a notebook's `parameters` cell (papermill's convention: literals only)."""
    import ast

    for cell in nb["cells"]:
        if cell["cell_type"] == "code" and _has_tag(cell, "parameters"):
            tree = ast.parse("".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"])
            return {
                node.targets[0].id: ast.literal_eval(node.value)
                for node in tree.body
                if isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Name)
            }
    return {}


def defaults_table(paths: list[Path]) -> str:
    """notebook_defaults.json's text: {"02": {name: default, ...}, ...} for the numbered notebooks given."""
    table = {
        p.name[:2]: parameter_defaults(json.loads(p.read_text(encoding="utf-8")))
        for p in sorted(paths)
        if re.match(r"\d\d_", p.name)
    }
    return json.dumps(table, indent=1, sort_keys=True) + "\n"


def update_defaults(paths: list[Path], check: bool) -> bool:
    """Write (or, with check, compare) notebook_defaults.json; True when it was already current."""
    text = defaults_table(paths)
    if DEFAULTS_JSON.is_file() and DEFAULTS_JSON.read_text(encoding="utf-8") == text:
        return True
    if not check:
        DEFAULTS_JSON.write_text(text, encoding="utf-8")
    return False


def main(argv: list[str] | None = None) -> int:
    """Command line: stamp (or --check) the given notebooks."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("notebooks", nargs="+", type=Path)
    parser.add_argument("--check", action="store_true", help="change nothing; exit 1 if a notebook is not clean")
    args = parser.parse_args(argv)
    dirty = [p for p in args.notebooks if not process(p, args.check)]
    if len(args.notebooks) > 1 and not update_defaults(args.notebooks, args.check):
        dirty.append(DEFAULTS_JSON)
    for p in dirty:
        print(f"{'needs stamping/stripping' if args.check else 'stamped'}: {p}")
    return 1 if (dirty and args.check) else 0


if __name__ == "__main__":
    sys.exit(main())
