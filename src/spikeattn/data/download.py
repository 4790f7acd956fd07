"""Downloading real datasets: mirrors, md5 checks, resumable transfers (extraction: `archives`).

Dataset hosting breaks often (tonic's DVSGesture download fails since 2026-01; NMNIST,
NCALTECH101 and CIFAR10DVS moved before), so every archive lists its own mirrors and md5 in
params.yaml (`datasets.<name>.archives`), and a failure says exactly where to put the file
by hand. `raw_dir/<file>` holds each verified archive and `raw_dir/<file stem>/` its
extracted content (tonic counts a dataset as present only when both exist);
`manifest.json`, written last, marks the download complete.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any, Mapping
from urllib.error import URLError
from urllib.request import Request, urlopen

from spikeattn.data.archives import archive_stem, is_archive, safe_extract
from spikeattn.data.errors import DataError, DownloadError
from spikeattn.data.registry import DATASETS, check_params, get_info, raw_dir, raw_params
from spikeattn.data.sources import get_source
from spikeattn.io import file_digest, write_json

TIMEOUT_S = 10.0  # per connection attempt: an offline mirror fails in seconds, not minutes


def md5sum(path: Path) -> str:
    return file_digest(path, "md5")


def _fetch_one(url: str, part: Path, timeout: float) -> None:
    """Fetch `url` into `part`, resuming from its current size when the server allows it."""
    start = part.stat().st_size if part.exists() else 0
    request = Request(url, headers={"Range": f"bytes={start}-"} if start else {})
    with urlopen(request, timeout=timeout) as response:
        resumed = start > 0 and getattr(response, "status", None) == 206
        with open(part, "ab" if resumed else "wb") as out:
            shutil.copyfileobj(response, out, 1 << 20)


def fetch(archive: Mapping[str, Any], path: Path, timeout: float = TIMEOUT_S) -> None:
    """Put the archive at `path`, md5-verified, trying each mirror in turn."""
    part = path.with_name(path.name + ".part")
    problems = []
    for url in archive["urls"]:
        try:
            _fetch_one(url, part, timeout)
        except (URLError, OSError, ValueError) as err:
            problems.append(f"{url}: {getattr(err, 'reason', err)}")
            continue
        got = md5sum(part)
        if got == archive["md5"]:
            os.replace(part, path)
            return
        problems.append(f"{url}: md5 {got}, expected {archive['md5']}")
        part.unlink()
    size = f", {archive['size']:,} bytes" if archive.get("size") else ""
    tried = "\n  ".join(problems) or "(no mirror listed)"
    raise DownloadError(
        f"could not fetch {archive['file']} (md5 {archive['md5']}{size}) from any mirror:\n  "
        f"{tried}\nDownload it by hand and place it at {path.resolve()}; the next run checks "
        "its md5 and carries on from there."
    )


def check_folder(name: str, params: Mapping[str, Any], root: str | Path) -> Path:
    """A dataset the user provides as a folder (ImageNet): check its layout, record it."""
    checked = check_params(name, params)
    folder = Path(checked["root"]).expanduser()
    get_source(name).check(folder)
    target = raw_dir(name, root)
    target.mkdir(parents=True, exist_ok=True)
    write_json(
        target / "manifest.json",
        {"dataset": name, "params": raw_params(name, checked), "root": str(folder.resolve())},
    )
    return target


def download(
    name: str, params: Mapping[str, Any], root: str | Path, timeout: float = TIMEOUT_S
) -> Path:
    """Fetch, verify and extract dataset `name` into `root/data/raw/<name>/`; return that dir."""
    info = get_info(name)
    if info.source == "embedded":
        raise DataError(
            f"dataset {name!r} is built locally from embedded data: run `spikeattn prepare {name}`"
        )
    if info.source == "folder":
        return check_folder(name, params, root)
    checked = check_params(name, params)
    archives = checked.get("archives") or []
    if not archives:
        embedded = ", ".join(n for n, info in DATASETS.items() if info.source == "embedded")
        raise NotImplementedError(
            f"datasets.{name}.archives in params.yaml lists no archive to download (file, md5, "
            f"mirror urls); add them, or use an embedded dataset ({embedded})"
        )
    target = raw_dir(name, root)
    target.mkdir(parents=True, exist_ok=True)
    (target / "manifest.json").unlink(missing_ok=True)  # complete again only once all is done
    for archive in archives:
        path = target / archive["file"]
        if not (path.exists() and md5sum(path) == archive["md5"]):
            fetch(archive, path, timeout)
        if archive.get("extract", True) and is_archive(archive["file"]):
            safe_extract(path, target / archive_stem(archive["file"]))
    get_source(name).after_extract(target)
    write_json(
        target / "manifest.json",
        {
            "dataset": name,
            "params": raw_params(name, checked),
            "md5": {archive["file"]: archive["md5"] for archive in archives},
        },
    )
    return target
