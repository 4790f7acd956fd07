"""Benchmark the training step of every paper backbone at its paper shape, against the alternatives.

Table 1, one training step (forward, the study's loss, backward, the study's optimizer step,
fused on CUDA where torch has the kernel, as `train.fused_optimizer: auto`) on random inputs
of the paper's shape, for each backbone:

    ma_cnn_gesture         MA-SNN Gesture CNN, TCSA, T 60, 2x32x32     (study ma-gesture)
    ma_cnn_gait            MA-SNN Gait CNN, TCSA, T 8, 2x128x128       (study ma-gait)
    sma_vgg8               SMA VGG8, SMA+AZO, T 16, 2x128x128          (study sma-gesture)
    gac_ms_resnet18_cifar  GAC coding, T 6, 3x32x32                    (study gac-cifar10)
    ms_resnet104           CSA, T 4, 3x224x224                         (study ma-imagenet)

The model, its settings (attention ratios, neuron, ...), the loss, the optimizer and the batch
size are the study's (params.yaml), as `spikeattn train` builds them; a study trained on N
processes (`distributed.nproc_per_node`) is measured at its per-process batch. Variants, each
in the same run, ratios against the first:

    torch LIF, fp32              the reference LIF loop (MultiStepLIF backend "torch"): baseline
    Triton LIF, fp32             the fused kernels (backend "triton")
    Triton LIF, bf16             the same under bf16 autocast (train.precision: bf16)
    Triton LIF, bf16 + compile   the same with torch.compile(model)
    SpikingJelly layers, fp32    the same architecture built from SpikingJelly's own layers
    SpikingJelly layers, bf16    (multi-step LIFNode on the implementation it picks itself, its
                                 MultiDimensionalAttention for MA); built for ma_cnn_gesture
                                 only, "not built" elsewhere, "not installed" without it
    per-step loop, fp32          the authors' style: every LIF is a stateful single-step cell
                                 stepped in a Python loop over T (MA-SNN's ConvIFCell / IFCell:
                                 conv, BN, pool and attention over all T at once, then the
                                 neuron step by step into a [B, T, ...] output), any backbone

Samples/s and ms per step are the mean over --steps timed steps after --warmup steps, with
no host synchronisation inside the timed steps (one at the end); peak memory is CUDA's
max_memory_allocated during the timed steps ("n/a" on the CPU). A variant that runs out of
GPU memory says so (the remedy: a smaller per-GPU batch over more GPUs, or activation
checkpointing). On CUDA cudnn.benchmark is on for every variant alike (--no-cudnn-benchmark).

Table 2 (--epoch), one epoch end to end through the real loader (`data.loader.batches`) and
`train.fit` (train epoch + test pass), data loading included: the ma-gesture TCSA cell when
its frame cache exists under --root, else the demo-dvs TCSA cell (built in a scratch folder);
`--epoch-data gesture-synthetic` builds Gesture-sized synthetic recordings in IBM's layout
(benchmarks/data.py's generator) for the ma-gesture cell instead.

    python benchmarks/train.py                                  # on a CUDA GPU: every backbone
    python benchmarks/train.py --backbones ma_cnn_gesture --epoch
    python benchmarks/train.py --append benchmarks/RESULTS.md   # adds the tables, device and date
    bash benchmarks/gpu_train.sh                                # the GPU run, wheels and all
    TRITON_INTERPRET=1 python benchmarks/train.py --smoke --epoch   # tiny shapes on the CPU (a test runs it)
"""

from __future__ import annotations

import argparse
import copy
import datetime
import gc
import importlib.metadata
import importlib.util
import math
import os
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

if (
    "--smoke" in sys.argv[1:]
):  # the kernels run in Triton's interpreter: set before they are defined
    os.environ.setdefault("TRITON_INTERPRET", "1")

import torch  # noqa: E402
from torch import Tensor, nn  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
import timm  # noqa: E402

