"""Per-channel normalisation and the authors' ImageNet transforms (RandomResizedCrop, AutoAugment,
no flip; test 256 -> 224), for cached (CIFAR) and streamed (ImageNet) batches."""

from pathlib import Path

import pytest
import torch
import yaml
from conftest import DEVICE
from torchvision.io import encode_png
from torchvision.transforms import v2

from spikeattn.data.frames import Frames, Split, frames_spec
from spikeattn.data.loader import Augment, FileBatches, batches, image_transform
from spikeattn.data.registry import check_params, raw_params

REPO = Path(__file__).resolve().parents[2]
PARAMS = yaml.safe_load((REPO / "params.yaml").read_text())["datasets"]
MEAN, STD = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]  # the ImageNet codes' values
NORMALIZE = {"normalize": {"mean": MEAN, "std": STD}}


def written_out(value: int, c: int) -> float:
    """torchvision's ToTensor then Normalize, for one uint8 value of channel c."""
    return (value / 255 - MEAN[c]) / STD[c]


def cached(x: torch.Tensor, y: torch.Tensor) -> Frames:
    split = Split(x, y)
    return Frames(split, split, {"layout": "fixed", "scale": 1 / 255})


def test_cached_batches_are_normalised_per_channel():
    x = (torch.arange(6 * 3 * 2 * 2) * 7 % 256).to(torch.uint8).view(6, 3, 2, 2)
    params = {**NORMALIZE, "augment": {"flip": True, "translate_px": 1}}  # train-only: not on test
    out = torch.cat(
        [b.x for b in batches(cached(x, torch.arange(6)), params, "test", 4, 1, DEVICE)]
    ).cpu()
    expected = torch.empty(x.shape, dtype=torch.float64)
    for n in range(6):
        for c in range(3):
            for h in range(2):
                for w in range(2):
                    expected[n, c, h, w] = written_out(int(x[n, c, h, w]), c)
    assert out.dtype == torch.float32 and torch.allclose(out.double(), expected, atol=1e-6)


def test_normalisation_comes_after_the_zero_filled_shift():
    """GAC's RandomCrop pads with 0 before Normalize: a shifted-in pixel becomes -mean/std."""
    x = torch.full((32, 3, 4, 4), 255, dtype=torch.uint8)
    params = {**NORMALIZE, "augment": {"translate_px": 3}}
    batch = next(iter(batches(cached(x, torch.arange(32)), params, "train", 32, 1, DEVICE, seed=0)))
    for c in range(3):
        values = batch.x[:, c].flatten().cpu().double()
        white, black = written_out(255, c), written_out(0, c)
        is_white, is_black = (values - white).abs() < 1e-6, (values - black).abs() < 1e-6
        assert (is_white | is_black).all() and is_white.any() and is_black.any()


def write_solid_folder(root: Path) -> dict[int, tuple[int, int, int]]:
    """ImageNet layout, 2 classes x 2 images per split, each image one solid colour of its class
    (so every resize and crop keeps its pixel values); returns {label: colour}."""
    colours = {0: (0, 128, 255), 1: (17, 200, 64)}
    for folder in ("train", "val"):
        for label, colour in colours.items():
            (root / folder / f"n0{label}").mkdir(parents=True)
            for i, (h, w) in enumerate([(20, 24), (30, 18)]):
                image = (
                    torch.tensor(colour, dtype=torch.uint8)
                    .view(3, 1, 1)
                    .expand(3, h, w)
                    .contiguous()
                )
                (root / folder / f"n0{label}" / f"{i}.png").write_bytes(
                    encode_png(image).numpy().tobytes()
                )
    return colours


def streamed(root: Path) -> Frames:
    def split(folder):
        paths = sorted(str(p.relative_to(root)) for p in (root / folder).rglob("*.png"))
        return Split(None, torch.tensor([int(p.split("/")[1][-1]) for p in paths]), paths=paths)

    return Frames(
        split("train"),
        split("val"),
        {"layout": "files", "train": {"root": str(root)}, "test": {"root": str(root)}},
    )


@pytest.mark.parametrize("part", ["train", "test"])
def test_streamed_batches_are_normalised_per_channel(tmp_path, part):
    colours = write_solid_folder(tmp_path)
    params = {"image_size": 8, "augment": {"flip": True}, **NORMALIZE}
    batch = next(iter(batches(streamed(tmp_path), params, part, 4, 1, DEVICE, workers=0)))
    assert batch.x.shape == (4, 3, 8, 8) and batch.x.dtype == torch.float32
    for n, label in enumerate(batch.y.tolist()):
        for c in range(3):
            expected = written_out(colours[label][c], c)
            assert torch.allclose(
                batch.x[n, c].cpu().double(),
                torch.full((8, 8), expected, dtype=torch.float64),
                atol=1e-6,
            )


