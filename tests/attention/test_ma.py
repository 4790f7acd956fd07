"""MA attention against the paper's formulas, written out in the authors' [B, T, C, H, W] layout."""

import pytest
import torch

from spikeattn.attention import MA_VARIANTS, attention_slots, build_attention

pytestmark = pytest.mark.usefixtures("float64")


def mlp(fc1, fc2, v):
    return torch.relu(v @ fc1.weight.T) @ fc2.weight.T


def written_out(module, x_tb):
    """Sequential TA -> CA -> SA as in the paper, then ReLU; x given time-major."""
    out = x_tb.transpose(0, 1)  # [B, T, C, H, W], the authors' layout
    for block, dim in zip(module.blocks, module.dims):
        if dim == "T":
            avg, mx = out.mean(dim=(2, 3, 4)), out.amax(dim=(2, 3, 4))  # [B, T]
            w = torch.sigmoid(
                mlp(block.mlp.fc1, block.mlp.fc2, avg) + mlp(block.mlp.fc1, block.mlp.fc2, mx)
            )
            out = w[:, :, None, None, None] * out
        elif dim == "C":
            avg, mx = out.mean(dim=(1, 3, 4)), out.amax(dim=(1, 3, 4))  # [B, C]
            w = torch.sigmoid(
                mlp(block.mlp.fc1, block.mlp.fc2, avg) + mlp(block.mlp.fc1, block.mlp.fc2, mx)
            )
            out = w[:, None, :, None, None] * out
        else:
            B, T, C, H, W = out.shape
            merged = out.reshape(B, T * C, H, W)
            maps = torch.cat([merged.mean(1, keepdim=True), merged.amax(1, keepdim=True)], 1)
            w = torch.sigmoid(
                torch.nn.functional.conv2d(maps, block.conv.weight, padding=block.conv.padding)
            )
            out = w[:, None] * out  # [B, 1, 1, H, W]
    return torch.relu(out).transpose(0, 1)


@pytest.mark.parametrize("name", MA_VARIANTS)
def test_matches_written_out_formula(name):
    torch.manual_seed(1)
    T, B, C, H, W = 6, 3, 16, 5, 7
    module = build_attention(
        name, T=T, channels=C, attention_kwargs={"ma": {"ratio_t": 2, "ratio_c": 4, "sa_kernel": 3}}
    )
    x = torch.randn(T, B, C, H, W)
    torch.testing.assert_close(module(x), written_out(module, x))


def test_block_order_and_hidden_widths():
    module = build_attention(
        "TCSA", T=8, channels=32, attention_kwargs={"ma": {"ratio_t": 2, "ratio_c": 8}}
    )
    assert module.dims == "TCS"
    assert module.blocks[0].mlp.fc1.out_features == 4
    assert module.blocks[1].mlp.fc1.out_features == 4


def test_temporal_attention_on_fc_features():
    module = build_attention("TA", T=4, channels=10, spatial=False)
    x = torch.randn(4, 2, 10)
    w = module.blocks[0](x)
    assert w.shape == (4, 2, 1)
    torch.testing.assert_close(module(x), torch.relu(w * x))
    with pytest.raises(ValueError, match="TA only"):
        build_attention("TCA", T=4, channels=10, spatial=False)


def test_wrong_T_and_unknown_name_say_what_is_allowed():
    module = build_attention("TCSA", T=4, channels=8)
    with pytest.raises(ValueError, match="built for T=4"):
        module(torch.randn(5, 2, 8, 4, 4))
    with pytest.raises(ValueError, match="choose one of"):
        build_attention("MA", T=4, channels=8)


def test_none_is_identity():
    x = torch.randn(2, 2, 3, 4, 4)
    assert build_attention("none", T=2, channels=3)(x) is x


def test_slots_put_ma_on_the_current_and_options_per_family():
    conv, current = attention_slots("CSA", T=4, channels=8)
    assert isinstance(conv, torch.nn.Identity) and current.dims == "CS"
    with pytest.raises(ValueError, match="one mapping per family"):
        build_attention("TA", T=4, channels=8, attention_kwargs={"ratio_t": 2})


