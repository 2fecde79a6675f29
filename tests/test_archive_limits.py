"""Archives without limits: a zip bomb, too many members, duplicate names are refused before anything is written;
a member with a 250-character name is extracted (the temporary name beside it still fits)."""

from __future__ import annotations

import zipfile
from pathlib import Path

import pytest

from embedlab.datasets import UnsafeArchiveError, extract
from embedlab.datasets.archives import RESULTS_ARCHIVE_LIMITS, ExtractLimits


def _zip(path: Path, members: list[tuple[str, bytes]]) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in members:
            zf.writestr(name, data)
    return path


def test_a_zip_bomb_is_refused_before_writing(tmp_path: Path) -> None:
    bomb = _zip(tmp_path / "bomb.zip", [("embeddings/ssl.pt", b"\0" * 50_000_000)])
    assert bomb.stat().st_size < 100_000  # 50 MB of zeros in a few tens of KB
    with pytest.raises(UnsafeArchiveError, match="its own size unpacked"):
        extract(bomb, tmp_path / "out", progress=False, limits=RESULTS_ARCHIVE_LIMITS)
    assert not (tmp_path / "out").exists()


def test_too_many_members_and_too_many_bytes_are_refused(tmp_path: Path) -> None:
    many = _zip(tmp_path / "many.zip", [(f"f{i}.txt", b"x") for i in range(30)])
    with pytest.raises(UnsafeArchiveError, match="30 files"):
        extract(many, tmp_path / "a", progress=False, limits=ExtractLimits(max_members=20))
    with pytest.raises(UnsafeArchiveError, match="GB unpacked"):
        extract(many, tmp_path / "b", progress=False, limits=ExtractLimits(max_bytes=10))
    assert extract(many, tmp_path / "c", progress=False) == tmp_path / "c"  # within the dataset limits


def test_duplicate_member_names_are_refused(tmp_path: Path) -> None:
    with pytest.warns(UserWarning, match="Duplicate name"):
        twice = _zip(tmp_path / "twice.zip", [("exported/backbone.pt", b"good"), ("exported/backbone.pt", b"evil")])
    with pytest.raises(UnsafeArchiveError, match="two members are named exported/backbone.pt"):
        extract(twice, tmp_path / "out", progress=False)
    assert not (tmp_path / "out").exists()


def test_a_long_member_name_is_extracted(tmp_path: Path) -> None:
    name = "a" * 246 + ".png"  # 250 characters: with a temporary suffix appended whole it would pass 255
    out = extract(_zip(tmp_path / "long.zip", [(name, b"x")]), tmp_path / "out", progress=False)
    assert (out / name).read_bytes() == b"x"
