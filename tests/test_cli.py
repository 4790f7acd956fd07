"""`spikeattn` command line: argument errors are one clear line, never a traceback."""

import subprocess
import sys
from pathlib import Path

import pytest

from spikeattn.cli import _parser, main

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def in_repo(monkeypatch):
    monkeypatch.chdir(REPO)  # the repository's params.yaml


def test_params_may_come_before_or_after_the_stage():
    before = _parser().parse_args(["--params", "a.yaml", "cells", "s"])
    after = _parser().parse_args(["cells", "s", "--params", "b.yaml"])
    default = _parser().parse_args(["cells", "s"])
    assert (str(before.params), str(after.params), str(default.params)) == (
        "a.yaml",
        "b.yaml",
        "params.yaml",
    )


@pytest.mark.parametrize(
    "argv, message",
    [
        (["prepare", "nope"], "no dataset 'nope' under `datasets`"),
        (["preprocess", "nope", "--T", "2"], "no dataset 'nope' under `datasets`"),
        (["download", "digits"], "run `spikeattn prepare digits`"),
        (["prepare", "n-mnist"], "run `spikeattn download n-mnist`"),
    ],
)
def test_unknown_or_wrong_kind_of_dataset_is_one_line(in_repo, capsys, argv, message):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_non_positive_counts_are_argument_errors(capsys):
    for argv in (
        ["preprocess", "digits", "--T", "0"],
        ["train", "--study", "s", "--cell", "c", "--seed", "0", "--threads", "-1"],
    ):
        with pytest.raises(SystemExit) as exit_:
            _parser().parse_args(argv)
        assert exit_.value.code == 2 and "is not >= 1" in capsys.readouterr().err


def test_each_stage_describes_itself():
    parser = _parser()
    stages = parser._subparsers._group_actions[0].choices
    assert all(sub.description for sub in stages.values()), [
        name for name, sub in stages.items() if not sub.description
    ]


def test_help_answers_without_importing_torch():
    proc = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys; from spikeattn.cli import main\n"
            "try: main(['--help'])\nexcept SystemExit: pass\n"
            "print('torch' in sys.modules, 'timm' in sys.modules)",
        ],
        capture_output=True,
        text=True,
        check=True,
        cwd=REPO,
    )
    assert proc.stdout.strip().endswith("False False"), proc.stdout
