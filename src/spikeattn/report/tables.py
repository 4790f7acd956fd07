"""Summary tables of a study, built from the per-seed result files alone.

Reading only `results/<study>/<cell>/seed<k>/{metrics,energy}.json` (never MLflow) means the
tables can be rebuilt on any machine, without a GPU or a tracking server. Everything is read
and rendered before anything is written, and each file is written atomically, so a missing
input never leaves a partial or half-written report behind.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Iterable, Mapping

import numpy as np
import pandas as pd

from ..config import GRID_AXES
from ..io import atomic_path, read_json, write_json
from ..paths import run_dir

AXES = GRID_AXES
SUMMARY_COLUMNS = (
    "cell", *AXES, "seeds", "acc_mean", "acc_std", "best_acc_mean", "best_acc_std",
    "firing_rate_mean", "firing_rate_std", "energy_uj_mean", "energy_uj_std",
    "sops_mean", "macs_mean", "params", "target_acc", "target_energy_mj",
)
METRICS_KEYS = ("acc_mean", "acc_std", "best_acc_mean", "firing_rate_mean", "energy_uj_mean",
                "params", "target_acc")
NO_STD = "–"  # en dash: std undefined (one seed), deliberately not "± 0"


# -- reading -----------------------------------------------------------------------------------
def _cell_dict(cell: Any) -> dict[str, Any]:
    """Accept the brief's dicts or `config.Cell` objects, so callers need not convert."""
    if isinstance(cell, Mapping):
        return {"id": cell["id"], **{axis: cell[axis] for axis in AXES}}
    return {"id": cell.id, **{axis: getattr(cell, axis) for axis in AXES}}


def _stage_hint(study: str, cell_id: str, seed: int, name: str) -> str:
    stage = "train" if name == "metrics.json" else "energy"
    return f"spikeattn {stage} --study {study} --cell {cell_id} --seed {seed}"


def _check_inputs(study: str, cells: list[dict], seeds: list[int], results_root: Path) -> None:
    """Fail before reading anything, listing every missing file and the command that makes it."""
    missing = [(path, _stage_hint(study, c["id"], seed, name))
               for c in cells for seed in seeds for name in ("metrics.json", "energy.json")
               if not (path := run_dir(study, c["id"], seed, results_root) / name).is_file()]
    if not missing:
        return
    shown = "\n".join(f"  {path}  (run: {hint})" for path, hint in missing[:10])
    more = f"\n  ... and {len(missing) - 10} more" if len(missing) > 10 else ""
    raise FileNotFoundError(
        f"study {study!r}: {len(missing)} result file(s) missing, no report written:\n"
        f"{shown}{more}\nRun the missing stages, or all of them with "
        f"`snakemake --cores N --config studies={study}`.")


def _read_checked(path: Path, study: str, cell_id: str, seed: int) -> dict[str, Any]:
    """Read a result file and make sure it describes the cell × seed its path says it does."""
    data = read_json(path)
    expected = {"study": study, "cell": cell_id, "seed": seed}
    for key, want in expected.items():
        if key in data and data[key] != want:
            raise ValueError(f"{path}: {key} is {data[key]!r} but its path says {want!r}; "
                             "the file was copied or moved, re-run its stage")
    return data


def _load(study: str, cells: list[dict], seeds: list[int], results_root: Path
          ) -> dict[str, list[tuple[dict, dict, Path]]]:
    """{cell_id: [(metrics, energy, energy_path) per seed]} for the current grid only."""
    _check_inputs(study, cells, seeds, results_root)
    runs: dict[str, list[tuple[dict, dict, Path]]] = {}
    for cell in cells:
        runs[cell["id"]] = []
        for seed in seeds:
            folder = run_dir(study, cell["id"], seed, results_root)
            metrics = _read_checked(folder / "metrics.json", study, cell["id"], seed)
            energy = _read_checked(folder / "energy.json", study, cell["id"], seed)
            runs[cell["id"]].append((metrics, energy, folder / "energy.json"))
    return runs


def _conventions(runs: Mapping[str, list[tuple[dict, dict, Path]]]) -> str:
    """The energy conventions text; one caption cannot describe two different conventions."""
    first: tuple[str, Path] | None = None
    for seed_runs in runs.values():
        for _, energy, path in seed_runs:
            text = str(energy.get("conventions", "")).strip()
            if first is None:
                first = (text, path)
            elif text != first[0]:
                raise ValueError(f"energy conventions differ between {first[1]} and {path}; "
                                 "re-run the energy stage so every cell uses the same ones")
    return first[0] if first else ""


# -- aggregation -------------------------------------------------------------------------------
def mean_std(values: Iterable[float]) -> tuple[float, float]:
    """Mean and sample std (ddof=1); std is NaN for a single value rather than a false 0."""
    arr = np.asarray(list(values), dtype=float)
    std = float(arr.std(ddof=1)) if arr.size > 1 else math.nan
    return float(arr.mean()), std


