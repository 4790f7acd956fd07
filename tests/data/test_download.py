"""The download stage, offline: tiny archives served from file:// and a loopback HTTP mirror."""

import hashlib
import http.server
import io
import threading
import time
import zipfile

import pytest
from layouts_events import tar_gz_bytes

from spikeattn.data import download
from spikeattn.data.download import DownloadError

BASE = {
    "source": "download",
    "frame_method": "time_window",
    "dt_ms": 15,
    "downsample": 4,
    "split": "official",
    "test_fraction": None,
    "split_seed": None,
}


def archive_params(tmp_path, data: bytes, file="gesture.tar.gz", urls=None, md5=None):
    mirror = tmp_path / "mirror"
    mirror.mkdir(exist_ok=True)
    (mirror / file).write_bytes(data)
    entry = {
        "file": file,
        "md5": md5 or hashlib.md5(data).hexdigest(),
        "size": len(data),
        "urls": urls or [(mirror / file).as_uri()],
    }
    return {**BASE, "archives": [entry]}


GOOD = tar_gz_bytes(
    {
        "DvsGesture/user01_fluorescent.aedat": b"events" * 100,
        "DvsGesture/user01_fluorescent_labels.csv": b"class,start,end\n1,0,10\n",
    }
)


def test_download_verifies_and_extracts_then_reuses(tmp_path):
    root = tmp_path / "repo"
    params = archive_params(tmp_path, GOOD)
    target = download("dvs128-gesture", params, root)
    assert (target / "gesture.tar.gz").is_file()  # tonic wants the archive and the folder
    assert (target / "gesture" / "DvsGesture" / "user01_fluorescent_labels.csv").is_file()
    assert (target / "manifest.json").is_file()
    (tmp_path / "mirror" / "gesture.tar.gz").unlink()  # no mirror left: the verified copy is reused
    assert download("dvs128-gesture", params, root) == target


def test_failing_mirrors_fail_fast_and_say_where_to_put_the_file(tmp_path):
    root = tmp_path / "repo"
    params = archive_params(
        tmp_path,
        GOOD,
        urls=["http://127.0.0.1:9/gesture.tar.gz", (tmp_path / "missing.tar.gz").as_uri()],
    )
    start = time.monotonic()
    with pytest.raises(DownloadError) as err:
        download("dvs128-gesture", params, root)
    assert time.monotonic() - start < 10
    target = root / "data" / "raw" / "dvs128-gesture" / "gesture.tar.gz"
    message = str(err.value)
    assert str(target.resolve()) in message and params["archives"][0]["md5"] in message
    assert f"{len(GOOD):,} bytes" in message
    assert not (target.parent / "manifest.json").exists()
    target.write_bytes(GOOD)  # placed by hand: the next run picks it up
    assert (download("dvs128-gesture", params, root) / "manifest.json").is_file()


def test_wrong_md5_is_refused_and_leaves_nothing(tmp_path):
    root = tmp_path / "repo"
    params = archive_params(tmp_path, GOOD, md5="0" * 32)
    with pytest.raises(DownloadError, match="expected 0{32}"):
        download("dvs128-gesture", params, root)
    raw = root / "data" / "raw" / "dvs128-gesture"
    assert not list(raw.glob("*.part")) and not (raw / "gesture.tar.gz").exists()


@pytest.mark.parametrize(
    "members,symlink",
    [
        ({"../escape.txt": b"x"}, None),
        ({"/abs/escape.txt": b"x"}, None),
        ({"ok.txt": b"x"}, "link"),
    ],
)
def test_unsafe_members_are_refused(tmp_path, members, symlink):
    root = tmp_path / "repo"
    with pytest.raises(DownloadError, match="refusing"):
        download("dvs128-gesture", archive_params(tmp_path, tar_gz_bytes(members, symlink)), root)
    raw = root / "data" / "raw" / "dvs128-gesture"
    assert not (tmp_path / "repo" / "data" / "raw" / "escape.txt").exists()
    assert not (raw / "gesture").exists() and not (raw / "manifest.json").exists()


def test_unsafe_zip_members_and_corrupt_archives(tmp_path):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("../escape.txt", b"x")
    with pytest.raises(DownloadError, match="refusing"):
        download(
            "cifar10-dvs",
            {
                **archive_params(tmp_path, buf.getvalue(), file="c.zip"),
                "frame_method": "event_count",
            },
            tmp_path / "a",
        )
    corrupt = b"\x1f\x8b" + b"not really gzip" * 10
    with pytest.raises(DownloadError, match="not a readable archive"):
        download(
            "dvs128-gesture", archive_params(tmp_path, corrupt, file="bad.tar.gz"), tmp_path / "b"
        )


class RangeHandler(http.server.BaseHTTPRequestHandler):
    """Serves one payload, honouring `Range: bytes=N-` with 206 like a real mirror."""

    payload = b""
    ranges: list[str] = []

    def do_GET(self):
        start = 0
        if "Range" in self.headers:
            RangeHandler.ranges.append(self.headers["Range"])
            start = int(self.headers["Range"].split("=")[1].rstrip("-"))
            self.send_response(206)
        else:
            self.send_response(200)
        body = self.payload[start:]
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def test_partial_download_resumes_with_a_range_request(tmp_path):
    RangeHandler.payload, RangeHandler.ranges = GOOD, []
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), RangeHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_port}/gesture.tar.gz"
        params = archive_params(tmp_path, GOOD, urls=[url])
        raw = tmp_path / "repo" / "data" / "raw" / "dvs128-gesture"
        raw.mkdir(parents=True)
        (raw / "gesture.tar.gz.part").write_bytes(GOOD[:100])  # an interrupted earlier run
        download("dvs128-gesture", params, tmp_path / "repo")
    finally:
        server.shutdown()
    assert RangeHandler.ranges == ["bytes=100-"]
    assert (raw / "gesture.tar.gz").read_bytes() == GOOD


def test_no_archives_declared_names_the_key(tmp_path):
    with pytest.raises(NotImplementedError, match=r"datasets\.dvs128-gesture\.archives"):
        download("dvs128-gesture", BASE, tmp_path)
    with pytest.raises(ValueError, match="built locally"):
        download("digits", {}, tmp_path)
