"""Which datasets exist, what their parameters are, and where their files live.

The datasets are the entries of `sources.ENTRIES` (one class per dataset, which also reads
its files); `DatasetInfo` is what downstream stages read of an entry without loading anything.
Parameters arrive as a plain dict from params.yaml `datasets.<name>`; every stage validates
them here first (against that dataset's part of params.schema.yaml, plus checks a schema
cannot express) so a typo fails at once with the key's full name instead of deep in numpy.

A plugin adds a dataset with `register_dataset`, the call that registers the built-ins: its
class is the entry and the reader, as theirs are; its part of the schema comes from the class
(`params_schema`) or from its kind and origin (`plugin_schema`).
"""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping

from ..registry import RegistrationError, Registry, built_in, current_owner
from ..schema import DATASET_SCHEMAS, file_schema, part, violations
from .sources import ENTRIES, READERS, EventSource, ImageSource, Source


@dataclass(frozen=True)
class DatasetInfo:
    """What downstream stages need to know about a dataset without loading it: its entry's
    class attributes, made by `of` (`sources.base.Source` says what each one means)."""

    name: str
    kind: str  # "static" (images) or "events" (event streams)
    source: str  # the entry's `origin`: "embedded" (built locally), "download" or "folder"
    num_classes: int
    in_channels: int
    size_key: str | None  # the parameter that gives a square input size, or:
    sensor: tuple[int, int] | None  # a real event camera's (H, W), divided by `downsample`
    frame_keys: tuple[str, ...]  # used only when framing: changing them must not force `prepare`
    loader_keys: tuple[str, ...]  # used only when loading batches: no cache depends on them
    streamed: bool  # the cache indexes files read while training (ImageNet)
    raw_version: int | None  # version of what `prepare` writes (embedded), else None
    cross_check: Callable[[Mapping[str, Any]], None]  # checks the schema cannot express
    # Training samples per epoch under the given parameters before anything is downloaded
    # (`spikeattn plan`); None when unknown. A built frames cache knows the true count
    # (meta.json `counts`), which the plan prefers.
    train_count: Callable[[Mapping[str, Any]], int | None]

    @classmethod
    def of(cls, entry: type[Source]) -> DatasetInfo:
        """The facts of one registry entry (a `sources` class)."""
        return cls(
            name=entry.name,
            kind=entry.kind,
            source=entry.origin,
            num_classes=entry.num_classes,
            in_channels=entry.in_channels,
            size_key=entry.size_key,
            sensor=entry.sensor,
            frame_keys=entry.frame_keys,
            loader_keys=entry.loader_keys,
            streamed=entry.streamed,
            raw_version=entry.raw_version,
            cross_check=entry.cross_check,
            train_count=entry.train_count,
        )

    @property
    def schema(self) -> dict:
        """This dataset's entry in params.schema.yaml."""
        return part("properties", "datasets", "properties", self.name)

    def input_size(self, params: Mapping[str, Any]) -> tuple[int, int]:
        """(H, W) of one frame as the model sees it."""
        if self.size_key is not None:
            return params[self.size_key], params[self.size_key]
        height, width = self.sensor
        return height // params["downsample"], width // params["downsample"]


def _check_loading(info: DatasetInfo, params: Mapping[str, Any]) -> None:
    """Loader settings the schema cannot check alone: one normalize value per input channel;
    AutoAugment only where workers see uint8 images (streamed folders), translate_px only where
    the device shifts cached images."""
    key = f"datasets.{info.name}"
    normalize = params.get("normalize") or {}
    for stat in ("mean", "std") if normalize else ():
        values = normalize[stat]
        if len(values) != info.in_channels:
            raise ValueError(
                f"{key}.normalize.{stat} must hold one value per input channel: "
                f"{info.in_channels}, got {len(values)}"
            )
    augment = params.get("augment") or {}
    if augment.get("autoaugment") and not info.streamed:
        raise ValueError(
            f"{key}.augment.autoaugment: AutoAugment runs only on streamed image folders "
            f"(imagenet); {info.name} is cached and augmented on the device by flip and "
            f"translate_px: remove the key or set it to false"
        )
    if augment.get("translate_px") and info.streamed:
        raise ValueError(
            f"{key}.augment.translate_px: not applied to streamed image folders "
            f"(RandomResizedCrop crops them): remove it"
        )


