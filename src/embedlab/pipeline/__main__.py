"""`python -m embedlab.pipeline ARGS`: the same command as `embedlab run ARGS` (kept for the README's spelling)."""

from __future__ import annotations

import sys
from collections.abc import Sequence

from embedlab.cli import main as cli_main


def main(argv: Sequence[str] | None = None) -> int:
    """Run `embedlab run ARGS`; returns the exit status."""
    return cli_main(["run", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    sys.exit(main())
