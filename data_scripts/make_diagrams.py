#!/usr/bin/env python
"""Redraw the diagrams into the notebooks as cell attachments (they render on GitHub, in Colab and in Jupyter).

    python data_scripts/make_diagrams.py            # rewrite every markdown cell tagged diagram-<name>
    python data_scripts/make_diagrams.py --check    # change nothing; exit 1 when a notebook's diagram is missing

A markdown cell tagged `diagram-pipeline` (or `-simclr`, `-distillation`) shows `![...](attachment:<name>.png)`;
the picture is drawn by `embedlab.plotting.diagrams`, so the project's own code makes what the notebooks show.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

TAG_PREFIX = "diagram-"


def diagram_cells(nb: dict) -> list[tuple[dict, str]]:
    """(cell, diagram name) for every markdown cell tagged diagram-<name>."""
    found = []
    for cell in nb["cells"]:
        for tag in cell.get("metadata", {}).get("tags", []):
            if cell["cell_type"] == "markdown" and tag.startswith(TAG_PREFIX):
                found.append((cell, tag[len(TAG_PREFIX) :]))
    return found


def main(argv: list[str] | None = None) -> int:
    from stamp_notebooks import render

    from embedlab.plotting.diagrams import diagram_attachment

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="change nothing; exit 1 when a diagram is missing")
    parser.add_argument("notebooks", nargs="*", type=Path)
    args = parser.parse_args(argv)
    status = 0
    for path in args.notebooks or sorted((REPO / "notebooks").glob("[0-9][0-9]_*.ipynb")):
        nb = json.loads(path.read_text(encoding="utf-8"))
        for cell, name in diagram_cells(nb):
            if args.check:
                if f"{name}.png" not in cell.get("attachments", {}):
                    print(f"{path.name}: diagram {name!r} missing: run data_scripts/make_diagrams.py")
                    status = 1
                continue
            cell["attachments"] = diagram_attachment(name)
        if not args.check:
            path.write_text(render(nb), encoding="utf-8")
    return status


if __name__ == "__main__":
    sys.exit(main())
