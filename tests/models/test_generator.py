import dataclasses

import pytest
import torch

from fagan.models import ABLATIONS, GENERATORS, SCALES, build_generator, generator_config
from fagan.models.generator import grow_blocks, grow_upsampling

# A tiny backbone: every code path, a fraction of a second per case.
TINY = dict(channels=16, lffb_blocks=1, path_channels=8, residual_blocks=2, head_kernel=3, reduction=4)


@pytest.mark.parametrize("scale", SCALES)
@pytest.mark.parametrize("name", list(GENERATORS))
def test_shape_finite_and_every_parameter_learns(name: str, scale: int) -> None:
    torch.manual_seed(0)
    model = build_generator(name, scale, **TINY)
    for module in model.modules():  # gamma = 0 would hide f, g, h, v from the gradient
        if hasattr(module, "gamma"):
            torch.nn.init.constant_(module.gamma, 0.5)
    lr = torch.rand(2, 1, 6, 5)
    sr = model(lr)
    assert sr.shape == (2, 1, 6 * scale, 5 * scale)
    assert torch.isfinite(sr).all()
    sr.square().mean().backward()
    for pname, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), pname
        assert p.grad.abs().sum() > 0, f"{pname} gets no gradient"


def test_multi_contrast_input() -> None:
    model = build_generator("fagan", 2, in_channels=3, **TINY)
    assert model(torch.rand(1, 3, 8, 8)).shape == (1, 3, 16, 16)


@pytest.mark.parametrize("position", ["before_upsampling", "after_upsampling"])
def test_gffb_position(position: str) -> None:
    model = build_generator("fagan", 4, gffb_position=position, **TINY)
    assert model(torch.rand(1, 1, 8, 8)).shape == (1, 1, 32, 32)


def test_bicubic_residual_starts_near_bicubic() -> None:
    """With a zeroed output conv the generator is exactly bicubic upsampling."""
    model = build_generator("srgan", 2, **TINY).eval()
    torch.nn.init.zeros_(model.tail.weight)
    torch.nn.init.zeros_(model.tail.bias)
    lr = torch.rand(1, 1, 8, 8)
    expected = torch.nn.functional.interpolate(lr, scale_factor=2, mode="bicubic", align_corners=False)
    torch.testing.assert_close(model(lr), expected)


def test_unknown_name_lists_valid_ones() -> None:
    with pytest.raises(ValueError, match="valid names: fagan, srgan"):
        build_generator("esrgan", 4)


@pytest.mark.parametrize("scale", [1, 3, 16])
def test_bad_scale(scale: int) -> None:
    with pytest.raises(ValueError, match="scale must be one of 2, 4, 8"):
        build_generator("fagan", scale)


def test_unknown_override() -> None:
    with pytest.raises(ValueError, match="unknown generator option"):
        build_generator("fagan", 2, chanels=8)


SWITCHES = {"lffb", "channel_attention", "self_attention", "fusion"}


def _claims(name: str) -> dict[str, object]:
    """What a name says about the switches: its parts, read literally."""
    parts = set(name.split("-"))
    return {
        "lffb": "lffb" in parts or name.startswith("fagan"),
        "channel_attention": "ca" in parts or name.startswith("fagan"),
        "self_attention": "sa" in parts or name.startswith("fagan"),
        "fusion": "direct" if "direct" in parts else "weighted",
    }


@pytest.mark.parametrize("name", list(GENERATORS))
def test_configs_differ_only_in_the_switches_their_names_claim(name: str) -> None:
    base = dataclasses.asdict(GENERATORS["fagan"])
    config = dataclasses.asdict(GENERATORS[name])
    differing = {k for k in base if base[k] != config[k]}
    assert differing <= SWITCHES
    for key, value in _claims(name).items():
        assert config[key] == value, (name, key)


def test_ablations_cover_every_combination() -> None:
    combos = {
        (GENERATORS[n].lffb, GENERATORS[n].channel_attention, GENERATORS[n].self_attention) for n in ABLATIONS
    }
    assert len(combos) == len(ABLATIONS) == 8


def test_srgan_is_srgan() -> None:
    config = generator_config("srgan")
    model = build_generator("srgan", 4)
    assert not (config.lffb or config.channel_attention or config.self_attention)
    assert config.residual_blocks == 16 and config.channels == 64 and config.batch_norm
    assert sum(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules()) == 2 * 16 + 1
    assert sum(isinstance(m, torch.nn.PixelShuffle) for m in model.modules()) == 2


def test_weights_of_a_smaller_scale_grow_into_a_larger_one() -> None:
    """x2 weights start an x8 generator: everything kept, each new stage a copy of the last."""
    torch.manual_seed(0)
    x2 = build_generator("fagan", 2, **TINY)
    x8 = build_generator("fagan", 8, **TINY)
    x8.load_state_dict(grow_upsampling(x2.state_dict(), len(x8.upsample)))
    for key, value in x2.state_dict().items():
        assert torch.equal(x8.state_dict()[key], value), key
    features = torch.rand(1, 16, 5, 4)
    with torch.no_grad():
        once = x2.upsample[0]
        assert torch.equal(x8.upsample(features), once(once(once(features))))
    assert x8(torch.rand(1, 1, 5, 4)).shape == (1, 1, 40, 32)
    with pytest.raises(ValueError, match="cannot shrink 3 upsampling stages to 1"):
        grow_upsampling(x8.state_dict(), 1)


def test_a_deeper_stack_of_lffbs_starts_as_the_trained_one() -> None:
    """Two LFFBs appended to a trained one start as the identity: the same output to the bit."""
    torch.manual_seed(0)
    trained = build_generator("fagan", 2, **TINY).eval()
    deeper = build_generator("fagan", 2, **{**TINY, "lffb_blocks": 3}).eval()
    deeper.load_state_dict(grow_blocks(trained.state_dict(), 3, deeper.state_dict()))
    x = torch.rand(2, 1, 9, 7)
    with torch.no_grad():
        assert torch.equal(deeper(x), trained(x))
    assert torch.equal(deeper.body[3].weight, trained.body[1].weight)  # the closing conv moved along
    assert not deeper.body[2].fuse.weight.any() and deeper.body[2].first[0].weight.any()
    with pytest.raises(ValueError, match="cannot shrink 3 LFFBs to 1"):
        grow_blocks(deeper.state_dict(), 1, trained.state_dict())
