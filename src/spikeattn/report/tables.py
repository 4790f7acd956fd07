"""Summary tables of a study, built from the per-seed result files alone.

Reading only `results/<study>/<cell>/seed<k>/{metrics,energy}.json` (never MLflow) means the
tables can be rebuilt on any machine, without a GPU or a tracking server. Everything is read
and rendered before anything is written, and each file is written atomically, so a missing
input never leaves a partial or half-written report behind.

metrics.json and energy.json of one run must describe the same trained model: each names the
checkpoint (`checkpoint_sha256`), and a run whose energy.json measured another checkpoint (left
over from an earlier training) is refused, as is a metrics.json missing a key the tables need.

A run whose training loss became NaN or infinite is recorded as diverged (metrics.json and
energy.json `"status": "diverged"`, its numbers null); files without a status are completed
runs. Diverged seeds are left out of every mean, std and test and counted instead: `seeds` is
the number of completed seeds behind each mean, `n_diverged` the number left out, and a
cell's `status` is completed, some_diverged or diverged (every seed diverged). The readable
tables show the counts as "2, 1 diverged" (seed_note) and a fully diverged cell as "diverged".
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

import numpy as np
import pandas as pd

from ..config import GRID_AXES
from ..io import atomic_path, read_json, write_json
from ..paths import run_dir

AXES = GRID_AXES
SUMMARY_COLUMNS = (
    "cell", *AXES, "status", "seeds", "n_diverged", "acc_mean", "acc_std", "best_acc_mean",
    "best_acc_std",
    "firing_rate_mean", "firing_rate_std", "energy_uj_mean", "energy_uj_std",
    "sops_mean", "macs_mean", "params", "target_acc", "target_energy_mj",
)
METRICS_KEYS = ("acc_mean", "acc_std", "best_acc_mean", "firing_rate_mean", "energy_uj_mean",
                "params", "target_acc", "seeds", "n_diverged")
COUNT_KEYS = ("params", "seeds", "n_diverged")  # integers in metrics.json, never 3.0
NO_STD = "–"  # en dash: std undefined (one seed), deliberately not "± 0"
# Run statuses (metrics.json / energy.json "status"; absent in older files: completed) and
# the status of a cell over its seeds.
COMPLETED, DIVERGED = "completed", "diverged"
RUN_STATUSES = (COMPLETED, DIVERGED)
SOME_DIVERGED = "some_diverged"
CELL_STATUSES = (COMPLETED, SOME_DIVERGED, DIVERGED)
MAX_LISTED = 10  # diverged runs named one by one in a caption; the rest are counted
LOSS_TEXT = {"nan": "NaN", "inf": "+inf", "-inf": "-inf"}  # metrics.json "diverged"/"loss"


# What the tables read from every metrics.json: {key: keys inside it}.
METRICS_REQUIRED = {"seed": (), "final": ("test_acc",), "best": ("test_acc",)}


class ResultError(ValueError):
    """A result file is incomplete, stale, or disagrees with its run's other file; the message
    names the file(s) and the stage to re-run."""


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
            raise ResultError(f"{path}: {key} is {data[key]!r} but its path says {want!r}; "
                              "the file was copied or moved, re-run its stage")
    return data


def _check_keys(path: Path, data: Mapping[str, Any], hint: str) -> None:
    """Every key of METRICS_REQUIRED is there, so a damaged file fails here with its name, not as
    a bare KeyError while aggregating."""
    for key, inner in METRICS_REQUIRED.items():
        missing = [key] if key not in data else [
            f"{key}.{k}" for k in inner if not isinstance(data[key], Mapping) or k not in data[key]]
        if missing:
            raise ResultError(f"{path}: no {missing[0]!r}; the file is incomplete or damaged: "
                              f"re-run the train stage (`{hint}`)")


def run_status(data: Mapping[str, Any], path: Path | str = "<result file>") -> str:
    """'completed' or 'diverged': a result file's status (absent in older files: completed)."""
    status = data.get("status", COMPLETED)
    if status not in RUN_STATUSES:
        raise ResultError(f"{path}: unknown status {status!r} (expected one of "
                          f"{', '.join(RUN_STATUSES)}); re-run its stage")
    return status


def _check_status(folder: Path, metrics: Mapping[str, Any], energy: Mapping[str, Any]) -> None:
    """metrics.json and energy.json of one run must agree on whether it diverged; they differ
    only when energy.json is left over from an earlier training run."""
    trained = run_status(metrics, folder / "metrics.json")
    measured = run_status(energy, folder / "energy.json")
    if trained != measured:
        raise ResultError(f"{folder}: metrics.json says the run {trained} but energy.json says "
                          f"{measured}; energy.json is stale, re-run the energy stage")