from spikeattn import data  # noqa: E402
from spikeattn.attention import MA_VARIANTS, family  # noqa: E402
from spikeattn.config import Cell, Params  # noqa: E402
from spikeattn.data.loader import batches  # noqa: E402
from spikeattn.hardware import device_name  # noqa: E402
from spikeattn.job_inputs import model_spec  # noqa: E402
from spikeattn.models._factory import frame_size  # noqa: E402
from spikeattn.models.ma_cnn import MACNNGesture  # noqa: E402
from spikeattn.neurons import LIFConfig, MultiStepLIF, make_surrogate  # noqa: E402
from spikeattn.neurons.lif import triton_interpreter  # noqa: E402
from spikeattn.train import build_loss, fit  # noqa: E402
from spikeattn.train.loop import build_optimizer  # noqa: E402
from spikeattn.train.precision import Precision  # noqa: E402
from spikeattn.train.speed import resolve_fused  # noqa: E402

COLUMNS = [
    "backbone",
    "study cell",
    "T",
    "batch",
    "input",
    "variant",
    "samples/s",
    "ms/step",
    "peak MiB",
    "× baseline",
]
EPOCH_COLUMNS = [
    "study",
    "cell",
    "device",
    "precision",
    "train samples",
    "test samples",
    "batch",
    "setup s",
    "train epoch s",
    "train samples/s",
    "test s",
    "fit s",
]
SECTION = "## benchmarks/train.py: training step and epoch"


# --- cases and variants ---------------------------------------------------------------------


@dataclass(frozen=True)
class Case:
    """One paper backbone at its paper shape: a study's cell, and its size under --smoke."""

    backbone: str
    study: str
    cell: dict[str, Any]  # coordinates picking the study's cell
    smoke_img: int  # smallest frame the backbone takes cheaply (pools / strides)


CASES = [
    Case("ma_cnn_gesture", "ma-gesture", {"attention": "TCSA", "T": 60}, 8),
    Case("ma_cnn_gait", "ma-gait", {"attention": "TCSA", "T": 8}, 64),
    Case("sma_vgg8", "sma-gesture", {"attention": "SMA+AZO", "T": 16}, 32),
    Case("gac_ms_resnet18_cifar", "gac-cifar10", {"coding": "gac", "T": 6}, 8),
    Case("ms_resnet104", "ma-imagenet", {"attention": "CSA", "T": 4}, 8),
]


@dataclass(frozen=True)
class Variant:
    name: str
    build: str  # "ours", "spikingjelly" or "per_step"
    lif_backend: str = "torch"
    precision: str = "fp32"
    compile: bool = False


VARIANTS = [
    Variant("torch LIF, fp32", "ours", "torch"),
    Variant("Triton LIF, fp32", "ours", "triton"),
    Variant("Triton LIF, bf16", "ours", "triton", "bf16"),
    Variant("Triton LIF, bf16 + compile", "ours", "triton", "bf16", compile=True),
    Variant("SpikingJelly layers, fp32", "spikingjelly"),
    Variant("SpikingJelly layers, bf16", "spikingjelly", precision="bf16"),
    Variant("per-step loop, fp32", "per_step"),
]
BASELINE = VARIANTS[0].name


@dataclass
class Spec:
    """What one case builds and feeds at the size of this run."""

    case: Case
    cell: Cell
    name: str
    kwargs: dict[str, Any]
    settings: dict[str, Any]
    batch: int
    input_shape: tuple[int, ...]  # one batch: [B, T, C, H, W] frames or [B, C, H, W] images
    note: str = ""


def find_cell(params: Params, study: str, coords: dict[str, Any]) -> Cell:
    cells = [c for c in params.cells(study) if c.matches(coords)]
    if not cells:
        raise ValueError(
            f"study {study!r} has no cell with {coords}; params.yaml changed: update "
            f"benchmarks/train.py CASES"
        )
    return cells[0]


def spec_for(params: Params, case: Case, smoke: bool) -> Spec:
    cell = find_cell(params, case.study, case.cell)
    name, kwargs = model_spec(params, cell)
    settings = params.train_settings(case.study)
    processes = int(params.distributed(case.study).get("nproc_per_node", 1) or 1)
    batch, note = settings["batch_size"], ""
    if processes > 1:
        note = f"global batch {batch} over {processes} processes"
        batch = math.ceil(batch / processes)
    if smoke:
        kwargs = {**kwargs, "T": 2, "img_size": case.smoke_img}
        batch, note = 2, "smoke size"
    h, w = frame_size(kwargs["img_size"])
    events = data.DATASETS[cell.dataset].kind == "events"
    shape = (
        (batch, kwargs["T"], kwargs["in_chans"], h, w)
        if events
        else (batch, kwargs["in_chans"], h, w)
    )
    return Spec(case, cell, name, kwargs, settings, batch, shape, note)


