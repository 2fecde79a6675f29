"""Resumable HTTP downloads (Range requests, retries) with size and SHA-256 checks before a file is marked complete."""

from __future__ import annotations

import hashlib
import http.client
import json
import logging
import os
import re
import socket
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from embedlab._io import write_json
from embedlab._progress import tqdm
from embedlab.datasets.archives import DAMAGED_ARCHIVE_ERRORS, looks_like_archive, read_to_end
from embedlab.datasets.errors import ChecksumError, DownloadError

logger = logging.getLogger(__name__)

_USER_AGENT = "embedlab/0.1 (+https://github.com/embedlab)"


def _filename_from_url(url: str) -> str:
    """A file name for a download: the last URL path segment (without a query string)."""
    name = url.split("?", 1)[0].rstrip("/").rsplit("/", 1)[-1]
    return name or "download"


def download(
    url: str,
    dest: str | os.PathLike[str],
    *,
    sha256: str | None = None,
    size: int | None = None,
    md5: str | None = None,
    progress: bool = True,
    retries: int = 3,
    retry_wait: float = 1.0,
    timeout: float = 60.0,
    chunk_size: int = 1 << 20,
) -> Path:
    """Download ``url`` to ``dest``, resuming ``dest.part`` with HTTP Range; verify, then rename into place.

    An existing ``dest`` is complete (it only appears by an atomic rename after verification) and is returned
    at once. A dropped connection is retried ``retries`` times from where it stopped; a server that ignores
    Range is restarted cleanly from byte 0. A resume sends the server's validators (If-Range with the ETag or
    Last-Modified kept in ``dest.part.json``), so a file that changed on the server is downloaded again whole,
    never spliced onto the old part (a 206 with other validators restarts too). A size or SHA-256 mismatch
    removes the file and raises ChecksumError (``md5`` too: the digest torchvision and torchgeo publish).
    A verified file gets a record beside it, ``<dest>.json``: its size and SHA-256. A later call that finds ``dest``
    checks it against that record (without one: against what is known, then records it) and refuses a file that
    changed since in one line (ChecksumError), rather than extracting whatever is there now.
    When neither the server (no Content-Length) nor the caller (``size``/``sha256``) gives the length, an
    archive is read to its end (verify_archive) before it counts as complete: a connection that simply closed
    early is resumed, never renamed into place.
    """
    dest = Path(dest)
    if dest.is_file():
        return _reuse(dest, url, sha256=sha256, size=size, md5=md5)
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    for attempt in range(retries + 1):
        try:
            length_known = _fetch(url, part, size=size, progress=progress, timeout=timeout, chunk_size=chunk_size)
            if not length_known and size is None and sha256 is None:
                _prove_complete(part)
            break
        except _Interrupted as exc:
            have = part.stat().st_size if part.exists() else 0
            if attempt == retries:
                raise DownloadError(
                    f"download of {url} was interrupted ({exc}); {have} bytes are kept in {part}: "
                    f"run again to resume (if this keeps failing, delete {part})"
                ) from exc
            logger.warning("download of %s interrupted at %d bytes (%s); resuming", url, have, exc)
            time.sleep(retry_wait * (attempt + 1))
    digests = _verify(part, url, sha256=sha256, size=size, md5=md5)
    os.replace(part, dest)
    _validators_path(part).unlink(missing_ok=True)
    _record(dest, url, digests)
    return dest


def download_record(dest: str | os.PathLike[str]) -> Path:
    """Where a verified download's size and SHA-256 are recorded: `<dest>.json`."""
    return Path(dest).with_name(Path(dest).name + ".json")