def _check_checkpoint(folder: Path, metrics: Mapping[str, Any], energy: Mapping[str, Any],
                      hint: str) -> None:
    """energy.json measured the checkpoint metrics.json was trained into; they differ when the
    run was trained again after its energy was measured. Files from before checkpoints were
    named (no checkpoint_sha256 in metrics.json) cannot be compared."""
    trained = metrics.get("checkpoint_sha256")
    measured = energy.get("checkpoint_sha256")
    if trained is None or measured == trained:
        return
    measured_text = f"checkpoint {measured[:16]}" if measured else "an unnamed checkpoint"
    raise ResultError(f"{folder / 'energy.json'} measured {measured_text} but "
                      f"{folder / 'metrics.json'} belongs to checkpoint {trained[:16]}: energy.json "
                      f"is stale (from an earlier training of this run); re-run the energy stage "
                      f"(`{hint}`)")


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
            _check_keys(folder / "metrics.json", metrics,
                        _stage_hint(study, cell["id"], seed, "metrics.json"))
            _check_status(folder, metrics, energy)
            _check_checkpoint(folder, metrics, energy,
                              _stage_hint(study, cell["id"], seed, "energy.json"))
            runs[cell["id"]].append((metrics, energy, folder / "energy.json"))
    return runs


def diverged_runs(cells: list[dict], runs: Mapping[str, list[tuple[dict, dict, Path]]]
                  ) -> list[dict[str, Any]]:
    """Every diverged run, in grid then seed order: {cell, seed, epoch, loss} (epoch and loss
    None where metrics.json does not say)."""
    out = []
    for cell in cells:
        for metrics, _, _ in runs[cell["id"]]:
            if run_status(metrics) == DIVERGED:
                where = metrics.get("diverged") or {}
                out.append({"cell": cell["id"], "seed": int(metrics["seed"]),
                            "epoch": where.get("epoch"), "loss": where.get("loss")})
    return out


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
def num(value: Any) -> float:
    """A result-file number as a float; null (a diverged run's values) becomes NaN."""
    return math.nan if value is None else float(value)


def mean_std(values: Iterable[float]) -> tuple[float, float]:
    """Mean and sample std (ddof=1); std is NaN for a single value rather than a false 0, and
    both are NaN for no values (every seed diverged)."""
    arr = np.asarray(list(values), dtype=float)
    if arr.size == 0:
        return math.nan, math.nan
    std = float(arr.std(ddof=1)) if arr.size > 1 else math.nan
    return float(arr.mean()), std


def cell_status(completed: int, diverged: int) -> str:
    """completed (no seed diverged), some_diverged, or diverged (every seed did)."""
    if diverged == 0:
        return COMPLETED
    return DIVERGED if completed == 0 else SOME_DIVERGED


