"""build_paper, build_figures and tables_page, on small hand-written per-seed result files."""

from __future__ import annotations

import re
from html.parser import HTMLParser

import pandas as pd
import pytest
from result_files import lif_layers, write_run

from spikeattn.paths import FIGURE_FORMATS, FIGURE_NAMES, PAPER_FILES
from spikeattn.report import build_tables
from spikeattn.report.ablation import ABLATION_COLUMNS, ablation_table
from spikeattn.report.build import StudyInputs, build_figures, build_paper
from spikeattn.report.headline import headline_lines, headline_note
from spikeattn.report.html import tables_page
from spikeattn.report.paper import paper_long, paper_wide

CONVENTIONS = "E_MAC = 4.6 pJ, E_AC = 0.9 pJ (45 nm); first layer 100% dense"
REPORT = {"alpha": 0.05, "min_seeds": 3, "correction": "holm"}
SEEDS = [0, 1, 2]
# Two studies: dataset A at T=4 and dataset B at T=8, each a vanilla cell and a TCSA cell.
STUDY_SPECS = {"sa": ("A", 4), "sb": ("B", 8)}
ACC = {"none": [0.9612, 0.9647, 0.9577], "TCSA": [0.9700, 0.9710, 0.9720]}
SPIKES = {"none": [1000.0, 1100.0, 900.0], "TCSA": [500.0, 520.0, 480.0]}
ENERGY = {"none": [0.0400, 0.0410, 0.0420], "TCSA": [0.0200, 0.0210, 0.0220]}
RATES = {"none": (0.30, 0.20), "TCSA": (0.15, 0.05)}


def _cell(dataset: str, T: int, attention: str) -> dict:
    return {
        "id": f"{dataset}__demo_cnn__{attention}__direct__T{T}",
        "dataset": dataset,
        "backbone": "demo_cnn",
        "attention": attention,
        "coding": "direct",
        "T": T,
    }


CELLS = {s: [_cell(d, T, "none"), _cell(d, T, "TCSA")] for s, (d, T) in STUDY_SPECS.items()}
TARGETS = {
    "sa": [{"cell": {"attention": "TCSA"}, "acc": 97.5, "energy_mj": 0.0123, "source": "Paper X"}],
    "sb": [],
}


def _write_seed(
    root, study: str, cell: dict, seed: int, i: int, conventions: str = CONVENTIONS, **status
):
    """metrics.json, energy.json (with spikes and per-layer rows) and history.csv; `status`
    passes status / diverged_epoch / loss on to write_run."""
    att = cell["attention"]
    rates = [r + 0.01 * i for r in RATES[att]]
    return write_run(
        root,
        study,
        cell,
        seed,
        acc=ACC[att][i],
        best=ACC[att][i] + 0.001,
        rate=sum(rates) / 2,
        energy_uj=ENERGY[att][i],
        params=12_345,
        spikes=SPIKES[att][i],
        sops=2000.0,
        macs=1000,
        layers=lif_layers(rates),
        conventions=conventions,
        history=[(1.2, ACC[att][i] - 0.1), (0.6, ACC[att][i])],
        epochs=2,
        **status,
    )


@pytest.fixture
def results(tmp_path):
    root = tmp_path / "results"
    for study, cells in CELLS.items():
        for cell in cells:
            for i, seed in enumerate(SEEDS):
                _write_seed(root, study, cell, seed, i)
    return root


def _inputs(seeds=SEEDS) -> dict[str, StudyInputs]:
    return {
        s: StudyInputs(cells=CELLS[s], seeds=list(seeds), targets=TARGETS[s], epochs=2)
        for s in CELLS
    }


class _Tags(HTMLParser):
    """Counts start tags, checks nesting, and keeps thead rows' header texts."""

    VOID = {"meta", "br", "hr", "img", "link", "input"}

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.counts: dict[str, int] = {}
        self.stack: list[str] = []
        self.head_rows: list[list[str]] = []
        self.text: list[str] = []
        self._cell: list[str] | None = None

    def handle_starttag(self, tag, attrs):
        self.counts[tag] = self.counts.get(tag, 0) + 1
        if tag not in self.VOID:
            self.stack.append(tag)
        if tag == "tr" and "thead" in self.stack:
            self.head_rows.append([])
        if tag == "th" and "thead" in self.stack:
            self._cell = []

    def handle_endtag(self, tag):
        assert self.stack and self.stack[-1] == tag, f"</{tag}> closes {self.stack[-1:]}"
        self.stack.pop()
        if tag == "th" and self._cell is not None:
            self.head_rows[-1].append("".join(self._cell).strip())
            self._cell = None

    def handle_data(self, data):
        self.text.append(data)
        if self._cell is not None:
            self._cell.append(data)


