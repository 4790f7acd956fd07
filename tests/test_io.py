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


def test_write_texts_writes_each_file_whole_and_leaves_no_temporary(tmp_path):
    from spikeattn.io import write_texts

    out = tmp_path / "reports" / "s"  # made on the way
    written = write_texts(out, {"a.md": "# µJ ± –\n", "b.csv": "x,y\n1,2\n"})
    assert written == [out / "a.md", out / "b.csv"]
    assert (out / "a.md").read_text(encoding="utf-8") == "# µJ ± –\n"
    assert (out / "b.csv").read_text(encoding="utf-8") == "x,y\n1,2\n"
    assert sorted(p.name for p in out.iterdir()) == ["a.md", "b.csv"]