def make_batch(
    spec: Spec, device: torch.device, generator: torch.Generator
) -> tuple[Tensor, Tensor]:
    """Event frames as sparse counts (about 10% of pixels 1), images as normalised noise."""
    if len(spec.input_shape) == 5:
        x = (torch.rand(spec.input_shape, generator=generator) < 0.1).float()
    else:
        x = torch.randn(spec.input_shape, generator=generator)
    y = torch.randint(0, spec.kwargs["num_classes"], (spec.batch,), generator=generator)
    return x.to(device), y.to(device)


# --- the authors' per-step loop -------------------------------------------------------------


class PerStepLIF(nn.Module):
    """A LIF layer run as the MA-SNN authors run theirs (module/LIF.py ConvIFCell, IFCell, driven
    by ConvAttLIF/AttLIF in LIF_Module.py): a stateful single-step cell whose membrane `h` lives
    on the module, called once per time step from a Python loop over the [B, T, ...] layout,
    each step's spikes written into a preallocated output. Same equations and surrogate as
    `MultiStepLIF(cfg)` (a test checks the outputs agree), so only the schedule differs."""

    def __init__(self, cfg: LIFConfig):
        super().__init__()
        self.cfg = cfg
        self.surrogate = make_surrogate(cfg.surrogate, **cfg.surrogate_kwargs)
        self.h: Tensor | None = None

    def reset(self) -> None:
        self.h = None

    def step(self, x_t: Tensor) -> Tensor:
        cfg = self.cfg
        if self.h is None:
            self.h = torch.zeros_like(x_t)
        gain = cfg.gain
        u = cfg.decay * self.h + gain * x_t
        s = self.surrogate(u - cfg.v_threshold, cfg.fire_at_threshold)
        s_reset = s.detach() if cfg.detach_reset else s
        self.h = (
            u - s_reset * cfg.v_threshold
            if cfg.v_reset is None
            else s_reset * cfg.v_reset + (1.0 - s_reset) * u
        )
        return s

    def forward(self, x: Tensor) -> Tensor:  # [T, B, ...] in, as MultiStepLIF
        self.reset()
        data_ = x.transpose(0, 1)  # the authors' [B, T, ...]
        out = torch.zeros_like(data_)
        for t in range(data_.shape[1]):
            out[:, t] = self.step(data_[:, t])
        self.reset()
        return out.transpose(0, 1)


def per_step_copy(model: nn.Module) -> nn.Module:
    """`model` with every MultiStepLIF swapped for a PerStepLIF of the same neuron."""
    model = copy.deepcopy(model)
    for module in list(model.modules()):
        for child_name, child in list(module.named_children()):
            if isinstance(child, MultiStepLIF):
                setattr(module, child_name, PerStepLIF(child.cfg))
    return model


# --- SpikingJelly-built copy of ma_cnn_gesture ----------------------------------------------


def spikingjelly_version() -> str | None:
    if importlib.util.find_spec("spikingjelly") is None:
        return None
    try:
        from spikingjelly.activation_based import functional, layer, neuron, surrogate  # noqa: F401
    except ImportError:
        return None
    return importlib.metadata.version("spikingjelly")


def spikingjelly_implementation(device: torch.device) -> str:
    """Which LIF implementation SpikingJelly picks on `device` (2.x decides itself)."""
    try:
        from spikingjelly.activation_based.functional import neuron_implementation
    except ImportError:
        return "torch" if device.type == "cpu" else "its default backend"
    if device.type != "cuda":
        return "torch"
    return str(neuron_implementation("lif", device)["implementation"])


