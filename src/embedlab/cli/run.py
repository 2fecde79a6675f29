"""Commands that run the notebooks: run (a parameter set) and demo; `python -m embedlab.pipeline` is `run`."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from typing import Any

from embedlab.cli.common import CommandError, _say
from embedlab.settings import parse_text


def _parse_overrides(items: Sequence[Sequence[str]]) -> dict[str, Any]:
    """`-p NAME=VALUE` or `-p NAME VALUE` items as {name: value}, values read by settings.parse_text."""
    overrides = {}
    for item in items:
        pair = list(item[0].split("=", 1)) if len(item) == 1 and "=" in item[0] else list(item)
        if len(pair) != 2 or not pair[0].strip():
            raise CommandError(f"-p expects NAME=VALUE or NAME VALUE, got {' '.join(item)!r}")
        overrides[pair[0].strip()] = parse_text(pair[1])
    return overrides


def _notebook_names(items: Sequence[str] | None) -> list[str] | None:
    """--notebooks 03 04 or --only 03,04: the notebook names or numbers (None: all)."""
    names = [name.strip() for item in items or () for name in item.split(",") if name.strip()]
    return names or None


def cmd_run(args: argparse.Namespace) -> int:
    """Run all notebooks in order with a parameter set (papermill) and print the index page."""
    from embedlab import pipeline

    index = pipeline.run_pipeline(
        args.set or args.params,
        run_dir=args.run_dir,
        notebooks=_notebook_names(args.notebooks),
        overrides=_parse_overrides(args.param) or None,
        progress=not args.quiet,
    )
    _say(f"done: open {index}")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    """The whole tutorial on the embedded dataset, CPU-sized (= run --params demo)."""
    args.set, args.params, args.notebooks = None, "demo", None
    return cmd_run(args)
