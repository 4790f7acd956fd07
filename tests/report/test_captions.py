"""Report captions: RST escaping, and what the figure and paper captions say (real params)."""

from __future__ import annotations

from pathlib import Path

import docutils.core
import pytest

from spikeattn.config import Params
from spikeattn.energy import EnergyConventions
from spikeattn.report.captions import (
    figure_captions,
    paper_report_caption,
    rst_escape,
    study_setting,
)

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def params() -> Params:
    return Params.load(ROOT / "params.yaml")  # the repository's own: demo-digits, demo-dvs


@pytest.fixture(scope="module")
def energy_caption(params) -> str:
    return EnergyConventions.from_params(params.energy).caption()


def _render(text: str) -> str:
    """HTML body of `text` as RST; any docutils warning or error raises (halt_level 2)."""
    parts = docutils.core.publish_parts(
        text, writer="html", settings_overrides={"report_level": 2, "halt_level": 2}
    )
    return parts["body"]


def _plain(body: str) -> str:
    """The text docutils rendered inside the single paragraph, with its HTML entities undone."""
    import html

    assert body.startswith("<p>") and body.rstrip().endswith("</p>"), body
    return html.unescape(body.strip()[3:-4])


# -- rst_escape --------------------------------------------------------------------------------
def test_rst_escape_each_special_character():
    assert rst_escape("*") == r"\*"
    assert rst_escape("`") == r"\`"
    assert rst_escape("_") == r"\_"
    assert rst_escape("|") == r"\|"
    assert rst_escape("\\") == "\\\\"
    assert rst_escape(r"a*b`c_d|e\f") == r"a\*b\`c\_d\|e\\f"
    assert rst_escape("plain text (45 nm), 3.4× & <ok>") == "plain text (45 nm), 3.4× & <ok>"
    assert rst_escape("") == ""


def test_rst_escaped_text_renders_as_itself():
    raw = r"*not bold* **nor this** `code` E_MAC ref_ |sub| a\b [1]_ :math:`x`"
    body = _render(rst_escape(raw))
    assert "<em>" not in body and "<strong>" not in body and "<code" not in body
    assert "<a " not in body and "problematic" not in body
    assert _plain(body) == raw


def test_unescaped_markup_would_break_docutils():
    """The reason for escaping: a bare substitution reference is an error."""
    from docutils.utils import SystemMessage

    with pytest.raises(SystemMessage):
        _render("a |sub| b")


# -- study settings and figure captions --------------------------------------------------------
def test_study_setting_of_the_demo_studies(params):
    assert study_setting(params, "demo-dvs") == "digits-dvs T=6; 8 cells; seeds 0, 1, 2; 7 epochs"
    # 8 grid points minus the two excluded SMA/GAC combinations
    assert study_setting(params, "demo-digits") == "digits T=4; 6 cells; seeds 0, 1, 2; 6 epochs"


def test_study_setting_single_seed_says_seed():
    class OneSeed:
        def cells(self, study):
            from spikeattn.config import Cell

            return [
                Cell(study, "d", "b", "none", "direct", 2),
                Cell(study, "d", "b", "none", "direct", 4),
            ]

        def seeds(self, study):
            return [7]

        def train_settings(self, study):
            return {"epochs": 1}

    assert study_setting(OneSeed(), "s") == "d T=2, d T=4; 2 cells; seed 7; 1 epoch"


def test_figure_captions_demo_dvs(params, energy_caption):
    captions = figure_captions(params, "demo-dvs", energy_caption)
    assert set(captions) == {"pareto", "firing_rates", "training_curves"}
    setting = "digits-dvs T=6; 8 cells; seeds 0, 1, 2; 7 epochs"
    for text in captions.values():
        assert text.startswith(f"Study demo-dvs ({setting}).")
    pareto = captions["pareto"]
    assert "mean ± sample std over seeds" in pareto  # two seeds
    assert "Pareto front" in pareto
    # the energy conventions, RST-escaped (E_MAC would otherwise be markup-adjacent)
    assert "Energy conventions: " + rst_escape(energy_caption) in pareto
    assert r"E\_MAC = 4.6 pJ" in pareto and r"E\_AC = 0.9 pJ" in pareto
    assert "E_MAC" not in pareto
    assert "firing rate" in captions["firing_rates"].lower()
    assert "min-max band" in captions["training_curves"]


@pytest.mark.parametrize("name", ["pareto", "firing_rates", "training_curves"])
def test_figure_captions_render_cleanly_with_docutils(params, energy_caption, name):
    text = figure_captions(params, "demo-dvs", energy_caption)[name]
    plain = _plain(_render(text))
    assert plain.startswith("Study demo-dvs (digits-dvs T=6; 8 cells; seeds 0, 1, 2; 7 epochs).")
    if name == "pareto":
        assert "E_MAC = 4.6 pJ" in plain and "\\" not in plain
        assert plain.endswith(energy_caption)


def test_escaped_energy_caption_renders_without_warnings(energy_caption):
    assert "E_MAC" in energy_caption
    text = rst_escape(f"Energy conventions: {energy_caption}")
    assert _plain(_render(text)) == f"Energy conventions: {energy_caption}"


def test_paper_report_caption(params, energy_caption):
    text = paper_report_caption(params, "demo", ["demo-digits", "demo-dvs"], energy_caption)
    assert text.startswith(rst_escape(params.paper("demo")["title"]))
    assert "alpha 0.05, at least 3 seeds, holm correction" in text
    assert "demo-digits: digits T=4; 6 cells; seeds 0, 1, 2; 6 epochs." in text
    assert "demo-dvs: digits-dvs T=6; 8 cells; seeds 0, 1, 2; 7 epochs." in text
    plain = _plain(_render(text))
    assert plain.endswith(f"Energy conventions: {energy_caption}")


def test_captions_state_how_diverged_runs_are_shown(params, energy_caption):
    captions = figure_captions(params, "demo-dvs", energy_caption)
    for name, text in captions.items():
        assert "NaN or infinite (diverged) are left out" in text, name
        assert "named in a note under the figure" in text, name
    assert "A cell whose seeds all diverged has no point." in captions["pareto"]
    assert "drawn dashed" in captions["training_curves"]
    paper = paper_report_caption(params, "demo", ["demo-digits", "demo-dvs"], energy_caption)
    assert "Diverged runs (training loss NaN or infinite) are left out" in paper
    assert _plain(_render(paper)).endswith(f"Energy conventions: {energy_caption}")