class SJMACNNGesture(nn.Module):
    """`ma_cnn_gesture` layer for layer from SpikingJelly's multi-step layers.

        stem:  Conv2d(bias) -> BatchNorm2d                          (our coding's conv_bn)
        conv layer i: [Conv2d(bias) -> BatchNorm2d ->] (AvgPool2d) -> MultiDimensionalAttention -> LIFNode
        FC layer:     Linear -> BatchNorm1d -> TemporalWiseAttention + ReLU -> LIFNode

    MultiDimensionalAttention is MA-SNN's TA/CA/SA (Conv3d 1x1 MLPs, the same parameter
    count as ours); our FC layers' 1-D TA is its TemporalWiseAttention (dimension 2) followed
    by the ReLU that ends every MA block. The neuron: LIFNode(tau 1/(1 - 0.3), decay_input
    False, V_th 0.3) is ma_dvs's charge (u = 0.3 h + x) and threshold; its hard reset goes to
    0 (LIFNode decays towards v_reset, so ma_dvs's reset to 0.3 is not expressible), and the
    surrogate is ATan, which SpikingJelly's fused kernels support (Rect is not fused for the
    LIF). Neither changes the cost of a step.
    """

    def __init__(
        self,
        attention: str,
        T: int,
        num_classes: int,
        in_chans: int,
        img_size,
        attention_kwargs: dict[str, Any] | None = None,
        fc_bn: bool = True,
        spiking_output: bool = True,
        **_: Any,
    ):
        super().__init__()
        from spikingjelly.activation_based import layer, neuron, surrogate

        if attention != "none" and family(attention) != "ma":
            raise ValueError(f"SpikingJelly copy covers MA attentions only, got {attention!r}")
        ma = {**MACNNGesture.MA_DEFAULTS, **(attention_kwargs or {}).get("ma", {})}
        dims = MA_VARIANTS.get(attention, "")
        # SpikingJelly asserts T >= reduction; with T < ratio both MLPs are 1 wide (ours: max(1, T // r)).
        r_t, r_c, k = min(ma.get("ratio_t", 4), T), ma.get("ratio_c", 8), ma.get("sa_kernel", 3)

        def lif() -> nn.Module:
            return neuron.LIFNode(
                tau=1.0 / 0.7,
                decay_input=False,
                v_threshold=0.3,
                v_reset=0.0,
                detach_reset=False,
                surrogate_function=surrogate.ATan(alpha=2.0),
                step_mode="m",
            )

        def mda(channels: int) -> list[nn.Module]:
            if not dims:
                return []
            return [
                layer.MultiDimensionalAttention(
                    T,
                    channels,
                    reduction_t=r_t,
                    reduction_c=min(r_c, channels),
                    kernel_size=k,
                    use_temporal="T" in dims,
                    use_channel="C" in dims,
                    use_spatial="S" in dims,
                )
            ]

        channels, pools = MACNNGesture.CHANNELS, MACNNGesture.POOLS
        h, w = frame_size(img_size)
        features: list[nn.Module] = []
        c_in = in_chans
        for c_out, pool in zip(channels, pools):
            features += [
                layer.Conv2d(c_in, c_out, 3, padding=1, bias=True, step_mode="m"),
                layer.BatchNorm2d(c_out, step_mode="m"),
            ]
            if pool > 1:
                features.append(layer.AvgPool2d(pool, step_mode="m"))
                h, w = h // pool, w // pool
            features += [*mda(c_out), lif()]
            c_in = c_out
        self.features = nn.Sequential(*features)
        widths = [channels[-1] * h * w, *MACNNGesture.FC_HIDDEN, num_classes]
        fcs: list[nn.Module] = []
        for i, (f_in, f_out) in enumerate(zip(widths[:-1], widths[1:])):
            fcs.append(layer.Linear(f_in, f_out, step_mode="m"))
            if fc_bn:
                fcs.append(layer.BatchNorm1d(f_out, step_mode="m"))
            if "T" in dims:
                fcs += [layer.TemporalWiseAttention(T, reduction=r_t, dimension=2), nn.ReLU()]
            if spiking_output or i < len(widths) - 2:
                fcs.append(lif())
        self.classifier = nn.Sequential(*fcs)

    def forward(self, x: Tensor) -> Tensor:  # [B, T, C, H, W] -> [T, B, classes]
        from spikingjelly.activation_based import functional

        functional.reset_net(self)
        return self.classifier(self.features(x.transpose(0, 1)).flatten(2))


SJ_BUILDERS: dict[str, Callable[..., nn.Module]] = {"ma_cnn_gesture": SJMACNNGesture}


# --- measuring ------------------------------------------------------------------------------


@dataclass
class Row:
    spec: Spec
    variant: Variant
    samples_s: float | None = None
    ms: float | None = None
    peak_mib: float | None = None
    parameters: int | None = None  # of the model measured (the SpikingJelly copy matches ours)
    status: str = ""  # why there is no number: "not built", "skipped: ...", "OOM ..."


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