# ---- gradients at tied maxima: the authors' max-pool layers pick ONE element per row -------


def test_max_pool_sends_a_tied_rows_gradient_to_its_first_maximum():
    from spikeattn.attention.ma import max_pool

    x = torch.tensor([[0.0, 2.0, 2.0, 1.0], [3.0, 3.0, 3.0, 3.0]], requires_grad=True)
    max_pool(x, 1).sum().backward()
    assert x.grad.tolist() == [[0, 1, 0, 0], [1, 0, 0, 0]]  # amax would give 0.5s and 0.25s
    y = x.detach().clone().requires_grad_()
    torch.nn.AdaptiveMaxPool1d(1)(y[None]).sum().backward()  # the authors' layer, same routing
    assert torch.equal(y.grad, x.grad)


def conv_mlp(mlp, v):
    """The authors' shared MLP: 1x1 Conv3d (no bias), ReLU, 1x1 Conv3d, on pooled [B, n, 1, 1, 1]."""
    fc1, fc2 = (w.weight[:, :, None, None, None] for w in (mlp.fc1, mlp.fc2))
    return torch.nn.functional.conv3d(torch.relu(torch.nn.functional.conv3d(v, fc1)), fc2)


def authors_forward(module, x_tb):
    """MA-SNN's TA/CA/SA written with the layers its code uses (AdaptiveAvg/MaxPool3d over
    [B, T, C, H, W] for TA, over the rearranged [B, C, T, H, W] for CA, torch.max over the
    merged (T C) axis for SA), sharing `module`'s weights."""
    avg_pool, max_pool = torch.nn.AdaptiveAvgPool3d(1), torch.nn.AdaptiveMaxPool3d(1)
    out = x_tb.transpose(0, 1)
    for block, dim in zip(module.blocks, module.dims):
        if dim == "T":
            w = torch.sigmoid(
                conv_mlp(block.mlp, avg_pool(out)) + conv_mlp(block.mlp, max_pool(out))
            )
        elif dim == "C":
            per_c = out.transpose(1, 2)  # "b f c h w -> b c f h w"
            w = torch.sigmoid(
                conv_mlp(block.mlp, avg_pool(per_c)) + conv_mlp(block.mlp, max_pool(per_c))
            )
            w = w.transpose(1, 2)
        else:
            B, T, C, H, W = out.shape
            merged = out.reshape(B, T * C, H, W)
            mx, _ = torch.max(merged, dim=1, keepdim=True)
            maps = torch.cat([merged.mean(1, keepdim=True), mx], 1)
            w = torch.sigmoid(
                torch.nn.functional.conv2d(maps, block.conv.weight, padding=block.conv.padding)
            )
            w = w.unsqueeze(1)
        out = w * out
    return torch.relu(out).transpose(0, 1)


def gradients(module, forward, x, g):
    x = x.clone().requires_grad_()
    params = list(module.parameters())
    return torch.autograd.grad((forward(x) * g).sum(), [x, *params])


@pytest.mark.parametrize("name", MA_VARIANTS)
def test_gradients_at_ties_match_the_authors_max_pool_layers(name):
    torch.manual_seed(3)
    T, B, C, H, W = 5, 3, 8, 4, 4
    module = build_attention(
        name, T=T, channels=C, attention_kwargs={"ma": {"ratio_t": 1, "ratio_c": 1}}
    )  # no dead units
    # event counts, scaled per channel so pooled vectors vary: maxima tie within every row
    x = torch.randint(0, 3, (T, B, C, H, W)).double() * torch.arange(1.0, C + 1)[:, None, None]
    g = torch.randn(T, B, C, H, W)
    ours = gradients(module, module, x, g)
    theirs = gradients(module, lambda v: authors_forward(module, v), x, g)
    for a, b in zip(ours, theirs):
        torch.testing.assert_close(a, b)
    # The check has teeth: the old even split among ties gives other gradients on this input.
    from spikeattn.attention import ma

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(ma, "max_pool", lambda t, dim: t.amax(dim))
        split = gradients(module, module, x, g)
    assert any(not torch.allclose(a, b) for a, b in zip(split, theirs))