def _summary_row(cell: dict, seed_runs: list[tuple[dict, dict, Path]]) -> dict[str, Any]:
    done = [(m, e) for m, e, _ in seed_runs if run_status(m) == COMPLETED]
    metrics = [m for m, _ in done]
    energy = [e for _, e in done]
    acc = mean_std(100.0 * num(m["final"]["test_acc"]) for m in metrics)
    best = mean_std(100.0 * num(m["best"]["test_acc"]) for m in metrics)
    rate = mean_std(num(m.get("mean_firing_rate")) for m in metrics)
    uj = mean_std(num(e.get("energy_uj")) for e in energy)
    # architecture-only, the same for every seed; a diverged run records it too
    params = next((m["params"] for m, _, _ in seed_runs if m.get("params") is not None), None)
    n_diverged = len(seed_runs) - len(done)
    return {
        "cell": cell["id"], **{axis: cell[axis] for axis in AXES},
        "status": cell_status(len(done), n_diverged), "seeds": len(done),
        "n_diverged": n_diverged,
        "acc_mean": acc[0], "acc_std": acc[1], "best_acc_mean": best[0], "best_acc_std": best[1],
        "firing_rate_mean": rate[0], "firing_rate_std": rate[1],
        "energy_uj_mean": uj[0], "energy_uj_std": uj[1],
        "sops_mean": mean_std(num(e.get("sops")) for e in energy)[0],
        "macs_mean": mean_std(num(e.get("macs")) for e in energy)[0],
        "params": math.nan if params is None else int(params),
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


def _counts(row: Mapping[str, Any]) -> tuple[int, int]:
    """(completed seeds, diverged seeds) of a summary-like row; tables written before runs
    could diverge have no n_diverged column."""
    diverged = row.get("n_diverged", 0)
    return int(row["seeds"]), 0 if pd.isna(diverged) else int(diverged)


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
        completed, diverged = _counts(r)

        def pm(column: str, decimals: int) -> str:
            if completed == 0:
                return DIVERGED
            return fmt_pm(r[f"{column}_mean"], r[f"{column}_std"], decimals)

        rows.append({
            "Cell": _cell_label(r, axes),
            "Acc. (%)": pm("acc", 2),
            "Best (%)": pm("best_acc", 2),
            "Firing rate": pm("firing_rate", rate_dec),
            "Energy (µJ)": pm("energy_uj", uj_dec),
            "Params": NO_STD if pd.isna(r["params"]) else fmt_count(int(r["params"])),
            "Seeds": seed_note(completed, diverged),
            **({"Paper (%)": "" if math.isnan(r["target_acc"]) else f"{r['target_acc']:.2f}"}
               if summary["target_acc"].notna().any() else {}),
        })
    return pd.DataFrame(rows)


def _diverged_run_text(run: Mapping[str, Any], label: str) -> str:
    """'<label> seed 1 (epoch 3, NaN loss)'; what metrics.json does not say is left out."""
    loss = run.get("loss")
    where = [f"epoch {run['epoch']}" if run.get("epoch") is not None else "",
             f"{LOSS_TEXT.get(str(loss), loss)} loss" if loss is not None else ""]
    where = ", ".join(w for w in where if w)
    return f"{label} seed {run['seed']}" + (f" ({where})" if where else "")


def diverged_caption(runs: Iterable[Mapping[str, Any]],
                     label: Callable[[Mapping[str, Any]], str]) -> str:
    """The sentence a caption adds when runs diverged ('' when none did): the rule and the runs.

    `runs` are diverged_runs entries (cell, seed, epoch, loss; epoch and loss may be None),
    `label` names the cell of one entry."""
    runs = list(runs)
    if not runs:
        return ""
    named = "; ".join(_diverged_run_text(r, label(r)) for r in runs[:MAX_LISTED])
    more = f"; and {len(runs) - MAX_LISTED} more" if len(runs) > MAX_LISTED else ""
    subject = (f"{len(runs)} runs diverged (training loss NaN or infinite) and are"
               if len(runs) > 1 else "1 run diverged (training loss NaN or infinite) and is")
    return (f"{subject} left out of every mean, std and test: {named}{more}. "
            "'n, k diverged' counts the n completed seeds behind a number and the k diverged "
            "seeds left out; a cell whose seeds all diverged reads diverged.")


def caption(summary: pd.DataFrame, seeds: list[int], conventions: str, extra: str = "",
            targets: Iterable[Mapping[str, Any]] = (),
            diverged: Iterable[Mapping[str, Any]] = ()) -> str:
    """The caption under both tables: what each number is, so the table stands on its own.

    `diverged` lists the diverged runs (diverged_runs), named after the accuracy sentence."""
    n = len(seeds)
    listed = ", ".join(map(str, seeds))
    spread = (f"mean ± sample std over {n} seeds ({listed})" if n > 1
              else f"a single seed ({listed}), so no std ({NO_STD})")
    parts = [f"Acc.: final test accuracy, {spread}."]
    axes = _label_axes(summary)
    labels = {r["cell"]: _cell_label(r, axes) for _, r in summary.iterrows()}
    if note := diverged_caption(diverged, lambda run: labels.get(run["cell"], run["cell"])):
        parts.append(note)
    parts += ["Best: best test accuracy over the epochs.",
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
    """The `dvc metrics show` view: a few headline numbers per cell, NaN as null; `seeds`
    counts the completed seeds behind the means and `n_diverged` the diverged ones."""
    def clean(key: str, value: Any) -> Any:
        if isinstance(value, (int, np.integer)):
            return int(value)
        value = float(value)
        if not math.isfinite(value):
            return None
        return int(value) if key in COUNT_KEYS else value

    return {row["cell"]: {k: clean(k, row[k]) for k in METRICS_KEYS}
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
    text = caption(summary, seeds, _conventions(runs), caption_extra, targets,
                   diverged_runs(cells, runs))
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
