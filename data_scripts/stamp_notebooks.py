#!/usr/bin/env python
"""Stamp the same Colab badge and setup cell into every notebook and strip outputs (as jakevdp's handbook does).

    python data_scripts/stamp_notebooks.py notebooks/*.ipynb          # rewrite in place
    python data_scripts/stamp_notebooks.py --check notebooks/*.ipynb  # exit 1 if any notebook would change

The badge cell (tag `stamp-badge`) is the first cell; the setup cell (tag `stamp-setup`) follows the title cell.
Outputs, execution counts and editor metadata are removed so git only ever holds clean notebooks.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

REPO = "embedlab/embedlab"
BADGE_TAG = "stamp-badge"
SETUP_TAG = "stamp-setup"
KEEP_CELL_METADATA = ("tags", "nbmake")
KERNELSPEC = {"display_name": "Python 3", "language": "python", "name": "python3"}


def badge_source(name: str) -> str:
    """Markdown of the Open-in-Colab badge for notebooks/<name>."""
    url = f"https://colab.research.google.com/github/{REPO}/blob/main/notebooks/{name}"
    return (f'<a href="{url}" target="_parent"><img src="https://colab.research.google.com/assets/colab-badge.svg" '
            f'alt="Open In Colab"/></a>')


SETUP_SOURCE = f"""\
# Setup: on Colab install embedlab (about a minute); locally `make venv` already did. Then print versions.
import sys
if "google.colab" in sys.modules:
    %pip install --quiet "embedlab @ git+https://github.com/{REPO}"
import embedlab
embedlab.params.show_versions()"""


def _lines(text: str) -> list[str]:
    """Source as nbformat's list of lines (each but the last ends with a newline)."""
    parts = text.split("\n")
    return [p + "\n" for p in parts[:-1]] + ([parts[-1]] if parts[-1] else [])


def _has_tag(cell: dict[str, Any], tag: str) -> bool:
    return tag in cell.get("metadata", {}).get("tags", [])


def _stamp_cell(cell_type: str, source: str, tag: str, cell_id: str) -> dict[str, Any]:
    cell: dict[str, Any] = {"cell_type": cell_type, "id": cell_id, "metadata": {"tags": [tag]}, "source": _lines(source)}
    if cell_type == "code":
        cell.update(execution_count=None, outputs=[])
    return cell


def clean_cell(cell: dict[str, Any]) -> dict[str, Any]:
    """Drop outputs, execution counts and editor metadata; keep tags and the nbmake mock."""
    meta = {k: v for k, v in cell.get("metadata", {}).items() if k in KEEP_CELL_METADATA}
    out: dict[str, Any] = {"cell_type": cell["cell_type"], "id": cell.get("id"), "metadata": meta, "source": cell["source"]}
    if isinstance(out["source"], str):
        out["source"] = _lines(out["source"])
    if out["id"] is None:
        del out["id"]
    if cell["cell_type"] == "code":
        out.update(execution_count=None, outputs=[])
    return out


def stamp(nb: dict[str, Any], name: str) -> dict[str, Any]:
    """Return the notebook with the badge + setup cells stamped in and everything else stripped."""
    cells = [c for c in nb["cells"] if not (_has_tag(c, BADGE_TAG) or _has_tag(c, SETUP_TAG))]
    cells = [clean_cell(c) for c in cells]
    badge = _stamp_cell("markdown", badge_source(name), BADGE_TAG, "colab-badge")
    setup = _stamp_cell("code", SETUP_SOURCE, SETUP_TAG, "setup")
    title_at = next((i for i, c in enumerate(cells) if c["cell_type"] == "markdown"), -1)
    cells.insert(title_at + 1, setup)
    cells.insert(0, badge)
    language = {"name": "python"}
    return {"cells": cells, "metadata": {"kernelspec": KERNELSPEC, "language_info": language},
            "nbformat": 4, "nbformat_minor": 5}


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


def main(argv: list[str] | None = None) -> int:
    """Command line: stamp (or --check) the given notebooks."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("notebooks", nargs="+", type=Path)
    parser.add_argument("--check", action="store_true", help="change nothing; exit 1 if a notebook is not clean")
    args = parser.parse_args(argv)
    dirty = [p for p in args.notebooks if not process(p, args.check)]
    for p in dirty:
        print(f"{'needs stamping/stripping' if args.check else 'stamped'}: {p}")
    return 1 if (dirty and args.check) else 0


if __name__ == "__main__":
    sys.exit(main())
