"""The errors and warning of the datasets stage: every message names the path or URL it is about."""

from __future__ import annotations


class DatasetError(Exception):
    """A dataset cannot be found, downloaded, extracted or read; the message names the path or URL."""


class DownloadError(DatasetError):
    """A transfer failed (network, HTTP status); rerunning resumes from the partial file."""


class ChecksumError(DownloadError):
    """A downloaded file has the wrong size or SHA-256; the bad file has been removed."""


class UnsafeArchiveError(DatasetError):
    """An archive member would land outside the target folder (../, absolute path, link); nothing was written."""


class DatasetWarning(UserWarning):
    """Files were skipped (unreadable or not images); the dataset still works without them."""


SHOWN_SKIPS = 20  # files a warning names one by one; past that it names the file or attribute listing them all


def name_skipped(skipped: list[tuple[str, str]], listed_in: str) -> str:
    """Every skipped file with its reason, or the first SHOWN_SKIPS and where all of them are listed: a skip
    warning accounts for every file, never "e.g." a few of them."""
    shown = "; ".join(f"{name} ({' '.join(why.split())[:120]})" for name, why in skipped[:SHOWN_SKIPS])
    rest = len(skipped) - SHOWN_SKIPS
    return shown + (f"; and {rest} more, all listed in {listed_in}" if rest > 0 else f" (listed in {listed_in})")
