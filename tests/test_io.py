"""File helpers (spikeattn.io): errors name the file and where in it."""
import pytest

from spikeattn.io import read_yaml


def test_a_yaml_syntax_error_names_file_line_and_column(tmp_path):
    path = tmp_path / "params.yaml"
    path.write_text("train:\n  lr: 0.1\nstudy: [a,\n")  # the list is never closed
    with pytest.raises(ValueError) as err:
        read_yaml(path)
    assert str(err.value).startswith(f"{path}:4:1: not valid YAML")
    path.write_text("train:\n  lr: 0.1\n")
    assert read_yaml(path) == {"train": {"lr": 0.1}}
