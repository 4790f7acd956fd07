"""params.yaml: load, validate, select studies and expand their grids into cells.

Everything downstream (Snakemake rules, the CLI, DVC) goes through `Params`, so the grid is
declared once, in params.yaml, and checked once, here, before any job runs.
"""

from __future__ import annotations

import copy
import functools
import hashlib
import inspect
import itertools
import json
import sys
import types
import typing
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

from . import registry
from .io import atomic_path, canonical_json, read_yaml
from .plugins import Plugin, PluginError, load_plugins
from .recipe import model_section, source_problems, study_settings
from .schema import params_schema, part, violations

GRID_AXES = ("dataset", "backbone", "attention", "coding", "T")
DEFAULT_PARAMS = Path("params.yaml")
# Train settings that change how much memory a step takes, never what it computes: a run
# resumed with one switched (to fit a GPU) continues the same run (`train_spec`).
MEMORY_ONLY_TRAIN_KEYS = frozenset({"grad_checkpointing"})


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


def _dataset_names() -> tuple[str, ...]:
    """The datasets the data registry defines (no torch: what a recorded validation checks)."""
    from .data import DATASETS

    return tuple(DATASETS)


def _registries() -> dict[str, tuple[str, ...]]:
    """Names the code defines, imported lazily (torch and timm are slow to import)."""
    from .attention import ATTENTIONS
    from .coding import CODINGS
    from .models import BACKBONES

    return {
        "dataset": _dataset_names(),
        "backbone": tuple(BACKBONES),
        "attention": tuple(ATTENTIONS),
        "coding": tuple(CODINGS),
    }


def _listing(kind: str, names: Iterable[str]) -> str:
    """`names` for a message, each plugin's with its file: 'none, TA, TDG (x/tdg.py)'."""
    table = registry.ALL.get(kind)
    return table.describe(names) if table is not None else ", ".join(names)


def _owned(kind: str, name: str) -> str:
    """' (x/tdg.py)' when a plugin registered `name`, else ''."""
    owner = registry.owner_of(kind, name)
    return "" if owner is None else f" ({owner})"


def _presets(study: str, spec: Mapping[str, Any]) -> dict[str, str]:
    """The neuron presets a study's cells build, each with where it comes from: the study's
    model.neuron, else each backbone's own default."""
    from .models import backbone_defaults

    model = spec.get("model", {})
    if "neuron" in model:
        return {model["neuron"]: f"study.{study}.model.neuron"}
    defaults = {b: backbone_defaults(b) for b in spec["grid"]["backbone"]}
    return {d["neuron"]: f"{b}'s default" for b, d in defaults.items() if "neuron" in d}


# -- options checked against the code that takes them -----------------------------------------
Options = Mapping[str, inspect.Parameter]  # option name -> the parameter that receives it
_PLAIN = {"int": int, "float": float, "str": str, "bool": bool, "None": type(None)}


def _keyword_parameters(target: Callable, skip: Iterable[str] = ()) -> dict[str, inspect.Parameter]:
    """The parameters of `target` a keyword can set, minus `skip` (those its caller sets)."""
    skip = set(skip)
    return {
        name: p
        for name, p in inspect.signature(target).parameters.items()
        if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY) and name not in skip
    }


def _plain_types(annotation: Any) -> tuple[type, ...] | None:
    """The types an annotation allows when they are all plain (int, float, str, bool, None),
    else None: a sequence or tensor annotation is left to the code that takes the value."""
    if isinstance(annotation, str):  # `from __future__ import annotations`: "float | None"
        names = [part.strip() for part in annotation.split("|")]
        return tuple(_PLAIN[n] for n in names) if all(n in _PLAIN for n in names) else None
    if annotation in _PLAIN.values():
        return (annotation,)
    args = typing.get_args(annotation)
    union = typing.get_origin(annotation) in (typing.Union, types.UnionType)
    return args if union and set(args) <= set(_PLAIN.values()) else None


def _fits(value: Any, allowed: tuple[type, ...]) -> bool:
    """isinstance as YAML means it: an int is a float, but a bool is no number."""
    if isinstance(value, bool):
        return bool in allowed
    return isinstance(value, allowed) or (isinstance(value, int) and float in allowed)


