"""The two errors the data stages raise for a user to act on, in one module every other data
module can import (readers, archive extraction and download alike) without importing each other.
"""

from __future__ import annotations


class DataError(ValueError):
    """A raw data file is missing, unreadable or out of range; the message says what to do."""


class DownloadError(RuntimeError):
    """No mirror delivered a file with the right md5, or an archive is unreadable or unsafe to
    extract; the message says how to place the file by hand."""
