"""Commands that run the notebooks: run (a parameter set) and demo."""

from __future__ import annotations

import argparse
import contextlib
import signal
import sys
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from embedlab.cli.common import CommandError, _say, check_apart, check_output
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


@contextlib.contextmanager
def _quiet_threads_after_ctrl_c() -> Iterator[None]:
    """After Ctrl+C, the kernel client's background threads (papermill, jupyter_client, zmq) die with tracebacks
    of their own; the one line of main() says what happened, so theirs are not printed from the first SIGINT on."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    stopping = threading.Event()
    thread_hook, unraisable_hook = threading.excepthook, sys.unraisablehook

    def on_sigint(signum: int, frame: Any) -> None:
        stopping.set()  # before any thread can fail because of it
        raise KeyboardInterrupt

    threading.excepthook = lambda hook_args: None if stopping.is_set() else thread_hook(hook_args)
    sys.unraisablehook = lambda hook_args: None if stopping.is_set() else unraisable_hook(hook_args)
    previous = signal.signal(signal.SIGINT, on_sigint)
    try:
        yield
    except KeyboardInterrupt:
        stopping.set()  # the hooks stay: threads may still be dying while the process exits
        raise
    finally:
        signal.signal(signal.SIGINT, previous)
        if not stopping.is_set():
            threading.excepthook, sys.unraisablehook = thread_hook, unraisable_hook


def cmd_run(args: argparse.Namespace) -> int:
    """Run all notebooks in order with a parameter set (papermill) and print the index page."""
    from embedlab.course import runner as pipeline

    if args.run_dir:  # a path under a file, a read-only or full disk: one line before the first notebook
        from embedlab.paths import resolve_path

        check_output(resolve_path(args.run_dir), "--run-dir", folder=True)  # relative: as the runner resolves it
    with _quiet_threads_after_ctrl_c():
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


def cmd_pack(args: argparse.Namespace) -> int:
    """Pack a finished run into its results archive (RUN_DIR/results.zip by default) for `pretrained_url`."""
    from embedlab.course.standalone import pack_run

    if args.output:
        check_output(args.output, "--output")
        from embedlab.rundir import PUBLISHED

        check_apart(("--output", args.output), *((f"RUN_DIR/{part}", Path(args.run_dir) / part) for part in PUBLISHED))
        if Path(args.output).suffix.lower() != ".zip":
            raise CommandError(f"--output {args.output}: a results archive is a .zip file; end the name in .zip")
    try:
        archive = pack_run(args.run_dir, args.output)
    except FileNotFoundError as error:
        raise CommandError(str(error)) from None
    _say(f"results archive: {archive} ({archive.stat().st_size / 2**20:.1f} MB); give its address as pretrained_url")
    return 0
