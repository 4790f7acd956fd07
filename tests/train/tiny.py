"""A tiny spiking classifier and toy batches for fast training-loop tests (CutMix, precision),
and the fixture that restores the process-wide flags `fit` sets."""

import pytest
import torch
from torch import nn

from spikeattn.data.frames import Split
from spikeattn.data.loader import TensorBatches
from spikeattn.neurons import MultiStepLIF

SETTINGS = {
    "epochs": 3,
    "batch_size": 16,
    "opt": "adam",
    "lr": 3e-3,
    "weight_decay": 0.0,
    "momentum": 0.9,
    "sched": "cosine",
    "warmup_epochs": 0,
    "min_lr": 0.0,
    "loss": "ce_mean",
    "label_smoothing": 0.0,
}


class Tiny(nn.Module):
    """conv-BN-LIF-pool-linear over T repeats of a static image: logits [T, B, K]."""

    def __init__(self, T=2, classes=4):
        super().__init__()
        self.T = T
        self.conv, self.bn = nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4)
        self.lif = MultiStepLIF("gac_cifar", backend="torch")
        self.pool, self.fc = nn.AdaptiveAvgPool2d(2), nn.Linear(16, classes)

    def forward(self, x):
        B = x.shape[0]
        z = self.bn(self.conv(x.repeat(self.T, 1, 1, 1))).unflatten(0, (self.T, B))
        return self.fc(self.pool(self.lif(z).flatten(0, 1)).flatten(1)).unflatten(0, (self.T, B))


def toy_split(n=48, seed=0):
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % 4
    x = (torch.rand(n, 1, 8, 8, generator=g) * 80).to(torch.uint8)
    for k in range(4):  # a bright quadrant per class
        x[y == k, :, (k // 2) * 4 : (k // 2) * 4 + 4, (k % 2) * 4 : (k % 2) * 4 + 4] += 150
    return Split(x, y)


def loaders(seed=0, batch_size=16):
    train = TensorBatches(toy_split(48, 0), 1 / 255, batch_size, train=True, seed=seed)
    test = TensorBatches(toy_split(16, 1), 1 / 255, batch_size)
    return train, test


@pytest.fixture
def restore_determinism():
    """`fit` sets process-wide flags (deterministic algorithms, cudnn benchmark); put them back
    as the other tests expect them."""
    saved = (
        torch.are_deterministic_algorithms_enabled(),
        torch.is_deterministic_algorithms_warn_only_enabled(),
        torch.backends.cudnn.benchmark,
    )
    yield
    torch.use_deterministic_algorithms(saved[0], warn_only=saved[1])
    torch.backends.cudnn.benchmark = saved[2]
