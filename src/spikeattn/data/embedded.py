"""Building the embedded datasets' raw folders from scikit-learn's bundled 8x8 digits, so no
network is needed (`spikeattn prepare`; their entries and readers: `sources/digits.py`).

`digits` is the images themselves. `digits-dvs` is made the way N-MNIST was made from MNIST:
a simulated event camera watches each digit move along three saccades (an isosceles
triangle) and emits ON/OFF events where the log intensity changes by more than a threshold.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np

from spikeattn.data.errors import DataError
from spikeattn.data.registry import get_info, raw_dir, raw_params
from spikeattn.data.sources.base import EVENT_DTYPE
from spikeattn.data.sources.digits import DIGITS_MAX, Digits, DigitsDVS, upsample
from spikeattn.data.splits import per_class_split
from spikeattn.io import atomic_dir, file_digest, write_json

LOG_EPS = 0.1  # dark floor of the log intensity, as a real sensor's dark current: I=0 is not -inf
CHUNK = 128  # samples simulated together: big enough to vectorise, small enough to stay in cache


def digit_images(max_samples: int | None) -> tuple[np.ndarray, np.ndarray]:
    """The first `max_samples` (or all 1,797) digits as uint8 [N, 8, 8] in 0..16, and labels."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = digits.images.astype(np.uint8)[:max_samples]
    return images, digits.target.astype(np.int64)[:max_samples]


# --- the event camera ----------------------------------------------------------------------


def saccade_offsets(params: Mapping[str, Any]) -> np.ndarray:
    """float [K+1, 2] (y, x) top-left position of the digit at each simulation step 0..K.

    Three straight saccades along an isosceles triangle (base and height = saccade_px) that
    returns to its start, centred on the sensor as N-MNIST's camera motion was.
    """
    a, size, digit = params["saccade_px"], params["sensor_size"], params["digit_size"]
    vertices = np.array([[0.0, 0.0], [a, a / 2], [0.0, a], [0.0, 0.0]])  # (y, x)
    steps_per_saccade = params["saccade_ms"] * 1000 // params["step_us"]
    frac = np.arange(3 * steps_per_saccade + 1) / steps_per_saccade
    leg = np.minimum(frac.astype(int), 2)
    pos = vertices[leg] + (frac - leg)[:, None] * (vertices[leg + 1] - vertices[leg])
    return pos + (size - digit - a) / 2


def pad_digits(digits: np.ndarray, sensor_size: int) -> np.ndarray:
    """[N, 2S, 2S] float32 with the [N, D, D] digits at [S:S+D, S:S+D] and darkness around.

    Every shifted view `render` needs is then a slice of this one array: nothing is rebuilt
    per simulation step.
    """
    n, d, _ = digits.shape
    padded = np.zeros((n, 2 * sensor_size, 2 * sensor_size), dtype=np.float32)
    padded[:, sensor_size : sensor_size + d, sensor_size : sensor_size + d] = digits
    return padded


def render(padded: np.ndarray, offset: np.ndarray, sensor_size: int) -> np.ndarray:
    """The sensor image [N, S, S] with the digit's top-left at sub-pixel `offset` (y, x).

    Bilinear interpolation of the shift, so motion is smooth rather than whole-pixel jumps.
    """
    s = sensor_size
    (iy, ix), (fy, fx) = (
        np.floor(offset).astype(int),
        (offset - np.floor(offset)).astype(np.float32),
    )
    block = padded[
        :, s - iy - 1 : 2 * s - iy, s - ix - 1 : 2 * s - ix
    ]  # one spare row/col for the shift
    rows = (1 - fy) * block[:, 1:, :] + fy * block[:, :-1, :]
    return (1 - fx) * rows[:, :, 1:] + fx * rows[:, :, :-1]


def threshold_maps(params: Mapping[str, Any]) -> np.ndarray:
    """float32 [2, S*S] per-pixel OFF/ON contrast thresholds with seeded gaussian mismatch.

    One map for the whole dataset, as one physical camera recorded all of N-MNIST.
    """
    rng = np.random.default_rng(params["seed"])
    size, c = params["sensor_size"], params["threshold"]
    maps = c * (1 + params["threshold_sigma"] * rng.standard_normal((2, size * size)))
    return np.maximum(maps, 0.01 * c).astype(np.float32)  # a 4-sigma pixel must still be positive