def _parse(page: str) -> _Tags:
    parser = _Tags()
    parser.feed(page)
    parser.close()
    assert parser.stack == [], f"unclosed tags: {parser.stack}"
    return parser


# -- build_paper -------------------------------------------------------------------------------
def test_build_paper_writes_all_eight_files(results, tmp_path):
    out = tmp_path / "reports" / "demo"
    frames = build_paper("demo", "Demo paper", _inputs(), results, out, REPORT)
    assert sorted(p.name for p in out.iterdir()) == sorted(PAPER_FILES)
    assert len(PAPER_FILES) == 8
    assert set(frames) == {"runs", "results", "ablation"}
    assert len(frames["runs"]) == 12  # 2 studies x 2 cells x 3 seeds

    results_csv = pd.read_csv(out / "results.csv")
    pd.testing.assert_frame_equal(results_csv, frames["results"], check_dtype=False)
    assert list(results_csv["row"]) == ["none", "TCSA", "none", "TCSA"]
    md = (out / "results.md").read_text()
    assert md.startswith("# demo: results\n")
    assert "96.12 ± 0.35 (3)" in md and "97.10 ± 0.10 (3)" in md
    tcsa = [
        c.strip()
        for c in next(line for line in md.splitlines() if line.startswith("| TCSA"))
        .strip("|")
        .split("|")
    ]
    # sa group: Paper, Ours, Δ = 97.10 - 97.50, Energy, Paper (µJ) = 0.0123 mJ; sb: Ours, Energy
    assert tcsa == [
        "TCSA",
        "97.50",
        "97.10 ± 0.10 (3)",
        "-0.40",
        "0.0210 ± 0.0010",
        "12.3",
        "97.10 ± 0.10 (3)",
        "0.0210 ± 0.0010",
    ]
    assert "Targets from: Paper X." in md and f"Energy conventions: {CONVENTIONS}." in md
    assert "sa: A T=4; seeds 0, 1, 2; 2 epochs." in md
    tex = (out / "results.tex").read_text()
    assert r"\label{tab:demo-results}" in tex and r"\multicolumn" in tex
    assert r"\label{tab:demo-ablation}" in (out / "ablation.tex").read_text()


def test_build_paper_ablation_one_row_per_variant_with_significance(results, tmp_path):
    out = tmp_path / "out"
    frames = build_paper("demo", "Demo paper", _inputs(), results, out, REPORT)
    ablation = pd.read_csv(out / "ablation.csv")
    assert tuple(ablation.columns) == ABLATION_COLUMNS
    assert list(zip(ablation["study"], ablation["attention"])) == [("sa", "TCSA"), ("sb", "TCSA")]
    assert list(ablation["twin"]) == [CELLS["sa"][0]["id"], CELLS["sb"][0]["id"]]
    assert ablation["significant"].notna().all()  # 3 seeds each side: tested
    assert ablation["p_value"].notna().all()
    assert ablation["acc_delta"].tolist() == pytest.approx([97.10 - 96.12] * 2)
    assert ablation["spike_reduction_pct"].tolist() == pytest.approx([50.0, 50.0])
    assert ablation["energy_ratio"].tolist() == pytest.approx([0.041 / 0.021] * 2)
    assert len(frames["ablation"]) == 2
    md = (out / "ablation.md").read_text()
    assert md.startswith("# demo: ablations\n") and "3 vs 3" in md


