"""SMA / SMA-L / SMA-C / AZO against the paper's formulas, written out from the module's own weights."""

import math

import pytest
import torch
import torch.nn.functional as F

from spikeattn.attention.sma import SMA
from spikeattn.neurons import MultiStepLIF, lif_multistep

pytestmark = pytest.mark.usefixtures("float64")

T, B, C, H, W = 8, 3, 12, 5, 6


def make_lif():
    return MultiStepLIF("sj_tau2", backend="torch")


def build(branch_act="relu", **kwargs):
    torch.manual_seed(0)
    options = dict(ratio_c=4, ratio_t=2)
    options.update(kwargs)
    module = SMA(
        T,
        C,
        make_neuron=make_lif if branch_act == "lif" else None,
        branch_act=branch_act,
        **options,
    )
    with torch.no_grad():  # BN affine away from (1, 0) so the written-out BN is really checked
        for branch in module.branches:
            bn = branch[0][1]
            bn.weight.uniform_(0.5, 2.0)
            bn.bias.uniform_(-0.5, 0.5)
    return module


def linear(layer, v):
    return v @ layer.weight.T + layer.bias


def written_out_branches(module, x):
    """U_n = act(BN(conv_k(x))) per time step, BN with batch statistics over T*B, H, W."""
    us = []
    for k, branch in zip(module.kernels, module.branches):
        conv, bn = branch[0][0], branch[0][1]
        v = F.conv2d(x.flatten(0, 1), conv.weight, conv.bias, padding=k // 2)
        mean, var = v.mean((0, 2, 3)), v.var((0, 2, 3), unbiased=False)
        v = (v - mean[:, None, None]) / torch.sqrt(var[:, None, None] + bn.eps)
        v = (v * bn.weight[:, None, None] + bn.bias[:, None, None]).reshape(x.shape)
        us.append(lif_multistep(v, branch[1].cfg) if module.branch_act == "lif" else v.clamp(min=0))
    return us


def written_out_weights(module, us):
    """a_t [n][T, B] and a_c [n][T or 1, B, C] by the paper's formulas."""
    z = sum(us).mean((-2, -1))  # [T, B, C]
    zc = z.mean(0, keepdim=True) if module.light else z
    hc = torch.relu(linear(module.channel_squeeze, zc))
    logits_c = torch.stack([linear(e, hc) for e in module.channel_excite])
    a_c = logits_c.exp() / logits_c.exp().sum(0)
    zt = z.mean(2).t()  # [B, T]
    ht = torch.relu(linear(module.time_squeeze, zt))
    logits_t = torch.stack([linear(e, ht).t() for e in module.time_excite])  # [n, T, B]
    a_t = logits_t.exp() / logits_t.exp().sum(0)
    return a_t, a_c


def written_out(module, x):
    us = written_out_branches(module, x)
    a_t, a_c = written_out_weights(module, us)
    return sum(
        a_t[n][:, :, None, None, None] * a_c[n][..., None, None] * us[n] for n in range(len(us))
    )


@pytest.mark.parametrize("light", [False, True])
@pytest.mark.parametrize("branch_act", ["relu", "lif"])
def test_matches_written_out_formula(branch_act, light):
    module = build(branch_act, light=light)
    x = 2 * torch.randn(T, B, C, H, W)
    us = written_out_branches(module, x)
    if branch_act == "lif":  # the LIF branches really spike, and not everywhere
        rate = torch.stack(us).mean()
        assert 0.02 < rate < 0.9
    torch.testing.assert_close(module(x), written_out(module, x))
    a_t, a_c = module.weights(x)
    assert a_t.shape == (4, T, B)
    assert a_c.shape == (4, 1 if light else T, B, C)
    if light:  # channel weights pooled over time: one set for all steps
        torch.testing.assert_close(a_c, written_out_weights(module, us)[1])


@pytest.mark.parametrize("light", [False, True])
def test_weights_are_softmax_over_branches(light):
    module = build("relu", light=light)
    a_t, a_c = module.weights(torch.randn(T, B, C, H, W))
    torch.testing.assert_close(a_t.sum(0), torch.ones(T, B))
    torch.testing.assert_close(a_c.sum(0), torch.ones(a_c.shape[1:]))
    assert (a_t > 0).all() and (a_c > 0).all()


def test_shape_slot_and_hidden_widths():
    module = SMA(16, 128, make_neuron=make_lif)  # the authors' Gesture block 2
    assert SMA.slot == "conv" and module.slot == "conv"
    assert module.channel_squeeze.out_features == 32 and module.time_squeeze.out_features == 4
    assert [b[0][0].kernel_size for b in module.branches] == [(1, 1), (3, 3), (5, 5), (7, 7)]
    assert module.azo_rtr == 4 and module.azo_rcr == 10 and not module.azo and not module.light
    small = SMA(2, 3, branch_act="relu")  # widths below the ratio keep one hidden unit
    assert small.channel_squeeze.out_features == 1 and small.time_squeeze.out_features == 1
    x = torch.randn(2, 2, 3, 4, 4)
    assert small(x).shape == x.shape


def hand_set_azo():
    """Two branches whose weights ignore the input: logits are set by the excitation biases.

    Branch 0's time logits l[t] (branch 1's are 0), so a_t[0] = sigmoid(l), a_t[1] = 1 - a_t[0];
    likewise channel logits m[c]. With T // 4 = 2 steps and C // 6 = 2 channels per branch:
      branch 0: smallest l at t = 0, 5 -> copies at t = 5 only; smallest m at c = 1, 3
      branch 1: largest l at t = 4, 3 (consecutive);            largest m at c = 4, 0
    """
    torch.manual_seed(0)
    module = SMA(
        T,
        C,
        kernels=(1, 3),
        branch_act="relu",
        ratio_c=4,
        ratio_t=2,
        azo=True,
        azo_rtr=4,
        azo_rcr=6,
    )
    l = torch.tensor([-3.0, 0.1, 0.2, 2.0, 3.0, -2.0, 0.3, 0.4])
    m = torch.tensor([1.0, -2.0, 0.5, -1.0, 2.0, 0.0, 0.1, 0.2, 0.3, 0.4, 0.6, 0.7])
    with torch.no_grad():
        for e in [*module.time_excite, *module.channel_excite]:
            e.weight.zero_()
            e.bias.zero_()
        module.time_excite[0].bias.copy_(l)
        module.channel_excite[0].bias.copy_(m)
    expected = {0: [(5, 1), (5, 3)], 1: [(4, 4), (4, 0), (3, 4), (3, 0)]}
    return module, l, m, expected


def test_azo_copies_the_hand_set_steps_and_channels():
    module, l, m, expected = hand_set_azo()
    x = torch.randn(T, B, C, H, W)
    a_t, a_c = module.weights(x)
    torch.testing.assert_close(a_t[0], torch.sigmoid(l)[:, None].expand(T, B))
    mask = module.zoneout_mask(a_t, a_c)
    for n, pairs in expected.items():
        assert sorted(map(tuple, mask[n].nonzero().tolist())) == sorted(pairs)

    # Written out: the weighted branch terms, then the copies from the *original* t-1 values
    # (branch 1 copies both t = 3 <- 2 and t = 4 <- 3: step 4 gets step 3's own value).
    us = written_out_branches(module, x)

    def weight(lt, mc):  # [T] x [C] -> broadcast over [T, B, C, H, W]
        return lt[:, None, None, None, None] * mc[None, None, :, None, None]

    terms = [
        weight(torch.sigmoid(l), torch.sigmoid(m)) * us[0],
        weight(torch.sigmoid(-l), torch.sigmoid(-m)) * us[1],
    ]
    zoned = [t.clone() for t in terms]
    for n, pairs in expected.items():
        for t, c in pairs:
            zoned[n][t, :, c] = terms[n][t - 1, :, c]
    y = module(x)
    torch.testing.assert_close(y, zoned[0] + zoned[1])
    assert not torch.allclose(y, terms[0] + terms[1])
    torch.testing.assert_close(y[0], (terms[0] + terms[1])[0])  # t = 0 never changes


def test_azo_train_only_deterministic_and_t0_untouched():
    torch.manual_seed(3)
    azo = SMA(T, 20, make_neuron=make_lif, ratio_c=4, ratio_t=2, azo=True, azo_rtr=2, azo_rcr=4)
    plain = SMA(T, 20, make_neuron=make_lif, ratio_c=4, ratio_t=2)
    plain.load_state_dict(azo.state_dict())
    x = 2 * torch.randn(T, B, 20, H, W)

    y1, y2, y_plain = azo(x), azo(x), plain(x)
    torch.testing.assert_close(y1, y2, rtol=0, atol=0)  # deterministic
    assert not torch.allclose(y1, y_plain)  # training: AZO changes the output ...
    torch.testing.assert_close(y1[0], y_plain[0])  # ... but never at t = 0
    changed = ((y1 - y_plain).abs() > 1e-12).flatten(3).any(-1).any(1)  # [T, C]
    a_t, a_c = azo.weights(x)
    assert not (changed & ~azo.zoneout_mask(a_t, a_c).any(0)).any()  # only selected (t, c)

    plain.load_state_dict(azo.state_dict())  # same BN running statistics
    azo.eval(), plain.eval()
    assert not torch.allclose(azo(x), y1)  # evaluation differs from training ...
    torch.testing.assert_close(azo(x), plain(x), rtol=0, atol=0)  # ... and is plain SMA


@pytest.mark.parametrize("rtr, rcr", [(16, 4), (4, 100)])
def test_azo_selects_nothing_when_counts_are_zero(rtr, rcr):
    module = build("relu", azo=True, azo_rtr=rtr, azo_rcr=rcr)
    plain = build("relu")
    x = torch.randn(T, B, C, H, W)
    torch.testing.assert_close(module(x), plain(x))
    assert not module.zoneout_mask(*module.weights(x)).any()


def test_wrong_T_and_missing_neuron_raise():
    module = build("relu")
    with pytest.raises(ValueError, match="SMA was built for T=8, got T=6"):
        module(torch.randn(6, B, C, H, W))
    with pytest.raises(ValueError, match="needs make_neuron"):
        SMA(T, C)
    with pytest.raises(ValueError, match="branch_act"):
        SMA(T, C, branch_act="gelu")
    with pytest.raises(ValueError, match="odd"):
        SMA(T, C, branch_act="relu", kernels=(1, 2))


@pytest.mark.parametrize("light", [False, True])
def test_gradients_reach_every_parameter(light):
    module = build("lif", light=light, azo=True, azo_rtr=4, azo_rcr=4)
    x = (2 * torch.randn(T, B, C, H, W)).requires_grad_()
    (module(x) * torch.randn(T, B, C, H, W)).sum().backward()
    for name, p in module.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name
    assert x.grad.abs().sum() > 0


def test_elementwise_macs():
    module = build("relu")
    x = torch.randn(T, B, C, H, W)
    assert module.elementwise_macs(module(x)) == 4 * x.numel() + 4 * T * B * C


def authors_azo(terms, a_t, a_c, n_t, n_c, in_place):
    """The authors' AZO on the weighted branch terms [n, T, B, C, H, W], written as their
    loops: topk-smallest steps (time weight summed over the batch), then topk-smallest
    channels over those steps; `after[i, j, :, k] = before[i, j - 1, :, k]` for j != 0,
    visiting steps in topk order. `in_place`: their explicit-loop demo (before is after);
    else their tensor-parallel training code (before is a clone)."""
    after = terms.clone()
    before = after if in_place else terms.clone()
    for i in range(len(terms)):
        steps = torch.topk(a_t[i].sum(1), k=n_t, largest=False).indices
        chans = torch.topk(a_c[i][steps].sum(0).sum(0), k=n_c, largest=False).indices
        for j in steps.tolist():
            for k in chans.tolist():
                if j != 0:
                    after[i, j, :, k] = before[i, j - 1, :, k]
    return after.sum(0)


@pytest.mark.parametrize("azo_copy", ["parallel", "chained"])
@pytest.mark.parametrize("order", ["4 then 3", "3 then 4"])
def test_azo_copies_match_the_authors_loops(azo_copy, order):
    """Branch 1 replaces steps 3 and 4 (smallest time weights); visited 3 first, the
    explicit loop chains step 4 back to step 2. Both versions against the written-out loops."""
    module, l, m, _ = hand_set_azo()
    module.azo_copy = azo_copy
    if order == "3 then 4":  # branch 1's smallest weights: t = 3 (largest l), then t = 4
        l = l.clone()
        l[3], l[4] = 3.0, 2.0
        with torch.no_grad():
            module.time_excite[0].bias.copy_(l)
    x = torch.randn(T, B, C, H, W)
    u = module.branch_outputs(x)
    a_t, a_c = module.weights_from(u)
    terms = (a_t[..., None] * a_c)[..., None, None] * u
    expected = authors_azo(terms, a_t, a_c, T // 4, C // 6, in_place=azo_copy == "chained")
    torch.testing.assert_close(module(x), expected)
    chained = authors_azo(terms, a_t, a_c, T // 4, C // 6, in_place=True)
    parallel = authors_azo(terms, a_t, a_c, T // 4, C // 6, in_place=False)
    assert torch.allclose(chained, parallel) == (order == "4 then 3")  # they differ only on a chain
    with pytest.raises(ValueError, match="azo_copy"):
        SMA(T, C, branch_act="relu", azo_copy="loop")


# ---- SMA-C: the channel half only (SMA appendix Tab. 6), Y = sum_n a_c[n] * U_n ------------


def test_sma_c_matches_hand_computed_channel_weights():
    """Two 1x1 branches on a hand-built input, every weight set by hand. Branch n's conv
    multiplies by k_n; BN (batch statistics) maps U_n to the standardised input times g_n,
    then ReLU. The channel MLP is worked by hand: z -> h = ReLU(S z + s) -> logits."""
    Tc, Bc, Cc = 2, 1, 2
    x = torch.tensor(
        [[[[[1.0, 3.0]], [[2.0, 0.0]]]], [[[[-1.0, 5.0]], [[4.0, 2.0]]]]]
    )  # [T=2, B=1, C=2, H=1, W=2]
    module = SMA(Tc, Cc, kernels=(1, 1), ratio_c=2, branch_act="relu", temporal=False)
    g = (1.0, 2.0)
    with torch.no_grad():
        for n, branch in enumerate(module.branches):
            conv, bn = branch[0]
            conv.weight.copy_(torch.eye(Cc)[:, :, None, None] * (n + 1.0))
            conv.bias.zero_()
            bn.weight.fill_(g[n])
            bn.bias.zero_()
        module.channel_squeeze.weight.copy_(torch.tensor([[0.5, -0.25]]))  # C -> 1 hidden unit
        module.channel_squeeze.bias.copy_(torch.tensor([0.1]))
        module.channel_excite[0].weight.copy_(torch.tensor([[1.0], [-2.0]]))
        module.channel_excite[0].bias.copy_(torch.tensor([0.0, 0.5]))
        module.channel_excite[1].weight.copy_(torch.tensor([[0.0], [1.0]]))
        module.channel_excite[1].bias.copy_(torch.tensor([-0.3, 0.0]))

    # By hand. Channel 0 values over (t, w): 1, 3, -1, 5 -> mean 2, var 5; channel 1:
    # 2, 0, 4, 2 -> mean 2, var 2. The conv's factor k_n scales mean and deviation alike, so
    # (k x - k mean) / sqrt(k^2 var + eps) with eps = 1e-5.
    def U(n, t, c, w):
        v = x[t, 0, c, 0, w].item()
        var = (5.0, 2.0)[c]
        k = n + 1.0
        return max(0.0, g[n] * k * (v - 2.0) / math.sqrt(k * k * var + 1e-5))

    y = torch.zeros(Tc, Cc, 2)
    for t in range(Tc):
        z = [(U(0, t, c, 0) + U(1, t, c, 0) + U(0, t, c, 1) + U(1, t, c, 1)) / 2 for c in range(Cc)]
        h = max(0.0, 0.5 * z[0] - 0.25 * z[1] + 0.1)
        logit0 = [1.0 * h + 0.0, -2.0 * h + 0.5]
        logit1 = [-0.3, 1.0 * h]
        for c in range(Cc):
            e0, e1 = math.exp(logit0[c]), math.exp(logit1[c])
            a0, a1 = e0 / (e0 + e1), e1 / (e0 + e1)
            for w in range(2):
                y[t, c, w] = a0 * U(0, t, c, w) + a1 * U(1, t, c, w)
    assert 0 < h  # the hidden unit is alive at the last step, so the weights depend on z
    out = module(x)
    torch.testing.assert_close(out, y[:, None, :, None, :])
    a_t, a_c = module.weights(x)
    assert a_t is None and a_c.shape == (2, Tc, Bc, Cc)


def test_sma_c_is_sma_without_the_time_factor():
    """Same shared weights as SMA: SMA-C's output is sum_n a_c[n] * U_n with SMA's own a_c."""
    full = build("lif")
    channel_only = build("lif", temporal=False)
    channel_only.load_state_dict(full.state_dict(), strict=False)
    x = 2 * torch.randn(T, B, C, H, W)
    us = written_out_branches(full, x)
    _, a_c = written_out_weights(full, us)
    expected = sum(a_c[n][..., None, None] * us[n] for n in range(len(us)))
    torch.testing.assert_close(channel_only(x), expected)
    assert not torch.allclose(full(x), expected)


def test_sma_c_has_no_time_path():
    module = build("relu", temporal=False)
    names = [name for name, _ in module.named_parameters()] + list(module.state_dict())
    assert names and not any(name.startswith("time_") for name in names)
    assert not hasattr(module, "time_squeeze") and not hasattr(module, "time_excite")
    full = build("relu")
    assert set(full.state_dict()) - set(module.state_dict()) == {
        key for key in full.state_dict() if key.startswith("time_")
    }
    # Light channel weights without a time path also broadcast over T
    light = build("relu", temporal=False, light=True)
    assert light(torch.randn(T, B, C, H, W)).shape == (T, B, C, H, W)


def test_sma_c_refuses_azo():
    with pytest.raises(ValueError, match="azo=True needs its time weights"):
        SMA(T, C, branch_act="relu", temporal=False, azo=True)


def test_sma_c_registered_and_a_future_sma_c_azo_refused(monkeypatch):
    from spikeattn import attention

    assert attention.SMA_VARIANTS["SMA-C"] == {"light": False, "azo": False, "temporal": False}
    assert "SMA-C" in attention.ATTENTIONS and attention.slot("SMA-C") == "conv"
    module = attention.build_attention(
        "SMA-C", T=T, channels=C, attention_kwargs={"sma": {"branch_act": "relu"}}
    )
    assert isinstance(module, SMA) and not module.temporal and not module.azo
    monkeypatch.setitem(
        attention.ATTENTIONS,
        "SMA-C+AZO",
        attention.AttentionEntry("sma", "conv", {"light": False, "azo": True, "temporal": False}),
    )
    with pytest.raises(ValueError, match="azo=True needs its time weights"):
        attention.build_attention(
            "SMA-C+AZO", T=T, channels=C, attention_kwargs={"sma": {"branch_act": "relu"}}
        )


def test_sma_c_elementwise_macs_count_no_time_product():
    module = build("relu", temporal=False)
    x = torch.randn(T, B, C, H, W)
    assert module.elementwise_macs(module(x)) == 4 * x.numel()
