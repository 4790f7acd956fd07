"""params.yaml: load, validate, select studies and expand their grids into cells.

Everything downstream (Snakemake rules, the CLI, DVC) goes through `Params`, so the grid is
declared once, in params.yaml, and checked once, here, before any job runs.
"""
from __future__ import annotations

import inspect
import itertools
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping

import yaml

from .schema import violations

GRID_AXES = ("dataset", "backbone", "attention", "coding", "T")
DEFAULT_PARAMS = Path("params.yaml")


class ParamsError(ValueError):
    """params.yaml is invalid: the message names the file, the key and what is allowed."""


@dataclass(frozen=True)
class Cell:
    """One grid point of a study. Its id names result paths, MLflow tags and table rows."""

    study: str
    dataset: str
    backbone: str
    attention: str
    coding: str
    T: int

    @property
    def id(self) -> str:
        return f"{self.dataset}__{self.backbone}__{self.attention}__{self.coding}__T{self.T}"

    def coords(self) -> dict[str, Any]:
        """The grid coordinates (and study) as a plain dict, for tags and tables."""
        return asdict(self)

    def matches(self, partial: Mapping[str, Any]) -> bool:
        """True when every coordinate given in `partial` equals this cell's."""
        return all(getattr(self, key) == value for key, value in partial.items())


def _registries() -> dict[str, tuple[str, ...]]:
    """Names the code defines, imported lazily (torch and timm are slow to import)."""
    from .attention import ATTENTIONS
    from .coding import CODINGS
    from .data import DATASETS
    from .models import BACKBONES

    return {"dataset": tuple(DATASETS), "backbone": tuple(BACKBONES), "attention": ATTENTIONS,
            "coding": CODINGS}