def test_imagenet_train_transform_is_the_authors():
    """RandomResizedCrop(224) with torchvision's defaults, then AutoAugment (ImageNet policy), no
    flip; test Resize(256) then CenterCrop(224), 256 = round(224 / 0.875)."""
    train = image_transform(224, True, Augment(flip=False, autoaugment=True)).transforms
    assert [type(t) for t in train] == [v2.RandomResizedCrop, v2.AutoAugment]
    crop, auto = train
    assert list(crop.size) == [224, 224] and crop.scale == (0.08, 1.0)
    assert crop.ratio == pytest.approx((3 / 4, 4 / 3))
    assert auto.policy == v2.AutoAugmentPolicy.IMAGENET
    flipped = image_transform(224, True, Augment(flip=True)).transforms
    assert [type(t) for t in flipped] == [v2.RandomResizedCrop, v2.RandomHorizontalFlip]
    resize, centre = image_transform(224, False, Augment(flip=True, autoaugment=True)).transforms
    assert isinstance(resize, v2.Resize) and list(resize.size) == [256]
    assert isinstance(centre, v2.CenterCrop) and list(centre.size) == [224, 224]


def test_params_reach_the_worker_transform(tmp_path):
    write_solid_folder(tmp_path)
    params = {"image_size": 8, "augment": {"flip": False, "autoaugment": True}}
    loader = batches(streamed(tmp_path), params, "train", 2, 1, workers=0)
    assert [type(t) for t in loader.dataset.transform.transforms] == [
        v2.RandomResizedCrop,
        v2.AutoAugment,
    ]


def test_autoaugmented_stream_repeats_and_resumes_from_its_seed(tmp_path):
    """Workers draw crops and AutoAugment ops from torch's RNG, seeded from the loader's
    generator each pass: same seed, same batches; a resumed loader continues the same stream."""
    root = tmp_path / "noise"
    gen = torch.Generator().manual_seed(0)
    for i in range(4):
        (root / f"c{i % 2}").mkdir(parents=True, exist_ok=True)
        image = torch.randint(0, 256, (3, 12, 14), dtype=torch.uint8, generator=gen)
        (root / f"c{i % 2}" / f"{i}.png").write_bytes(encode_png(image).numpy().tobytes())
    paths = sorted(str(p.relative_to(root)) for p in root.rglob("*.png"))
    split = Split(None, torch.tensor([int(p[1]) for p in paths]), paths=paths)

    def loader(seed=3):
        return FileBatches(
            split, root, 8, 4, train=True, augment=Augment(autoaugment=True), workers=1, seed=seed
        )

    first = loader()
    epoch1 = [b.x for b in first]
    state = first.state_dict()
    epoch2 = [b.x for b in first]
    again = loader()
    assert all(torch.equal(a.x, b) for a, b in zip(again, epoch1))
    resumed = loader()
    resumed.load_state_dict(state)
    assert all(torch.equal(a.x, b) for a, b in zip(resumed, epoch2))
    assert not torch.equal(epoch1[0], epoch2[0])


def test_normalize_is_a_loader_key():
    base = PARAMS["cifar10"]
    with_norm = {**base, **NORMALIZE}
    assert frames_spec("cifar10", with_norm, 4) == frames_spec("cifar10", base, 4)
    assert raw_params("cifar10", with_norm) == raw_params("cifar10", base)


@pytest.mark.parametrize(
    "normalize, key",
    [
        ({"mean": [0.5, 0.5], "std": STD}, "datasets.cifar10.normalize.mean"),
        ({"mean": MEAN, "std": [0.2, 0.2, 0.2, 0.2]}, "datasets.cifar10.normalize.std"),
        ({"mean": MEAN, "std": [0.2, 0.0, 0.2]}, r"datasets.cifar10.normalize.std\[1\]"),
        ({"mean": MEAN, "std": [0.2, -1, 0.2]}, r"datasets.cifar10.normalize.std\[1\]"),
        ({"mean": MEAN}, "datasets.cifar10.normalize"),
    ],
)
def test_bad_normalize_names_the_key(normalize, key):
    with pytest.raises(ValueError, match=key):
        check_params("cifar10", {**PARAMS["cifar10"], "normalize": normalize})


def test_augment_keys_refused_where_they_would_not_act():
    with pytest.raises(ValueError, match="datasets.cifar100.augment.autoaugment"):
        check_params(
            "cifar100", {**PARAMS["cifar100"], "augment": {"flip": True, "autoaugment": True}}
        )
    with pytest.raises(ValueError, match="datasets.imagenet.augment.translate_px"):
        check_params("imagenet", {**PARAMS["imagenet"], "augment": {"translate_px": 4}})
    imagenet = {**PARAMS["imagenet"], "augment": {"flip": False, "autoaugment": True}, **NORMALIZE}
    assert check_params("imagenet", imagenet)["normalize"] == NORMALIZE["normalize"]
