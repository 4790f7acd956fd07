"""SMA, spiking multiscale attention, and AZO, attention zoneout (Shan et al., "Advancing SNNs
towards Multiscale Spatiotemporal Interaction Learning"; code: Ym-Shan/Spiking_Multiscale_
Attention_Arxiv).

SMA replaces a conv layer's output `x` ([T, B, C, H, W], before its BN) by a weighted mix of
multiscale branches; the backbone then applies BN -> LIF -> pool as usual:

    U_n  = act(BN(Conv_k(x)))  per time step, one branch per kernel k (C -> C, padding k//2)
    z    = mean over H, W of sum_n U_n                                          -> [T, B, C]
    a_c  = softmax_n(E_n(ReLU(S(z))))   S: C -> C/ratio_c shared, E_n: -> C    -> [n, T, B, C]
    a_t  = softmax_n(F_n(ReLU(R(mean_C z))))  R: T -> T/ratio_t, F_n: -> T    -> [n, T, B]
    Y    = sum_n a_t[n] * a_c[n] * U_n

SMA-L (`light`) averages z over T before the channel MLP, so a_c is [n, 1, B, C].

SMA-C (`temporal=False`) keeps only the channel half (the paper's C-MSE): no time MLP, no
a_t, and Y = sum_n a_c[n] * U_n. The SMA appendix reports it (Tab. 6; B.1: "SMA solely along
the channel dimension", CR 4) without naming a class; the authors' code has no switch for it,
so this is our reading: their product `T_weight * C_weight * U` without the time factor.
AZO needs the time weights to pick steps, so SMA-C cannot take AZO.

AZO (training only): per branch, take the T // azo_rtr steps with the smallest time weight
(summed over the batch), then the C // azo_rcr channels with the smallest channel weight
(summed over the batch and those steps); for those (t, c) with t != 0 the branch's weighted
term takes its value from step t-1: `Y_n[t, :, c] <- Y_n[t-1, :, c]`.

Choices, following the authors' code where the text is silent:
- Every conv/linear has a bias (their layers use PyTorch's default bias=True), the branch
  convs included although BN follows them.
- `azo_copy="parallel"` (default): the copies read the values from before any copy, as the
  "tensor parallelism" version the authors' training files use (it clones first).
  `"chained"`: their "explicit loop" demo, which writes in place while visiting the selected
  steps in order of increasing time weight, so a step visited after its predecessor was
  replaced copies the replacement: consecutive selected steps can chain back further.
- Ties in "smallest" go to the lower index (stable sort), so AZO is deterministic on every
  device; the authors use `topk`, whose tie order is unspecified.
- Nothing is copied when T // azo_rtr or C // azo_rcr is 0, or when the only selected step is
  t = 0 (the authors' code raises in those cases).
- Hidden widths are at least 1 (`max(1, width // ratio)`); the authors' code breaks at 0.
"""

from __future__ import annotations

from typing import Callable, Sequence

import torch
from torch import Tensor, nn

from ..layers import TimeDistributed

BRANCH_ACTS = ("lif", "relu")
AZO_COPIES = ("parallel", "chained")


def _replaced(source: Tensor, channels: Tensor) -> Tensor:
    """[n, T, C] bool from AZO's plan: where a step's channel takes another step's value."""
    moved = source != torch.arange(source.shape[1], device=source.device)
    return moved[:, :, None] & channels[:, None, :]


def _smallest(score: Tensor, k: int) -> Tensor:
    """Indices of the k smallest entries of a 1-D score; ties go to the lower index."""
    return torch.argsort(score, stable=True)[:k]