def read_download_record(dest: str | os.PathLike[str]) -> dict[str, Any] | None:
    """The record of a verified download ({"url", "size", "sha256", "md5"}), or None without a readable one."""
    try:
        found = json.loads(download_record(dest).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return found if isinstance(found, dict) and {"size", "sha256"} <= set(found) else None


def _record(dest: Path, url: str, digests: dict[str, str] | None) -> None:
    """Record a verified download's size and digests beside it (hashing it now when the check did not)."""
    write_json(download_record(dest), {"url": url, "size": dest.stat().st_size, **(digests or file_digests(dest))})


def _reuse(dest: Path, url: str, *, sha256: str | None, size: int | None, md5: str | None) -> Path:
    """A file already at `dest`: the same as when it was verified (its record), else ChecksumError in one line."""
    record = read_download_record(dest)
    if record is None:  # placed by hand, or from before records: check what is known, then record it
        _record(dest, url, _verify(dest, url, sha256=sha256, size=size, md5=md5))
        return dest
    digests = file_digests(dest)
    expected = {"size": record["size"], "sha256": record["sha256"], "md5": record.get("md5")}
    known = {"size": size, "sha256": sha256, "md5": md5}
    actual = {"size": dest.stat().st_size, **digests}
    for key, value in actual.items():
        for want in (expected[key], known[key]):
            if want is not None and str(want).lower() != str(value).lower():
                raise ChecksumError(
                    f"{dest} is not the file that was downloaded and verified ({key} {value}, expected {want}, "
                    f"recorded in {download_record(dest)}): delete both to download it again"
                )
    return dest


def _validators_path(part: Path) -> Path:
    """Where the server's validators (ETag, Last-Modified) of a partial download are kept: `<dest>.part.json`."""
    return part.with_name(part.name + ".json")


def _stored_validators(part: Path) -> dict[str, str]:
    """The validators recorded when `part` was started ({} when none were given or the record is unreadable)."""
    try:
        found = json.loads(_validators_path(part).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return (
        {k: str(v) for k, v in found.items() if k in ("etag", "last_modified") and v} if isinstance(found, dict) else {}
    )


def _validators(headers: Any) -> dict[str, str]:
    """The response's ETag and Last-Modified (what identifies this version of the file on the server)."""
    found = {"etag": headers.get("ETag"), "last_modified": headers.get("Last-Modified")}
    return {k: v for k, v in found.items() if v}


def _if_range(stored: dict[str, str]) -> str | None:
    """The If-Range value for a resume: a strong ETag, else Last-Modified (a weak ETag may not be used)."""
    etag = stored.get("etag")
    return etag if etag and not etag.startswith("W/") else stored.get("last_modified")


class _Interrupted(Exception):
    """A transfer stopped early for a reason worth retrying (dropped connection, timeout, 5xx)."""


def _prove_complete(part: Path) -> None:
    """Without a known length, accept an archive only when it reads to its end; else resume (an _Interrupted)."""
    if not looks_like_archive(part):
        logger.warning("%s: the server sent no length and the file is not an archive: completeness not checked", part)
        return
    try:
        read_to_end(part)
    except DAMAGED_ARCHIVE_ERRORS as exc:
        raise _Interrupted(
            f"no length was sent and the archive does not read to its end: {type(exc).__name__}: {exc}"
        ) from exc


def _fetch(url: str, part: Path, *, size: int | None, progress: bool, timeout: float, chunk_size: int) -> bool:
    """Append the rest of ``url`` to ``part`` (or rewrite it when the server cannot resume).

    Returns True when the server stated the length and every byte of it arrived.
    """
    have = part.stat().st_size if part.exists() else 0
    if size is not None and have > size:
        part.unlink()
        have = 0
    request = urllib.request.Request(url, headers={"User-Agent": _USER_AGENT})
    if have:
        request.add_header("Range", f"bytes={have}-")
        if validator := _if_range(_stored_validators(part)):  # the rest only if the file is unchanged, else all
            request.add_header("If-Range", validator)
    try:
        response = urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and have:
            total = _content_range_total(exc.headers.get("Content-Range", ""))
            if total == have:  # the partial file already holds everything
                return True
            part.unlink()
            raise _Interrupted(f"server refused to resume at byte {have}; restarting") from exc
        if exc.code >= 500 or exc.code == 429:
            raise _Interrupted(f"HTTP {exc.code} {exc.reason}") from exc
        raise DownloadError(f"HTTP {exc.code} {exc.reason} for {url}: check the URL (or your access rights)") from exc
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        if isinstance(reason, (TimeoutError, socket.timeout, ConnectionResetError)):
            raise _Interrupted(str(reason)) from exc
        raise DownloadError(f"cannot reach {url}: {reason}. Are you online? A rerun resumes the download.") from exc
    with response:
        return _receive(response, part, have, url=url, size=size, progress=progress, chunk_size=chunk_size)


def _receive(
    response: Any, part: Path, have: int, *, url: str, size: int | None, progress: bool, chunk_size: int
) -> bool:
    """Write the response body to ``part``: append on 206 at the right offset, else rewrite from zero.

    Returns True when the length was stated (Content-Length, or the total of a 206's Content-Range) and met.
    """
    mode, start = "wb", 0
    now, stored = _validators(response.headers), _stored_validators(part) if have else {}
    if have and response.status == 206:
        start = _content_range_start(response.headers.get("Content-Range", ""))
        changed = [k for k in now if k in stored and now[k] != stored[k]]
        if start != have or changed:
            part.unlink()
            _validators_path(part).unlink(missing_ok=True)
            why = f"the file on the server changed ({', '.join(changed)})" if changed else f"resumed at byte {start}"
            raise _Interrupted(f"{why}, not the {have} bytes kept: restarting from the beginning")
        mode = "ab"
    elif have:
        logger.warning("%s sent the whole file (changed since, or no Range support): starting again", url)
    if mode == "wb":  # a new start: remember which version of the file this is, for the next resume
        if now:
            write_json(_validators_path(part), now)
        else:
            _validators_path(part).unlink(missing_ok=True)
    length = response.headers.get("Content-Length")
    expected = int(length) if length is not None and length.isdigit() else None
    total = start + expected if expected is not None else size
    received = 0
    with (
        open(part, mode) as handle,
        tqdm(
            total=total,
            initial=start,
            unit="B",
            unit_scale=True,
            unit_divisor=1024,
            desc=part.name[:-5],
            disable=not progress,
        ) as bar,
    ):
        try:
            while chunk := response.read(chunk_size):
                handle.write(chunk)
                received += len(chunk)
                bar.update(len(chunk))
        except (http.client.IncompleteRead, ConnectionError, TimeoutError) as exc:
            raise _Interrupted(f"connection lost after {start + received} bytes") from exc
    if expected is not None and received < expected:
        raise _Interrupted(f"connection closed after {start + received} of {start + expected} bytes")
    if expected is not None:
        return True
    stated = _content_range_total(response.headers.get("Content-Range", "")) if mode == "ab" else None
    if stated is not None and start + received < stated:
        raise _Interrupted(f"connection closed after {start + received} of {stated} bytes")
    return stated is not None


def _content_range_start(value: str) -> int:
    """The first byte of a ``Content-Range: bytes a-b/n`` header (-1 when unparsable)."""
    match = re.match(r"\s*bytes\s+(\d+)-\d+/(\d+|\*)", value)
    return int(match.group(1)) if match else -1


def _content_range_total(value: str) -> int | None:
    """The total size in a ``Content-Range: bytes */n`` header (None when unknown)."""
    match = re.search(r"/(\d+)\s*$", value)
    return int(match.group(1)) if match else None


def _verify(
    path: Path, url: str, *, sha256: str | None, size: int | None, md5: str | None = None
) -> dict[str, str] | None:
    """Check size, SHA-256 and MD5 where known; on mismatch remove the file and raise ChecksumError. Returns the
    digests when it computed them."""
    actual_size = path.stat().st_size
    if (size is not None and actual_size != size) or sha256 is not None or md5 is not None:
        _validators_path(path).unlink(missing_ok=True)  # checked below: a mismatch removes the part for good
    if size is not None and actual_size != size:
        path.unlink()
        raise ChecksumError(f"{url}: got {actual_size} bytes, expected {size}; the file was removed, run again")
    if sha256 is None and md5 is None:
        return None
    digests = file_digests(path)
    for key, label, expected in (("sha256", "SHA-256", sha256), ("md5", "MD5", md5)):
        if expected is not None and digests[key] != expected.lower():
            path.unlink()
            raise ChecksumError(
                f"{url}: {label} {digests[key]} does not match the expected {expected}; the file was removed. "
                "Run again to re-download; if it keeps failing the source has changed."
            )
    return digests


def file_digests(path: str | os.PathLike[str]) -> dict[str, str]:
    """Hex SHA-256 and MD5 of a file in one read of 1 MiB blocks (MD5: what torchvision and torchgeo publish)."""
    sha256, md5 = hashlib.sha256(), hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as handle:
        while block := handle.read(1 << 20):
            sha256.update(block)
            md5.update(block)
    return {"sha256": sha256.hexdigest(), "md5": md5.hexdigest()}


def file_sha256(path: str | os.PathLike[str]) -> str:
    """Hex SHA-256 of a file."""
    return file_digests(path)["sha256"]
