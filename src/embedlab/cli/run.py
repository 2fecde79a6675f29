"""Commands that run the notebooks: run (a parameter set) and demo."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from typing import Any

from embedlab.cli.common import CommandError, _say


def _parse_overrides(pairs: Sequence[str]) -> dict[str, Any]:
    """NAME=VALUE pairs, values parsed as YAML (so 3 is an int, true a bool, null None)."""
    import yaml

    overrides = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name.strip():
            raise CommandError(f"-p expects NAME=VALUE, got {pair!r}")
        try:
            overrides[name.strip()] = yaml.safe_load(value)
        except yaml.YAMLError:
            overrides[name.strip()] = value
    return overrides


def cmd_run(args: argparse.Namespace) -> int:
    """Run all notebooks in order with a parameter set (papermill) and print the index page."""
    from embedlab import pipeline

    index = pipeline.run_pipeline(
        args.params,
        run_dir=args.run_dir,
        notebooks=args.notebooks or None,
        overrides=_parse_overrides(args.param) or None,
        progress=not args.quiet,
    )
    _say(f"done: open {index}")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    """The whole tutorial on the embedded dataset, CPU-sized (= run --params demo)."""
    args.params, args.notebooks = "demo", None
    return cmd_run(args)
