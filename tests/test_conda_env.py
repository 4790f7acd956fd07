"""envs/spikeattn.yaml (the rules' software under `snakemake --use-conda`) pins exactly what
requirements.lock pins: `make lock` writes both, and this fails if one was edited alone."""

from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]


def test_conda_env_pins_the_lock_file():
    env = yaml.safe_load((REPO / "envs" / "spikeattn.yaml").read_text())
    (pip,) = [d["pip"] for d in env["dependencies"] if isinstance(d, dict)]
    lock = [line for line in (REPO / "requirements.lock").read_text().splitlines() if line]
    assert pip == lock
    assert "python=3.11" in env["dependencies"]


def test_every_shell_rule_names_the_conda_env():
    """Each rule that runs a command declares it (snakemake --lint asks for one per rule)."""
    for smk in sorted((REPO / "pipeline").glob("*.smk")):
        text = smk.read_text()
        assert text.count("shell:") == text.count('conda:\n        "../envs/spikeattn.yaml"'), smk
