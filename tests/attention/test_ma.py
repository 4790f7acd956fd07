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
            w = torch.sigmoid(mlp(block.mlp.fc1, block.mlp.fc2, avg) + mlp(block.mlp.fc1, block.mlp.fc2, mx))
            out = w[:, :, None, None, None] * out
        elif dim == "C":
            avg, mx = out.mean(dim=(1, 3, 4)), out.amax(dim=(1, 3, 4))  # [B, C]
            w = torch.sigmoid(mlp(block.mlp.fc1, block.mlp.fc2, avg) + mlp(block.mlp.fc1, block.mlp.fc2, mx))
            out = w[:, None, :, None, None] * out
        else:
            B, T, C, H, W = out.shape
            merged = out.reshape(B, T * C, H, W)
            maps = torch.cat([merged.mean(1, keepdim=True), merged.amax(1, keepdim=True)], 1)
            w = torch.sigmoid(torch.nn.functional.conv2d(maps, block.conv.weight, padding=block.conv.padding))
            out = w[:, None] * out  # [B, 1, 1, H, W]
    return torch.relu(out).transpose(0, 1)


@pytest.mark.parametrize("name", MA_VARIANTS)
def test_matches_written_out_formula(name):
    torch.manual_seed(1)
    T, B, C, H, W = 6, 3, 16, 5, 7
    module = build_attention(name, T=T, channels=C,
                             attention_kwargs={"ma": {"ratio_t": 2, "ratio_c": 4, "sa_kernel": 3}})
    x = torch.randn(T, B, C, H, W)
    torch.testing.assert_close(module(x), written_out(module, x))


def test_block_order_and_hidden_widths():
    module = build_attention("TCSA", T=8, channels=32, attention_kwargs={"ma": {"ratio_t": 2, "ratio_c": 8}})
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
