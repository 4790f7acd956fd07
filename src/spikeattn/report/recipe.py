"""A study's recipe card: every setting of its cells, its value and where the value comes from.

The rows come from spikeattn.recipe (the same flattening that checks `sources:`), so the card
is generated from params.yaml alone and needs no results. Written as reports/<study>/recipe.md,
.csv and .html, and shown in the paper's tables.html.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from ..io import write_texts
from ..recipe import DISAGREE, NOT_DECLARED, card_rows, recipe_inputs
from .html import recipe_page

RECIPE_COLUMNS = ("section", "setting", "value", "source", "note", "paper", "code", "disagreement")
KINDS_TEXT = (
    "paper: the paper, its appendix or README; code: the authors' released code; "
    "paper+code: both, agreeing; assumed: neither gives it, our choice; project: a "
    "project setting, not a reproduction"
)


def recipe_card(params: Any, study: str) -> pd.DataFrame:
    """The card of `study` (a config.Params study): one row per setting, RECIPE_COLUMNS."""
    inputs = recipe_inputs(params, study)
    return pd.DataFrame(
        card_rows(inputs["settings"], inputs["sources"]), columns=list(RECIPE_COLUMNS)
    )


def _count(n: int, what: str) -> str:
    return f"{n} {what}{'' if n == 1 else 's'}"


def recipe_caption(study: str, card: pd.DataFrame) -> str:
    """One line: what the card shows and its counts of disagreements, assumed and undeclared."""
    disagreements = int((card["disagreement"] == DISAGREE).sum())
    assumed = int((card["source"] == "assumed").sum())
    undeclared = int((card["source"] == NOT_DECLARED).sum())
    return (
        f"Recipe card of study {study}: {_count(len(card), 'setting')} of its cells with "
        f"value and source ({KINDS_TEXT}); the paper and code columns give each side's value "
        f"where known, flagged {DISAGREE} where they differ. "
        f"{_count(disagreements, 'paper/code disagreement')}, "
        f"{_count(assumed, 'assumed value')}, {undeclared} not declared. "
        f"From params.yaml study.{study}.sources."
    )


def render_recipe(study: str, card: pd.DataFrame) -> dict[str, str]:
    """{'recipe.md', 'recipe.csv', 'recipe.html'}: the card with its caption."""
    caption = recipe_caption(study, card)
    body = card.to_markdown(index=False, disable_numparse=True)  # keep "0.0001", "1e-05" as given
    return {
        "recipe.md": f"# {study}: recipe card\n\n{body}\n\n{caption}\n",
        "recipe.csv": card.to_csv(index=False),
        "recipe.html": recipe_page(study, card, caption),
    }


def build_recipe(params: Any, study: str, out_dir: Path) -> pd.DataFrame:
    """reports/<study>/recipe.{md,csv,html}, all rendered before any is written."""
    card = recipe_card(params, study)
    write_texts(out_dir, render_recipe(study, card))
    return card
