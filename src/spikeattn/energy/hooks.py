"""Count what a spiking network does on real data: MACs, synaptic operations, firing rates.

`OpCounter` hooks a model for the duration of a `with` block:

- every `MultiStepLIF`: spikes and elements -> firing rate per layer;
- every Conv1d/2d/3d and Linear, however deeply nested: the dense multiply-accumulate count
  of each call (conv: out.numel() * in_channels/groups * prod(kernel); linear: out.numel() *
  in_features; biases not counted). A layer whose input is binary (every element 0 or 1) on
  every call is fed by spikes: it does SOPs = dense MACs x fraction of nonzero inputs, which
  is the field's fr_{l-1} * T * FLOPs_l because T is merged into the batch. Any other layer
  (the encoding layer, attention MLPs and convs on real values, GAC's gate) does dense MACs;
- every module with an `elementwise_macs(x)` method (MA attention, GAC coding): those
  weight multiplications count as MACs.

BatchNorm (folded into the conv at inference), pooling, ReLU, sigmoid, the LIF update itself
are not counted. Everything in `report()` is per sample. The choices the field makes
differently (exact vs rate SOPs, a repeated static input computed once or T times, the
encoding layer, attention products, which layers count at all) follow an `EnergyConventions`
(conventions.py).

Each Conv/Linear gets a role, from the model's structure (`attention_layers`,
`coding_layers`) and the forward order, never from the values it sees:
- attention: nested in a module that multiplies weights into a current (it has
  `elementwise_macs`: MA, SMA, GAC's gate), except a coding's `stem`;
- encoding: the first layer, a layer inside the input coding (any module with a `stem`
  nn.Module and `emits_spikes`, the contract every coding keeps, built in or a plugin's: the
  stem; GAC's gate layers are on this path too, with the attention role), or one first
  called before any spiking neuron is;
- hidden: every other layer.
Only encoding-path layers may be counted once for a repeated static input: past the first LIF
an input constant over time is an accident of the weights (zero residual BN at init makes
the whole MS-ResNet membrane stream constant), not something hardware could reuse.

Why "binary on every call" rather than per call: whether a layer is fed by spikes is a fact
about the network, not about one batch. Per call, a real-valued layer whose input happens to
be all zeros in one batch (a dead ReLU) would flip to SOPs, and the totals would then depend
on how the data were split into batches. Judged over all calls, the decision sees exactly
the same elements whatever the batch size. An input that is zero on every call reads as
binary: a silent spiking layer correctly does 0 SOPs, but so does a real-valued layer behind
a dead ReLU (e.g. a 1-unit attention MLP at init); `silent_input` flags both in the report.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Iterable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..neurons import MultiStepLIF
from .conventions import EnergyConventions

_CONV = (nn.Conv1d, nn.Conv2d, nn.Conv3d)
_CONV_FN = {nn.Conv1d: F.conv1d, nn.Conv2d: F.conv2d, nn.Conv3d: F.conv3d}


def dense_macs(module: nn.Module, output: Tensor) -> int:
    """Multiply-accumulates of one dense call of a Conv/Linear that produced `output`."""
    if isinstance(module, _CONV):
        return (
            output.numel() * (module.in_channels // module.groups) * math.prod(module.kernel_size)
        )
    if isinstance(module, nn.Linear):
        return output.numel() * module.in_features
    raise TypeError(f"no MAC formula for {type(module).__name__}")


def exact_sops(module: nn.Module, x: Tensor, skip_zero_weights: bool = False) -> int:
    """Accumulates one call does when only nonzero inputs are sent: every nonzero input times
    the synapses it reaches (its fan-out), borders and strides included; with
    `skip_zero_weights`, synapses whose weight is exactly 0 are not reached. On a real-valued
    input the same count is the call's effective MACs (NeuroBench's count: padding excluded).

    For a conv this sums, over outputs, the nonzero inputs in each receptive field, times the
    output channels that read them: a conv of the input indicator with an all-ones kernel
    (summed over each group's input channels first), or with the weights' indicator.
    """
    ind = (x != 0).to(torch.float64)
    if isinstance(module, nn.Linear):
        if not skip_zero_weights:
            return int(torch.count_nonzero(x)) * module.out_features
        reach = ind.reshape(-1, module.in_features) @ (module.weight != 0).to(ind.dtype).t()
        return int(round(float(reach.sum())))
    if not isinstance(module, _CONV):
        raise TypeError(f"no SOP formula for {type(module).__name__}")
    spatial = len(module.kernel_size)
    g = module.groups
    padding = module.padding
    if module.padding_mode != "zeros":
        ind = F.pad(ind, module._reversed_padding_repeated_twice, mode=module.padding_mode)
        padding = 0
    if skip_zero_weights:
        kernel, fan_out = (module.weight != 0).to(ind.dtype), 1
    else:
        ind = ind.reshape(ind.shape[0], g, module.in_channels // g, *ind.shape[2:]).sum(2)
        kernel = torch.ones(g, 1, *module.kernel_size, dtype=ind.dtype, device=ind.device)
        fan_out = module.out_channels // g
    reach = _CONV_FN[type(module)](ind, kernel, None, module.stride, padding, module.dilation, g)
    assert reach.dim() == spatial + 2
    return int(round(float(reach.sum()))) * fan_out


def _under(name: str, roots: Iterable[str]) -> bool:
    return any(r == "" or name == r or name.startswith(r + ".") for r in roots)


def _synaptic(model: nn.Module) -> dict[str, nn.Module]:
    return {n: m for n, m in model.named_modules() if isinstance(m, _CONV + (nn.Linear,))}


def _is_coding(module: nn.Module) -> bool:
    """An input coding, by the contract `build_coding` checks (a `stem` module and
    `emits_spikes`), so a plugin's coding gets the roles Direct's and GAC's get."""
    return isinstance(getattr(module, "stem", None), nn.Module) and hasattr(module, "emits_spikes")


def attention_layers(model: nn.Module) -> set[str]:
    """Conv/Linear layers nested in a module that multiplies weights into a current (it has
    `elementwise_macs`: MA, SMA, GAC's gate), except inside a coding's `stem`."""
    modules = dict(model.named_modules())
    stems = {id(m.stem) for m in modules.values() if _is_coding(m)}
    gates = [n for n, m in modules.items() if callable(getattr(m, "elementwise_macs", None))]
    stem_names = [n for n, m in modules.items() if id(m) in stems]
    return {n for n in _synaptic(model) if _under(n, gates) and not _under(n, stem_names)}


def coding_layers(model: nn.Module) -> set[str]:
    """Conv/Linear layers inside the input coding (its stem, and GAC's gate layers)."""
    codings = [n for n, m in model.named_modules() if _is_coding(m)]
    return {n for n in _synaptic(model) if _under(n, codings)}


def repeats_over_time(x: Tensor, T: int | None, batch: int) -> bool:
    """True when `x` is time-major for a model batch of `batch` samples ([T, B, ...] or
    [T*B, ...]) and the same at every step. Other shapes (an attention MLP's [B, T] input)
    are never taken for time-major, so a coincidence across samples cannot trigger it."""
    if T is None or T < 2 or x.dim() == 0:
        return False
    merged = x.shape[0] == T * batch
    stacked = x.dim() >= 2 and x.shape[0] == T and x.shape[1] == batch
    if not (merged or stacked):
        return False
    steps = x.reshape(T, -1)
    return bool((steps == steps[:1]).all())


def _first_tensor(args: Any) -> Tensor | None:
    for a in args if isinstance(args, (tuple, list)) else (args,):
        if isinstance(a, Tensor):
            return a
    return None


@dataclass
class _LayerStats:
    type: str
    kind: str  # "conv" | "linear" | "elementwise"
    order: int  # position of its first call in the forward pass
    calls: int = 0
    nonbinary_calls: int = 0  # calls whose input had a value other than 0 or 1
    dense: int = 0  # dense MACs summed over calls
    varying_calls: int = 0  # calls whose input was not one static input repeated over time
    sops_if_spiking: float = 0.0  # per the sop_count convention, summed over calls
    effective: int = (
        0  # nonzero inputs x synapses reached, summed over calls (mac_count: effective)
    )
    input_nonzero: int = 0
    input_elements: int = 0
    real_sops: float = 0.0  # the sop_count rule applied to the calls with real-valued input


@dataclass
class _LIFStats:
    order: int = 0
    spikes: float = 0.0
    elements: int = 0


class OpCounter:
    """Context manager that counts operations and spikes of `model` while the block runs.

    `force_mac` names Conv/Linear modules (as in `named_modules`) that always count as dense
    MACs even when fed binary values. `conventions` picks the counting choices (energies per
    operation are applied later, by `energy_from_counts`/`estimate`); `T` (default: the
    model's `T` attribute) lets a repeated static input be recognised. Counts accumulate over
    repeated `with` blocks of one counter; hooks live only inside the block (removed on
    exceptions too).
    """

    def __init__(
        self,
        model: nn.Module,
        force_mac: Iterable[str] = (),
        conventions: EnergyConventions | None = None,
        T: int | None = None,
    ):
        self.model = model
        self.conventions = conventions or EnergyConventions()
        self.T = T if T is not None else getattr(model, "T", None)
        self.force_mac = set(force_mac)
        self._calls = 0
        self._batch = 0
        names = {n for n, _ in model.named_modules()}
        unknown = self.force_mac - names
        if unknown:
            raise ValueError(f"force_mac names no module of the model: {sorted(unknown)}")
        self.samples = 0
        self._layers: dict[str, _LayerStats] = {}
        self._lifs: dict[str, _LIFStats] = {}
        self._handles: list[Any] = []
        self._attention = attention_layers(model)
        self._coding = coding_layers(model)

    # ---- hooks -------------------------------------------------------------------------
    def __enter__(self) -> "OpCounter":
        if self._handles:
            raise RuntimeError("OpCounter is already active")
        try:
            self._handles.append(self.model.register_forward_pre_hook(self._count_samples))
            for name, mod in self.model.named_modules():
                if isinstance(mod, MultiStepLIF):
                    self._lifs.setdefault(name, _LIFStats(order=-1))
                    self._handles.append(mod.register_forward_hook(self._lif_hook(name)))
                if isinstance(mod, _CONV + (nn.Linear,)):
                    kind = "conv" if isinstance(mod, _CONV) else "linear"
                    self._layers.setdefault(name, _LayerStats(type(mod).__name__, kind, order=-1))
                    self._handles.append(mod.register_forward_hook(self._layer_hook(name)))
                elif callable(getattr(mod, "elementwise_macs", None)):
                    self._layers.setdefault(
                        name, _LayerStats(type(mod).__name__, "elementwise", order=-1)
                    )
                    self._handles.append(mod.register_forward_hook(self._elementwise_hook(name)))
        except BaseException:
            self._remove()
            raise
        return self

    def __exit__(self, *exc: Any) -> bool:
        self._remove()
        return False

    def _remove(self) -> None:
        for h in self._handles:
            h.remove()
        self._handles.clear()

    def _count_samples(self, module: nn.Module, args: Any) -> None:
        x = _first_tensor(args)
        if x is None:
            raise TypeError(
                "OpCounter needs the model's first argument to be a batch tensor [B, ...]"
            )
        self.samples += x.shape[0]
        self._batch = x.shape[0]

    def _lif_hook(self, name: str):
        stats = self._lifs[name]

        def hook(module: nn.Module, args: Any, output: Tensor) -> None:
            self._seen(stats)
            out = output.detach()
            stats.spikes += float(out.sum(dtype=torch.float64))
            stats.elements += out.numel()

        return hook

    def _seen(self, stats: "_LayerStats | _LIFStats") -> None:
        if stats.order < 0:
            stats.order = self._calls
            self._calls += 1

    def _layer_hook(self, name: str):
        stats = self._layers[name]
        forced = name in self.force_mac
        conventions = self.conventions
        skip = conventions.zero_weights == "skip"

        def hook(module: nn.Module, args: Any, output: Tensor) -> None:
            self._seen(stats)
            x = _first_tensor(args).detach()
            dense = dense_macs(module, output)
            stats.calls += 1
            stats.dense += dense
            if not repeats_over_time(x, self.T, self._batch):
                stats.varying_calls += 1
            # every call, spikes or not: a layer is real-valued when any call is
            reached = exact_sops(module, x, skip) if conventions.mac_count == "effective" else None
            stats.effective += reached or 0
            binary = (not forced) and bool(((x == 0) | (x == 1)).all())
            if not binary and conventions.hidden_real != "ac":  # its accumulates are never priced
                stats.nonbinary_calls += 1
                return
            nonzero = int(torch.count_nonzero(x))
            if conventions.sop_count == "exact":
                sops = reached if reached is not None else exact_sops(module, x, skip)
            else:
                sops = dense * nonzero / max(x.numel(), 1)
            if not binary:  # its accumulates, should `hidden_real: ac` price it so
                stats.nonbinary_calls += 1
                stats.real_sops += sops
                return
            stats.input_nonzero += nonzero
            stats.input_elements += x.numel()
            stats.sops_if_spiking += sops

        return hook

    def _elementwise_hook(self, name: str):
        stats = self._layers[name]

        def hook(module: nn.Module, args: Any, output: Tensor) -> None:
            # The products act on tensors shaped like the output. For MA it equals the input;
            # GAC's forward input is the image, but its products act on the stem current
            # (its `elementwise_macs(x)` names that `x`), which is shaped like its output.
            self._seen(stats)
            n = int(module.elementwise_macs(output))
            stats.calls += 1
            stats.nonbinary_calls += 1
            stats.dense += n
            stats.varying_calls += 1

        return hook

    # ---- results -----------------------------------------------------------------------
    def _macs(self, s: _LayerStats, role: str, encoding_path: bool) -> float:
        """A real-valued layer's MACs under the conventions. Judged over all calls, like the
        binary test: an encoding-path layer counts once per sample only if every call
        repeated its input."""
        conventions = self.conventions
        if s.kind == "elementwise":
            return s.dense if conventions.elementwise == "mac" else 0.0
        if role == "hidden" and conventions.hidden_real == "none":
            return 0.0
        macs = s.effective if conventions.mac_count == "effective" else s.dense
        if conventions.repeated_input == "once" and encoding_path and s.varying_calls == 0:
            return macs / self.T
        return float(macs)

    def report(self) -> dict[str, Any]:
        """Per-sample counts: layers and neurons in forward order, firing rates, totals."""
        if self.samples == 0:
            raise ValueError("OpCounter saw no forward pass of the model: nothing to report")
        n = self.samples
        called = sorted(
            ((name, s) for name, s in self._layers.items() if s.calls),
            key=lambda item: item[1].order,
        )
        synaptic = [name for name, s in called if s.kind != "elementwise"]
        encoder = synaptic[0] if synaptic and self.conventions.encoding_layer == "mac" else None
        first_lif = min((v.order for v in self._lifs.values() if v.order >= 0), default=math.inf)
        left_out = self.conventions.attention_layers == "none"
        layers = []
        for name, s in called:
            encoding_path = (
                name in self._coding
                or s.order < first_lif
                or (bool(synaptic) and name == synaptic[0])
            )
            role = (
                "attention"
                if name in self._attention or s.kind == "elementwise"
                else "encoding"
                if encoding_path
                else "hidden"
            )
            spiking = s.nonbinary_calls == 0 and name != encoder
            counted = not (left_out and role == "attention" and s.kind != "elementwise")
            # hidden_real ac: a real-valued hidden layer accumulates its nonzero inputs
            accumulates = not spiking and role == "hidden" and self.conventions.hidden_real == "ac"
            macs = (
                0.0
                if spiking or accumulates or not counted
                else self._macs(s, role, encoding_path) / n
            )
            layers.append(
                {
                    "name": name,
                    "order": s.order,
                    "type": s.type,
                    "kind": s.kind,
                    "role": role,
                    "spiking_input": spiking,
                    "input_rate": s.input_nonzero / s.input_elements
                    if spiking and s.input_elements
                    else None,
                    "input_spikes": s.input_nonzero / n if spiking else None,
                    "dense_macs": s.dense / n,
                    "macs": macs,
                    "sops": (
                        s.sops_if_spiking / n
                        if spiking and counted
                        else s.real_sops / n
                        if accumulates
                        else 0.0
                    ),
                    "calls": s.calls,
                    "silent_input": spiking and s.kind != "elementwise" and s.input_nonzero == 0,
                }
            )
        lifs = sorted(
            ((k, v) for k, v in self._lifs.items() if v.elements), key=lambda item: item[1].order
        )
        rates = {k: v.spikes / v.elements for k, v in lifs}
        total_elems = sum(v.elements for _, v in lifs)
        total_spikes = sum(v.spikes for _, v in lifs)
        return {
            "samples": n,
            "layers": layers,
            "firing_rates": rates,
            "neurons": [
                {
                    "name": k,
                    "rate": rates[k],
                    "elements": v.elements / n,
                    "spikes": v.spikes / n,
                    "order": v.order,
                }
                for k, v in lifs
            ],
            # Weighted by neuron-steps: all spikes / all neuron-steps of the network.
            "mean_firing_rate": total_spikes / total_elems if total_elems else None,
            # Plain mean of the per-layer rates (each layer counts once).
            "mean_firing_rate_unweighted": sum(rates.values()) / len(rates) if rates else None,
            "totals": {
                "macs": sum(layer["macs"] for layer in layers),
                "sops": sum(layer["sops"] for layer in layers),
                "dense_macs": sum(layer["dense_macs"] for layer in layers),
                "spikes": total_spikes / n,
            },
        }


def measure(
    model: nn.Module,
    batches: Iterable[Any],
    device: str | torch.device = "cpu",
    max_batches: int | None = None,
    force_mac: Iterable[str] = (),
    conventions: EnergyConventions | None = None,
    T: int | None = None,
) -> dict[str, Any]:
    """Run `model` in eval mode without gradients over `batches` and return the counter's report.

    A batch is an input tensor [B, ...] or an (input, target, ...) tuple as a DataLoader
    yields. The model is moved to `device`; its train/eval mode is restored afterwards.
    """
    was_training = model.training
    model.to(device).eval()
    try:
        with torch.no_grad(), OpCounter(model, force_mac, conventions, T) as counter:
            for i, batch in enumerate(batches):
                if max_batches is not None and i >= max_batches:
                    break
                x = batch[0] if isinstance(batch, (tuple, list)) else batch
                model(x.to(device))
        return counter.report()
    finally:
        model.train(was_training)
