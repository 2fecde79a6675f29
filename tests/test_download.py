"""Downloads, safe extraction and prepare() for registry datasets, against a real HTTP server on localhost."""

from __future__ import annotations

import hashlib
import http.server
import io
import json
import os
import re
import socket
import tarfile
import threading
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from PIL import Image

from embedlab import datasets
from embedlab.datasets import ChecksumError, DatasetError, DownloadError, UnsafeArchiveError, download, extract

# ------------------------------------------------------------------------------------------ the server


@dataclass
class ServerState:
    """What the test server serves and how it misbehaves; it logs every request."""

    files: dict[str, bytes] = field(default_factory=dict)
    redirects: dict[str, str] = field(default_factory=dict)  # path -> location (like Kaggle -> storage)
    ignore_range: bool = False
    drop_after: int | None = None  # send this many body bytes of the next request, then hang up
    log: list[dict] = field(default_factory=list)


class Handler(http.server.BaseHTTPRequestHandler):
    """Serves ServerState.files with Range support (unless told to ignore it) and scripted connection drops."""

    protocol_version = "HTTP/1.1"

    def log_message(self, *args: object) -> None:  # keep pytest output clean
        pass

    def do_GET(self) -> None:
        state: ServerState = self.server.state  # type: ignore[attr-defined]
        data = state.files.get(self.path)
        entry = {"path": self.path, "range": self.headers.get("Range"), "status": 0, "sent": 0}
        state.log.append(entry)
        if self.path in state.redirects:
            entry["status"] = 302
            self.send_response(302)
            self.send_header("Location", state.redirects[self.path])
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        if data is None:
            entry["status"] = 404
            self.send_error(404)
            return
        start = 0
        match = re.fullmatch(r"bytes=(\d+)-", self.headers.get("Range") or "")
        if match and not state.ignore_range:
            start = int(match.group(1))
            if start >= len(data):
                entry["status"] = 416
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(data)}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
            entry["status"] = 206
        else:
            self.send_response(200)
            entry["status"] = 200
        body = data[start:]
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if state.drop_after is not None:
            body = body[: state.drop_after]
            state.drop_after = None
            self.close_connection = True
        # Record before writing: the client can finish reading (and the test assert) before write() returns here.
        entry["sent"] = len(body)
        self.wfile.write(body)
        self.wfile.flush()


@pytest.fixture()
def server() -> Iterator[tuple[str, ServerState]]:
    """A threaded HTTP server on 127.0.0.1 (port 0); yields (base URL, state)."""
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.state = ServerState()  # type: ignore[attr-defined]
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}", httpd.state  # type: ignore[attr-defined]
    finally:
        httpd.shutdown()
        httpd.server_close()