def _summary_row(cell: dict, seed_runs: list[tuple[dict, dict, Path]]) -> dict[str, Any]:
    metrics = [m for m, _, _ in seed_runs]
    energy = [e for _, e, _ in seed_runs]
    acc = mean_std(100.0 * m["final"]["test_acc"] for m in metrics)
    best = mean_std(100.0 * m["best"]["test_acc"] for m in metrics)
    rate = mean_std(m["mean_firing_rate"] for m in metrics)
    uj = mean_std(e["energy_uj"] for e in energy)
    return {
        "cell": cell["id"], **{axis: cell[axis] for axis in AXES}, "seeds": len(seed_runs),
        "acc_mean": acc[0], "acc_std": acc[1], "best_acc_mean": best[0], "best_acc_std": best[1],
        "firing_rate_mean": rate[0], "firing_rate_std": rate[1],
        "energy_uj_mean": uj[0], "energy_uj_std": uj[1],
        "sops_mean": mean_std(e["sops"] for e in energy)[0],
        "macs_mean": mean_std(e["macs"] for e in energy)[0],
        "params": int(metrics[0]["params"]),  # architecture-only: the same for every seed
    }


def _target(cell: dict, targets: Iterable[Mapping[str, Any]]) -> Mapping[str, Any]:
    """The first paper target whose `cell` coordinates all match this cell ({} if none)."""
    for target in targets:
        if all(cell[axis] == value for axis, value in target["cell"].items()):
            return target
    return {}


def summarise(cells: list[dict], runs: Mapping[str, list[tuple[dict, dict, Path]]],
              targets: Iterable[Mapping[str, Any]] = ()) -> pd.DataFrame:
    """One row per cell, in grid order, with the columns of summary.csv."""
    targets = list(targets)
    rows = []
    for cell in cells:
        target = _target(cell, targets)
        rows.append({**_summary_row(cell, runs[cell["id"]]),
                     "target_acc": target.get("acc", math.nan),
                     "target_energy_mj": target.get("energy_mj", math.nan)})
    return pd.DataFrame(rows, columns=list(SUMMARY_COLUMNS))


# -- human formatting --------------------------------------------------------------------------
def fmt_pm(mean: float, std: float, decimals: int) -> str:
    """'96.53 ± 0.12', or '96.53 ± –' when the std is undefined (one seed)."""
    spread = NO_STD if math.isnan(std) else f"{std:.{decimals}f}"
    return f"{mean:.{decimals}f} ± {spread}"


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


def _column_decimals(values: pd.Series, digits: int = 3, most: int = 6) -> int:
    """One number of decimals per column (so rows line up), enough for its smallest value."""
    nonzero = values[(values != 0) & np.isfinite(values)].abs()
    return min(most, sig_decimals(float(nonzero.min()) if len(nonzero) else 0.0, digits))


def _label_axes(summary: pd.DataFrame) -> list[str]:
    """Axes that name a row: attention/coding/T always, dataset/backbone only if they vary."""
    varying = [a for a in ("dataset", "backbone") if summary[a].nunique() > 1]
    return [*varying, "attention", "coding", "T"]


def _cell_label(row: pd.Series, axes: list[str]) -> str:
    return " / ".join(f"T={row[a]}" if a == "T" else str(row[a]) for a in axes)


def human_table(summary: pd.DataFrame) -> pd.DataFrame:
    """The readable table shared by Markdown and LaTeX (plain Unicode; LaTeX escapes later)."""
    axes = _label_axes(summary)
    rate_dec = _column_decimals(summary["firing_rate_mean"])
    uj_dec = _column_decimals(summary["energy_uj_mean"])
    rows = []
    for _, r in summary.iterrows():
        rows.append({
            "Cell": _cell_label(r, axes),
            "Acc. (%)": fmt_pm(r["acc_mean"], r["acc_std"], 2),
            "Best (%)": fmt_pm(r["best_acc_mean"], r["best_acc_std"], 2),
            "Firing rate": fmt_pm(r["firing_rate_mean"], r["firing_rate_std"], rate_dec),
            "Energy (µJ)": fmt_pm(r["energy_uj_mean"], r["energy_uj_std"], uj_dec),
            "Params": fmt_count(int(r["params"])),
            "Seeds": str(int(r["seeds"])),
            **({"Paper (%)": "" if math.isnan(r["target_acc"]) else f"{r['target_acc']:.2f}"}
               if summary["target_acc"].notna().any() else {}),
        })
    return pd.DataFrame(rows)