# One object for the life of the process: the workflow joins its names into a wildcard
# constraint after Params has loaded the plugins (pipeline/common.smk).
DATASETS: Registry[DatasetInfo] = Registry("dataset")

PLUGIN_ORIGINS = ("download", "folder")  # `prepare` builds only the shipped embedded datasets
# Letters, digits and single hyphens: a name goes into paths, cell ids (joined by "__") and
# the workflow's wildcard regex.
NAME = re.compile(r"^[A-Za-z0-9]+(-[A-Za-z0-9]+)*$")


def plugin_schema(cls: type[Source]) -> dict:
    """A plugin dataset's entry under `datasets:`: its class's `params_schema`, else the
    built-in real datasets' entry of its kind (dvs_download, image_download); a folder dataset
    takes `root:` (required: the folder its reader reads) instead of `archives:`."""
    if cls.params_schema is not None:
        return copy.deepcopy(dict(cls.params_schema))
    base = "dvs_download" if cls.kind == "events" else "image_download"
    if cls.origin == "download":
        return {"$ref": f"#/$defs/{base}"}
    node = copy.deepcopy(file_schema()["$defs"][base])
    node["description"] = f"{cls.name}: files in a folder you provide (a plugin dataset)"
    node["properties"].pop("archives", None)
    node["properties"]["source"] = {"const": "folder"}
    node["properties"]["root"] = {
        "type": "string",
        "minLength": 1,
        "description": f"the folder {cls.__name__}.records reads",
    }
    node["required"] = [*node["required"], "root"]
    return node


def _check_plugin_entry(cls: Any) -> None:
    """What a plugin dataset class must be for every stage to read it like a built-in."""
    what = f"dataset class {getattr(cls, '__qualname__', cls)!r}"
    if not (isinstance(cls, type) and issubclass(cls, (EventSource, ImageSource))):
        raise RegistrationError(
            f"{what} must subclass spikeattn.plugins.EventSource or ImageSource"
        )
    name = getattr(cls, "name", None)
    if not isinstance(name, str) or not NAME.match(name):
        raise RegistrationError(
            f"{what}: name = {name!r}; give it a name of letters, digits and single hyphens "
            "(it goes into paths and cell ids)"
        )
    what = f"dataset {name!r} ({cls.__qualname__})"
    if cls.origin == "embedded":
        raise RegistrationError(
            f"{what}: origin 'embedded' is for the datasets spikeattn ships (`spikeattn "
            "prepare` builds only those); set origin = 'folder' (params give `root:`, the "
            "folder your reader reads) or 'download' (params give `archives:`)"
        )
    if cls.origin not in PLUGIN_ORIGINS:
        raise RegistrationError(
            f"{what}: origin must be one of {PLUGIN_ORIGINS}, got {cls.origin!r}"
        )
    for attr in ("num_classes", "in_channels"):
        value = getattr(cls, attr, None)
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise RegistrationError(f"{what}: set {attr} to a positive integer, got {value!r}")
    if issubclass(cls, EventSource):
        sensor = getattr(cls, "sensor", None)
        if not (
            isinstance(sensor, tuple)
            and len(sensor) == 2
            and all(isinstance(v, int) and v > 0 for v in sensor)
        ):
            raise RegistrationError(
                f"{what}: set sensor = (height, width) in pixels, got {sensor!r}"
            )
        needed = {"records": EventSource.records, "read": EventSource.read}
    else:
        if cls.streamed:
            raise RegistrationError(f"{what}: streamed image folders are imagenet's alone")
        needed = {"load": ImageSource.load}
    missing = [m for m, base in needed.items() if getattr(cls, m) is base]
    if missing:
        raise RegistrationError(
            f"{what}: define {', '.join(missing)} (see EventSource/ImageSource)"
        )


