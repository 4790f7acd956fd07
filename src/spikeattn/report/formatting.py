"""How numbers and cells are written in every table, caption and figure of the report.

Shared by the study tables (tables.py), the paper and ablation tables, the HTML page and the
figures, so a cell reads the same everywhere ('TCSA / direct / T=8') and a mean ± std has the
same decimals in Markdown, LaTeX and HTML.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

NO_STD = "–"  # en dash: std undefined (one seed), deliberately not "± 0"


# -- numbers -----------------------------------------------------------------------------------
def fmt_pm(mean: float, std: float, decimals: int) -> str:
    """'96.53 ± 0.12', or '96.53 ± –' when the std is undefined (one seed); '–' when there is
    no mean at all (a missing value), never 'nan'."""
    if not math.isfinite(mean):
        return NO_STD
    spread = NO_STD if not math.isfinite(std) else f"{std:.{decimals}f}"
    return f"{mean:.{decimals}f} ± {spread}"


def seed_note(completed: int, diverged: int) -> str:
    """How many seeds a number covers: '3', '2, 1 diverged' (2 completed seeds in the mean,
    1 diverged left out) or 'all 3 diverged'."""
    completed, diverged = int(completed), int(diverged)
    if diverged == 0:
        return str(completed)
    if completed == 0:
        return f"all {diverged} diverged"
    return f"{completed}, {diverged} diverged"


def sig_decimals(value: float, digits: int = 3) -> int:
    """Decimals that show `digits` significant figures of `value` (energies span decades)."""
    if value == 0 or not math.isfinite(value):
        return digits - 1
    return max(0, digits - 1 - math.floor(math.log10(abs(value))))


def fmt_count(n: int) -> str:
    """Parameter counts as '812', '10.4k', '12.63M', '1.20G'."""
    for scale, suffix, decimals in ((1e9, "G", 2), (1e6, "M", 2), (1e3, "k", 1)):
        if abs(n) >= scale:
            return f"{n / scale:.{decimals}f}{suffix}"
    return str(int(n))


def column_decimals(values: pd.Series, digits: int = 3, most: int = 6) -> int:
    """One number of decimals per column (so rows line up), enough for its smallest value."""
    nonzero = values[(values != 0) & np.isfinite(values)].abs()
    return min(most, sig_decimals(float(nonzero.min()) if len(nonzero) else 0.0, digits))


# -- cells -------------------------------------------------------------------------------------
def label_axes(cells: pd.DataFrame) -> list[str]:
    """Axes that name a row: attention/coding/T always, dataset/backbone only if they vary."""
    varying = [a for a in ("dataset", "backbone") if cells[a].nunique() > 1]
    return [*varying, "attention", "coding", "T"]


def cell_label(row: pd.Series, axes: list[str]) -> str:
    """A cell's row label over `axes` (label_axes), e.g. 'TCSA / direct / T=8'."""
    return " / ".join(f"T={row[a]}" if a == "T" else str(row[a]) for a in axes)


# -- LaTeX -------------------------------------------------------------------------------------
_LATEX_SPECIAL = {
    "\\": r"\textbackslash{}",
    "&": r"\&",
    "%": r"\%",
    "$": r"\$",
    "#": r"\#",
    "_": r"\_",
    "{": r"\{",
    "}": r"\}",
    "~": r"\textasciitilde{}",
    "^": r"\textasciicircum{}",
    "±": r"$\pm$",
    "µ": r"$\mu$",
    "μ": r"$\mu$",
    "–": "--",
    "×": r"$\times$",
    "Δ": r"$\Delta$",
    "−": "-",
    "<": r"$<$",
    ">": r"$>$",  # '<' prints as '¡' in OT1
}


def latex_escape(text: str) -> str:
    """Escape LaTeX specials one character at a time (so replacements are never re-escaped)."""
    return "".join(_LATEX_SPECIAL.get(ch, ch) for ch in str(text))
