"""Self-contained HTML pages of a paper's tables and of a study's recipe card, for
`snakemake --report` to embed.

Snakemake's report shows HTML results in a frame but offers CSV files only as downloads, so
the tables a reader should see are rendered here, each followed by its caption.
"""

from __future__ import annotations

import html
from typing import Mapping

import pandas as pd

from .ablation import ablation_human
from .headline import headline_html

STYLE = """
body { font-family: system-ui, sans-serif; margin: 1.5rem; color: #1f2328; }
h1 { font-size: 1.4rem; } h2 { font-size: 1.15rem; margin-top: 2rem; }
table { border-collapse: collapse; margin: 0.5rem 0; font-size: 0.85rem; }
th, td { padding: 0.25rem 0.6rem; border-bottom: 1px solid #d0d7de; text-align: right; }
th { background: #f6f8fa; text-align: center; }
td:first-child, th:first-child { text-align: left; }
p.caption { max-width: 60rem; font-size: 0.8rem; color: #57606a; }
table.recipe td, table.recipe th { text-align: left; }
h3 { font-size: 1rem; margin-bottom: 0.2rem; } ul.headline { max-width: 60rem; }
"""


def _table(frame: pd.DataFrame, index: bool, css_class: str) -> str:
    return frame.to_html(index=index, escape=True, border=0, classes=css_class, na_rep="")


def _section(heading: str, table_html: str, caption: str, section_id: str) -> str:
    return (
        f'<section id="{section_id}"><h2>{html.escape(heading)}</h2>\n{table_html}\n'
        f'<p class="caption">{html.escape(caption)}</p></section>'
    )


def _page(title: str, sections: list[str]) -> str:
    body = "\n".join(sections)
    return (
        f'<!doctype html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{html.escape(title)}</title><style>{STYLE}</style></head>\n"
        f"<body><h1>{html.escape(title)}</h1>\n{body}\n</body></html>\n"
    )


def _recipe_section(study: str, card: pd.DataFrame, caption: str) -> str:
    return _section(
        f"Recipe card: {study}", _table(card, False, "recipe"), caption, f"recipe-{study}"
    )


def recipe_page(study: str, card: pd.DataFrame, caption: str) -> str:
    """One study's recipe card (report/recipe.py) as its own page."""
    return _page(f"{study}: recipe card", [_recipe_section(study, card, caption)])


def tables_page(
    title: str,
    results: pd.DataFrame,
    results_caption: str,
    ablation: pd.DataFrame,
    ablation_caption: str,
    summaries: Mapping[str, tuple[pd.DataFrame, str]],
    recipes: Mapping[str, tuple[pd.DataFrame, str]] | None = None,
    headline: tuple[Mapping[str, list[str]], str] | None = None,
) -> str:
    """The headline (`headline`: (headline.headline_lines, headline.headline_note)) on top,
    then the results table (paper-shaped), ablations against the vanilla twins, each
    study's summary, then each study's recipe card (`recipes`: study -> (card, caption))."""
    sections = []
    if headline is not None:
        lines, note = headline
        sections.append(_section("Headline", headline_html(lines), note, "headline"))
    # index name "" would add an empty header row
    sections += [
        _section(
            "Results",
            _table(results.rename_axis(index=None), True, "results"),
            results_caption,
            "results",
        )
    ]
    if ablation.empty:
        sections.append(
            _section(
                "Ablations",
                "<p>No variant has a vanilla twin in these studies.</p>",
                ablation_caption,
                "ablation",
            )
        )
    else:
        sections.append(
            _section(
                "Ablations against the vanilla twin",
                _table(ablation_human(ablation), False, "ablation"),
                ablation_caption,
                "ablation",
            )
        )
    for study, (table, caption) in summaries.items():
        sections.append(
            _section(f"Study {study}", _table(table, False, "summary"), caption, f"study-{study}")
        )
    sections += [
        _recipe_section(study, card, caption) for study, (card, caption) in (recipes or {}).items()
    ]
    return _page(title, sections)
