import pytest
import torch
from torch import nn

from fagan.models import GENERATORS, build_generator
from fagan.models.fast import TapSumConv, fold_batch_norms, optimize_for_inference
from fagan.models.release import load_release, shipped_weights

TINY = dict(channels=16, lffb_blocks=1, path_channels=8, residual_blocks=2, head_kernel=5, reduction=4)


@pytest.mark.parametrize(
    ("in_channels", "out_channels", "kernel", "size"),
    [(8, 1, 9, (13, 21)), (3, 2, 3, (5, 4)), (4, 1, 5, (2, 3)), (16, 4, 7, (9, 9))],
)
def test_tap_sum_equals_the_convolution(
    in_channels: int, out_channels: int, kernel: int, size: tuple[int, int]
) -> None:
    torch.manual_seed(0)
    conv = nn.Conv2d(in_channels, out_channels, kernel, padding=kernel // 2)
    x = torch.randn(3, in_channels, *size)
    with torch.no_grad():
        torch.testing.assert_close(TapSumConv(conv)(x), conv(x), rtol=1e-5, atol=1e-5)
        channels_last = x.contiguous(memory_format=torch.channels_last)
        torch.testing.assert_close(TapSumConv(conv)(channels_last), conv(x), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(
    "conv",
    [nn.Conv2d(2, 1, 3, stride=2, padding=1), nn.Conv2d(2, 1, 3), nn.Conv2d(2, 2, 3, padding=1, groups=2)],
)
def test_tap_sum_refuses_other_convolutions(conv: nn.Conv2d) -> None:
    with pytest.raises(ValueError, match="TapSumConv"):
        TapSumConv(conv)


def test_fold_batch_norms_keeps_the_output() -> None:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8), nn.ReLU())
    net[1].running_mean.normal_()
    net[1].running_var.uniform_(0.5, 2.0)
    net.eval()
    x = torch.randn(2, 3, 6, 6)
    with torch.no_grad():
        expected = net(x)
        fold_batch_norms(net)
        assert isinstance(net[1], nn.Identity)
        torch.testing.assert_close(net(x), expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name", list(GENERATORS))
def test_optimized_generator_gives_the_same_output(name: str) -> None:
    torch.manual_seed(0)
    model = build_generator(name, 4, **TINY)
    for module in model.modules():  # non-trivial statistics and attention
        if isinstance(module, nn.BatchNorm2d):
            module.running_mean.normal_()
            module.running_var.uniform_(0.5, 2.0)
        if hasattr(module, "gamma"):
            nn.init.constant_(module.gamma, 0.5)
    model.eval()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    fast = optimize_for_inference(model)
    assert isinstance(fast.tail, TapSumConv)
    lr = torch.rand(2, 1, 7, 6)
    with torch.inference_mode():
        torch.testing.assert_close(fast(lr), model(lr), rtol=1e-4, atol=1e-5)
    # The original (and so its state_dict and any release written from it) is untouched.
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())


def test_shipped_weights_load_and_optimize_to_the_same_output() -> None:
    generator, _ = load_release(shipped_weights(4), scale=4)
    lr = torch.rand(1, 1, 12, 9)
    with torch.inference_mode():
        expected = generator(lr)
        torch.testing.assert_close(optimize_for_inference(generator)(lr), expected, rtol=1e-4, atol=1e-5)


def test_tap_sum_off_on_request() -> None:
    model = build_generator("srgan", 2, **TINY).eval()
    assert isinstance(optimize_for_inference(model, tap_sum=False).tail, nn.Conv2d)


def test_upscale_uses_the_fast_copy_and_splits_batches_by_pixels() -> None:
    """The inference path (optimized copy, sub-batches of at most max_pixels) changes nothing."""
    import numpy as np

    from fagan.data.io import Volume
    from fagan.inference import upscale_batch, upscale_volume

    torch.manual_seed(0)
    model = build_generator("fagan", 2, **TINY).eval()
    lr = torch.rand(5, 1, 6, 7)
    whole = upscale_batch(model, lr, max_pixels=0)
    torch.testing.assert_close(upscale_batch(model, lr, max_pixels=2 * 12 * 14), whole)
    volume = Volume(np.random.default_rng(0).random((6, 7, 5)).astype(np.float32), np.eye(4), {})
    fast = upscale_volume(volume, model, batch_size=4).array
    plain = upscale_volume(volume, model, batch_size=4, optimize=False).array
    np.testing.assert_allclose(fast, plain, rtol=1e-4, atol=1e-5)