def _option_problems(
    where: str,
    what: str,
    given: Any,
    accepted: Options,
    origin: str = "",
    elsewhere: Mapping[str, str] | None = None,
) -> list[str]:
    """Unknown names, and values of the wrong plain type, among the options `given` at key
    `where` for `what` (chosen at key `origin`, if any); `elsewhere` maps an option that a
    params key of its own sets to that key."""
    if not isinstance(given, Mapping):
        return [f"{where}: {what} takes a mapping of option names to values, got {given!r}"]
    elsewhere = elsewhere or {}
    problems = [
        f"{where}.{name}: {name} is a setting of its own; set {elsewhere[name]} instead"
        for name in given
        if name in elsewhere
    ]
    unknown = [n for n in given if n not in accepted and n not in elsewhere]
    if unknown:
        problems.append(
            f"{where}: {what}{f' ({origin})' if origin else ''} takes no "
            f"{', '.join(map(repr, unknown))}; allowed: {', '.join(sorted(accepted))}"
        )
    for name, value in given.items():
        allowed = _plain_types(accepted[name].annotation) if name in accepted else None
        if allowed and not _fits(value, allowed):
            expected = " or ".join("null" if t is type(None) else t.__name__ for t in allowed)
            problems.append(f"{where}.{name}: {value!r} is not {expected}, as {what} needs")
    return problems


@functools.cache
def _train_keys() -> frozenset[str]:
    """Keys of a `train:` section: the train job passes them to the factories by name."""
    return frozenset(params_schema()["$defs"]["train"]["properties"])


def _factory_problems(
    where: str, what: str, given: Any, accepted: Options | None, origin: str
) -> list[str]:
    """`_option_problems` for the kwargs of a timm factory (`where` is e.g. train.opt_kwargs):
    an option that is also a train key (lr, min_lr, ...) is set by that key, beside them."""
    if accepted is None:
        return []
    section = where.rsplit(".", 1)[0]
    elsewhere = {name: f"{section}.{name}" for name in accepted if name in _train_keys()}
    return _option_problems(
        where,
        what,
        given,
        {k: p for k, p in accepted.items() if k not in elsewhere},
        origin,
        elsewhere,
    )


@functools.cache
def _optimizer_options(opt: str) -> Options | None:
    """What opt_kwargs may hold for optimizer `opt`: timm's create_optimizer_v2 options and
    the optimizer class's (where its kwargs go). None when the class is not importable here
    (apex, bitsandbytes) or takes **kwargs: then only the train job can tell."""
    from timm.optim import create_optimizer_v2, get_optimizer_info

    cls = get_optimizer_info(opt).opt_class
    if isinstance(cls, str):
        return None
    own = inspect.signature(cls).parameters
    if any(p.kind == p.VAR_KEYWORD for p in own.values()):
        return None
    return {
        **_keyword_parameters(create_optimizer_v2, skip=["model_or_params"]),
        **_keyword_parameters(cls, skip=[next(iter(own))]),
    }


@functools.cache
def _scheduler_options(sched: str) -> Options:
    """What sched_kwargs may hold: plateau's own options (named as timm's, typed as torch's
    ReduceLROnPlateau that receives them), else timm's create_scheduler_v2 parameters."""
    import torch
    from timm.scheduler import create_scheduler_v2

    from .train.loop import PlateauOnTrainLoss

    if sched == "plateau":
        inner = inspect.signature(torch.optim.lr_scheduler.ReduceLROnPlateau).parameters
        return {ours: inner[theirs] for ours, theirs in PlateauOnTrainLoss.OPTIONS.items()}
    return _keyword_parameters(create_scheduler_v2, skip=["optimizer"])


def _attention_options(fam: str) -> Options:
    """What attention_kwargs[fam] may hold: the family builder's parameters, minus those
    build_attention sets itself (T, channels, ...) or an attention name implies (SMA-L's light).
    Not cached here: a plugin family re-registered after an edit has another builder."""
    from .attention import family_options

    return family_options(fam)


@functools.cache
def _neuron_options() -> Options:
    """What neuron_kwargs may hold: the LIFConfig fields MultiStepLIF's **overrides set."""
    from .neurons import LIFConfig

    return _keyword_parameters(LIFConfig)


def _dry_build_problems(settings: Mapping[str, Any], source: Callable[[str], str]) -> list[str]:
    """Build the optimizer and schedule once for a one-weight model, with the train job's own
    builders: what names and types cannot show (betas out of range, plateau with warmup)
    fails here instead of in every job. An optimizer this machine cannot build (apex's and
    bitsandbytes' need CUDA) is left to the job: the schedule is tried on plain SGD."""
    import torch

    from .train.loop import build_optimizer, build_scheduler

    model = torch.nn.ParameterList(
        [torch.nn.Parameter(torch.zeros(1))]
    )  # no RNG draw: runs stay seeded
    settings = dict(settings)
    optimizer = torch.optim.SGD(model.parameters(), lr=settings["lr"])
    problems = []
    try:
        if _optimizer_options(settings["opt"]) is not None:
            optimizer = build_optimizer(model, settings)
    except Exception as err:  # whatever the builder raises, these settings caused it
        problems.append(_build_failure(settings, source, "opt", err))
    try:
        build_scheduler(optimizer, settings)
    except Exception as err:
        problems.append(_build_failure(settings, source, "sched", err))
    return problems


