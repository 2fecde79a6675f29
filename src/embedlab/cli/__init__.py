"""The `embedlab` command: every tutorial step from a shell (download, train, embed, plot, compare, curate, run).

Each subcommand is a thin wrapper over the package functions the notebooks call. Errors in the input (a missing
file, a bad value) print one line, `embedlab: error: ...`, and exit with status 1; `--debug` shows the traceback.
Heavy imports (torch, umap) happen inside the commands, so `embedlab --help` is instant.

Options that are fields of a stage's settings (embedlab.settings) are generated from them: same name, default,
help and check. Files: common.py (shared helpers), arrays.py (.npy input), data.py (download, thumbnails),
train.py, classify.py, embed.py, explore.py (umap, compare, select, neighbors, outliers, duplicates),
run.py (run, demo), parser.py.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence

from embedlab.cli.arrays import ArrayImages
from embedlab.cli.common import PROG, CommandError
from embedlab.cli.parser import build_parser
from embedlab.runtime import sigterm_as_interrupt

__all__ = ["ArrayImages", "CommandError", "build_parser", "main"]


# Errors of other libraries that are about the user's input: a malformed YAML parameter file, a Lightning
# option (devices, strategy, precision) that this machine cannot honour, a bad archive.
_INPUT_ERROR_NAMES = ("YAMLError", "MisconfigurationException", "ReadError", "BadZipFile", "EOFError")


def _is_input_error(error: BaseException) -> bool:
    """True for errors about the user's input (shown as one line): our own error classes, OSError, ValueError,
    and the input errors of the libraries we call (YAML, Lightning's configuration, archives)."""
    return (
        isinstance(error, (CommandError, OSError, ValueError, EOFError))
        or type(error).__module__.startswith("embedlab.")
        or any(cls.__name__ in _INPUT_ERROR_NAMES for cls in type(error).__mro__)
    )


def _interrupted_message(error: KeyboardInterrupt) -> str:
    """One line for Ctrl+C: what was saved (when the command said) and how to resume."""
    detail = " ".join(str(error).split())
    return f"{PROG}: interrupted: {detail or 'run the same command again to resume (finished work is kept)'}"


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `embedlab` console script; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    debug = args.debug or os.environ.get("EMBEDLAB_DEBUG") == "1"
    try:
        with sigterm_as_interrupt("stopped by SIGTERM; run the same command again to resume (finished work is kept)"):
            return int(args.func(args) or 0)  # SIGTERM like Ctrl+C, for every command: one line, exit status 143
    except KeyboardInterrupt as interrupt:  # Ctrl+C: 130; SIGTERM during training (Terminated): 143
        print(_interrupted_message(interrupt), file=sys.stderr)
        return int(getattr(interrupt, "exit_status", 130))
    except Exception as error:
        if debug or not _is_input_error(error):
            raise
        message = " ".join(str(error).split()) or type(error).__name__
        print(f"{PROG}: error: {message}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
