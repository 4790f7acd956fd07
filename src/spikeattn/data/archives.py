"""Safe extraction of dataset archives: used by `download` for the archives it fetched and by
readers whose release packs archives inside archives (`sources.base.extract_inner`).

Extraction is atomic (a folder appears whole or not at all) and refuses members that could
write outside the dataset folder (absolute paths, '..', links, device files).
"""

from __future__ import annotations

import stat
import tarfile
import zipfile
from pathlib import Path, PurePosixPath

from spikeattn.data.errors import DownloadError
from spikeattn.io import atomic_dir

ARCHIVE_SUFFIXES = (".tar", ".tar.gz", ".tgz", ".zip")


def is_archive(name: str) -> bool:
    """True for a file name `safe_extract` can unpack (by its suffix)."""
    return name.endswith(ARCHIVE_SUFFIXES)


def archive_stem(name: str) -> str:
    """The folder an archive extracts into: its name less the longest archive suffix."""
    for suffix in sorted(ARCHIVE_SUFFIXES, key=len, reverse=True):
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return name


def _check_member(name: str, is_link: bool, archive: Path) -> None:
    path = PurePosixPath(name)
    if path.is_absolute() or ".." in path.parts or is_link:
        raise DownloadError(
            f"{archive}: refusing to extract member {name!r} (absolute path, '..' or "
            "link: it could write outside the dataset folder); delete the archive "
            "and fetch it from a trusted mirror"
        )


def safe_extract(archive: Path, dest: Path) -> None:
    """Extract a tar/zip archive into `dest` atomically, refusing members that could escape it."""
    try:
        if zipfile.is_zipfile(archive):
            with zipfile.ZipFile(archive) as zf:
                for info in zf.infolist():
                    _check_member(info.filename, stat.S_ISLNK(info.external_attr >> 16), archive)
                with atomic_dir(dest) as tmp:
                    zf.extractall(tmp)
            return
        with tarfile.open(archive) as tf:
            members = tf.getmembers()
            for member in members:
                _check_member(member.name, member.issym() or member.islnk(), archive)
                if not (member.isfile() or member.isdir()):
                    raise DownloadError(f"{archive}: refusing special member {member.name!r}")
            with atomic_dir(dest) as tmp:
                tf.extractall(tmp, members=members, filter="data")
    except (tarfile.TarError, zipfile.BadZipFile, EOFError) as err:
        raise DownloadError(
            f"{archive}: not a readable archive ({err}); delete it and run "
            "`spikeattn download` again"
        ) from None