class Params:
    """A validated params.yaml."""

    def __init__(self, raw: Mapping[str, Any], source: str = str(DEFAULT_PARAMS)):
        self.source = source
        self.raw = dict(raw)
        self._check()

    @classmethod
    def load(cls, path: str | Path = DEFAULT_PARAMS) -> "Params":
        path = Path(path)
        try:
            raw = yaml.safe_load(path.read_text())
        except FileNotFoundError:
            raise ParamsError(f"{path}: not found; run from the repository root or pass --params") from None
        except yaml.YAMLError as err:
            raise ParamsError(f"{path}: not valid YAML: {err}") from None
        return cls(raw if raw is not None else {}, source=str(path))

    # -- validation -------------------------------------------------------------------------
    def _fail(self, problems: list[str]) -> None:
        if problems:
            lines = "\n".join(f"  {p}" for p in problems)
            raise ParamsError(f"{self.source} is invalid:\n{lines}")

    def _check(self) -> None:
        self._fail(violations(self.raw))
        problems: list[str] = []
        names = _registries()
        for study, spec in self.raw["study"].items():
            for axis in GRID_AXES[:-1]:
                for i, value in enumerate(spec["grid"][axis]):
                    if value not in names[axis]:
                        problems.append(f"study.{study}.grid.{axis}[{i}]: unknown {axis} {value!r}; "
                                        f"allowed: {', '.join(names[axis])}")
                    elif axis == "dataset" and value not in self.raw["datasets"]:
                        problems.append(f"study.{study}.grid.dataset[{i}]: {value!r} has no "
                                        f"entry under datasets:")
        problems += self._check_datasets()
        problems += self._check_train(self.raw["train"], "train")
        for study, spec in self.raw["study"].items():
            problems += self._check_train(spec.get("train", {}), f"study.{study}.train")
        for name, paper in self.raw.get("papers", {}).items():
            for i, member in enumerate(paper["studies"]):
                if member not in self.raw["study"]:
                    problems.append(f"papers.{name}.studies[{i}]: no study named {member!r}")
        for name, members in self.raw.get("groups", {}).items():
            if name in self.raw.get("papers", {}):
                problems.append(f"groups.{name}: a paper has that name already; rename one")
            for i, member in enumerate(members):
                if member not in self.raw["study"] and member not in self.raw.get("papers", {}):
                    problems.append(f"groups.{name}[{i}]: no study or paper named {member!r}")
        self._fail(problems)
        for study, spec in self.raw["study"].items():
            problems += self._check_model(study, spec)
            try:
                self.cells(study)
            except ParamsError as err:
                problems.append(str(err))
        try:
            self.selected()
        except ParamsError as err:
            problems.append(str(err))
        self._fail(problems)

    def _check_datasets(self) -> list[str]:
        """Each dataset entry, and each study's overrides of it, against the data registry
        (which also checks what the schema cannot express, e.g. digits-dvs geometry)."""
        from .data import check_params

        problems = []
        entries = [(name, name, None) for name in self.raw["datasets"]]
        for study, spec in self.raw["study"].items():
            for name in spec.get("data", {}):
                if name not in spec["grid"]["dataset"]:
                    problems.append(f"study.{study}.data.{name}: not a dataset of this study's grid "
                                    f"({', '.join(spec['grid']['dataset'])})")
                else:
                    entries.append((name, f"study.{study}.data.{name}", study))
        for name, where, study in entries:
            try:
                check_params(name, self.dataset(name, study))
            except ValueError as err:
                problems.append(f"{where}: {err}" if study else str(err))
        return problems

    @staticmethod
    def _check_train(train: Mapping[str, Any], where: str) -> list[str]:
        if "opt" not in train:
            return []
        from timm.optim import list_optimizers

        if train["opt"] not in list_optimizers():
            return [f"{where}.opt: unknown optimizer {train['opt']!r}; "
                    "see timm.optim.list_optimizers() (e.g. adam, adamw, sgd, nadam)"]
        return []

    def _check_model(self, study: str, spec: Mapping[str, Any]) -> list[str]:
        from .models import model_class
        from .neurons import PRESETS

        problems = []
        model = spec.get("model", {})
        for backbone in spec["grid"]["backbone"]:
            accepted = set(inspect.signature(model_class(backbone)).parameters)
            for key in sorted(set(model) - accepted):
                problems.append(f"study.{study}.model.{key}: {backbone} takes no {key!r}; "
                                f"allowed: {', '.join(sorted(accepted - {'self'}))}")
        neuron = model.get("neuron")
        if neuron is not None and neuron not in PRESETS:
            problems.append(f"study.{study}.model.neuron: unknown preset {neuron!r}; "
                            f"allowed: {', '.join(PRESETS)}")
        return problems

    # -- selection --------------------------------------------------------------------------
    @property
    def studies(self) -> list[str]:
        return list(self.raw["study"])

    def selected(self, selection: str | list[str] | None = None) -> list[str]:
        """Study names picked by `selection` (default: the `studies` key), in declared order."""
        selection = self.raw["studies"] if selection is None else selection
        words = selection.split(",") if isinstance(selection, str) else list(selection)
        groups = self.raw.get("groups", {})
        papers = self.raw.get("papers", {})
        picked: list[str] = []
        for word in (w.strip() for w in words):
            if word == "all":
                picked += self.studies
            elif word in groups:
                picked += [s for member in groups[word]
                           for s in (papers[member]["studies"] if member in papers else [member])]
            elif word in papers:
                picked += papers[word]["studies"]
            elif word in self.raw["study"]:
                picked.append(word)
            else:
                raise ParamsError(f"studies: {word!r} is not 'all', a group ({', '.join(groups)}), "
                                  f"a paper ({', '.join(papers)}) or a study ({', '.join(self.studies)})")
        return [s for s in self.studies if s in picked]

    # -- papers -----------------------------------------------------------------------------
    @property
    def papers(self) -> list[str]:
        return list(self.raw.get("papers", {}))

    def paper(self, name: str) -> dict[str, Any]:
        """A paper's title and studies (params.yaml `papers:`)."""
        try:
            return dict(self.raw["papers"][name])
        except KeyError:
            raise ParamsError(f"{self.source}: no paper {name!r}; declared: {', '.join(self.papers)}") from None

    def papers_of(self, studies: Iterable[str]) -> list[str]:
        """The papers all of whose studies are among `studies`: a paper's tables need them all."""
        chosen = set(studies)
        return [name for name in self.papers
                if set(self.raw["papers"][name]["studies"]) <= chosen]

    @property
    def report(self) -> dict[str, Any]:
        """Significance settings of the ablation tables (params.yaml `report:`)."""
        return dict(self.raw["report"])

    # -- one study ------------------------------------------------------------------------
    def study(self, name: str) -> Mapping[str, Any]:
        try:
            return self.raw["study"][name]
        except KeyError:
            raise ParamsError(f"{self.source}: no study {name!r}; declared: {', '.join(self.studies)}") from None

    def cells(self, study: str) -> list[Cell]:
        """The study's grid, minus `exclude`d combinations, in a stable order."""
        spec = self.study(study)
        grid = spec["grid"]
        cells = []
        for values in itertools.product(*(grid[axis] for axis in GRID_AXES)):
            coords = dict(zip(GRID_AXES, values))
            cell = Cell(study=study, **coords)
            if not any(cell.matches(ex) for ex in spec.get("exclude", [])):
                cells.append(cell)
        if not cells:
            raise ParamsError(f"study.{study}: exclude removes every cell of the grid")
        for cell in cells:
            self._check_compatible(cell)
        for i, target in enumerate(spec.get("targets", [])):
            if not any(cell.matches(target["cell"]) for cell in cells):
                raise ParamsError(f"study.{study}.targets[{i}].cell: {target['cell']} matches no cell "
                                  "of the study's grid")
        return cells

    def _check_compatible(self, cell: Cell) -> None:
        from .data import DATASETS

        if cell.coding == "gac" and DATASETS[cell.dataset].kind == "events":
            raise ParamsError(
                f"study.{cell.study}: cell {cell.id} combines GAC coding (for static images) with "
                f"the event dataset {cell.dataset!r}; use coding 'direct' for event data, or add "
                f"{{dataset: {cell.dataset}, coding: gac}} to the study's exclude list")

    def cell(self, study: str, cell_id: str) -> Cell:
        for cell in self.cells(study):
            if cell.id == cell_id:
                return cell
        ids = "\n  ".join(c.id for c in self.cells(study))
        raise ParamsError(f"study {study!r} has no cell {cell_id!r}; its cells are:\n  {ids}")

    def seeds(self, study: str) -> list[int]:
        return list(self.study(study)["seeds"])

    def train_settings(self, study: str) -> dict[str, Any]:
        """Training defaults with the study's overrides applied."""
        return {**self.raw["train"], **self.study(study).get("train", {})}

    def distributed(self, study: str) -> dict[str, Any]:
        """How many processes train each of the study's cells (torchrun/DDP when more than 1)."""
        return {"nproc_per_node": 1, "backend": "auto", **self.study(study).get("distributed", {})}

    @property
    def jobs_per_gpu(self) -> int:
        """Training jobs that share one GPU (params.yaml `compute.jobs_per_gpu`)."""
        return self.raw.get("compute", {}).get("jobs_per_gpu", 1)

    def model_kwargs(self, study: str) -> dict[str, Any]:
        return dict(self.study(study).get("model", {}))

    def dataset(self, name: str, study: str | None = None) -> dict[str, Any]:
        """A dataset's parameters, with `study`'s overrides (its `data:` entry) applied."""
        overrides = self.study(study).get("data", {}).get(name, {}) if study else {}
        return {**self.raw["datasets"][name], **overrides}

    def targets(self, study: str) -> list[dict[str, Any]]:
        """The paper's reported numbers for the study's cells (see `Cell.matches`)."""
        return list(self.study(study).get("targets", []))

    @property
    def energy(self) -> dict[str, Any]:
        return dict(self.raw["energy"])

    def cell_data(self, cell: Cell) -> dict[str, Any]:
        """The parameters of the data a cell trains on."""
        return self.dataset(cell.dataset, cell.study)

    def train_spec(self, cell: Cell) -> dict[str, Any]:
        """Everything a train job's result depends on besides its input data and seed."""
        from .data import get_info

        data = self.cell_data(cell)
        loading = {k: data[k] for k in get_info(cell.dataset).loader_keys if k in data}
        # `distributed` only when declared: the split of each batch over processes changes the
        # result (per-process BatchNorm statistics), and one process is every other study's spec.
        declared = self.study(cell.study).get("distributed")
        return {"cell": cell.coords(), "train": self.train_settings(cell.study),
                "model": self.model_kwargs(cell.study), **({"loading": loading} if loading else {}),
                **({"distributed": self.distributed(cell.study)} if declared else {})}
