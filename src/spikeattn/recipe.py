"""A study's resolved settings as dotted paths, and the source params.yaml declares for each.

One flattening serves both the check of `study.<name>.sources` (config.py: every key must name
a setting) and the recipe card (report/recipe.py: one row per setting), so the paths a user
may write are exactly the rows the card shows. Cheap to import (no pandas; the models and
neurons, which need torch, only inside `model_section`): config.py imports it at load.

Paths: `data.<key>` (the study's dataset parameters with its overrides; `data.<dataset>.<key>`
when the grid has several datasets), `model.<key>`, `train.<key>`, `energy.<key>`,
`distributed.<key>` (when the study declares it), `grid.<axis>`, `seeds`. Mappings are
descended (`model.attention_kwargs.ma.ratio_c`); lists and empty mappings are one setting.

The model section is what the cells build with, not only what params.yaml writes: `model.<key>`
for each key the study declares (its value), and for every other constructor parameter of the
backbone its default (models.backbone_defaults: the class's, then the timm name's own), except
those each cell fills in itself (CELL_KEYS, job_inputs.model_spec) and RUNTIME_KEYS, which change
no result. `model.lif.<field>` are the LIF constants the cells' neurons run with: the fields
of the study's `neuron` preset (the backbone's default preset when the study names none) with
its `neuron_kwargs` applied (`model.lif.surrogate_kwargs.width`). With several backbones in the
grid, a default or LIF field is one row when every backbone has it with one value, else one
row per backbone that has it: `model.<backbone>.<key>`, `model.lif.<backbone>.<field>`.
That section needs torch: `model_section` computes it once, when config.Params validates, and
`study_settings` reads it from the Params (which has it from its validation record when it
skipped the checks that import torch), so the Snakefile plans without loading torch.
"""

from __future__ import annotations

from typing import Any, Iterator, Mapping

SECTIONS = ("data", "model", "train", "energy", "distributed", "grid", "seeds")
# Where a dataset's files come from, not how the study uses them: not recipe settings.
DATA_LOCATION = ("source", "root", "archives")
# The side(s) a source kind says gave our value; `paper:` / `code:` name the other side's.
GIVES = {
    "paper": ("paper",),
    "code": ("code",),
    "paper+code": ("paper", "code"),
    "assumed": (),
    "project": (),
}
NOT_DECLARED = "not declared"
DISAGREE = "paper ≠ code"
# Constructor parameters each cell fills in itself (job_inputs.model_spec), and ones that change
# no result: not recipe rows.
CELL_KEYS = ("attention", "coding", "T", "num_classes", "in_chans", "img_size")
RUNTIME_KEYS = ("lif_backend",)
LIF = "lif"  # model.lif.<field>: `model.neuron` is already the preset's name


def _leaves(prefix: str, value: Any) -> Iterator[tuple[str, Any]]:
    if isinstance(value, Mapping) and value:
        for key, inner in value.items():
            yield from _leaves(f"{prefix}.{key}", inner)
    else:
        yield prefix, value


def _energy(params: Any, study: str) -> dict[str, Any]:
    """The study's energy conventions, resolved (its preset expanded, its own keys applied);
    `preset` only when one is named."""
    return {
        k: v for k, v in params.energy_settings(study).items() if not (k == "preset" and v is None)
    }


def _flat(mapping: Mapping[str, Any]) -> dict[str, Any]:
    """{dotted key: value} of a mapping's leaves (see `_leaves`), tuples written as lists."""
    plain = {key: list(v) if isinstance(v, tuple) else v for key, v in mapping.items()}
    return {path.removeprefix("."): v for path, v in _leaves("", plain)}


