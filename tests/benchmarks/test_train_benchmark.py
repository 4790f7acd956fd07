"""benchmarks/train.py keeps running: its smoke mode prints both tables with every row, and its
two comparison models (the authors' per-step loop, the SpikingJelly-built copy) are the same
network as ours."""

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest
import timm
import torch
from benchmark_scripts import load_script

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "train.py"
BACKBONES = ["ma_cnn_gesture", "ma_cnn_gait", "sma_vgg8", "gac_ms_resnet18_cifar", "ms_resnet104"]
VARIANTS = [
    "torch LIF, fp32",
    "Triton LIF, fp32",
    "Triton LIF, bf16",
    "Triton LIF, bf16 + compile",
    "SpikingJelly layers, fp32",
    "SpikingJelly layers, bf16",
    "per-step loop, fp32",
]
STEP_HEADER = (
    "| backbone | study cell | T | batch | input | variant | samples/s | ms/step | peak MiB "
    "| × baseline |"
)
EPOCH_HEADER = (
    "| study | cell | device | precision | train samples | test samples | batch | setup s "
    "| train epoch s | train samples/s | test s | fit s |"
)


def table(lines: list[str], header: str) -> list[list[str]]:
    """The rows (as cell lists) of the table whose header line is `header`."""
    start = lines.index(header) + 2  # skip the |---| line
    rows = []
    for line in lines[start:]:
        if not line.startswith("| "):
            break
        rows.append([cell.strip() for cell in line.strip("|").split(" | ")])
    return rows


def number(text: str) -> float:
    return float(text.replace(",", ""))


def test_smoke_run_prints_every_backbone_and_variant(tmp_path):
    out = tmp_path / "RESULTS.md"
    env = {**os.environ, "TRITON_INTERPRET": "1", "PYTHONUNBUFFERED": "1"}
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--smoke", "--epoch", "--append", str(out)],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    lines = done.stdout.splitlines()

    rows = table(lines, STEP_HEADER)
    assert [(r[0], r[5]) for r in rows] == [(b, v) for b in BACKBONES for v in VARIANTS]
    assert all(len(r) == 10 for r in rows)
    by = {(r[0], r[5]): r for r in rows}
    for backbone in BACKBONES:
        base = by[(backbone, "torch LIF, fp32")]
        assert base[2] == "2" and base[3] == "2 (smoke size)"
        assert (
            number(base[6]) > 0 and number(base[7]) > 0 and base[8] == "n/a" and base[9] == "1.00"
        )
        loop = by[(backbone, "per-step loop, fp32")]
        assert number(loop[6]) > 0 and loop[8] == "n/a"
        assert by[(backbone, "Triton LIF, bf16 + compile")][6].startswith("skipped on CPU")
        if backbone != "ma_cnn_gesture":
            assert by[(backbone, "SpikingJelly layers, fp32")][6] == "not built"
            assert by[(backbone, "Triton LIF, fp32")][6].startswith("skipped in --smoke")
    for variant in ("Triton LIF, fp32", "Triton LIF, bf16"):  # the interpreter ran the kernels
        assert number(by[("ma_cnn_gesture", variant)][6]) > 0
    sj = by[("ma_cnn_gesture", "SpikingJelly layers, fp32")][6]
    assert (
        sj == "not installed"
        if importlib.util.find_spec("spikingjelly") is None
        else number(sj) > 0
    )
    assert not any("failed" in r[6] for r in rows), done.stderr[-3000:]
    assert "- ma_cnn_gesture: fastest of ours:" in done.stdout

    epoch = table(lines, EPOCH_HEADER)
    assert len(epoch) == 1 and epoch[0][0] == "demo-dvs"
    assert epoch[0][1] == "digits-dvs__demo_cnn__TCSA__direct__T6"
    # 80 digits, classes of 11, 7, 9, 8, 6, 9, 8, 7, 7, 8: ceil(0.8 n) train per class
    assert (epoch[0][4], epoch[0][5]) == ("69", "11")
    assert number(epoch[0][9]) > 0

    written = out.read_text()
    assert written.count("## benchmarks/train.py: training step and epoch") == 1
    assert done.stdout.strip() in written


def tiny_gesture(bench, **extra):
    kwargs = dict(
        attention="TCSA",
        T=2,
        img_size=8,
        num_classes=11,
        in_chans=2,
        attention_kwargs={"ma": {"ratio_c": 8, "ratio_t": 5}},
        **extra,
    )
    return kwargs, timm.create_model("ma_cnn_gesture", lif_backend="torch", **kwargs)


def test_per_step_loop_is_the_same_network():
    bench = load_script("train")
    _, model = tiny_gesture(bench)
    looped = bench.per_step_copy(model)
    neurons = [m for m in looped.modules() if isinstance(m, bench.PerStepLIF)]
    assert len(neurons) == 5  # three conv layers, two FC layers
    assert not any(isinstance(m, bench.MultiStepLIF) for m in looped.modules())
    x = (torch.rand(3, 2, 2, 8, 8, generator=torch.Generator().manual_seed(0)) < 0.3).float()
    ours, theirs = model(x), looped(x)
    assert torch.equal(ours, theirs)
    ours.square().sum().backward()
    theirs.square().sum().backward()
    for (name, p), q in zip(model.named_parameters(), looped.parameters()):
        torch.testing.assert_close(q.grad, p.grad, msg=name)


def test_spikingjelly_copy_has_our_layers():
    pytest.importorskip("spikingjelly.activation_based")
    bench = load_script("train")
    kwargs, model = tiny_gesture(bench)
    copy = bench.SJMACNNGesture(**kwargs)
    assert sum(p.numel() for p in copy.parameters()) == sum(p.numel() for p in model.parameters())
    x = torch.rand(3, 2, 2, 8, 8)
    assert copy(x).shape == model(x).shape == (2, 3, 11)
