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