def caption(summary: pd.DataFrame, seeds: list[int], conventions: str, extra: str = "",
            targets: Iterable[Mapping[str, Any]] = ()) -> str:
    """The caption under both tables: what each number is, so the table stands on its own."""
    n = len(seeds)
    listed = ", ".join(map(str, seeds))
    spread = (f"mean ± sample std over {n} seeds ({listed})" if n > 1
              else f"a single seed ({listed}), so no std ({NO_STD})")
    parts = [f"Acc.: final test accuracy, {spread}.",
             "Best: best test accuracy over the epochs.",
             "Firing rate: mean firing rate of the spiking neurons.",
             "Energy: estimated energy per sample."]
    constant = [f"{a} {summary[a].iloc[0]}" for a in ("dataset", "backbone")
                if summary[a].nunique() == 1]
    if constant:
        parts.append("All cells: " + ", ".join(constant) + ".")
    sources = list(dict.fromkeys(t["source"] for t in targets))
    if sources and summary["target_acc"].notna().any():
        parts.append("Paper: accuracy reported by " + "; ".join(sources) + ".")
    if conventions:
        parts.append(f"Energy conventions: {conventions.rstrip('.')}.")
    if extra.strip():
        parts.append(extra.strip())
    return " ".join(parts)


def render_markdown(study: str, table: pd.DataFrame, text: str) -> str:
    body = table.to_markdown(index=False, colalign=("left",) + ("right",) * (table.shape[1] - 1))
    return f"# {study}\n\n{body}\n\n{text}\n"


_LATEX_SPECIAL = {
    "\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
    "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}",
    "±": r"$\pm$", "µ": r"$\mu$", "μ": r"$\mu$", "–": "--", "×": r"$\times$",
    "Δ": r"$\Delta$", "−": "-", "<": r"$<$", ">": r"$>$",  # '<' prints as '¡' in OT1
}


def latex_escape(text: str) -> str:
    """Escape LaTeX specials one character at a time (so replacements are never re-escaped)."""
    return "".join(_LATEX_SPECIAL.get(ch, ch) for ch in str(text))


def render_latex(study: str, table: pd.DataFrame, text: str) -> str:
    """A booktabs `table` float; cells, headers and caption are escaped here, not by pandas."""
    escaped = table.map(latex_escape)
    escaped.columns = [latex_escape(c) for c in table.columns]
    styler = escaped.style.hide(axis="index")
    return styler.to_latex(
        hrules=True, position="htbp", position_float="centering",
        column_format="l" + "r" * (table.shape[1] - 1),
        caption=latex_escape(text), label=f"tab:{study}")


def metrics_json(summary: pd.DataFrame) -> dict[str, dict[str, Any]]:
    """The `dvc metrics show` view: a few headline numbers per cell, NaN as null."""
    def clean(value: Any) -> Any:
        if isinstance(value, (int, np.integer)):
            return int(value)
        value = float(value)
        return None if math.isnan(value) else value

    return {row["cell"]: {k: clean(row[k]) for k in METRICS_KEYS}
            for _, row in summary.iterrows()}


# -- entry point -------------------------------------------------------------------------------
def build_tables(study: str, cells: list[dict], seeds: list[int], results_root: Path,
                 out_dir: Path, caption_extra: str = "",
                 targets: Iterable[Mapping[str, Any]] = ()) -> pd.DataFrame:
    """Build `out_dir`/{summary.csv,summary.md,summary.tex,metrics.json} for one study.

    `cells` is the study's current grid (dicts with id and the grid axes, or `Cell`s), in grid
    order; result directories of cells not in it are ignored. Files are read from
    `results_root/<study>/<cell>/seed<k>/`. `targets` are the paper's numbers (params.yaml
    `targets:` entries), shown beside the cells they match. Returns the summary.csv table.
    """
    targets = list(targets)
    cells = [_cell_dict(c) for c in cells]
    seeds = [int(s) for s in seeds]
    if not cells or not seeds:
        raise ValueError(f"study {study!r}: need at least one cell and one seed to tabulate")
    runs = _load(study, cells, seeds, Path(results_root))
    summary = summarise(cells, runs, targets)
    text = caption(summary, seeds, _conventions(runs), caption_extra, targets)
    table = human_table(summary)
    rendered = {"summary.md": render_markdown(study, table, text),
                "summary.tex": render_latex(study, table, text),
                "summary.csv": summary.to_csv(index=False, na_rep="NaN")}
    _write(Path(out_dir), rendered, metrics_json(summary))
    return summary


def _write(out_dir: Path, texts: Mapping[str, str], metrics: Mapping[str, Any]) -> None:
    """Write every output only after all were rendered, each one atomically."""
    out_dir.mkdir(parents=True, exist_ok=True)
    for name, content in texts.items():
        with atomic_path(out_dir / name) as tmp:
            tmp.write_text(content, encoding="utf-8")
    write_json(out_dir / "metrics.json", metrics)
