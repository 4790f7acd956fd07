"""Shared check for the backbone tests: does a gradient reach every parameter?"""
import torch
from torch import nn


def bias_before_bn(model: nn.Module) -> set[int]:
    """Ids of conv/linear biases whose output goes straight into a BatchNorm: in training mode
    BN removes any per-channel constant, so their gradient is zero by construction."""
    def leaves(m: nn.Module) -> list[nn.Module]:
        kids = [k for k in m.children() if not isinstance(k, nn.Identity)]
        return [m] if not kids else [leaf for k in kids for leaf in leaves(k)]

    found = set()
    for module in model.modules():
        kids = [k for k in module.children() if not isinstance(k, nn.Identity)]
        for a, b in zip(kids, kids[1:]):
            last, first = leaves(a)[-1], leaves(b)[0]
            if (isinstance(last, (nn.Conv2d, nn.Linear)) and last.bias is not None
                    and isinstance(first, nn.modules.batchnorm._BatchNorm)):
                found.add(id(last.bias))
    return found


def dead_parameters(model: nn.Module) -> list[str]:
    """Parameters with no gradient, or an all-zero one (biases right before a BN excepted)."""
    exempt = bias_before_bn(model)
    return [name for name, p in model.named_parameters()
            if p.grad is None or (id(p) not in exempt and not p.grad.abs().sum() > 0)]


def assert_gradients_reach_every_parameter(model: nn.Module, out: torch.Tensor) -> None:
    """Backpropagate a random projection of `out` (every output gets a non-zero gradient; a
    loss built from spikes alone would not) and check every parameter received one."""
    (out * torch.randn_like(out)).sum().backward()
    dead = dead_parameters(model)
    assert not dead, f"no gradient reaches {dead}"
