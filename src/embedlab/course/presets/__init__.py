"""Named parameter sets shipped inside the package: `demo`, `classroom`, `full`, `tiny` (one YAML file each).

A notebook takes `preset = "demo"` in its parameters cell and `params.check` expands it; `embedlab run demo` and
papermill read the same files, so they work from an installed wheel as well as from a checkout. Each file's first
comment line says what the set is for. `notebook_defaults.json` records the values of every notebook's `parameters`
cell (tests/test_notebooks_static.py keeps it in step), so `params.check` can tell a value the learner changed from
the notebook's default: a changed value wins over the preset.
"""

from __future__ import annotations

import json
import os
from functools import cache
from pathlib import Path
from typing import Any

PRESETS_DIR = Path(__file__).resolve().parent
NOTEBOOK_DEFAULTS = PRESETS_DIR / "notebook_defaults.json"


class PresetError(ValueError):
    """An unknown preset name, a missing file or a file that is not a mapping of parameter names to values."""


def preset_names() -> tuple[str, ...]:
    """The shipped presets, sorted."""
    return tuple(sorted(p.stem for p in PRESETS_DIR.glob("*.yaml")))


def preset_path(preset: str | os.PathLike[str]) -> Path:
    """The YAML file of a shipped preset name, or the given YAML path."""
    text = str(preset)
    path = (
        Path(text).expanduser() if text.endswith((".yaml", ".yml")) or os.sep in text else PRESETS_DIR / f"{text}.yaml"
    )
    if not path.is_file():
        raise PresetError(f"no parameter set {text!r} ({path}); use one of {', '.join(preset_names())} or a YAML file")
    return path


def load_preset(preset: str | os.PathLike[str]) -> dict[str, Any]:
    """The parameter values of a preset name or YAML file."""
    import yaml

    path = preset_path(preset)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as error:
        where = getattr(error, "problem_mark", None)
        line = f" (line {where.line + 1})" if where is not None else ""
        raise PresetError(f"{path} is not valid YAML{line}: {getattr(error, 'problem', error)}") from None
    if not isinstance(data, dict):
        raise PresetError(f"{path}: expected a mapping of parameter names to values")
    return data


def describe(preset: str) -> str:
    """The first comment line of a preset's file (what it is for)."""
    for line in preset_path(preset).read_text(encoding="utf-8").splitlines():
        if line.startswith("#"):
            return line.lstrip("# ").strip()
    return ""


@cache
def notebook_defaults() -> dict[str, dict[str, Any]]:
    """Each notebook's `parameters` cell values, by notebook number ("00" ... "06")."""
    return dict(json.loads(NOTEBOOK_DEFAULTS.read_text(encoding="utf-8")))
