#!/usr/bin/env python
"""Execute one notebook as its test does: its nbmake mock assigned right after the `parameters` cell, cells run by
nbclient in a given folder. Used by tests/test_standalone_notebooks.py and, inside the Colab stand-in, by
data_scripts/colab_standin.py (where it also points the setup cell's install at a locally built wheel).

    python data_scripts/run_notebook_alone.py NOTEBOOK --cwd DIR [--install-from URL --install-to URL] [--out FILE]

Exit status 0 when every cell ran; 1 with the failing cell's error otherwise. Needs only nbformat and nbclient.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

CELL_TIMEOUT_S = 600


def parameters_mock(notebook: Any) -> tuple[int, dict[str, Any]]:
    """Index of the `parameters` cell and its nbmake mock (the notebook's test settings)."""
    cells = notebook["cells"]
    index = next(i for i, c in enumerate(cells) if "parameters" in c.get("metadata", {}).get("tags", []))
    return index, cells[index]["metadata"]["nbmake"]["mock"]


def with_mock(notebook: Any) -> Any:
    """The notebook with its nbmake mock assigned right after the `parameters` cell (what nbmake does)."""
    import nbformat

    index, mock = parameters_mock(notebook)
    source = "\n".join(f"{name} = {value!r}" for name, value in mock.items())
    notebook["cells"].insert(index + 1, nbformat.v4.new_code_cell(source, metadata={"tags": ["injected-mock"]}))
    return notebook


def point_install_at(notebook: Any, old: str, new: str) -> Any:
    """The setup cell's `%pip install` address `old` replaced by `new` (a built wheel); the command stays as is."""
    setup = [c for c in notebook["cells"] if c["cell_type"] == "code" and "%pip install" in c["source"]]
    if len(setup) != 1 or old not in setup[0]["source"]:
        raise SystemExit(f"expected one setup cell installing from {old}")
    setup[0]["source"] = setup[0]["source"].replace(old, new)
    return notebook


def outputs_text(notebook: Any) -> str:
    """Every stream output of the executed notebook as one string."""
    return "\n".join(
        o.get("text", "") if isinstance(o.get("text", ""), str) else "".join(o["text"])
        for c in notebook["cells"]
        if c["cell_type"] == "code"
        for o in c.get("outputs", [])
    )


def execute(notebook: Any, cwd: Path, timeout: int = CELL_TIMEOUT_S) -> Any:
    """Run every cell in `cwd`; raises nbclient's CellExecutionError naming the failing cell."""
    from nbclient import NotebookClient

    client = NotebookClient(
        notebook, timeout=timeout, kernel_name="python3", resources={"metadata": {"path": str(cwd)}}
    )
    client.execute()
    return notebook


def main(argv: list[str] | None = None) -> int:
    import nbformat
    from nbclient.exceptions import CellExecutionError

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("notebook", type=Path)
    parser.add_argument("--cwd", type=Path, required=True, help="folder the notebook runs in (made if missing)")
    parser.add_argument("--install-from", help="address in the setup cell's %%pip install to replace")
    parser.add_argument("--install-to", help="what to install instead (e.g. file:///wheels/embedlab-....whl)")
    parser.add_argument("--out", type=Path, help="write the executed notebook here")
    args = parser.parse_args(argv)
    notebook = with_mock(nbformat.read(args.notebook, as_version=4))
    if args.install_from:
        point_install_at(notebook, args.install_from, args.install_to)
    args.cwd.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    try:
        execute(notebook, args.cwd)
        failed = None
    except CellExecutionError as error:
        failed = str(error)
    if args.out:
        nbformat.write(notebook, args.out)
    seconds = time.perf_counter() - start
    print(f"{args.notebook.name}: {'FAILED' if failed else 'ok'} in {seconds:.0f} s")
    if failed:
        print(failed[-4000:], file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
