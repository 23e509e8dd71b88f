import math

import pytest
import torch

from fagan.models import (
    ChannelAttention,
    DirectFusion,
    GlobalFeatureFusionBlock,
    SelfAttention,
    WeightedFusion,
)


def test_self_attention_with_gamma_zero_is_identity() -> None:
    sa = SelfAttention(16)
    x = torch.randn(2, 16, 5, 7)
    assert torch.equal(sa(x), x)


def _naive_attention(sa: SelfAttention, x: torch.Tensor) -> torch.Tensor:
    b, c, h, w = x.shape
    f = sa.f(x).flatten(2)  # (B, C/8, N)
    g = sa.g(x).flatten(2)
    v = sa.h(x).flatten(2)  # (B, C, N)
    beta = torch.softmax(f.transpose(1, 2) @ g, dim=-1)  # (B, N query, N key)
    return (v @ beta.transpose(1, 2)).reshape(b, c, h, w)


@pytest.mark.parametrize("max_queries", [4096, 7])
def test_self_attention_matches_the_sagan_formula(max_queries: int) -> None:
    torch.manual_seed(0)
    sa = SelfAttention(16, max_queries=max_queries)
    torch.nn.init.constant_(sa.gamma, 0.7)
    x = torch.randn(2, 16, 6, 5)
    expected = x + 0.7 * sa.v(_naive_attention(sa, x))
    torch.testing.assert_close(sa(x), expected, atol=1e-5, rtol=1e-5)


def test_channel_attention_weights_in_open_unit_interval() -> None:
    ca = ChannelAttention(32, reduction=4)
    x = torch.randn(3, 32, 4, 4) * 10
    w = ca.weights(x)
    assert w.shape == (3, 32, 1, 1)
    assert (w > 0).all() and (w < 1).all()
    torch.testing.assert_close(ca(x), x * w)


def test_weighted_fusion_weights_sum_to_one_and_prefer_the_stronger() -> None:
    fusion = WeightedFusion()
    r, y = torch.randn(2, 8, 4, 4), torch.randn(2, 8, 4, 4)
    w_r, w_y = fusion.weights(r, y)
    torch.testing.assert_close(w_r + w_y, torch.ones_like(r))
    assert ((w_r > w_y) == (r > y)).all()


@pytest.mark.parametrize("alpha,beta", [(0.5, 0.5), (0.3, 0.7), (1.0, 0.0)])
def test_weighted_fusion_of_equal_inputs_is_the_input(alpha: float, beta: float) -> None:
    r = torch.randn(2, 8, 4, 4)
    torch.testing.assert_close(WeightedFusion(alpha, beta)(r, r.clone()), r)


def test_direct_fusion() -> None:
    r, y = torch.randn(2, 8, 3, 3), torch.randn(2, 8, 3, 3)
    torch.testing.assert_close(DirectFusion(0.3, 0.7)(r, y), 0.3 * r + 0.7 * y)
    torch.testing.assert_close(DirectFusion()(r, y), 0.5 * (r + y))


def test_gffb_without_attention_is_identity_and_single_attention_passes_through() -> None:
    x = torch.randn(1, 16, 4, 4)
    assert torch.equal(GlobalFeatureFusionBlock(16, False, False)(x), x)
    ca_only = GlobalFeatureFusionBlock(16, True, False, reduction=4)
    assert ca_only.fusion is None and ca_only.sa is None
    torch.testing.assert_close(ca_only(x), ca_only.ca(x))


def test_self_attention_never_asks_for_more_than_a_chunk_of_scores(monkeypatch) -> None:
    """At most ``max_queries x N`` scores per attention call, so memory is linear in N even on a
    backend that materialises them (the fused kernels store none)."""
    calls = []
    sdpa = torch.nn.functional.scaled_dot_product_attention

    def spy(q, k, v, **kwargs):
        calls.append((q.shape[-2], k.shape[-2], q.shape[-1], v.shape[-1]))
        return sdpa(q, k, v, **kwargs)

    monkeypatch.setattr(torch.nn.functional, "scaled_dot_product_attention", spy)
    sa = SelfAttention(8, max_queries=1024, max_keys=None)
    torch.nn.init.constant_(sa.gamma, 1.0)
    x = torch.randn(1, 8, 96, 96)
    with torch.inference_mode():
        out = sa(x)
    assert out.shape == x.shape and math.isfinite(out.sum().item())
    assert len(calls) == 9  # ceil(9216 / 1024)
    for queries, keys, qk_width, v_width in calls:
        assert queries <= 1024 and keys == 96 * 96
        assert qk_width == v_width  # equal widths let the fused (flash) kernel run


def test_keys_are_pooled_above_the_cap_and_untouched_below_it() -> None:
    """Above ``max_keys`` positions every query attends to k x k averages of keys and values."""
    torch.manual_seed(0)
    sa = SelfAttention(8, max_keys=1024)
    full = SelfAttention(8, max_keys=None)
    full.load_state_dict(sa.state_dict())
    small = torch.randn(2, 8, 32, 32)  # exactly 1024 positions: no pooling
    with torch.inference_mode():
        assert torch.equal(sa.attend(small), full.attend(small))
    x = torch.randn(2, 8, 50, 47)  # 2350 positions -> 2x2 windows, 25 x 24 keys
    assert sa.key_pool(50, 47) == 2 and sa.key_pool(32, 32) == 1
    with torch.inference_mode():
        ours = sa.attend(x)
        q = sa.f(x).flatten(2)  # (B, C/8, N)
        k = torch.nn.functional.avg_pool2d(sa.g(x), 2, ceil_mode=True).flatten(2)
        v = torch.nn.functional.avg_pool2d(sa.h(x), 2, ceil_mode=True).flatten(2)
        assert k.shape[-1] == 25 * 24
        weights = torch.softmax(q.transpose(1, 2) @ k, dim=-1)  # (B, N, M): SAGAN's unscaled map
        reference = (weights @ v.transpose(1, 2)).transpose(1, 2).reshape(x.shape)
    torch.testing.assert_close(ours, reference, atol=1e-5, rtol=1e-4)