def test_build_paper_writes_the_headline_from_the_ablation_table(results, tmp_path):
    out = tmp_path / "out"
    build_paper("demo", "Demo paper", _inputs(), results, out, REPORT)
    md = (out / "headline.md").read_text()
    assert md.startswith(f"# demo: headline\n\n{headline_note(0.05, 3, 'holm')}\n\n## sa\n\n")
    bullets = [line[2:] for line in md.splitlines() if line.startswith("- ")]
    # one line per ablation.csv row, read from it: spikes 500 / 1000 = -50.0%, accuracy
    # 97.10 - 96.12 = +0.98 pp; one variant per study, so Holm leaves each p as it is
    lines = headline_lines(pd.read_csv(out / "ablation.csv"), 0.05, 3)
    assert bullets == lines["sa"] + lines["sb"] and len(bullets) == 2
    for study, line in zip(("sa", "sb"), bullets):
        assert line.startswith(f"TCSA vs none ({study}, seeds 3 vs 3): spikes -50.0% [95% CI -")
        assert "; accuracy +0.98 pp [95% CI " in line and "p n/a" not in line
    # tables.html opens with the same lines
    page = (out / "tables.html").read_text()
    assert page.index('id="headline"') < page.index('id="results"')
    text = "".join(_parse(page).text)
    assert all(line in text for line in bullets)


def test_build_paper_with_two_seeds_leaves_significance_untested(results, tmp_path):
    out = tmp_path / "out"
    build_paper("demo", "Demo paper", _inputs([0, 1]), results, out, REPORT)
    ablation = pd.read_csv(out / "ablation.csv")
    assert len(ablation) == 2
    assert ablation["significant"].isna().all() and ablation["p_value"].isna().all()
    assert "n/a (2 seeds < 3)" in (out / "ablation.md").read_text()
    assert "(2)" in (out / "results.md").read_text()
    headline = (out / "headline.md").read_text()
    # seeds 0, 1: spikes 510 / 1050 - 1 = -51.4%; accuracy 97.05 - 96.295 = +0.755 -> +0.75
    assert (
        "TCSA vs none (sb, seeds 2 vs 2): spikes -51.4%, p n/a (2 seeds < 3); "
        "accuracy +0.75 pp, p n/a (2 seeds < 3)\n"
    ) in headline


def test_build_paper_inconsistent_conventions_write_nothing(results, tmp_path):
    cell = CELLS["sb"][1]
    _write_seed(results, "sb", cell, 2, 2, conventions="E_MAC = 3.1 pJ (another node)")
    out = tmp_path / "out"
    with pytest.raises(ValueError, match="conventions differ") as err:
        build_paper("demo", "Demo paper", _inputs(), results, out, REPORT)
    assert f"{cell['id']}/seed2" in str(err.value)
    assert not out.exists() or not any(out.iterdir())


def test_build_paper_failure_keeps_previous_report(results, tmp_path):
    out = tmp_path / "out"
    build_paper("demo", "Demo paper", _inputs(), results, out, REPORT)
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    (results / "sa" / CELLS["sa"][0]["id"] / "seed1" / "metrics.json").unlink()
    with pytest.raises(FileNotFoundError, match="spikeattn train --study sa"):
        build_paper("demo", "Demo paper", _inputs(), results, out, REPORT)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before


def test_build_paper_html_page(results, tmp_path):
    out = tmp_path / "out"
    build_paper("demo", "Demo <paper> & co", _inputs(), results, out, REPORT)
    page = (out / "tables.html").read_text()
    tags = _parse(page)
    assert tags.counts["table"] == 2 + len(CELLS)  # results, ablation, one summary per study
    assert "<title>Demo &lt;paper&gt; &amp; co</title>" in page
    assert 'id="study-sa"' in page and 'id="study-sb"' in page
    assert "96.12 ± 0.35 (3)" in page