SMOKE_TRITON = "ma_cnn_gesture"  # under --smoke the interpreted kernels run on this backbone only


def build_model(
    spec: Spec, variant: Variant, device: torch.device, smoke: bool = False
) -> nn.Module | str:
    """The variant's model on `device`, or the reason it has none (a table cell)."""
    if variant.build == "spikingjelly":
        if spec.name not in SJ_BUILDERS:
            return "not built"
        if spikingjelly_version() is None:
            return "not installed"
        if spec.kwargs.get("coding", "direct") != "direct":
            return "not built"
        return SJ_BUILDERS[spec.name](**spec.kwargs).to(device)
    if variant.compile and device.type != "cuda":
        return "skipped on CPU (compile is measured on CUDA)"
    if (
        variant.lif_backend.startswith("triton")
        and device.type != "cuda"
        and not triton_interpreter()
    ):
        return "skipped: Triton needs CUDA or TRITON_INTERPRET=1"
    if variant.lif_backend.startswith("triton") and smoke and spec.name != SMOKE_TRITON:
        return f"skipped in --smoke (interpreted Triton runs on {SMOKE_TRITON} only)"
    model = timm.create_model(spec.name, **{**spec.kwargs, "lif_backend": variant.lif_backend})
    if variant.build == "per_step":
        model = per_step_copy(model)
    return model.to(device)


def measure(
    spec: Spec, variant: Variant, device: torch.device, warmup: int, steps: int, smoke: bool = False
) -> Row:
    row = Row(spec, variant)
    torch.manual_seed(0)
    try:
        model = build_model(spec, variant, device, smoke)
        if isinstance(model, str):
            row.status = model
            return row
        model.train()
        row.parameters = sum(p.numel() for p in model.parameters())
        optimizer = build_optimizer(
            model,
            spec.settings,
            fused=resolve_fused(
                "auto", spec.settings["opt"], device.type, spec.settings.get("opt_kwargs")
            ),
        )
        precision = Precision(variant.precision, device.type)
        loss_fn = build_loss(spec.settings["loss"], spec.settings.get("label_smoothing", 0.0))
        net = torch.compile(model) if variant.compile else model
        x, y = make_batch(spec, device, torch.Generator().manual_seed(0))

        def step() -> None:
            with precision.autocast():
                loss = loss_fn(net(x), y)
            precision.step(loss, optimizer)

        for _ in range(warmup):
            step()
        sync(device)
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        start = time.perf_counter()
        for _ in range(steps):
            step()
        sync(device)
        seconds = (time.perf_counter() - start) / steps
        row.ms, row.samples_s = 1e3 * seconds, spec.batch / seconds
        if device.type == "cuda":
            row.peak_mib = torch.cuda.max_memory_allocated(device) / 2**20
    except torch.OutOfMemoryError:
        total = torch.cuda.get_device_properties(device).total_memory / 2**30
        row.status = f"OOM (> {total:.0f} GiB at batch {spec.batch})"
    except Exception as err:  # one variant's failure (a compile error, say) must not lose the rest
        print(f"{spec.case.backbone}, {variant.name}: {type(err).__name__}: {err}", file=sys.stderr)
        row.status = f"failed: {type(err).__name__}"
    finally:
        model = optimizer = net = None  # noqa: F841
        gc.collect()
        if device.type == "cuda":
            torch.cuda.empty_cache()
    return row


# --- tables ---------------------------------------------------------------------------------


def shape_text(spec: Spec) -> str:
    return "x".join(str(d) for d in spec.input_shape[-3:])


def table_rows(rows: list[Row]) -> list[str]:
    base = {r.spec.case.backbone: r.samples_s for r in rows if r.variant.name == BASELINE}
    out = []
    for r in rows:
        spec = r.spec
        if r.samples_s is None:
            numbers = [r.status, "–", "–", "–"]
        else:
            ref = base.get(spec.case.backbone)
            numbers = [
                f"{r.samples_s:,.1f}",
                f"{r.ms:,.1f}",
                "n/a" if r.peak_mib is None else f"{r.peak_mib:,.0f}",
                f"{r.samples_s / ref:.2f}" if ref else "–",
            ]
        batch = f"{spec.batch}" + (f" ({spec.note})" if spec.note else "")
        cells = [
            spec.case.backbone,
            f"{spec.case.study}: {spec.cell.id}",
            str(spec.kwargs["T"]),
            batch,
            shape_text(spec),
            r.variant.name,
            *numbers,
        ]
        out.append("| " + " | ".join(cells) + " |")
    return out