def _build_failure(
    settings: Mapping[str, Any], source: Callable[[str], str], what: str, err: Exception
) -> str:
    """The line for a failed dry build of `what` (opt or sched), led by its kwargs' key when
    it has kwargs (their likeliest cause), else by its own key."""
    kwargs = f"{what}_kwargs"
    where = source(kwargs) if settings.get(kwargs) else source(what)
    label = {"opt": "optimizer", "sched": "schedule"}[what]
    return (
        f"{where}: {label} {settings[what]} ({source(what)}) does not build with these "
        f"settings: {type(err).__name__}: {err}"
    )


# -- the validation record: a cache of the full validation's verdict ---------------------------
# The checks against the code (names, signatures, frame sizes, timm's optimizers and a dry
# build) import torch and timm, seconds of CPU. Their verdict and the one fact the planning
# needs from them (each study's model section, for its recipe card) depend on the params, the
# package's code and the libraries' versions only: once a mapping passed, a record named by
# the digest of all three says so, and a later Params over the same mapping skips those checks.
RECORD_FORMAT = 1
RECORDS_KEPT = 64  # older records are deleted when a new one is written
# Libraries the full validation reads (torchvision: through timm); their versions key the record.
VALIDATED_WITH = ("torch", "timm", "torchvision")


@functools.cache
def code_digest() -> str:
    """sha256 over every *.py and *.yaml file of the package, its relative path and bytes: the
    code a validation ran, read rather than imported (tens of ms)."""
    root = Path(__file__).resolve().parent
    digest = hashlib.sha256()
    for path in sorted(p for pattern in ("*.py", "*.yaml") for p in root.rglob(pattern)):
        data = path.read_bytes()
        digest.update(f"{path.relative_to(root).as_posix()}\0{len(data)}\0".encode() + data)
    return digest.hexdigest()


def library_versions() -> dict[str, str | None]:
    """The installed versions of VALIDATED_WITH (None: not installed), read from their
    metadata without importing them."""
    from importlib import metadata

    versions: dict[str, str | None] = {}
    for name in VALIDATED_WITH:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def validation_digest(raw: Mapping[str, Any], plugins: Iterable[Plugin] = ()) -> str | None:
    """The record name of `raw`: sha256 over its canonical JSON, the code digest, the library
    and Python versions and its plugins' source digests (a record says these params passed with
    this code, the plugins' included); None when `raw` is no JSON (then it is validated fully,
    every time)."""
    sources = {p.label: p.digest for p in plugins}
    try:
        key = canonical_json(
            {
                "format": RECORD_FORMAT,
                "params": raw,
                "code": code_digest(),
                "libraries": library_versions(),
                "python": list(sys.version_info[:2]),
                **({"plugins": sources} if sources else {}),
            }
        )
    except (TypeError, ValueError):
        return None
    return hashlib.sha256(key.encode()).hexdigest()


