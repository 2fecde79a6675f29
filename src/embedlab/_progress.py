"""Progress bars that suit where the code runs, so executed notebooks do not fill with hundreds of bar updates.

On a terminal: a normal live tqdm bar. In a Jupyter kernel with ipywidgets: tqdm's widget (one output that updates
in place). In a kernel without widgets (papermill, nbmake, a plain kernel): one line per bar, written when it finishes
(no stale 0% line or repeated 100% line in executed notebooks), and never tqdm.auto's "IProgress not found" warning.
"""

from __future__ import annotations

import sys
from importlib.util import find_spec
from typing import Any

SPARSE_SECONDS = 30.0  # a text bar inside a kernel without widgets redraws at most this often


def in_kernel() -> bool:
    """True inside a Jupyter kernel (notebook, papermill, nbmake) rather than a terminal or a plain script."""
    return "ipykernel" in sys.modules and not sys.stderr.isatty()


def widgets_available() -> bool:
    """True when tqdm can draw a Jupyter widget (ipywidgets is installed)."""
    return find_spec("ipywidgets") is not None


def live_bars() -> bool:
    """Whether a frequently redrawn bar (Lightning's, tqdm's default) is fine here: a terminal or a widget."""
    return not in_kernel() or widgets_available()


def tqdm(*args: Any, **kwargs: Any) -> Any:
    """tqdm that picks the right kind of bar for the place it runs in (see the module docstring)."""
    if in_kernel():
        if widgets_available():
            from tqdm.notebook import tqdm as widget_bar

            return widget_bar(*args, **kwargs)
        kwargs.setdefault("mininterval", SPARSE_SECONDS)
        kwargs.setdefault("maxinterval", float("inf"))  # no extra redraws from tqdm's monitor thread
        kwargs["file"] = _FinalLine(kwargs.get("file") or sys.stderr)
    from tqdm import tqdm as text_bar

    return text_bar(*args, **kwargs)


class _FinalLine:
    """A stream for a text bar in a kernel: keeps only the latest redraw and writes it when the bar ends its line."""

    def __init__(self, stream: Any) -> None:
        self.stream, self.latest = stream, ""

    def write(self, text: str) -> None:
        for i, part in enumerate(text.split("\n")):
            if i:  # a newline ended the line: write its latest state once
                self.stream.write(self.latest.rstrip() + "\n")
                self.latest = ""
            self.latest = part.rsplit("\r", 1)[-1] if "\r" in part else self.latest + part  # \r: a redraw

    def flush(self) -> None:
        self.stream.flush()
