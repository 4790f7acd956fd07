"""Checkpoints and resume states are checked when read back: damaged, truncated or replaced files
are refused with an error naming the file and the fix, never trained on or measured."""

import numpy as np
import pytest
import timm
import torch

import spikeattn.models  # noqa: F401  (registers demo_cnn with timm)
from spikeattn.io import file_digest
from spikeattn.train.checkpoint import (
    CheckpointError,
    Resume,
    load_checkpoint,
    read_resume_state,
    save_checkpoint,
)

KWARGS = {"attention": "TA", "T": 2, "num_classes": 4, "img_size": 16}


def _garble(path, start=0.1, stop=0.9, seed=0):
    """Overwrite bytes [start, stop) of the file (fractions of its size) with random ones."""
    size = path.stat().st_size
    lo, hi = int(size * start), int(size * stop)
    with open(path, "r+b") as f:
        f.seek(lo)
        f.write(np.random.default_rng(seed).integers(0, 256, hi - lo, dtype=np.uint8).tobytes())
    assert path.stat().st_size == size


@pytest.fixture
def checkpoint(tmp_path):
    model = timm.create_model("demo_cnn", **KWARGS)
    path = tmp_path / "checkpoint.pt"
    return path, save_checkpoint(path, model, "demo_cnn", KWARGS, seed=0), model


def test_saved_digest_is_the_files_and_loading_checks_it(checkpoint):
    path, digest, model = checkpoint
    assert digest == file_digest(path)
    loaded, extra = load_checkpoint(path, digest)
    assert extra["seed"] == 0
    assert all(
        torch.equal(a, b) for a, b in zip(loaded.state_dict().values(), model.state_dict().values())
    )


def test_same_size_garbage_in_a_checkpoint_is_refused(checkpoint):
    path, digest, _ = checkpoint
    _garble(path, 0.45, 0.55)  # inside the weights: torch.load alone would accept it
    with pytest.raises(CheckpointError) as err:
        load_checkpoint(path, digest)
    assert str(path) in str(err.value) and f"--forcerun {path}" in str(err.value)
    assert "damaged or replaced" in str(err.value)


def test_a_truncated_checkpoint_names_the_file_even_without_a_digest(checkpoint):
    path, digest, _ = checkpoint
    path.write_bytes(path.read_bytes()[:2000])
    with pytest.raises(CheckpointError, match="damaged or replaced"):
        load_checkpoint(path, digest)
    with pytest.raises(CheckpointError) as err:
        load_checkpoint(path)  # metrics.json of an older version records no digest
    assert f"{path}: cannot be read as a checkpoint" in str(err.value)
    assert f"--forcerun {path}" in str(err.value)


@pytest.fixture
def state(tmp_path):
    path = tmp_path / "resume.pt"
    weights = {"w": torch.arange(16384, dtype=torch.float32)}  # 64 KB: the file's middle is data
    Resume(path, "fp").save({"epoch": 2, "model": weights, "history": []})
    return path, weights


def test_a_saved_state_reads_back_whole(state):
    path, weights = state
    resume = Resume(path, "fp")
    assert resume.state["epoch"] == 2 and torch.equal(resume.last_weights()["w"], weights["w"])


@pytest.mark.parametrize("where", [(0.45, 0.55), (0.05, 0.95)], ids=["in the data", "most of it"])
def test_same_size_garbage_in_a_resume_state_is_refused(state, where):
    path, _ = state
    _garble(path, *where)
    with pytest.raises(CheckpointError) as err:
        Resume(path, "fp")
    assert str(path) in str(err.value) and f"delete {path} to train this run from the start" in str(
        err.value
    )


def test_a_truncated_resume_state_names_the_file(state):
    path, _ = state
    path.write_bytes(path.read_bytes()[:3000])
    with pytest.raises(CheckpointError, match=f"{path}: cannot read this resume state"):
        read_resume_state(path)


def test_a_state_saved_before_digests_is_resumed_with_a_warning(tmp_path):
    path = tmp_path / "resume.pt"
    torch.save(
        {"epoch": 1, "model": {}, "fingerprint": "fp", "extra": {"mlflow_run_id": "r"}}, path
    )
    with pytest.warns(UserWarning, match="before resume states carried a digest"):
        resume = Resume(path, "fp")
    assert resume.state["epoch"] == 1 and resume.extra == {"mlflow_run_id": "r"}
