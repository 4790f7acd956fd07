"""The validation record (config.Params `record=`): a mapping that passed the full validation
skips the checks that import torch and timm the next time, with the same code and library
versions, and with nothing else: other params, other code, other versions or a damaged record
mean the full validation again. (That the recorded path loads no torch is checked in a fresh
interpreter by tests/test_imports.py.)"""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
import yaml

from spikeattn import config
from spikeattn.config import Params, ParamsError
from spikeattn.recipe import study_settings

REPO = Path(__file__).resolve().parents[1]
RAW = yaml.safe_load((REPO / "params.yaml").read_text())
# Two studies are enough (one with sources, so the recorded model section feeds its card).
STUDIES = ("demo-digits", "ma-gesture")


@pytest.fixture
def raw() -> dict:
    raw = copy.deepcopy(RAW)
    raw["study"] = {name: raw["study"][name] for name in STUDIES}
    raw.pop("papers", None)
    raw.pop("groups", None)
    raw["studies"] = "all"
    return raw


def facts(params: Params) -> dict:
    """What a Params answers, per study: cells, settings (the recipe's), energy conventions."""
    return {
        study: {
            "cells": [cell.id for cell in params.cells(study)],
            "settings": study_settings(params, study),
            "energy": params.energy_settings(study),
        }
        for study in params.studies
    }


def only_record(directory: Path) -> Path:
    (record,) = directory.iterdir()
    return record


def test_the_same_params_again_skip_the_full_validation_and_answer_the_same(raw, tmp_path):
    first = Params(raw, record=tmp_path)
    second = Params(raw, record=tmp_path)
    assert (first.validated_fully, second.validated_fully) == (True, False)
    assert facts(second) == facts(first)
    assert study_settings(second, "ma-gesture")["model.lif.v_threshold"] == 0.3
    assert only_record(tmp_path).name == config.validation_digest(raw)


def test_without_a_record_directory_every_params_is_validated_fully(raw):
    assert Params(raw).validated_fully and Params(raw).validated_fully


def test_other_params_are_validated_fully_so_a_record_hides_no_bad_value(raw, tmp_path):
    """An unknown optimizer is caught only by the checks a record skips (timm's list)."""
    Params(raw, record=tmp_path)
    raw["study"]["demo-digits"].setdefault("train", {})["opt"] = "adamw_typo"
    with pytest.raises(ParamsError, match="study.demo-digits.train.opt: unknown optimizer"):
        Params(raw, record=tmp_path)


def test_other_code_is_validated_fully(raw, tmp_path, monkeypatch):
    """Code that now refuses a backbone: the record made with the old code does not hide it,
    while a record for the same code would (which is why the code is part of the key)."""
    Params(raw, record=tmp_path)
    monkeypatch.setattr(
        config,
        "_registries",
        lambda: {"dataset": config._dataset_names(), "backbone": (), "attention": (), "coding": ()},
    )
    assert not Params(raw, record=tmp_path).validated_fully  # same code digest: trusted
    monkeypatch.setattr(config, "code_digest", lambda: "0" * 64)
    with pytest.raises(ParamsError, match="study.ma-gesture.grid.backbone.0.: unknown backbone"):
        Params(raw, record=tmp_path)


def test_other_library_versions_are_validated_fully(raw, tmp_path, monkeypatch):
    Params(raw, record=tmp_path)
    versions = config.library_versions()
    monkeypatch.setattr(config, "library_versions", lambda: {**versions, "timm": "0.0.1"})
    assert Params(raw, record=tmp_path).validated_fully
    assert len(list(tmp_path.iterdir())) == 2  # one record per version


def test_the_code_digest_reads_every_python_and_yaml_file_of_the_package(tmp_path, monkeypatch):
    package = tmp_path / "spikeattn"
    (package / "sub").mkdir(parents=True)
    (package / "config.py").write_text("x = 1\n")
    (package / "sub" / "schema.yaml").write_text("a: 1\n")
    (package / "notes.txt").write_text("not code\n")
    monkeypatch.setattr(config, "__file__", str(package / "config.py"))

    def digest():
        config.code_digest.cache_clear()
        return config.code_digest()

    try:
        before = digest()
        (package / "notes.txt").write_text("still not code\n")
        assert digest() == before
        (package / "sub" / "schema.yaml").write_text("a: 2\n")
        assert digest() != before
    finally:
        config.code_digest.cache_clear()


@pytest.mark.parametrize(
    "damage",
    [
        pytest.param(lambda text: text[: len(text) // 2], id="truncated"),
        pytest.param(lambda text: "", id="empty"),
        pytest.param(lambda text: "\x00\xff garbage", id="garbage"),
        pytest.param(lambda text: "[]", id="not-a-mapping"),
        pytest.param(
            lambda text: json.dumps({**json.loads(text), "digest": "0" * 64}), id="other-digest"
        ),
        pytest.param(
            lambda text: json.dumps({**json.loads(text), "model_sections": {"demo-digits": {}}}),
            id="a-study-missing",
        ),
    ],
)
def test_a_damaged_record_is_not_trusted_and_is_rewritten(raw, tmp_path, damage):
    Params(raw, record=tmp_path)
    record = only_record(tmp_path)
    good = record.read_text()
    record.write_text(damage(good))
    again = Params(raw, record=tmp_path)
    assert again.validated_fully
    assert record.read_text() == good
    assert not Params(raw, record=tmp_path).validated_fully


def test_a_record_that_cannot_be_written_leaves_validation_as_it_is(raw, tmp_path):
    """A read-only checkout: no record, no error, the full validation every time."""
    blocked = tmp_path / "a-file"
    blocked.write_text("")
    for _ in range(2):
        assert Params(raw, record=blocked / "validated").validated_fully


def test_old_records_are_deleted_beyond_records_kept(raw, tmp_path, monkeypatch):
    monkeypatch.setattr(config, "RECORDS_KEPT", 2)
    for i in range(3):
        (tmp_path / f"old{i}").write_text("{}")
    Params(raw, record=tmp_path)
    names = sorted(p.name for p in tmp_path.iterdir())
    assert len(names) == 2 and config.validation_digest(raw) in names
