"""DVS128-Gait (Wang et al., CVPR 2019 / TPAMI 2021): the authors' text release, read directly.

Layout, from the code that reads it (github zhangxiann/TPAMI_Gait_Identification: README.md,
EV-Gait-IMG/make_hdf5.py, convert_event_to_channel_image_tool.py, matlab_downsample/main.m;
MA-SNN's loader BICLab/Attention-SNN MA_SNN/DVSGait/DVS_gait_data_process/DVS128_Gait_dataloaders.py):
`DVS128-Gait-Day.zip` unzips to `train/<subject>/<n>.txt` and `test/<subject>/<n>.txt` (how
deep inside the zip is not documented, so the folders are searched for). The train/test
folders are the official split. `<subject>` is an integer folder name used as the label as is
(`int(folder)` in both repositories; TPAMI's 20-way classifiers imply 0..19, MA-SNN's one-hot
has 21 slots, as here: a name outside 0..20 is a DataError). Each .txt is one walk, one event
per line, `t x y p` as whitespace-separated integers (MA-SNN casts each token to int64), t in
microseconds (both scale their ms windows by 1000), x, y in 0..127, p 1 ON, else OFF (0; -1 is
accepted too, an assumption: no source shows it). No md5 is published; the archive is only on
Google Drive and Baidu (README above), so none of this was checked against the real file.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np

from .base import DataError, EventRecord, EventSource, check_events, find_dirs, refetch_hint


class DVS128Gait(EventSource):
    name = "dvs128-gait"
    sensor = (128, 128)
    num_classes = 21
    official_split = True
    # 20 subjects x 100 walks in each of 2 sessions = 4,000 recordings (zhangxiann/
    # TPAMI_Gait_Identification README); train/ taken as one session, 2,000: approximate, as no
    # split count is published and the archive was not checked.
    official_train, total, classes_present = 2000, 4000, 20

    def release_dir(self, raw: Path) -> Path:
        """The one folder holding both train/ and test/ (at whatever depth the archive put it)."""
        trains = find_dirs(raw, "**/train", self.name, "DVS128-Gait train/ folder")
        roots = [
            t.parent for t in trains if "__MACOSX" not in t.parts and (t.parent / "test").is_dir()
        ]
        if len(roots) != 1:
            found = ", ".join(map(str, roots)) or "none with a test/ beside it"
            raise DataError(
                f"{raw}: expected exactly one folder holding train/<subject>/*.txt and "
                f"test/<subject>/*.txt (DVS128-Gait-Day.zip unzipped), found: {found}; "
                "keep one release there"
            )
        return roots[0]

    def records(self, raw: Path) -> list[EventRecord]:
        root = self.release_dir(Path(raw))
        out = []
        for split, folder in enumerate(("train", "test")):
            for subject in sorted(p for p in (root / folder).iterdir() if p.is_dir()):
                if not subject.name.isdigit() or int(subject.name) >= self.num_classes:
                    raise DataError(
                        f"{subject}: subject folders must be named 0..{self.num_classes - 1} "
                        "(the class label); " + refetch_hint(self.name)
                    )
                files = sorted(p for p in subject.glob("*.txt") if not p.name.startswith("."))
                if not files:
                    raise DataError(
                        f"{subject}: holds no .txt recordings; " + refetch_hint(self.name)
                    )
                out += [
                    EventRecord(f, int(subject.name), split, f"subject {subject.name}")
                    for f in files
                ]
        if not out:
            raise DataError(
                f"{root}: train/ and test/ hold no subject folders; " + refetch_hint(self.name)
            )
        return out

    def read(self, path: Path) -> np.ndarray:
        with warnings.catch_warnings():  # an empty file: numpy warns, check_events says what to do
            warnings.simplefilter("ignore", UserWarning)
            table = np.loadtxt(path, dtype=np.int64, ndmin=2)
        if table.size and table.shape[1] != 4:
            raise DataError(
                f"{path}: expected 4 columns (t x y p) per line, got {table.shape[1]}; "
                + refetch_hint(self.name)
            )
        table = table.reshape(-1, 4)
        p = np.where(table[:, 3] == -1, 0, table[:, 3])
        events = np.rec.fromarrays(
            [table[:, 1], table[:, 2], table[:, 0], p], names=("x", "y", "t", "p")
        )
        return check_events(events, path, self.sensor, self.name)  # range-checked before int16