def _checked_schema(name: str, sub: Any) -> dict:
    """A plugin's entry, refused unless it is an object schema (or a $ref to one of the file's
    $defs) that JSON Schema accepts."""
    import jsonschema

    defs = file_schema()["$defs"]
    ref = sub.get("$ref", "") if isinstance(sub, dict) else ""
    node = defs.get(ref.removeprefix("#/$defs/")) if ref.startswith("#/$defs/") else sub
    if not isinstance(node, dict) or not isinstance(node.get("properties"), dict):
        raise RegistrationError(
            f"dataset {name!r}: params_schema must be an object schema with `properties` (or "
            f"{{'$ref': '#/$defs/<name>'}} naming one of {', '.join(sorted(defs))}), got {sub!r}"
        )
    try:
        jsonschema.Draft202012Validator.check_schema({**sub, "$defs": defs})
    except jsonschema.SchemaError as err:
        raise RegistrationError(
            f"dataset {name!r}: params_schema is invalid: {err.message}"
        ) from None
    return sub


def register_dataset(cls: type[Source]) -> type[Source]:
    """Class decorator: make `cls` (an EventSource or ImageSource subclass, the dataset's
    entry and reader) a dataset named `cls.name`, for grids, the schema and every data stage.

    A plugin's (registered inside `registry.loading`) must come from a folder or a download,
    and brings its part of the schema (`plugin_schema`); the built-ins' is in the file."""
    plugin = current_owner() is not None
    if plugin:
        _check_plugin_entry(cls)
        sub = _checked_schema(cls.name, plugin_schema(cls))
    elif cls.name not in file_schema()["properties"]["datasets"]["properties"]:
        raise RegistrationError(f"dataset {cls.name!r}: add its entry to params.schema.yaml")
    DATASETS.register(cls.name, DatasetInfo.of(cls))  # first: a taken name stops it here
    READERS.register(cls.name, cls)
    if plugin:
        DATASET_SCHEMAS.register(cls.name, sub)
    return cls


with built_in():
    for _entry in ENTRIES:
        register_dataset(_entry)


def get_info(name: str) -> DatasetInfo:
    """The registry entry for `name`; the error lists the names that do exist."""
    try:
        return DATASETS[name]
    except KeyError:
        raise KeyError(f"unknown dataset {name!r}; known datasets: {DATASETS.describe()}") from None


def check_params(name: str, params: Mapping[str, Any]) -> dict[str, Any]:
    """Validate `params` for dataset `name` and return a normalised copy.

    Errors name the full params.yaml key, e.g. "datasets.digits-dvs.threshold: 0 is less than
    or equal to the minimum of 0". Numbers the schema declares as `number` come back as float,
    so `1` and `1.0` give the same cache key.
    """
    info = get_info(name)
    problems = violations(params, info.schema, prefix=f"datasets.{name}")
    if problems:
        raise ValueError("; ".join(problems))
    floats = {k for k, spec in info.schema["properties"].items() if spec.get("type") == "number"}
    checked = {k: float(v) if k in floats and v is not None else v for k, v in params.items()}
    _check_loading(info, checked)
    info.cross_check(checked)
    return checked


def raw_params(name: str, params: Mapping[str, Any]) -> dict[str, Any]:
    """The validated parameters that determine the raw data (what `prepare` depends on), and for
    an embedded dataset `raw_version`: the version of `prepare` itself (a new split rule), so
    a raw folder it wrote earlier no longer matches (the workflow rebuilds it; `preprocess`
    refuses it)."""
    info = get_info(name)
    checked = check_params(name, params)
    raw = {k: v for k, v in checked.items() if k not in info.frame_keys}
    return raw if info.raw_version is None else {**raw, "raw_version": info.raw_version}


def raw_dir(name: str, root: str | Path) -> Path:
    """Where `prepare` puts a dataset's raw files."""
    return Path(root) / "data" / "raw" / name


def files_dir(name: str, params: Mapping[str, Any], root: str | Path) -> Path:
    """Where a dataset's reader finds its files: the folder the user gives (`root:`) for a
    folder dataset, else its raw dir (which then holds `download`'s or `prepare`'s files)."""
    if get_info(name).source == "folder":
        return Path(params["root"]).expanduser()
    return raw_dir(name, root)