def _shared_or_each(per_backbone: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """Rows from each backbone's {dotted key: value}: a key every backbone has with one value
    is one row, any other is `<backbone>.<key>` for each backbone that has it."""
    out: dict[str, Any] = {}
    for key in sorted({key for values in per_backbone.values() for key in values}):
        values = [values[key] for values in per_backbone.values() if key in values]
        if len(values) == len(per_backbone) and all(v == values[0] for v in values):
            out[key] = values[0]
        else:
            out.update({f"{b}.{key}": v[key] for b, v in per_backbone.items() if key in v})
    return out


def model_section(params: Any, study: str) -> dict[str, Any]:
    """The model section as {path below `model.`: value}: declared keys, the backbones'
    defaults and the LIF constants (see the module docstring). Imports torch; called by
    config.Params while validating, which keeps the result (`Params.model_section`)."""
    from dataclasses import asdict

    from .models import backbone_defaults  # torch: only when a study's settings are asked for
    from .neurons import lif_config

    declared = params.model_kwargs(study)
    skip = {*CELL_KEYS, *RUNTIME_KEYS, *declared}
    defaults, lif = {}, {}
    for backbone in params.study(study)["grid"]["backbone"]:
        own = backbone_defaults(backbone)
        # an options mapping left at None (attention_kwargs, ...) sets nothing: no row
        defaults[backbone] = _flat(
            {
                k: v
                for k, v in own.items()
                if k not in skip and not (k.endswith("_kwargs") and v is None)
            }
        )
        if "neuron" in own:
            preset = declared.get("neuron", own["neuron"])
            lif[backbone] = _flat(
                asdict(lif_config(preset, **(declared.get("neuron_kwargs") or {})))
            )
    return {
        **_flat(declared),
        **_shared_or_each(defaults),
        **{f"{LIF}.{key}": v for key, v in _shared_or_each(lif).items()},
    }


def study_settings(params: Any, study: str) -> dict[str, Any]:
    """Every setting of `study` that shapes its cells: {dotted path: value}, by section
    (SECTIONS order), alphabetical within a section. `params` is a config.Params."""
    spec = params.study(study)
    datasets = spec["grid"]["dataset"]
    data: dict[str, Any] = {}
    for name in datasets:
        own = {k: v for k, v in params.dataset(name, study).items() if k not in DATA_LOCATION}
        data.update(own if len(datasets) == 1 else {name: own})
    sections = {
        "data": data,
        "model": params.model_section(study),
        "train": params.train_settings(study),
        "energy": _energy(params, study),
        "distributed": params.distributed(study) if "distributed" in spec else {},
        "grid": dict(spec["grid"]),
    }
    out: dict[str, Any] = {}
    for section in SECTIONS[:-1]:
        if sections[section]:
            out.update(sorted(_leaves(section, sections[section])))
    out["seeds"] = list(spec["seeds"])
    return out


def covers(key: str, path: str) -> bool:
    """True when source key `key` is `path` or a prefix of it at a dot."""
    return path == key or path.startswith(key + ".")


def source_key(path: str, sources: Mapping[str, Any]) -> str | None:
    """The sources key that gives `path`'s source: the longest one covering it."""
    keys = [key for key in sources if covers(key, path)]
    return max(keys, key=len) if keys else None


def recipe_inputs(params: Any, study: str) -> dict[str, Any]:
    """What a study's recipe card is made from (a Snakemake rule's params, as canonical JSON)."""
    return {
        "settings": study_settings(params, study),
        "sources": dict(params.study(study).get("sources", {})),
    }


def render(value: Any) -> str:
    """A value as params.yaml's flow style writes it: [0.4914, 0.4822], {flip: true}, null."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(render(v) for v in value) + "]"
    if isinstance(value, Mapping):
        return "{" + ", ".join(f"{k}: {render(v)}" for k, v in value.items()) + "}"
    return repr(value) if isinstance(value, float) else str(value)


def _listing(paths: list[str], limit: int = 8) -> str:
    shown = ", ".join(paths[:limit])
    return shown + (f", … ({len(paths)} in all)" if len(paths) > limit else "")


def _unknown(where: str, key: str, paths: list[str]) -> str:
    """The line for a sources key that names no setting: the settings under the longest part
    of the key that does name some (so a typo's neighbours are listed), else the sections."""
    parts = key.split(".")
    for n in range(len(parts) - 1, 0, -1):
        under = [p for p in paths if covers(".".join(parts[:n]), p)]
        if under:
            return f"{where}: names no setting of this study; its settings are {_listing(under)}"
    sections = list(dict.fromkeys(p.split(".")[0] for p in paths))
    return f"{where}: names no setting of this study; its settings are under {', '.join(sections)}"


def source_problems(
    study: str, settings: Mapping[str, Any], sources: Mapping[str, Any]
) -> list[str]:
    """What the schema cannot check in `study.<study>.sources` (given the study's
    `study_settings`): each key names a setting or a prefix of some; a `paper:` / `code:`
    value belongs to one setting and to a side other than the one `from:` credits."""
    paths = list(settings)
    problems = []
    for key, spec in sources.items():
        where = f"study.{study}.sources.{key}"
        if not any(covers(key, p) for p in paths):
            problems.append(_unknown(where, key, paths))
            continue
        if not isinstance(spec, Mapping):
            continue
        for side in ("paper", "code"):
            if side not in spec:
                continue
            if side in GIVES[spec["from"]]:
                problems.append(
                    f"{where}.{side}: from: {spec['from']} says the {side} gives our value"
                    f"{f' ({render(settings[key])})' if key in settings else ''}; give {side}: "
                    "only when it differs from ours, with from: naming where ours comes from"
                )
            elif key not in settings:
                under = _listing([p for p in paths if covers(key, p)], 4)
                problems.append(
                    f"{where}.{side}: {key} holds several settings; give the {side}'s "
                    f"value on the one it belongs to ({under})"
                )
    return problems


def card_rows(settings: Mapping[str, Any], sources: Mapping[str, Any]) -> list[dict[str, str]]:
    """One row per setting: section, setting, value, source, note, paper, code, disagreement
    (values rendered; paper/code empty where that side's value is not known)."""
    rows = []
    for path, value in settings.items():
        key = source_key(path, sources)
        spec = sources[key] if key is not None else NOT_DECLARED
        spec = spec if isinstance(spec, Mapping) else {"from": spec}
        known = {side: value for side in GIVES.get(spec["from"], ())}
        known.update({side: spec[side] for side in ("paper", "code") if side in spec})
        differ = "paper" in known and "code" in known and known["paper"] != known["code"]
        rows.append(
            {
                "section": path.split(".")[0],
                "setting": path,
                "value": render(value),
                "source": spec["from"],
                "note": spec.get("note", ""),
                "paper": render(known["paper"]) if "paper" in known else "",
                "code": render(known["code"]) if "code" in known else "",
                "disagreement": DISAGREE if differ else "",
            }
        )
    return rows