# -- build_figures -----------------------------------------------------------------------------
def test_build_figures_writes_png_and_svg_of_each_figure(results, tmp_path):
    tables = tmp_path / "reports" / "sa"
    build_tables("sa", CELLS["sa"], SEEDS, results, tables, targets=TARGETS["sa"])
    out = tmp_path / "figures" / "sa"
    written = build_figures("sa", _inputs()["sa"], tables / "summary.csv", results, out)
    expected = {f"{n}.{fmt}" for n in FIGURE_NAMES for fmt in FIGURE_FORMATS}
    assert len(expected) == 6
    assert {p.name for p in written} == expected
    assert {p.name for p in out.iterdir()} == expected  # no temporary files left behind
    for path in written:
        assert path.stat().st_size > 1000
    assert (out / "pareto.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert b"<svg" in (out / "firing_rates.svg").read_bytes()[:2000]


# -- tables_page -------------------------------------------------------------------------------
def _runs(attentions=("none", "TCSA")) -> pd.DataFrame:
    rows = []
    for study, (dataset, T) in STUDY_SPECS.items():
        for att in attentions:
            cell = _cell(dataset, T, att)
            for i, seed in enumerate(SEEDS):
                rows.append(
                    {
                        "study": study,
                        "cell": cell["id"],
                        **{k: cell[k] for k in ("dataset", "backbone", "attention", "coding", "T")},
                        "seed": seed,
                        "acc": 100 * ACC[att][i],
                        "spikes": SPIKES[att][i],
                        "energy_uj": ENERGY[att][i],
                    }
                )
    return pd.DataFrame(rows)


def _summaries() -> dict[str, tuple[pd.DataFrame, str]]:
    return {
        s: (
            pd.DataFrame({"Cell": ["none <x>", "TCSA"], "Acc. (%)": ["1 ± 2", "3 ± 4"]}),
            f"Summary of {s}: a < b & c",
        )
        for s in STUDY_SPECS
    }


def test_tables_page_structure_and_escaping():
    runs = _runs()
    wide = paper_wide(paper_long(runs, TARGETS))
    page = tables_page(
        "T <1>",
        wide,
        "Results: x < y, <script>alert(1)</script>",
        ablation_table(runs),
        "Ablation <caption>",
        _summaries(),
    )
    tags = _parse(page)
    assert tags.counts["table"] == 2 + 2
    assert tags.counts.get("script", 0) == 0
    assert "Results: x &lt; y, &lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "Ablation &lt;caption&gt;" in page and "Summary of sa: a &lt; b &amp; c" in page
    assert "none &lt;x&gt;" in page  # table cells are escaped too
    assert tags.counts["h2"] == 4 and tags.counts["section"] == 4
    text = "".join(tags.text)
    assert "Ablations against the vanilla twin" in text and "Study sb" in text
    assert "No variant has a vanilla twin" not in text


def test_tables_page_results_header_has_no_empty_row():
    runs = _runs()
    wide = paper_wide(paper_long(runs, TARGETS))
    page = tables_page("T", wide, "c", ablation_table(runs), "a", {})
    tags = _parse(page)
    results_head = tags.head_rows[:2]
    assert results_head[0][1:] == ["A · demo_cnn · T=4", "B · demo_cnn · T=8"]
    assert "Paper (%)" in results_head[1] and "Δ (pp)" in results_head[1]
    assert all(any(cell for cell in row) for row in tags.head_rows)
    assert tags.counts["table"] == 2


def test_tables_page_says_so_when_ablation_is_empty():
    runs = _runs(attentions=("TCSA",))  # no vanilla twin anywhere
    ablation = ablation_table(runs)
    assert ablation.empty
    page = tables_page("T", paper_wide(paper_long(runs, {})), "c", ablation, "a", _summaries())
    tags = _parse(page)
    assert "No variant has a vanilla twin in these studies." in "".join(tags.text)
    assert tags.counts["table"] == 1 + 2  # results and the summaries; no empty ablation grid
    assert 'id="ablation"' in page


def test_tables_page_csv_of_results_is_not_embedded():
    """The page shows the wide table's strings, not the long CSV's raw floats."""
    runs = _runs()
    long = paper_long(runs, TARGETS)
    page = tables_page("T", paper_wide(long), "c", ablation_table(runs), "a", {})
    assert "97.10 ± 0.10 (3)" in page
    assert repr(float(long.loc[1, "acc_mean"])) not in page
    assert page.startswith("<!doctype html>")


# -- diverged runs -----------------------------------------------------------------------------
NAN_WORD = re.compile(r"\bnan\b", re.IGNORECASE)


def _table_rows(md: str) -> list[str]:
    return [line for line in md.splitlines() if line.startswith("|")]


def _svg_text(path) -> str:
    """The figure's texts (matplotlib writes each line as a comment before its glyphs)."""
    return " ".join(re.findall(r"<!-- (.*?) -->", path.read_text()))


@pytest.fixture
def diverged_results(results):
    """sa: TCSA seed 1 diverged in epoch 2; sb: the vanilla twin diverged in epoch 1 on every
    seed (null finals, header-only histories)."""
    _write_seed(results, "sa", CELLS["sa"][1], 1, 1, status="diverged", diverged_epoch=2)
    for i, seed in enumerate(SEEDS):
        _write_seed(
            results, "sb", CELLS["sb"][0], seed, i, status="diverged", diverged_epoch=1, loss="inf"
        )
    return results


def test_build_paper_with_diverged_runs(diverged_results, tmp_path):
    out = tmp_path / "out"
    frames = build_paper("demo", "Demo paper", _inputs(), diverged_results, out, REPORT)
    runs = frames["runs"]
    assert len(runs) == 12 and runs["status"].eq("diverged").sum() == 4

    md = (out / "results.md").read_text()
    none_row, tcsa_row = _table_rows(md)[2:4]
    assert "diverged (all 3)" in none_row and "96.12 ± 0.35 (3)" in none_row
    acc = [97.00, 97.20]  # seeds 0 and 2 of TCSA in sa
    assert f"{sum(acc) / 2:.2f} ± 0.14 (2, 1 diverged)" in tcsa_row
    assert not any(NAN_WORD.search(line) for line in _table_rows(md))
    assert "4 runs diverged" in md and "sb none (B · demo_cnn · T=8) seed 0 (epoch 1)" in md
    results_csv = pd.read_csv(out / "results.csv")
    assert results_csv["status"].tolist() == ["completed", "some_diverged", "diverged", "completed"]
    assert results_csv["n_diverged"].tolist() == [0, 1, 3, 0]

    ablation = pd.read_csv(out / "ablation.csv")
    assert ablation["n_diverged"].tolist() == [1, 0]
    assert ablation["twin_n_diverged"].tolist() == [0, 3]
    # sa: only 2 common completed seeds (< 3), so the twin keeps all 3 of its own
    assert ablation["twin_seeds"].tolist() == [3, 0]
    assert ablation["significant"].isna().all()  # sa: 2 completed seeds < 3; sb: no twin left
    ab_md = (out / "ablation.md").read_text()
    assert "n/a (2 seeds < 3, 1 diverged)" in ab_md and "n/a (twin: all 3 diverged)" in ab_md
    assert "2, 1 diverged vs 3" in ab_md and "3 vs all 3 diverged" in ab_md
    assert not any(NAN_WORD.search(line) for line in _table_rows(ab_md))

    page = (out / "tables.html").read_text()
    tags = _parse(page)
    assert tags.counts["table"] == 2 + len(CELLS)
    text = "".join(tags.text)
    assert "all 3 diverged" in text and "diverged (all 3)" in text
    assert "1 run diverged" in text and "3 runs diverged" in text  # sa's, sb's summaries
    assert not NAN_WORD.search(text.replace("NaN or infinite", "").replace("NaN loss", ""))


def test_build_figures_with_a_fully_diverged_cell(diverged_results, tmp_path):
    tables = tmp_path / "reports" / "sb"
    summary = build_tables("sb", CELLS["sb"], SEEDS, diverged_results, tables)
    assert summary["status"].tolist() == ["diverged", "completed"]
    out = tmp_path / "figures" / "sb"
    written = build_figures("sb", _inputs()["sb"], tables / "summary.csv", diverged_results, out)
    assert {p.name for p in written} == {
        f"{n}.{fmt}" for n in FIGURE_NAMES for fmt in FIGURE_FORMATS
    }
    note = "none / direct / T=8: all 3 seeds (no point)"
    pareto = _svg_text(out / "pareto.svg")
    assert note in pareto and "TCSA / direct / T=8" in pareto
    assert "none / direct" not in pareto.replace(note, "")  # no point, no label
    assert note in _svg_text(out / "training_curves.svg")
    assert note in _svg_text(out / "firing_rates.svg")


def test_build_figures_when_every_run_diverged(results, tmp_path):
    for cell in CELLS["sa"]:
        for i, seed in enumerate(SEEDS):
            _write_seed(results, "sa", cell, seed, i, status="diverged", diverged_epoch=1)
    tables = tmp_path / "reports" / "sa"
    build_tables("sa", CELLS["sa"], SEEDS, results, tables)
    out = tmp_path / "figures" / "sa"
    written = build_figures("sa", _inputs()["sa"], tables / "summary.csv", results, out)
    assert len(written) == 6
    assert "Every cell diverged" in _svg_text(out / "pareto.svg")
    assert "Every run diverged" in _svg_text(out / "firing_rates.svg")
    assert "no curve to draw" in _svg_text(out / "training_curves.svg")