def _ranks(counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For pixels firing `counts` events each: the pixel of every event and its rank 1..count."""
    owner = np.repeat(np.arange(len(counts)), counts)
    first = np.cumsum(counts) - counts
    return owner, np.arange(len(owner)) - first[owner] + 1


def _step_events(
    log_prev: np.ndarray, log_now: np.ndarray, reference: np.ndarray, thresholds: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Events of one simulation step on flat [N*S*S] log images; updates `reference` in place.

    Returns the flat pixel index, the crossing time as a fraction of the step, and the polarity.
    Only pixels whose change reaches the smallest threshold are looked at, which keeps the
    per-step cost near that of the rendering.
    """
    delta = log_now - reference
    cand = np.flatnonzero(np.abs(delta) >= thresholds.min())
    d = delta[cand]
    on = d > 0
    c = thresholds[on.astype(np.intp), cand % thresholds.shape[1]]
    n = np.floor(np.abs(d) / c).astype(np.int64)
    n[(log_now[cand] - log_prev[cand]) * d <= 0] = 0  # float residue on a still pixel is no event
    sign = np.where(on, 1.0, -1.0).astype(np.float32)
    owner, rank = _ranks(n)
    pixel = cand[owner]
    level = reference[pixel] + sign[owner] * rank * c[owner]
    # Linear interpolation of the log intensity inside the step gives the crossing time.
    frac = (level - log_prev[pixel]) / (log_now[pixel] - log_prev[pixel])
    reference[cand] += sign * n * c
    return pixel, frac.clip(0.0, 1.0), on[owner]  # clip: rounding can put a crossing a hair outside


def simulate_events(digits: np.ndarray, params: Mapping[str, Any]) -> tuple[np.ndarray, np.ndarray]:
    """Events of all [N, D, D] digits (sorted by sample, then t) and int64 offsets [N+1].

    Samples are independent, so they are simulated in chunks small enough for the CPU cache.
    """
    parts = [_simulate_chunk(digits[i : i + CHUNK], params) for i in range(0, len(digits), CHUNK)]
    counts = np.concatenate([counts for _, counts in parts])
    return np.concatenate([ev for ev, _ in parts]), np.concatenate([[0], np.cumsum(counts)])


def _simulate_chunk(digits: np.ndarray, params: Mapping[str, Any]) -> tuple[np.ndarray, np.ndarray]:
    """Events of one chunk (sorted by sample, then t) and the number per sample.

    Vectorised over samples and pixels; the only loop is over simulation steps.
    """
    step, size = params["step_us"], params["sensor_size"]
    path = saccade_offsets(params)
    thresholds = threshold_maps(params)
    padded = pad_digits(digits, size)
    log_prev = np.log(LOG_EPS + render(padded, path[0], size)).ravel()
    reference = log_prev.copy()
    chunks = []
    for k in range(1, len(path)):
        log_now = np.log(LOG_EPS + render(padded, path[k], size)).ravel()
        pixel, frac, on = _step_events(log_prev, log_now, reference, thresholds)
        chunks.append((pixel, np.round((k - 1 + frac) * step).astype(np.int64), on))
        log_prev = log_now
    pixel, t, on = (np.concatenate(parts) for parts in zip(*chunks))
    sample, within = np.divmod(pixel, size * size)
    order = np.lexsort((t, sample))
    events = np.empty(len(order), dtype=EVENT_DTYPE)
    events["y"], events["x"] = np.divmod(within[order], size)
    events["t"], events["p"] = t[order], on[order]
    return events, np.bincount(sample, minlength=len(digits)).astype(np.int64)


# --- prepare: write the raw directory ------------------------------------------------------


def _split(name: str, labels: np.ndarray, params: Mapping[str, Any]) -> np.ndarray:
    """The real datasets' per-class split (`splits.per_class_split`), drawn once here."""
    return per_class_split(
        labels, params["test_fraction"], params["split_seed"], dataset=name, size_key="max_samples"
    )


def _build_digits(params: dict, out: Path) -> tuple[str, np.ndarray, np.ndarray]:
    images, labels = digit_images(params["max_samples"])
    split = _split(Digits.name, labels, params)
    np.savez(out / Digits.file, images=images, labels=labels, split=split)
    return Digits.file, labels, split


def _build_digits_dvs(params: dict, out: Path) -> tuple[str, np.ndarray, np.ndarray]:
    images, labels = digit_images(params["max_samples"])
    split = _split(DigitsDVS.name, labels, params)
    digits = upsample(images, params["digit_size"]) / DIGITS_MAX
    events, offsets = simulate_events(digits, params)
    np.savez(out / DigitsDVS.file, events=events, offsets=offsets, labels=labels, split=split)
    return DigitsDVS.file, labels, split


_BUILDERS: dict[str, Callable[[dict, Path], tuple[str, np.ndarray, np.ndarray]]] = {
    Digits.name: _build_digits,
    DigitsDVS.name: _build_digits_dvs,
}


def prepare(name: str, params: Mapping[str, Any], root: str | Path) -> Path:
    """Build `root/data/raw/<name>/` (data file + manifest.json) atomically; return it."""
    info = get_info(name)
    if info.source != "embedded":
        raise DataError(
            f"dataset {name!r} is downloaded (or read from disk): run `spikeattn download {name}`"
        )
    params = raw_params(name, params)
    target = raw_dir(name, root)
    with atomic_dir(target) as tmp:
        filename, labels, split = _BUILDERS[name](params, tmp)
        write_json(
            tmp / "manifest.json",
            {
                "dataset": name,
                "params": params,
                "counts": {"train": int((split == 0).sum()), "test": int((split == 1).sum())},
                "class_counts": np.bincount(labels, minlength=info.num_classes).tolist(),
                "sha256": {filename: file_digest(tmp / filename)},
            },
        )
    return target