class SMA(nn.Module):
    """Spiking multiscale attention on a conv output [T, B, C, H, W] (optionally SMA-L / AZO).

    Defaults follow the authors' DVS code: kernels (1, 3, 5, 7), ratio_c 4, ratio_t 4, LIF
    branches (`branch_act="lif"`, built by `make_neuron`); their ImageNet code uses ReLU
    branches instead (`branch_act="relu"`). AZO: azo_rtr 4, azo_rcr 10 (Gesture; the paper
    uses 4 on CIFAR10-DVS and 24 on N-Caltech101). T is fixed at build: the time MLP has T
    inputs. `temporal=False` (SMA-C) builds no time MLP; ratio_t is then unused.
    """

    slot = "conv"  # goes between a conv and its BN (see attention/__init__.py)

    def __init__(
        self,
        T: int,
        channels: int,
        make_neuron: Callable[[], nn.Module] | None = None,
        kernels: Sequence[int] = (1, 3, 5, 7),
        ratio_c: int = 4,
        ratio_t: int = 4,
        light: bool = False,
        azo: bool = False,
        azo_rtr: int = 4,
        azo_rcr: int = 10,
        branch_act: str = "lif",
        azo_copy: str = "parallel",
        temporal: bool = True,
    ):
        super().__init__()
        if azo and not temporal:
            raise ValueError(
                "SMA with azo=True needs its time weights (temporal=True): AZO "
                "zones out the steps with the smallest time weight, and SMA-C "
                "(temporal=False) has none; use attention SMA+AZO, or SMA-C "
                "without AZO"
            )
        if branch_act not in BRANCH_ACTS:
            raise ValueError(
                f"SMA branch_act must be one of {list(BRANCH_ACTS)}, got {branch_act!r}"
            )
        if azo_copy not in AZO_COPIES:
            raise ValueError(f"SMA azo_copy must be one of {list(AZO_COPIES)}, got {azo_copy!r}")
        if branch_act == "lif" and make_neuron is None:
            raise ValueError(
                "SMA with branch_act='lif' needs make_neuron (a callable returning a "
                "fresh multi-step LIF for each branch); or use branch_act='relu'"
            )
        kernels = tuple(int(k) for k in kernels)
        if not kernels or any(k < 1 or k % 2 == 0 for k in kernels):
            raise ValueError(
                f"SMA kernels must be a non-empty list of odd sizes (padding k//2 "
                f"keeps H x W), got {kernels}"
            )
        for name, value in (
            ("T", T),
            ("channels", channels),
            ("ratio_c", ratio_c),
            ("ratio_t", ratio_t),
            ("azo_rtr", azo_rtr),
            ("azo_rcr", azo_rcr),
        ):
            if value < 1:
                raise ValueError(f"SMA {name} must be >= 1, got {value}")
        self.T, self.channels, self.kernels = T, channels, kernels
        self.light, self.azo, self.azo_rtr, self.azo_rcr = light, azo, azo_rtr, azo_rcr
        self.branch_act, self.azo_copy, self.temporal = branch_act, azo_copy, temporal

        def act() -> nn.Module:
            return make_neuron() if branch_act == "lif" else nn.ReLU()

        self.branches = nn.ModuleList(
            nn.Sequential(
                TimeDistributed(
                    nn.Conv2d(channels, channels, k, padding=k // 2), nn.BatchNorm2d(channels)
                ),
                act(),
            )
            for k in kernels
        )
        hidden_c, hidden_t = max(1, channels // ratio_c), max(1, T // ratio_t)
        self.channel_squeeze = nn.Linear(channels, hidden_c)
        self.channel_excite = nn.ModuleList(nn.Linear(hidden_c, channels) for _ in kernels)
        if temporal:  # SMA-C has no time path: no modules, no parameters, no state_dict keys
            self.time_squeeze = nn.Linear(T, hidden_t)
            self.time_excite = nn.ModuleList(nn.Linear(hidden_t, T) for _ in kernels)

    # ---- pieces, public so tests and analyses can look inside -----------------------------
    def _check(self, x: Tensor) -> None:
        if x.dim() != 5:
            raise ValueError(f"SMA takes [T, B, C, H, W], got shape {tuple(x.shape)}")
        if x.shape[0] != self.T:
            raise ValueError(
                f"SMA was built for T={self.T}, got T={x.shape[0]} (its time MLP has "
                f"{self.T} inputs); build it with T={x.shape[0]}"
            )

    def branch_outputs(self, x: Tensor) -> Tensor:
        """U: the branches' outputs stacked, [n, T, B, C, H, W]."""
        self._check(x)
        return torch.stack([branch(x) for branch in self.branches])

    def weights_from(self, u: Tensor) -> tuple[Tensor | None, Tensor]:
        """(a_t [n, T, B], a_c [n, T, B, C] or [n, 1, B, C] when light) from branch outputs;
        a_t is None for SMA-C (temporal=False)."""
        z = u.sum(0).mean((-2, -1))  # [T, B, C]
        zc = z.mean(0, keepdim=True) if self.light else z
        hc = torch.relu(self.channel_squeeze(zc))
        a_c = torch.softmax(torch.stack([e(hc) for e in self.channel_excite]), dim=0)
        if not self.temporal:
            return None, a_c
        ht = torch.relu(self.time_squeeze(z.mean(2).t()))  # [B, T] -> [B, T/ratio_t]
        a_t = torch.softmax(torch.stack([e(ht) for e in self.time_excite]), dim=0)  # [n, B, T]
        return a_t.transpose(1, 2), a_c

    def weights(self, x: Tensor) -> tuple[Tensor | None, Tensor]:
        """(a_t, a_c) for input x; each sums to 1 over the branch axis (runs the branches,
        so BN in training mode updates its running statistics as a forward would)."""
        return self.weights_from(self.branch_outputs(x))

    def zoneout_plan(self, a_t: Tensor, a_c: Tensor) -> tuple[Tensor, Tensor]:
        """AZO's choice: (source [n, T] long, channels [n, C] bool). In the chosen channels,
        branch n's step t takes the weighted term of step source[n, t] (t itself when t is not
        selected); t = 0 is never replaced. Selection sees no gradient (indices only).
        """
        n, T, B = a_t.shape
        C = a_c.shape[-1]
        source = torch.arange(T, device=a_t.device).repeat(n, 1)
        channels = torch.zeros(n, C, dtype=torch.bool, device=a_t.device)
        n_t, n_c = T // self.azo_rtr, C // self.azo_rcr
        if n_t == 0 or n_c == 0:
            return source, channels
        a_t, a_c = a_t.detach(), a_c.detach().expand(n, T, B, C)
        for i in range(n):
            steps = _smallest(a_t[i].sum(1), n_t)
            channels[i, _smallest(a_c[i, steps].sum((0, 1)), n_c)] = True
            for t in steps.tolist():  # the authors' visiting order: increasing time weight
                if t != 0:
                    source[i, t] = source[i, t - 1] if self.azo_copy == "chained" else t - 1
        return source, channels

    def zoneout_mask(self, a_t: Tensor, a_c: Tensor) -> Tensor:
        """[n, T, C] bool: True where branch n's step t, channel c takes another step's value."""
        return _replaced(*self.zoneout_plan(a_t, a_c))

    # ---- forward -------------------------------------------------------------------------
    def forward(self, x: Tensor) -> Tensor:
        u = self.branch_outputs(x)
        a_t, a_c = self.weights_from(u)
        w = a_c.expand(*u.shape[:4]) if a_t is None else a_t[..., None] * a_c  # [n, T, B, C]
        if not (self.azo and self.training):
            return torch.einsum("ntbc,ntbchw->tbchw", w, u)
        y = w[..., None, None] * u  # [n, T, B, C, H, W]
        source, channels = self.zoneout_plan(a_t, a_c)
        copied = y[
            torch.arange(len(y), device=y.device)[:, None], source
        ]  # step t holds y at its source
        mask = _replaced(source, channels)[:, :, None, :, None, None]
        return torch.where(mask, copied, y).sum(0)

    def elementwise_macs(self, x: Tensor) -> int:
        """Weight products per forward on tensors shaped like x: a_t * a_c per branch
        (n * T * B * C; none for SMA-C, which has no a_t), then each weighted U_n accumulated
        into Y (n * numel). The branch convs and the MLPs' linear layers are counted by the
        energy hooks."""
        n = len(self.kernels)
        return n * x.numel() + (n * x[..., 0, 0].numel() if self.temporal else 0)

    def extra_repr(self) -> str:
        return (
            f"T={self.T}, channels={self.channels}, kernels={self.kernels}, "
            f"light={self.light}, temporal={self.temporal}, azo={self.azo}, azo_rtr={self.azo_rtr}, "
            f"azo_rcr={self.azo_rcr}, azo_copy={self.azo_copy!r}, branch_act={self.branch_act!r}"
        )
