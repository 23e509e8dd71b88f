import pytest
import torch

from fagan.models import build_discriminator


@pytest.mark.parametrize("size", [24, 32, 96])
def test_any_input_size_gives_one_logit_per_image(size: int) -> None:
    d = build_discriminator(channels=8, hidden=16)
    assert d(torch.rand(3, 1, size, size)).shape == (3,)


def test_every_weight_layer_is_spectrally_normalised() -> None:
    torch.manual_seed(0)
    d = build_discriminator(channels=8, hidden=16)
    x = torch.rand(2, 1, 32, 32)
    for _ in range(30):  # power iteration runs once per training-mode forward
        d(x)
    d.eval()
    layers = [m for m in d.modules() if isinstance(m, torch.nn.Conv2d)]
    assert len(layers) == 2 * 4 + 2
    for layer in layers:
        assert hasattr(layer, "parametrizations") and "weight" in layer.parametrizations
        sigma = torch.linalg.matrix_norm(layer.weight.detach().flatten(1), ord=2)
        assert sigma.item() == pytest.approx(1.0, abs=0.05)


def test_unknown_option() -> None:
    with pytest.raises(ValueError, match="unknown discriminator option"):
        build_discriminator(width=3)


def test_spectral_norm_can_be_switched_off_for_the_comparison() -> None:
    torch.manual_seed(0)
    plain = build_discriminator(channels=8, hidden=16, spectral_norm=False)
    layers = [m for m in plain.modules() if isinstance(m, torch.nn.Conv2d)]
    assert len(layers) == 2 * 4 + 2 and not any(hasattr(m, "parametrizations") for m in layers)
    normed = build_discriminator(channels=8, hidden=16)
    kept = {k.replace(".parametrizations.weight.original", ".weight") for k in normed.state_dict()}
    assert kept - {k for k in kept if k.endswith(("._u", "._v"))} == set(plain.state_dict())


def test_highpass_input_sees_only_the_fine_detail() -> None:
    from fagan.models.discriminator import highpass

    torch.manual_seed(0)
    x = torch.rand(2, 1, 24, 24)
    ramp = torch.arange(24.0).expand(24, 24)[None, None] / 24
    assert highpass(torch.full((1, 1, 8, 8), 0.7)).abs().max() < 1e-6
    assert highpass(ramp)[..., 1:-1].abs().max() < 1e-6  # a linear ramp has no detail inside
    d = build_discriminator(channels=8, hidden=16, highpass=True).eval()
    plain = build_discriminator(channels=8, hidden=16).eval()
    # An intensity offset or a smooth shading changes what the plain discriminator sees, not this one.
    torch.testing.assert_close(d(x + 0.3), d(x))
    assert not torch.allclose(plain(x + 0.3), plain(x))