def verdicts(rows: list[Row]) -> list[str]:
    """Per backbone: the fastest of ours against the SpikingJelly-built model and the loop."""
    lines = []
    for backbone in dict.fromkeys(r.spec.case.backbone for r in rows):
        mine = [r for r in rows if r.spec.case.backbone == backbone and r.samples_s is not None]
        ours = [r for r in mine if r.variant.build == "ours"]
        if not ours:
            continue
        best = max(ours, key=lambda r: r.samples_s)
        parts = [f"fastest of ours: {best.variant.name}, {best.samples_s:,.1f} samples/s"]
        for build, label in (
            ("spikingjelly", "SpikingJelly-built (its faster precision)"),
            ("per_step", "per-step loop"),
        ):
            theirs = [r for r in mine if r.variant.build == build]
            if theirs:
                top = max(theirs, key=lambda r: r.samples_s)
                same = (
                    ""
                    if top.parameters == best.parameters
                    else (f" (parameters differ: {top.parameters:,} vs ours {best.parameters:,})")
                )
                parts.append(f"{best.samples_s / top.samples_s:.2f}× the {label}{same}")
        lines.append(f"- {backbone}: " + "; ".join(parts))
    return lines


def step_table(rows: list[Row], device: torch.device, warmup: int, steps: int) -> str:
    sj = spikingjelly_version()
    sj_text = (
        f"SpikingJelly {sj} (LIF implementation: {spikingjelly_implementation(device)})"
        if sj
        else "SpikingJelly not installed"
    )
    triton_text = f"triton {importlib.metadata.version('triton')}" + (
        " (interpreter)" if device.type != "cuda" and triton_interpreter() else ""
    )
    cudnn = f", cudnn.benchmark {torch.backends.cudnn.benchmark}" if device.type == "cuda" else ""
    head = (
        f"### Training step: {device_name(device)}, {datetime.date.today().isoformat()}\n\n"
        f"torch {torch.__version__}, {triton_text}, {sj_text}{cudnn}. Mean of {steps} steps after "
        f"{warmup} warm-up steps; a step is forward, the study's loss, backward and the study's "
        f"optimizer step on one random batch of the paper's shape. × baseline: samples/s over "
        f"`{BASELINE}` of the same backbone.\n"
    )
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS), *table_rows(rows)]
    summary = verdicts(rows)
    return (
        head
        + "\n"
        + "\n".join(lines)
        + "\n"
        + ("\n" + "\n".join(summary) + "\n" if summary else "")
    )


# --- one epoch end to end -------------------------------------------------------------------


class TimedLoader:
    """Passes a loader through, timing each full pass (first batch asked to exhaustion, the
    device synchronised at the end so the last step's kernels count)."""

    def __init__(self, loader, device: torch.device):
        self.loader, self.device, self.seconds = loader, device, []

    def __len__(self) -> int:
        return len(self.loader)

    def __getattr__(self, name: str):
        return getattr(self.loader, name)

    def __iter__(self):
        start = time.perf_counter()
        yield from self.loader
        sync(self.device)
        self.seconds.append(time.perf_counter() - start)


@dataclass
class EpochCase:
    study: str
    cell: Cell
    cell_data: dict[str, Any]
    frames_dir: Path
    setup_s: float = 0.0
    notes: list[str] = field(default_factory=list)


def gesture_cache(params: Params, root: Path) -> EpochCase | None:
    cell = find_cell(params, "ma-gesture", {"attention": "TCSA", "T": 60})
    cell_data = params.cell_data(cell)
    out = data.frames_dir(cell.dataset, cell_data, cell.T, root)
    return EpochCase("ma-gesture", cell, cell_data, out) if (out / "meta.json").exists() else None


