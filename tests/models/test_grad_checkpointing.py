"""Activation checkpointing (`set_grad_checkpointing`, `train.grad_checkpointing`): every
backbone gives the plain step's loss, gradients, BN statistics and random state, and keeps
fewer activations for the backward."""

import copy

import pytest
import timm
import torch
from torch import nn

import spikeattn.models  # noqa: F401
from spikeattn.layers import TimeDistributed, TimeSharedDropout
from spikeattn.models import _checkpoint
from spikeattn.models._checkpoint import run_blocks

# (backbone, kwargs, input shape): tiny shapes, each with an attention; sma_vgg8 with AZO and
# its two dropouts (p 0.5), ms_resnet18 with its head dropout (p 0.2), all in train mode.
BACKBONES = [
    ("demo_cnn", dict(attention="TCSA", T=2, num_classes=4, img_size=8), (3, 1, 8, 8)),
    # (current output: the tiny net's last LIF, far from threshold, passes no gradient)
    (
        "ma_cnn_gesture",
        dict(attention="TCSA", T=3, num_classes=3, img_size=8, spiking_output=False),
        (4, 3, 2, 8, 8),
    ),
    (
        "sma_vgg8",
        dict(
            attention="SMA+AZO",
            T=4,
            num_classes=3,
            img_size=32,
            attention_kwargs={"sma": {"azo_rtr": 2, "azo_rcr": 2}},
        ),
        (2, 4, 2, 32, 32),
    ),
    (
        "ms_resnet18",
        dict(attention="CSA", T=2, num_classes=3, img_size=8, widths=(8, 8, 8, 8), stem_width=8),
        (2, 3, 8, 8),
    ),
    (
        "gac_ms_resnet18_cifar",
        dict(
            coding="gac",
            T=2,
            num_classes=3,
            img_size=8,
            widths=(8, 8, 16),
            stem_width=8,
            drop_rate=0.3,
        ),
        (2, 3, 8, 8),
    ),
]


def step(model, x, checkpointing):
    """One training forward and backward from RNG seed 1: loss, gradients, buffers after it,
    the next random draw, and how many activation elements the forward saved for backward."""
    model = copy.deepcopy(model)
    model.set_grad_checkpointing(checkpointing)
    saved = [0]

    def pack(t):
        saved[0] += t.numel()
        return t

    torch.manual_seed(1)
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        loss = -model(x).mean(0).log_softmax(-1)[:, 0].mean()  # (spiking outputs: nonzero at 0)
    loss.backward()
    grads = {n: p.grad for n, p in model.named_parameters()}
    buffers = {n: b.clone() for n, b in model.named_buffers()}
    return loss.detach(), grads, buffers, torch.rand(3), saved[0]


@pytest.mark.parametrize("name, kwargs, shape", BACKBONES, ids=[b[0] for b in BACKBONES])
def test_checkpointing_gives_the_plain_step_with_fewer_saved_activations(name, kwargs, shape):
    torch.manual_seed(0)
    model = timm.create_model(name, **kwargs).train()
    x = torch.rand(*shape)
    loss, grads, buffers, draw, saved = step(model, x, False)
    c_loss, c_grads, c_buffers, c_draw, c_saved = step(model, x, True)
    torch.testing.assert_close(c_loss, loss, rtol=0, atol=0)
    assert grads.keys() == c_grads.keys()
    assert any(g is not None and g.abs().sum() > 0 for g in grads.values())
    for key, grad in grads.items():
        if grad is None:
            assert c_grads[key] is None, key
        else:
            torch.testing.assert_close(c_grads[key], grad, rtol=1e-6, atol=1e-8, msg=key)
    for key, value in buffers.items():  # BN statistics moved once, not again by the recompute
        torch.testing.assert_close(c_buffers[key], value, rtol=0, atol=0, msg=key)
    torch.testing.assert_close(c_draw, draw, rtol=0, atol=0)  # the RNG is where it would be
    assert c_saved < saved / 2, f"checkpointing saved {c_saved} of {saved} elements"


def test_every_backbone_has_set_grad_checkpointing():
    assert all(
        hasattr(cls, "set_grad_checkpointing") for cls in spikeattn.models.BACKBONES.values()
    )


def test_evaluation_and_no_grad_run_as_before():
    torch.manual_seed(0)
    model = timm.create_model("sma_vgg8", attention="SMA", T=2, num_classes=3, img_size=32).eval()
    x = torch.rand(2, 2, 2, 32, 32)
    with torch.no_grad():
        plain = model(x)
        model.set_grad_checkpointing()
        assert model.grad_checkpointing
        torch.testing.assert_close(model(x), plain, rtol=0, atol=0)


class Dropping(nn.Sequential):
    """A block whose output depends on a random draw and whose BN moves its statistics."""

    def __init__(self):
        super().__init__(
            TimeDistributed(nn.Linear(6, 6), nn.BatchNorm1d(6)),
            TimeSharedDropout(0.5, shared=False),
        )


def block_step(blocks, checkpointing):
    torch.manual_seed(2)
    out = run_blocks(blocks, torch.arange(60.0).view(2, 5, 6).cos(), checkpointing)
    out.flatten(0, 1).mul(torch.arange(6.0)).sum().backward()
    return (
        [p.grad.clone() for b in blocks for p in b.parameters()],
        [
            b.running_mean.clone()
            for blk in blocks
            for b in blk.modules()
            if isinstance(b, nn.BatchNorm1d)
        ],
    )


def test_run_blocks_replays_the_draws_and_moves_bn_once(monkeypatch):
    torch.manual_seed(0)
    blocks = [Dropping(), Dropping()]
    grads, stats = block_step(copy.deepcopy(blocks), False)
    c_grads, c_stats = block_step(copy.deepcopy(blocks), True)
    for a, b in zip(grads, c_grads):
        torch.testing.assert_close(b, a, rtol=0, atol=0)
    for a, b in zip(stats, c_stats):
        torch.testing.assert_close(b, a, rtol=0, atol=0)
    # the test sees what it guards: without the RNG replay the recompute draws other masks ...
    real = _checkpoint.checkpoint
    with monkeypatch.context() as patch:
        patch.setattr(
            _checkpoint,
            "checkpoint",
            lambda *a, **k: real(*a, **{**k, "preserve_rng_state": False}),
        )
        other, _ = block_step(copy.deepcopy(blocks), True)
    assert not all(torch.equal(a, b) for a, b in zip(grads, other))
    # ... and without the buffer restore it moves BN's statistics a second time
    monkeypatch.setattr(
        _checkpoint, "_buffers_kept", lambda modules: _checkpoint.contextlib.nullcontext()
    )
    _, twice = block_step(copy.deepcopy(blocks), True)
    assert not all(torch.equal(a, b) for a, b in zip(stats, twice))
