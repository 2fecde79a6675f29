"""Every `embedlab` command that README.md and docs/ show is a command the parser accepts as written, and the
photo-library commands run as written (`~` is a temporary home holding a folder of photos, offline)."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
PAGES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]


def documented_commands() -> list[tuple[str, str]]:
    """(page, command) for every `embedlab ...` line in a code block and every inline `embedlab ...` span."""
    found = []
    for page in PAGES:
        text = page.read_text(encoding="utf-8")
        blocks = re.findall(r"```(?:bash|sh)?\n(.*?)```", text, re.S)
        lines = [line for block in blocks for line in block.splitlines() if line.startswith("embedlab ")]
        inline = re.findall(
            r"`(embedlab (?:embed|train|run|thumbnails|umap|duplicates|outliers|select) [^-`][^`]*)`", text
        )
        found += [(page.name, line.split("  #")[0].strip()) for line in [*lines, *inline]]
    return found


def test_the_scan_finds_the_readme_and_photo_library_commands() -> None:
    commands = [command for _, command in documented_commands()]
    assert "embedlab embed ~/photos library" in commands and len(commands) >= 15


@pytest.mark.parametrize("page, command", documented_commands())
def test_every_documented_command_parses(page: str, command: str) -> None:
    from embedlab.cli.parser import build_parser

    argv = shlex.split(command)[1:]
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as stop:
        pytest.fail(f"{page}: `{command}` is refused by the parser (exit {stop.code})")
    assert args.command is not None


def _photos(home: Path) -> None:
    """A small photo library in ~/photos: 24 JPEGs in two albums, the last a copy of the first."""
    rng = np.random.default_rng(0)
    pictures = [rng.integers(0, 255, (48, 64, 3), dtype=np.uint8) for _ in range(23)]
    for i, picture in enumerate([*pictures, pictures[0]]):
        album = home / "photos" / ("2024" if i % 2 else "2025")
        album.mkdir(parents=True, exist_ok=True)
        Image.fromarray(picture).save(album / f"IMG_{i:04d}.jpg", quality=95)


@pytest.mark.slow
def test_the_photo_library_commands_run_as_written(tmp_path: Path) -> None:
    """docs/datasets.md's five commands and README's `embedlab embed ~/photos library`, character for character."""
    _photos(tmp_path)
    env = {
        **os.environ,
        "HOME": str(tmp_path),
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
    }
    text = (REPO / "docs" / "datasets.md").read_text(encoding="utf-8")
    block = text.split("## A photo library", 1)[1].split("```bash\n", 1)[1].split("```", 1)[0]
    commands = [line.split("  #")[0].strip() for line in block.splitlines() if line.startswith("embedlab ")]
    assert len(commands) == 5
    for command in [*commands, "embedlab embed ~/photos library"]:
        done = subprocess.run(command, shell=True, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, f"`{command}` failed as written: {done.stderr[-1500:]}"
    assert (tmp_path / "library" / "map").is_dir() and (tmp_path / "library" / "duplicates.tsv").is_file()