def build_epoch_case(
    params: Params, how: str, root: Path, scratch: Path, smoke: bool, per_sample: int = 100_000
) -> EpochCase:
    """The cell whose epoch is measured, its frame cache built first if need be (not timed
    as part of the epoch; reported as setup)."""
    if how in ("auto", "gesture") and not smoke:
        found = gesture_cache(params, root)
        if found is not None:
            found.notes.append(f"DVS128 Gesture cache under {root}")
            return found
        if how == "gesture":
            raise SystemExit(
                f"--epoch-data gesture: no ma-gesture frame cache under {root}; run "
                "`spikeattn preprocess dvs128-gesture` there first"
            )
    start = time.perf_counter()
    if how == "gesture-synthetic":
        cell = find_cell(params, "ma-gesture", {"attention": "TCSA", "T": 60})
        cell_data = params.cell_data(cell)
        bench_data = _load_data_benchmark()
        samples = 40 if smoke else 1573  # 108 train users x 11 = 1,188 train samples (IBM: 1,176)
        events = bench_data.write_gesture_raw(
            scratch, cell_data, samples, 20_000 if smoke else per_sample, 1.0 if smoke else 6.0
        )
        note = f"Gesture-sized synthetic recordings ({samples} samples, {events:,} events)"
    else:
        cell = find_cell(params, "demo-dvs", {"attention": "TCSA"})
        cell_data = params.cell_data(cell)
        if smoke:
            cell_data = {**cell_data, "max_samples": 80}
        data.prepare(cell.dataset, cell_data, scratch)
        note = "digits-dvs built in a scratch folder" + (" (80 samples)" if smoke else "")
    out = data.preprocess(cell.dataset, cell_data, cell.T, scratch, workers=os.cpu_count() or 1)
    case = EpochCase(cell.study, cell, cell_data, out, setup_s=time.perf_counter() - start)
    case.notes.append(note + f"; building its cache took {case.setup_s:.1f} s (not in the epoch)")
    return case


def _load_data_benchmark():
    spec = importlib.util.spec_from_file_location("data_benchmark", ROOT / "benchmarks" / "data.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def run_epoch_case(
    params: Params, case: EpochCase, device: torch.device, overrides: dict[str, Any], smoke: bool
) -> tuple[str, list[str]]:
    settings = {**params.train_settings(case.study), **overrides, "epochs": 1}
    if smoke:
        settings["batch_size"] = min(settings["batch_size"], 16)
    start = time.perf_counter()
    frames = data.load_frames(case.frames_dir)
    batch = settings["batch_size"]
    train = TimedLoader(
        batches(frames, case.cell_data, "train", batch, case.cell.T, device), device
    )
    test = TimedLoader(batches(frames, case.cell_data, "test", batch, case.cell.T, device), device)
    name, kwargs = model_spec(params, case.cell)
    model = timm.create_model(name, **kwargs).to(device)
    sync(device)
    setup = time.perf_counter() - start
    result = fit(model, train, test, settings, seed=0, progress=False)
    n_train, n_test = len(frames.train), len(frames.test)
    train_s, test_s = train.seconds[0], test.seconds[0]
    cells = [
        case.study,
        case.cell.id,
        device_name(device),
        settings.get("precision", "fp32"),
        f"{n_train:,}",
        f"{n_test:,}",
        str(batch),
        f"{setup:.2f}",
        f"{train_s:.2f}",
        f"{n_train / train_s:,.1f}",
        f"{test_s:.2f}",
        f"{result.seconds:.2f}",
    ]
    notes = list(case.notes)
    if result.diverged:
        notes.append(f"the epoch diverged: {result.diverged}")
    return "| " + " | ".join(cells) + " |", notes


def epoch_table(row: str, notes: list[str], overrides: dict[str, Any]) -> str:
    changed = ", ".join(f"train.{k}: {v}" for k, v in overrides.items()) or "none"
    head = (
        f"### One epoch end to end: {datetime.date.today().isoformat()}\n\n"
        f"`train.fit` for one epoch (train pass, then the test pass) over `data.loader.batches` "
        f"(augmentation and window sampling included); the study's settings, with overrides: "
        f"{changed}. setup s: loading the cache, building the loaders and the model. "
        + " ".join(n.rstrip(".") + "." for n in notes)
        + "\n"
    )
    return (
        head
        + "\n"
        + "\n".join(
            ["| " + " | ".join(EPOCH_COLUMNS) + " |", "|" + "---|" * len(EPOCH_COLUMNS), row]
        )
        + "\n"
    )


# --- the run --------------------------------------------------------------------------------


