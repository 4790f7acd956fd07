"""Direct and GAC coding against their written-out definitions."""

import pytest
import torch
from torch import nn

from spikeattn.coding import build_coding, to_time_major
from spikeattn.layers import conv_bn
from spikeattn.neurons import MultiStepLIF

pytestmark = pytest.mark.usefixtures("float64")


def test_direct_repeats_images_and_transposes_frames():
    img = torch.randn(2, 1, 4, 4)
    rep = to_time_major(img, 3)
    assert rep.shape == (3, 2, 1, 4, 4) and all(torch.equal(r, img) for r in rep)
    frames = torch.randn(2, 3, 2, 4, 4)
    assert torch.equal(to_time_major(frames, 3)[1], frames[:, 1])
    with pytest.raises(ValueError, match="T=5"):
        to_time_major(frames, 5)


@pytest.mark.filterwarnings("ignore:Using padding='same' with even kernel")
def test_gac_matches_written_out_formula():
    torch.manual_seed(0)
    T, C = 4, 6
    coding = build_coding(
        "gac", T=T, stem=conv_bn(1, C), channels=C, make_neuron=lambda: MultiStepLIF("gac_cifar")
    ).eval()
    img = torch.randn(3, 1, 8, 8)
    conv, bn = coding.stem[0], coding.stem[1]
    x = bn(conv(img)).unsqueeze(0).expand(T, -1, -1, -1, -1)  # identical at every step
    s = MultiStepLIF("gac_cifar")(x)
    fc1, fc2 = coding.ta.fc1.weight, coding.ta.fc2.weight
    avg, mx = x.mean(dim=(2, 3, 4)).T, x.amax(dim=(2, 3, 4)).T  # [B, T]
    ta = (torch.relu(avg @ fc1.T) @ fc2.T + torch.relu(mx @ fc1.T) @ fc2.T).T  # no sigmoid
    w1, w2 = coding.sca[1].weight, coding.sca[4].weight
    flat = x.flatten(0, 1)
    sca = nn.functional.conv2d(
        torch.relu(nn.functional.conv2d(flat, w1, padding="same")), w2, padding="same"
    )
    expected = torch.sigmoid(ta[:, :, None, None, None] * sca.reshape(x.shape)) * s
    torch.testing.assert_close(coding(img), expected)
    assert not any(isinstance(m, nn.Conv2d) and m.in_channels == 1 for m in coding.sca.modules()), (
        "the gate must share the stem's conv, not add its own input conv"
    )


def test_gac_rejects_event_frames_and_unknown_codings():
    coding = build_coding("gac", T=2, stem=conv_bn(2, 4), channels=4, make_neuron=MultiStepLIF)
    with pytest.raises(ValueError, match="direct"):
        coding(torch.randn(1, 2, 2, 8, 8))
    with pytest.raises(ValueError, match="choose one of"):
        build_coding("rate", T=2, stem=conv_bn(1, 4), channels=4, make_neuron=MultiStepLIF)


def test_gac_gradients_at_ties_match_the_authors_max_pool_layer():
    """GAC's TA pools with nn.AdaptiveMaxPool3d over (C, H, W), which sends a row's max
    gradient to one element. The coding's parameter gradients on a tied input (integer
    image, identity stem) equal those of the authors' layout and layers, weights shared."""
    torch.manual_seed(0)
    T, C = 4, 3
    coding = build_coding(
        "gac", T=T, stem=nn.Identity(), channels=C, make_neuron=lambda: MultiStepLIF("gac_cifar")
    )
    img = torch.randint(0, 2, (2, C, 6, 6)).double()  # the stem output: ties everywhere
    fc1, fc2 = (w.weight[:, :, None, None, None] for w in (coding.ta.fc1, coding.ta.fc2))

    def authors(image):
        x = image.unsqueeze(1).repeat(1, T, 1, 1, 1)  # [B, T, C, H, W], their layout

        def mlp(p):
            return nn.functional.conv3d(torch.relu(nn.functional.conv3d(p, fc1)), fc2)

        ta = mlp(nn.AdaptiveAvgPool3d(1)(x)) + mlp(nn.AdaptiveMaxPool3d(1)(x))  # [B, T, 1, 1, 1]
        sca = coding.sca(x.transpose(0, 1)).transpose(0, 1)
        spikes = coding.neuron(x.transpose(0, 1)).transpose(0, 1)
        return (torch.sigmoid(ta * sca) * spikes).transpose(0, 1)

    g = torch.randn(T, 2, C, 6, 6)

    def gradients(forward):  # of the image (what reaches the stem) and the coding's weights
        x = img.clone().requires_grad_()
        return torch.autograd.grad((forward(x) * g).sum(), [x, *coding.parameters()])

    ours, theirs = gradients(coding), gradients(authors)
    for a, b in zip(ours, theirs):
        torch.testing.assert_close(a, b)
    from spikeattn.coding import gac

    with pytest.MonkeyPatch.context() as patch:  # the check has teeth: an even split differs
        patch.setattr(gac, "max_pool", lambda t, dim: t.amax(dim))
        assert not torch.allclose(gradients(coding)[0], theirs[0])