def payload(size: int = 300_000) -> bytes:
    """Deterministic, non-repeating bytes (so a wrong offset can never produce the right file)."""
    return b"".join(hashlib.sha256(i.to_bytes(4, "big")).digest() for i in range(size // 32 + 1))[:size]


# ---------------------------------------------------------------------------------------- download


def test_normal_download_verifies_and_renames(server, tmp_path):
    url, state = server
    data = payload()
    state.files["/a.bin"] = data
    dest = download(
        f"{url}/a.bin", tmp_path / "a.bin", sha256=hashlib.sha256(data).hexdigest(), size=len(data), progress=False
    )
    assert dest.read_bytes() == data
    assert not (tmp_path / "a.bin.part").exists()
    assert download(f"{url}/a.bin", dest, progress=False) == dest  # complete file: no second request
    assert len(state.log) == 1


def test_dropped_connection_resumes_with_range(server, tmp_path):
    url, state = server
    data = payload()
    state.files["/a.bin"] = data
    state.drop_after = 100_000
    with pytest.raises(DownloadError, match="run again to resume"):
        download(f"{url}/a.bin", tmp_path / "a.bin", retries=0, progress=False, chunk_size=8192)
    part = tmp_path / "a.bin.part"
    assert part.stat().st_size == 100_000 and not (tmp_path / "a.bin").exists()

    dest = download(f"{url}/a.bin", tmp_path / "a.bin", sha256=hashlib.sha256(data).hexdigest(), progress=False)
    assert dest.read_bytes() == data
    assert [e["range"] for e in state.log] == [None, "bytes=100000-"]
    assert state.log[1]["status"] == 206
    assert sum(e["sent"] for e in state.log) == len(data)  # every byte crossed the wire once: resumed


def test_dropped_connection_is_retried_within_one_call(server, tmp_path):
    url, state = server
    data = payload()
    state.files["/a.bin"] = data
    state.drop_after = 50_000
    dest = download(f"{url}/a.bin", tmp_path / "a.bin", retries=2, retry_wait=0, progress=False)
    assert dest.read_bytes() == data
    assert [e["range"] for e in state.log] == [None, "bytes=50000-"]
    assert sum(e["sent"] for e in state.log) == len(data)


def test_resume_through_a_redirect_keeps_the_range(server, tmp_path):
    url, state = server
    data = payload()
    state.files["/storage/a.bin"] = data
    state.redirects["/api/download"] = f"{url}/storage/a.bin"
    state.drop_after = 70_000
    dest = download(f"{url}/api/download", tmp_path / "a.zip", retries=1, retry_wait=0, progress=False)
    assert dest.read_bytes() == data
    assert [(e["path"], e["range"], e["status"]) for e in state.log] == [
        ("/api/download", None, 302),
        ("/storage/a.bin", None, 200),
        ("/api/download", "bytes=70000-", 302),
        ("/storage/a.bin", "bytes=70000-", 206),
    ]
    assert sum(e["sent"] for e in state.log) == len(data)


def test_server_ignoring_range_restarts_cleanly(server, tmp_path):
    url, state = server
    data = payload()
    state.files["/a.bin"] = data
    state.ignore_range = True
    (tmp_path / "a.bin.part").write_bytes(data[:1000])  # an earlier interrupted transfer
    dest = download(f"{url}/a.bin", tmp_path / "a.bin", sha256=hashlib.sha256(data).hexdigest(), progress=False)
    assert dest.read_bytes() == data  # not 1000 old bytes + the whole file again
    assert state.log[0]["range"] == "bytes=1000-" and state.log[0]["status"] == 200


def test_complete_part_file_answered_with_416_is_accepted(server, tmp_path):
    url, state = server
    data = payload(5000)
    state.files["/a.bin"] = data
    (tmp_path / "a.bin.part").write_bytes(data)  # killed after the last byte, before the rename
    assert download(f"{url}/a.bin", tmp_path / "a.bin", size=len(data), progress=False).read_bytes() == data
    assert state.log[0]["status"] == 416


def test_checksum_mismatch_removes_the_file(server, tmp_path):
    url, state = server
    state.files["/a.bin"] = payload()
    with pytest.raises(ChecksumError, match="does not match"):
        download(f"{url}/a.bin", tmp_path / "a.bin", sha256="0" * 64, progress=False)
    assert list(tmp_path.iterdir()) == []


def test_size_mismatch_removes_the_file(server, tmp_path):
    url, state = server
    state.files["/a.bin"] = payload(1000)
    with pytest.raises(ChecksumError, match="expected 999"):
        download(f"{url}/a.bin", tmp_path / "a.bin", size=999, progress=False)
    assert list(tmp_path.iterdir()) == []


def test_http_404_and_unreachable_host_are_clear_errors(server, tmp_path):
    url, _state = server
    with pytest.raises(DownloadError, match="404"):
        download(f"{url}/missing.zip", tmp_path / "m.zip", progress=False)
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(DownloadError, match="cannot reach"):
        download(f"http://127.0.0.1:{port}/x.zip", tmp_path / "x.zip", progress=False)


# --------------------------------------------------------------------------------------- extraction


def make_zip(path: Path, members: dict[str, bytes]) -> Path:
    """Write a zip with the given member names (unchecked: they may be hostile) and contents."""
    with zipfile.ZipFile(path, "w") as zf:
        for name, content in members.items():
            zf.writestr(zipfile.ZipInfo(name), content)
    return path


def make_tar(path: Path, members: list[tarfile.TarInfo | tuple[str, bytes]]) -> Path:
    """Write a tar.gz from (name, bytes) files and raw TarInfo entries (links, ...)."""
    with tarfile.open(path, "w:gz") as tf:
        for member in members:
            if isinstance(member, tarfile.TarInfo):
                tf.addfile(member)
            else:
                info = tarfile.TarInfo(member[0])
                info.size = len(member[1])
                tf.addfile(info, io.BytesIO(member[1]))
    return path


def snapshot(folder: Path) -> set[str]:
    """Every path under ``folder`` (to prove nothing was written)."""
    return {str(p.relative_to(folder)) for p in folder.rglob("*")}


def test_extract_zip_and_tar(tmp_path):
    files = {"top/a/1.txt": b"one", "top/b/2.txt": b"two"}
    target = extract(make_zip(tmp_path / "x.zip", files), tmp_path / "zip_out", progress=False)
    assert (target / "top/a/1.txt").read_bytes() == b"one" and (target / "top/b/2.txt").read_bytes() == b"two"
    tar_target = extract(make_tar(tmp_path / "x.tar.gz", list(files.items())), tmp_path / "tar_out", progress=False)
    assert (tar_target / "top/b/2.txt").read_bytes() == b"two"
    (target / "top/a/1.txt").unlink()
    extract(tmp_path / "x.zip", target, progress=False)  # marker: a finished extraction is not repeated
    assert not (target / "top/a/1.txt").exists()


@pytest.mark.parametrize(
    "evil", ["../evil.txt", "ok/../../evil.txt", "/tmp/embedlab-evil.txt", "C:/evil.txt", "..\\evil.txt"]
)
def test_zip_slip_is_refused_and_nothing_is_written(tmp_path, evil):
    work = tmp_path / "work"
    work.mkdir()
    archive = make_zip(work / "x.zip", {"good/first.txt": b"written before the bad one?", evil: b"pwned"})
    before = snapshot(tmp_path)
    with pytest.raises(UnsafeArchiveError, match=re.escape(repr(evil))):
        extract(archive, work / "out", progress=False)
    assert snapshot(tmp_path) == before  # not even the good member, not the target folder
    assert not Path("/tmp/embedlab-evil.txt").exists()


def test_zip_symlink_member_is_refused(tmp_path):
    archive = tmp_path / "x.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        link = zipfile.ZipInfo("link")
        link.external_attr = 0o120777 << 16
        zf.writestr(link, "/etc/passwd")
    with pytest.raises(UnsafeArchiveError, match="symbolic link"):
        extract(archive, tmp_path / "out", progress=False)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("kind", [tarfile.SYMTYPE, tarfile.LNKTYPE])
def test_tar_with_link_is_refused(tmp_path, kind):
    link = tarfile.TarInfo("data/escape")
    link.type = kind
    link.linkname = "../../../etc/passwd" if kind == tarfile.SYMTYPE else "/etc/passwd"
    archive = make_tar(tmp_path / "x.tar.gz", [("data/ok.txt", b"ok"), link, ("data/escape/x.txt", b"through")])
    before = snapshot(tmp_path)
    with pytest.raises(UnsafeArchiveError, match="link"):
        extract(archive, tmp_path / "out", progress=False)
    assert snapshot(tmp_path) == before


def test_tar_with_dotdot_and_absolute_is_refused(tmp_path):
    for i, evil in enumerate(["../evil.txt", "/tmp/embedlab-evil.txt"]):
        archive = make_tar(tmp_path / f"x{i}.tar.gz", [("ok.txt", b"ok"), (evil, b"pwned")])
        with pytest.raises(UnsafeArchiveError):
            extract(archive, tmp_path / f"out{i}", progress=False)
        assert not (tmp_path / f"out{i}").exists() and not (tmp_path / "evil.txt").exists()


def test_not_an_archive_is_a_clear_error(tmp_path):
    bad = tmp_path / "x.zip"
    bad.write_bytes(b"<html>login required</html>")
    with pytest.raises(DatasetError, match="neither a zip nor a tar"):
        extract(bad, tmp_path / "out", progress=False)


# ----------------------------------------------------------------------- prepare() for registry names


def image_bytes(fmt: str, color: tuple[int, int, int]) -> bytes:
    """A tiny image file in ``fmt``."""
    buffer = io.BytesIO()
    Image.new("RGB", (16, 12), color).save(buffer, format=fmt)
    return buffer.getvalue()


def ucmerced_like_zip(path: Path) -> Path:
    """An archive shaped like UCMerced_LandUse.zip: UCMerced_LandUse/Images/<class>/<name>.tif plus litter."""
    members = {"UCMerced_LandUse/readme.txt": b"hello", "__MACOSX/UCMerced_LandUse/._x": b"junk"}
    for c, cls in enumerate(["beach", "airplane", "forest"]):
        for i in range(3):
            members[f"UCMerced_LandUse/Images/{cls}/{cls}{i:02d}.tif"] = image_bytes("TIFF", (c * 80, i * 60, 9))
    return make_zip(path, members)


def test_prepare_registry_name_with_url_override(server, tmp_path):
    url, state = server
    state.files["/UCMerced_LandUse.zip"] = ucmerced_like_zip(tmp_path / "u.zip").read_bytes()
    data_dir = tmp_path / "data"
    root = datasets.prepare("ucmerced", data_dir, url=f"{url}/UCMerced_LandUse.zip", progress=False)
    assert root == data_dir / "ucmerced" / "raw"
    assert sorted(p.name for p in root.iterdir()) == ["airplane", "beach", "forest"]
    assert (root / "beach" / "beach02.tif").is_file()
    folder = datasets.ImageFolder(root)
    assert len(folder) == 9 and folder.skipped == []
    assert not (data_dir / "ucmerced" / ".extracting").exists()
    assert not list((data_dir / "ucmerced" / "downloads").iterdir())  # extracted and verified: the zip is gone
    requests = len(state.log)
    assert datasets.prepare("ucmerced", data_dir, url=f"{url}/UCMerced_LandUse.zip", progress=False) == root
    assert len(state.log) == requests  # marker: the second call does nothing
    subset = datasets.prepare("ucmerced", data_dir, url=f"{url}/UCMerced_LandUse.zip", limit=2, progress=False)
    assert datasets.ImageFolder(subset).class_counts() == {"airplane": 2, "beach": 2, "forest": 2}
    assert os.path.samefile(subset / "beach" / "beach00.tif", root / "beach" / "beach00.tif")  # hard links


def test_prepare_keeps_the_archive_when_asked(server, tmp_path):
    url, state = server
    state.files["/UCMerced_LandUse.zip"] = ucmerced_like_zip(tmp_path / "u.zip").read_bytes()
    datasets.prepare("ucmerced", tmp_path / "d", url=f"{url}/UCMerced_LandUse.zip", progress=False, keep_archive=True)
    assert (tmp_path / "d" / "ucmerced" / "downloads" / "UCMerced_LandUse.zip").is_file()


def test_prepare_spec_with_checksum_and_top_folder_tar(server, tmp_path):
    url, state = server
    members = [
        (f"AID/{cls}/{cls.lower()}_{i}.jpg", image_bytes("JPEG", (i * 50, 90, 200)))
        for cls in ("Airport", "Beach")
        for i in range(2)
    ]
    blob = make_tar(tmp_path / "aid.tar.gz", members).read_bytes()
    state.files["/aid.tar.gz"] = blob
    spec = datasets.DatasetSpec(
        name="mini-aid",
        title="test",
        url=f"{url}/aid.tar.gz",
        filename="aid.tar.gz",
        sha256=hashlib.sha256(blob).hexdigest(),
        size=len(blob),
    )
    root = datasets.prepare(spec, tmp_path / "data", progress=False)
    assert datasets.ImageFolder(root).filenames == [
        "Airport/airport_0.jpg",
        "Airport/airport_1.jpg",
        "Beach/beach_0.jpg",
        "Beach/beach_1.jpg",
    ]
    bad = datasets.DatasetSpec(name="bad", title="test", url=f"{url}/aid.tar.gz", sha256="1" * 64)
    with pytest.raises(ChecksumError):
        datasets.prepare(bad, tmp_path / "data", progress=False)
    assert not (tmp_path / "data" / "bad" / "raw").exists()


def test_registry_has_real_sources_and_credits():
    assert set(datasets.DATASETS) == {"aid", "eurosat", "ucmerced", "fashion-mnist"}
    assert datasets.DATASETS["aid"].url == (
        "https://www.kaggle.com/api/v1/datasets/download/jiayuanchengala/aid-scene-classification-datasets"
    )
    assert datasets.DATASETS["eurosat"].url.endswith("/EuroSAT.zip")
    assert datasets.DATASETS["ucmerced"].url.endswith("/UCMerced_LandUse.zip")
    assert datasets.DATASETS["fashion-mnist"].url is None
    for spec in datasets.DATASETS.values():
        assert spec.license and spec.citation and spec.num_classes
    assert "Xia" in datasets.DATASETS["aid"].citation and "MIT" in datasets.DATASETS["eurosat"].license


def test_prepare_refuses_a_hostile_archive_from_the_server(server, tmp_path):
    url, state = server
    good = {f"Top/cls/{i}.png": image_bytes("PNG", (i, i, i)) for i in range(2)}
    state.files["/evil.zip"] = make_zip(tmp_path / "evil.zip", {**good, "../../escaped.png": b"x"}).read_bytes()
    link = tarfile.TarInfo("Top/cls/link.png")
    link.type, link.linkname = tarfile.SYMTYPE, "/etc/passwd"
    state.files["/evil.tar.gz"] = make_tar(tmp_path / "evil.tar.gz", [*good.items(), link]).read_bytes()
    data_dir = tmp_path / "data"
    for name in ("evil.zip", "evil.tar.gz"):
        with pytest.raises(UnsafeArchiveError):
            datasets.prepare("eurosat", data_dir, url=f"{url}/{name}", progress=False)
        written = {str(p.relative_to(data_dir)) for p in data_dir.rglob("*")}
        archive = "eurosat/downloads/EuroSAT.zip"
        assert written == {"eurosat", "eurosat/downloads", archive, f"{archive}.json"}  # the archive and its record
        (data_dir / archive).unlink()
        (data_dir / f"{archive}.json").unlink()
    assert not (tmp_path / "escaped.png").exists()


# ----------------------------------------------------------------------- published checksums, recorded downloads
def test_registry_sources_are_https_with_published_checksums_cited() -> None:
    """Every download is https; a pinned checksum says where it is published; an entry without one is named in
    docs/datasets.md, which says why."""
    checksums = (Path(__file__).resolve().parents[1] / "docs" / "datasets.md").read_text().split("## Checksums")[1]
    for name, spec in datasets.DATASETS.items():
        if spec.url is None:
            continue
        assert spec.url.startswith("https://"), name
        if spec.md5 or spec.sha256:
            assert spec.checksum_source, f"{name}: where is its checksum published?"
        else:
            assert f"`{name}`" in checksums.split("\n## ")[0], f"docs/datasets.md: why has {name} no checksum?"
    assert datasets.DATASETS["ucmerced"].md5 and datasets.DATASETS["eurosat"].md5


def test_a_verified_download_is_recorded_and_a_changed_file_is_refused(server, tmp_path: Path) -> None:
    url, state = server
    blob = ucmerced_like_zip(tmp_path / "u.zip").read_bytes()
    state.files["/u.zip"] = blob
    dest = tmp_path / "downloads" / "u.zip"
    download(f"{url}/u.zip", dest, md5=hashlib.md5(blob).hexdigest(), progress=False)
    record = json.loads((tmp_path / "downloads" / "u.zip.json").read_text())
    assert (record["size"], record["sha256"]) == (len(blob), hashlib.sha256(blob).hexdigest())
    requests = len(state.log)
    assert download(f"{url}/u.zip", dest, progress=False) == dest and len(state.log) == requests  # reused as it was
    dest.write_bytes(blob[:-1] + bytes([blob[-1] ^ 1]))  # the same size, one byte changed since
    with pytest.raises(ChecksumError, match=r"not the file that was downloaded and verified \(sha256") as caught:
        download(f"{url}/u.zip", dest, progress=False)
    assert "\n" not in str(caught.value)
    with pytest.raises(ChecksumError, match="MD5"):  # a published MD5 that does not match: removed, never used
        download(f"{url}/u.zip", tmp_path / "other.zip", md5="0" * 32, progress=False)
    assert not (tmp_path / "other.zip").exists()
    bad = datasets.DatasetSpec(name="bad", title="test", url=f"{url}/u.zip", md5="0" * 32)
    with pytest.raises(ChecksumError, match="MD5"):  # prepare() applies the registry's MD5
        datasets.prepare(bad, tmp_path / "data", progress=False)