def parse_override(text: str) -> tuple[str, Any]:
    import yaml

    key, sep, value = text.partition("=")
    if not sep:
        raise argparse.ArgumentTypeError(
            f"--epoch-set takes key=value (a train.* key), got {text!r}"
        )
    return key.removeprefix("train."), yaml.safe_load(value)


def append(path: Path, text: str) -> None:
    existing = path.read_text() if path.exists() else ""
    with path.open("a") as f:
        if SECTION not in existing:
            f.write(
                "\n" + SECTION + "\n\nTables appended by `python benchmarks/train.py --append "
                "benchmarks/RESULTS.md` (GPU: `bash benchmarks/gpu_train.sh`). Each names its "
                "device and date.\n"
            )
        f.write("\n" + text)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument(
        "--backbones",
        nargs="+",
        default=[c.backbone for c in CASES],
        choices=[c.backbone for c in CASES],
    )
    p.add_argument(
        "--variants",
        nargs="+",
        default=[v.name for v in VARIANTS],
        choices=[v.name for v in VARIANTS],
        metavar="VARIANT",
        help="variants to run (quoted names, as in the table); the baseline always runs",
    )
    p.add_argument(
        "--warmup", type=int, default=3, help="untimed steps first (compile happens here)"
    )
    p.add_argument("--steps", type=int, default=10, help="timed steps")
    p.add_argument("--only", choices=("steps", "epoch"), help="run one of the two tables")
    p.add_argument("--epoch", action="store_true", help="also time one epoch end to end (table 2)")
    p.add_argument(
        "--epoch-data",
        choices=("auto", "gesture", "gesture-synthetic", "demo-dvs"),
        default="auto",
        help="auto: the ma-gesture cache under --root when it exists, else demo-dvs",
    )
    p.add_argument(
        "--epoch-events",
        type=int,
        default=100_000,
        help="gesture-synthetic: mean events per 6 s recording (the raw files take 32 B each)",
    )
    p.add_argument(
        "--epoch-set",
        type=parse_override,
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a train.* setting of the epoch's study (e.g. precision=bf16)",
    )
    p.add_argument("--root", type=Path, default=Path("."), help="where the pipeline's data/ lives")
    p.add_argument("--no-cudnn-benchmark", action="store_true")
    p.add_argument(
        "--smoke",
        action="store_true",
        help="tiny shapes (batch 2, T 2) on the CPU, Triton in its interpreter: "
        "checks the script runs",
    )
    p.add_argument("--append", type=Path, help="append the tables to this Markdown file")
    args = p.parse_args(argv)

    if args.smoke:
        device = torch.device("cpu")
        args.warmup, args.steps = 1, 1
        torch.set_num_threads(1)  # a shared CPU: more threads wait on descheduled ones (data.py)
    elif torch.cuda.is_available():
        device = torch.device("cuda")
        torch.backends.cudnn.benchmark = not args.no_cudnn_benchmark
    else:
        print(
            "benchmarks/train.py measures on a CUDA GPU; on a CPU run --smoke (tiny shapes)",
            file=sys.stderr,
        )
        return 2
    params = Params.load(ROOT / "params.yaml")
    tables = []
    if args.only != "epoch":
        variants = [v for v in VARIANTS if v.name in args.variants or v.name == BASELINE]
        rows = []
        for case in (c for c in CASES if c.backbone in args.backbones):
            spec = spec_for(params, case, args.smoke)
            for variant in variants:
                start = time.perf_counter()
                rows.append(measure(spec, variant, device, args.warmup, args.steps, args.smoke))
                print(
                    f"{case.backbone}, {variant.name}: {time.perf_counter() - start:.1f} s",
                    file=sys.stderr,
                    flush=True,
                )
        tables.append(step_table(rows, device, args.warmup, args.steps))
    if args.epoch or args.only == "epoch":
        overrides = dict(args.epoch_set)
        with tempfile.TemporaryDirectory(prefix="spikeattn-bench-train-") as scratch:
            print("one epoch end to end ...", file=sys.stderr, flush=True)
            case = build_epoch_case(
                params, args.epoch_data, args.root, Path(scratch), args.smoke, args.epoch_events
            )
            row, notes = run_epoch_case(params, case, device, overrides, args.smoke)
        tables.append(epoch_table(row, notes, overrides))
    text = "\n".join(tables)
    print(text)
    if args.append:
        append(args.append, text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