def read_record(
    directory: Path, digest: str, studies: Iterable[str]
) -> dict[str, dict[str, Any]] | None:
    """The model sections a record holds, per study; None when there is no record or it is not
    one written for `digest` with every study (unreadable, truncated, edited): not trusted."""
    try:
        record = json.loads((Path(directory) / digest).read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(record, dict):
        return None
    sections = record.get("model_sections")
    if (
        record.get("format") != RECORD_FORMAT
        or record.get("digest") != digest
        or not isinstance(sections, dict)
        or list(sections) != list(studies)
        or not all(isinstance(section, dict) for section in sections.values())
    ):
        return None
    return sections


def write_record(directory: Path, digest: str, sections: Mapping[str, Mapping[str, Any]]) -> None:
    """Record that the params of `digest` passed the full validation, with their model
    sections; atomically, so a reader never sees half a record. Where nothing can be written
    (a read-only checkout) there is no record: the next Params validates fully again."""
    directory = Path(directory)
    record = {"format": RECORD_FORMAT, "digest": digest, "model_sections": sections}
    try:
        with atomic_path(directory / digest) as tmp:
            tmp.write_text(json.dumps(record, indent=1) + "\n")
        records = [p for p in directory.iterdir() if not p.name.startswith(".")]
        if len(records) > RECORDS_KEPT:
            for path in sorted(records, key=lambda p: p.stat().st_mtime)[:-RECORDS_KEPT]:
                path.unlink(missing_ok=True)
    except OSError:
        pass


def _plain(value: Any) -> Any:
    """`value` as its JSON record holds it (tuples as lists), so a section is the same whether
    computed or read from a record."""
    return json.loads(json.dumps(value))


class Params:
    """A validated params.yaml.

    Validated once, on construction, which also expands every study's grid and resolves its
    energy conventions; `cells`, `cell`, `energy_settings` and `model_section` answer from those
    results. The Params keeps its own (deep) copy of `raw`, so they stay true to it: treat `raw`
    as read-only.

    `record`: a directory of validation records (paths.VALIDATED), or None (the default:
    always validate fully). With one, a mapping that passed the full validation before, with
    the same code and library versions, skips the checks that import torch and timm (the
    schema and the checks without them still run); one that did not is validated fully and,
    when it passes, recorded.

    `plugins:` are imported first, on either path (their names are checked, and the jobs that
    load this Params build models from them); `plugins` holds them, as loaded.
    """

    def __init__(
        self,
        raw: Mapping[str, Any],
        source: str = str(DEFAULT_PARAMS),
        record: str | Path | None = None,
    ):
        self.source = source
        self.raw = copy.deepcopy(dict(raw))
        self._cells: dict[str, tuple[Cell, ...]] = {}  # study -> its cells, filled by _check
        self._cells_by_id: dict[str, dict[str, Cell]] = {}
        self._energy: dict[str | None, dict[str, Any]] = {}  # study (None: global) -> conventions
        self._model: dict[str, dict[str, Any]] = {}  # study -> its model section (recipe)
        self._record = None if record is None else Path(record)
        self.validated_fully = False  # True when this Params ran the checks a record skips
        self.plugins: tuple[Plugin, ...] = ()  # `plugins:`, loaded by _check
        # (kind, name) -> the plugin that registered it, and the names it implies (a plugin
        # backbone's default neuron preset, a plugin preset's surrogate): read once, on loading,
        # so plugins_of answers for these plugins even if another Params loads others later
        self._plugin_names: dict[tuple[str, str], str] = {}
        self._implied: dict[tuple[str, str], tuple[str, str]] = {}
        self._check()

    @classmethod
    def load(cls, path: str | Path = DEFAULT_PARAMS, record: str | Path | None = None) -> "Params":
        path = Path(path)
        try:
            raw = read_yaml(path)
        except FileNotFoundError:
            raise ParamsError(
                f"{path}: not found; run from the repository root or pass --params"
            ) from None
        except ValueError as err:  # a syntax error, named with its line and column
            raise ParamsError(str(err)) from None
        return cls(raw if raw is not None else {}, source=str(path), record=record)

    # -- validation -------------------------------------------------------------------------
    def _fail(self, problems: list[str]) -> None:
        if problems:  # an inherited train default can fail the same way in several studies
            lines = "\n".join(f"  {p}" for p in dict.fromkeys(problems))
            raise ParamsError(f"{self.source} is invalid:\n{lines}")

    def _load_plugins(self) -> None:
        """Import `plugins:` before any name is checked: the names they register (and the
        schemas of their datasets) are then known like the built-in ones."""
        entries = self.raw.get("plugins", [])
        self._fail(violations(entries, part("properties", "plugins"), "plugins"))
        try:
            self.plugins = load_plugins(entries)
        except PluginError as err:
            self._fail([str(err)])
        labels = {p.label for p in self.plugins}
        self._plugin_names = {
            (kind, name): owner
            for kind, table in registry.ALL.items()
            for name, owner in table.owners.items()
            if owner in labels
        }
        for kind, name in self._plugin_names:
            if kind == "backbone":
                from .models import backbone_defaults  # loaded: the plugin registered into it

                if (neuron := backbone_defaults(name).get("neuron")) is not None:
                    self._implied[kind, name] = ("neuron preset", neuron)
            elif kind == "neuron preset":
                surrogate = registry.ALL["neuron preset"][name].surrogate
                self._implied[kind, name] = ("surrogate", surrogate)

    def _check(self) -> None:
        self._load_plugins()
        self._fail(violations(self.raw))
        digest = validation_digest(self.raw, self.plugins) if self._record is not None else None
        recorded = read_record(self._record, digest, self.raw["study"]) if digest else None
        full = self.validated_fully = recorded is None
        problems: list[str] = []
        names = _registries() if full else {"dataset": _dataset_names()}
        hint = "" if self.plugins else " (a module of your own: list its file under plugins:)"
        for study, spec in self.raw["study"].items():
            for axis in names:
                for i, value in enumerate(spec["grid"][axis]):
                    if value not in names[axis]:
                        problems.append(
                            f"study.{study}.grid.{axis}[{i}]: unknown {axis} {value!r}; "
                            f"allowed: {_listing(axis, names[axis])}{hint}"
                        )
                    elif axis == "dataset" and value not in self.raw["datasets"]:
                        problems.append(
                            f"study.{study}.grid.dataset[{i}]: {value!r} has no "
                            f"entry under datasets:"
                        )
        problems += self._check_datasets()
        problems += self._check_trains() if full else []
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
        for study in (None, *self.raw["study"]):  # a bad preset/key combination, named
            try:
                self._energy[study] = self._resolve_energy(study)
            except ParamsError as err:
                problems.append(str(err).removeprefix(f"{self.source}: "))
                if study is None:  # each study resolves over the global one: name its fault once
                    break
        self._fail(problems)
        for study, spec in self.raw["study"].items():
            model_problems = self._check_model(study, spec) if full else []
            problems += model_problems + self._check_exclude(study, spec)
            if not full:
                self._model[study] = recorded[study]
            elif not model_problems:  # the section resolves the study's neuron
                self._model[study] = _plain(model_section(self, study))
                if spec.get("sources"):
                    settings = study_settings(self, study)
                    problems += source_problems(study, settings, spec["sources"])
            try:
                cells = self._expand(study, spec)
            except ParamsError as err:
                problems.append(str(err))
            else:
                self._cells[study] = cells
                self._cells_by_id[study] = {cell.id: cell for cell in cells}
                problems += self._check_input_sizes(study, cells) if full else []
        try:
            self.selected()
        except ParamsError as err:
            problems.append(str(err))
        self._fail(problems)
        if full and digest:
            write_record(self._record, digest, self._model)

    def _check_datasets(self) -> list[str]:
        """Each dataset entry, and each study's overrides of it, against the data registry
        (which also checks what the schema cannot express, e.g. digits-dvs geometry)."""
        from .data import check_params

        problems = []
        entries = [(name, name, None) for name in self.raw["datasets"]]
        for study, spec in self.raw["study"].items():
            for name in spec.get("data", {}):
                if name not in spec["grid"]["dataset"]:
                    problems.append(
                        f"study.{study}.data.{name}: not a dataset of this study's grid "
                        f"({', '.join(spec['grid']['dataset'])})"
                    )
                else:
                    entries.append((name, f"study.{study}.data.{name}", study))
        for name, where, study in entries:
            try:
                check_params(name, self.dataset(name, study))
            except ValueError as err:
                problems.append(f"{where}: {err}" if study else str(err))
        return problems

    def _check_trains(self) -> list[str]:
        """The train defaults, and each study's settings as its train jobs get them (defaults
        with its overrides): a default's kwargs must also suit a study's own optimizer."""
        problems = self._check_train(self.raw["train"], lambda key: f"train.{key}")
        for study, spec in self.raw["study"].items():
            own = spec.get("train", {})

            def source(key: str, own: Mapping[str, Any] = own, study: str = study) -> str:
                return f"study.{study}.train.{key}" if key in own else f"train.{key}"

            problems += self._check_train(self.train_settings(study), source)
        return problems

    @staticmethod
    def _check_train(settings: Mapping[str, Any], source: Callable[[str], str]) -> list[str]:
        """Optimizer and schedule names and options, as the train job hands them to timm;
        `source(key)` is the params key a setting comes from."""
        from timm.optim import list_optimizers

        from .train.speed import fused_problem

        opt, sched = settings["opt"], settings["sched"]
        if opt not in list_optimizers():
            return [
                f"{source('opt')}: unknown optimizer {opt!r}; "
                "see timm.optim.list_optimizers() (e.g. adam, adamw, sgd, nadam)"
            ]
        problems = _factory_problems(
            source("opt_kwargs"),
            f"optimizer {opt}",
            settings.get("opt_kwargs", {}),
            _optimizer_options(opt),
            source("opt"),
        )
        fused = fused_problem(
            settings.get("fused_optimizer", "auto"), opt, settings.get("opt_kwargs") or {}
        )
        if fused:  # the device part (a kernel on this device) is the train job's to check
            problems.append(f"{source(fused[0])}: {fused[1]} (optimizer {opt}, {source('opt')})")
        if sched == "none" and settings.get("sched_kwargs"):
            problems.append(
                f"{source('sched_kwargs')}: schedule none ({source('sched')}) takes no "
                "options; remove them or name a schedule"
            )
        elif sched != "none":
            problems += _factory_problems(
                source("sched_kwargs"),
                f"schedule {sched}",
                settings.get("sched_kwargs", {}),
                _scheduler_options(sched),
                source("sched"),
            )
        return problems or _dry_build_problems(settings, source)

    def _check_model(self, study: str, spec: Mapping[str, Any]) -> list[str]:
        from .models import model_class
        from .neurons import PRESETS

        problems = []
        model = spec.get("model", {})
        for backbone in spec["grid"]["backbone"]:
            accepted = set(inspect.signature(model_class(backbone)).parameters)
            for key in sorted(set(model) - accepted):
                problems.append(
                    f"study.{study}.model.{key}: {backbone} takes no {key!r}; "
                    f"allowed: {', '.join(sorted(accepted - {'self'}))}"
                )
        neuron = model.get("neuron")
        if neuron is not None and neuron not in PRESETS:
            problems.append(
                f"study.{study}.model.neuron: unknown preset {neuron!r}; "
                f"allowed: {_listing('neuron preset', PRESETS)}"
            )
        else:
            problems += self._check_neuron_kwargs(study, spec)
            problems += self._check_lif_backend(study, spec)
        return (
            problems
            + self._check_attention_kwargs(study, model)
            + self._check_coding_kwargs(study, spec)
        )

    @staticmethod
    def _check_attention_kwargs(study: str, model: Mapping[str, Any]) -> list[str]:
        """model.attention_kwargs: one mapping per attention family, each against the
        parameters of the family's builder."""
        from .attention import FAMILIES

        given = model.get("attention_kwargs")
        where = f"study.{study}.model.attention_kwargs"
        if given is None:
            return []
        unknown = [] if not isinstance(given, Mapping) else [f for f in given if f not in FAMILIES]
        if not isinstance(given, Mapping) or unknown:
            return [
                f"{where}: takes one mapping per attention family "
                f"({_listing('attention family', FAMILIES)}), e.g. "
                f"{{ma: {{ratio_c: 8}}}}; got {', '.join(map(repr, unknown)) or repr(given)}"
            ]
        return [
            problem
            for fam, options in given.items()
            for problem in _option_problems(
                f"{where}.{fam}",
                f"{fam} attention{_owned('attention family', fam)}",
                options,
                _attention_options(fam),
            )
        ]

    @staticmethod
    def _check_coding_kwargs(study: str, spec: Mapping[str, Any]) -> list[str]:
        """model.coding_kwargs: one mapping for every coding of the grid, each taking the
        options it names; a key none of them takes would be dropped, so it is refused."""
        from .coding import coding_options

        given = spec.get("model", {}).get("coding_kwargs")
        where = f"study.{study}.model.coding_kwargs"
        if given is None:
            return []
        codings = spec["grid"]["coding"]
        if not isinstance(given, Mapping):
            return [f"{where}: takes a mapping of option names to values, got {given!r}"]
        options = {c: coding_options(c) for c in codings}
        taken = {name for opts in options.values() for name in opts}
        problems = [
            f"{where}.{name}: no coding of the grid ({_listing('coding', codings)}) takes "
            f"{name!r}; allowed: {', '.join(sorted(taken)) or 'none'}"
            for name in given
            if name not in taken
        ]
        for coding, opts in options.items():
            own = {k: v for k, v in given.items() if k in opts}
            problems += _option_problems(
                where, f"coding {coding}{_owned('coding', coding)}", own, opts
            )
        return problems

    @staticmethod
    def _check_neuron_kwargs(study: str, spec: Mapping[str, Any]) -> list[str]:
        """model.neuron_kwargs: LIF options by name and type, then the LIF config each
        backbone's neuron preset gets with them (its own range checks: decay, threshold, ...)."""
        from .neurons import lif_config

        model = spec.get("model", {})
        given = model.get("neuron_kwargs")
        where = f"study.{study}.model.neuron_kwargs"
        if given is None:
            return []
        problems = _option_problems(where, "the LIF neuron", given, _neuron_options())
        if problems:
            return problems
        for preset, origin in _presets(study, spec).items():
            try:
                lif_config(preset, **given)
            except (TypeError, ValueError) as err:
                problems.append(f"{where}: with neuron preset {preset} ({origin}): {err}")
        return problems

    @staticmethod
    def _check_lif_backend(study: str, spec: Mapping[str, Any]) -> list[str]:
        """model.lif_backend triton or triton_recompute: every neuron of the study must have a
        surrogate the kernels implement (a plugin's runs on the torch LIF only), refused here
        rather than in each job."""
        from .neurons import KERNEL_SURROGATES, lif_config

        model = spec.get("model", {})
        backend = model.get("lif_backend", "auto")
        if not isinstance(backend, str) or not backend.startswith("triton"):
            return []
        problems = []
        for preset, origin in _presets(study, spec).items():
            try:
                surrogate = lif_config(preset, **(model.get("neuron_kwargs") or {})).surrogate
            except (TypeError, ValueError):  # reported by _check_neuron_kwargs
                continue
            if surrogate not in KERNEL_SURROGATES:
                problems.append(
                    f"study.{study}.model.lif_backend: {backend!r} with neuron preset {preset} "
                    f"({origin}), whose surrogate {surrogate!r}"
                    f"{_owned('surrogate', surrogate)} has no Triton kernel (only "
                    f"{', '.join(sorted(KERNEL_SURROGATES))} do); use lif_backend auto or torch"
                )
        return problems

    @staticmethod
    def _check_exclude(study: str, spec: Mapping[str, Any]) -> list[str]:
        """Each exclude entry holds values of the study's grid. One that does not (a typo such
        as TSCA, another study's dataset) matches no cell and would exclude nothing; one that
        does matches at least one cell, the grid being the product of its axes."""
        grid = spec["grid"]
        return [
            f"study.{study}.exclude[{i}].{axis}: {value!r} is not in this study's grid.{axis} "
            f"({', '.join(map(str, grid[axis]))}), so the entry matches no cell; use one of "
            "those or remove the entry"
            for i, entry in enumerate(spec.get("exclude", []))
            for axis, value in entry.items()
            if value not in grid[axis]
        ]

    def _check_input_sizes(self, study: str, cells: Iterable[Cell]) -> list[str]:
        """Each (backbone, dataset) of the study's cells against the frame-size check every
        backbone declares (`check_img_size`, which its constructor runs too)."""
        from .data import DATASETS
        from .models import model_class

        problems = []
        for backbone, dataset in dict.fromkeys((c.backbone, c.dataset) for c in cells):
            info = DATASETS[dataset]
            height, width = info.input_size(self.dataset(dataset, study))
            try:
                model_class(backbone).check_img_size((height, width))
            except ValueError as err:
                key = info.size_key or "downsample"
                overridden = key in self.study(study).get("data", {}).get(dataset, {})
                where = (
                    f"study.{study}.data.{dataset}.{key}"
                    if overridden
                    else f"datasets.{dataset}.{key}"
                )
                problems.append(
                    f"study.{study}.grid: backbone {backbone} cannot take the {height}x{width} frames of "
                    f"{dataset} ({where}): {err}; pick another backbone, change {where}, or add "
                    f"{{dataset: {dataset}, backbone: {backbone}}} to study.{study}.exclude"
                )
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
                picked += [
                    s
                    for member in groups[word]
                    for s in (papers[member]["studies"] if member in papers else [member])
                ]
            elif word in papers:
                picked += papers[word]["studies"]
            elif word in self.raw["study"]:
                picked.append(word)
            else:
                raise ParamsError(
                    f"studies: {word!r} is not 'all', a group ({', '.join(groups)}), "
                    f"a paper ({', '.join(papers)}) or a study ({', '.join(self.studies)})"
                )
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
            raise ParamsError(
                f"{self.source}: no paper {name!r}; declared: {', '.join(self.papers)}"
            ) from None

    def papers_of(self, studies: Iterable[str]) -> list[str]:
        """The papers all of whose studies are among `studies`: a paper's tables need them all."""
        chosen = set(studies)
        return [name for name in self.papers if set(self.raw["papers"][name]["studies"]) <= chosen]

    @property
    def report(self) -> dict[str, Any]:
        """Significance settings of the ablation tables (params.yaml `report:`)."""
        return dict(self.raw["report"])

    # -- one study ------------------------------------------------------------------------
    def study(self, name: str) -> Mapping[str, Any]:
        try:
            return self.raw["study"][name]
        except KeyError:
            raise ParamsError(
                f"{self.source}: no study {name!r}; declared: {', '.join(self.studies)}"
            ) from None

    def cells(self, study: str) -> tuple[Cell, ...]:
        """The study's grid, minus `exclude`d combinations, in a stable order (expanded and
        checked once, when this Params was validated)."""
        self.study(study)  # an undeclared study, named
        return self._cells[study]

    def cell(self, study: str, cell_id: str) -> Cell:
        self.study(study)
        try:
            return self._cells_by_id[study][cell_id]
        except KeyError:
            ids = "\n  ".join(self._cells_by_id[study])
            raise ParamsError(
                f"study {study!r} has no cell {cell_id!r}; its cells are:\n  {ids}"
            ) from None

    @staticmethod
    def _expand(study: str, spec: Mapping[str, Any]) -> tuple[Cell, ...]:
        """A study's cells: the product of its grid axes minus `exclude`d combinations, each
        cell's coding fit for its dataset, every target matching a cell. Run once per study,
        by `_check`; the cells are frozen and the tuple cannot be changed, so callers share it."""
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
            Params._check_compatible(cell)
        for i, target in enumerate(spec.get("targets", [])):
            if not any(cell.matches(target["cell"]) for cell in cells):
                raise ParamsError(
                    f"study.{study}.targets[{i}].cell: {target['cell']} matches no cell "
                    "of the study's grid"
                )
        return tuple(cells)

    @staticmethod
    def _check_compatible(cell: Cell) -> None:
        from .data import DATASETS

        if cell.coding in registry.STATIC_ONLY_CODINGS and DATASETS[cell.dataset].kind == "events":
            raise ParamsError(
                f"study.{cell.study}: cell {cell.id} combines coding {cell.coding!r}"
                f"{_owned('coding', cell.coding)} (for static images only) with the event "
                f"dataset {cell.dataset!r}; use coding 'direct' for event data, or add "
                f"{{dataset: {cell.dataset}, coding: {cell.coding}}} to the study's exclude list"
            )

    def model_section(self, study: str) -> dict[str, Any]:
        """The study's model settings as its cells build with them, {path below `model.`:
        value} (recipe.model_section: declared keys, backbone defaults, LIF constants): computed
        by the full validation, or read from its record, so no caller needs torch for it."""
        self.study(study)  # an undeclared study, named
        return copy.deepcopy(self._model[study])

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
        declared = self.raw["datasets"]
        if name not in declared:
            raise ParamsError(
                f"{self.source}: no dataset {name!r} under `datasets`; declared: "
                f"{', '.join(declared)}"
            )
        overrides = self.study(study).get("data", {}).get(name, {}) if study else {}
        return {**declared[name], **overrides}

    def targets(self, study: str) -> list[dict[str, Any]]:
        """The paper's reported numbers for the study's cells (see `Cell.matches`)."""
        return list(self.study(study).get("targets", []))

    @property
    def energy(self) -> dict[str, Any]:
        return dict(self.raw["energy"])

    def energy_settings(self, study: str | None = None) -> dict[str, Any]:
        """The energy conventions `study`'s energy jobs use (None: the global ones), resolved
        and validated once, with this Params: every convention key, and `preset` (None when
        none). A fresh dict each call: the caller may change it."""
        if study is not None:
            self.study(study)  # an undeclared study, named
        return dict(self._energy[study])

    def _resolve_energy(self, study: str | None) -> dict[str, Any]:
        """The global `energy:` (its preset, then its keys), then the study's own `energy:` the
        same way, checked by EnergyConventions (a bad preset/key combination, named)."""
        from .energy import EnergyConventions

        own = self.study(study).get("energy") if study is not None else None
        where = f"study.{study}.energy" if own is not None else "energy"
        try:
            return EnergyConventions.from_params(
                self.raw["energy"], *([own] if own else []), where=where
            ).as_dict()
        except ValueError as err:
            raise ParamsError(f"{self.source}: {err}") from None

    def cell_data(self, cell: Cell) -> dict[str, Any]:
        """The parameters of the data a cell trains on."""
        return self.dataset(cell.dataset, cell.study)

    def plugins_of(self, cell: Cell) -> dict[str, str]:
        """{label: source digest} of the plugins whose names `cell` uses (its dataset,
        backbone, attention, coding, neuron preset or surrogate); {} for a cell of built-ins.
        No torch: owners are read from the registries the plugins filled."""
        if not self.plugins:
            return {}
        model = self.model_kwargs(cell.study)
        uses = [
            ("dataset", cell.dataset),
            ("attention", cell.attention),
            ("coding", cell.coding),
            ("neuron preset", model.get("neuron")),
            ("surrogate", (model.get("neuron_kwargs") or {}).get("surrogate")),
            ("backbone", cell.backbone),  # last: implies its default preset, then its surrogate
        ]
        implied = dict(self._implied)
        if model.get("neuron") is not None:  # the study's preset, not the backbone's default
            implied.pop(("backbone", cell.backbone), None)
        if (model.get("neuron_kwargs") or {}).get("surrogate") is not None:  # not the preset's
            implied = {use: to for use, to in implied.items() if use[0] != "neuron preset"}
        for use in uses:  # appended uses are visited too: backbone -> preset -> surrogate
            if use in implied:
                uses.append(implied[use])
        owners = {self._plugin_names.get(use) for use in uses}
        return {p.label: p.digest for p in self.plugins if p.label in owners}

    def train_spec(self, cell: Cell) -> dict[str, Any]:
        """Everything a train job's result depends on besides its input data and seed: for a
        cell that uses a plugin's names, that plugin's source digest too (an edit re-runs it;
        a cell of built-ins has the spec it had before any plugin was listed)."""
        from .data import get_info

        data = self.cell_data(cell)
        loading = {k: data[k] for k in get_info(cell.dataset).loader_keys if k in data}
        # `distributed` only when declared: the split of each batch over processes changes the
        # result (per-process BatchNorm statistics), and one process is every other study's spec.
        declared = self.study(cell.study).get("distributed")
        # (grad_checkpointing leaves the result as it is: not part of the spec)
        train = {
            k: v
            for k, v in self.train_settings(cell.study).items()
            if k not in MEMORY_ONLY_TRAIN_KEYS
        }
        return {
            "cell": cell.coords(),
            "train": train,
            "model": self.model_kwargs(cell.study),
            **({"loading": loading} if loading else {}),
            **({"distributed": self.distributed(cell.study)} if declared else {}),
            **({"plugins": used} if (used := self.plugins_of(cell)) else {}),
        }
