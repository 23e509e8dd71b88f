"""Each loss term on known inputs, and the VGG weights loading path."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from fagan import FaganError
from fagan.data import SliceDataset, sample_volumes
from fagan.losses import (
    GeneratorLoss,
    PerceptualLoss,
    PixelLoss,
    discriminator_loss,
    generator_adversarial_loss,
    load_vgg_state_dict,
    vgg_features,
)
from fagan.losses import perceptual as perceptual_module

from .vgg_helpers import write_test_vgg19


@pytest.fixture(scope="module")
def vgg19_file(tmp_path_factory):
    return write_test_vgg19(tmp_path_factory.mktemp("vgg") / "vgg19-test.pth")


@pytest.fixture(scope="module")
def slices():
    """Two unrelated 64x64 crops of real MRI slices, (1, 1, 64, 64) each."""
    dataset = SliceDataset([sample_volumes("val")[0].path], 2, max_slices_per_volume=10)
    return dataset[3].hr[None, :, 10:74, 10:74], dataset[7].hr[None, :, 10:74, 10:74]


def test_pixel_losses_on_known_values():
    a, b = torch.zeros(2, 1, 4, 4), torch.full((2, 1, 4, 4), 0.5)
    assert PixelLoss("mse")(a, a) == 0 and PixelLoss("l1")(a, a) == 0
    assert PixelLoss("mse")(a, b).item() == pytest.approx(0.25)
    assert PixelLoss("l1")(a, b).item() == pytest.approx(0.5)
    with pytest.raises(FaganError, match="mse, l1"):
        PixelLoss("l2")


def test_adversarial_losses_are_the_gan_cross_entropies():
    logits = torch.tensor([0.0, 2.0, -1.0])
    expected_g = -torch.log(torch.sigmoid(logits)).mean()
    torch.testing.assert_close(generator_adversarial_loss(logits), expected_g)
    real, fake = torch.tensor([3.0, 1.0]), torch.tensor([-2.0, 0.5])
    total, terms = discriminator_loss(real, fake)
    expected_real = -torch.log(torch.sigmoid(real)).mean()
    expected_fake = -torch.log(1 - torch.sigmoid(fake)).mean()
    torch.testing.assert_close(terms["d_real"], expected_real)
    torch.testing.assert_close(terms["d_fake"], expected_fake)
    torch.testing.assert_close(total, expected_real + expected_fake)
    # A confident, correct discriminator has a small loss; the fooled generator a large one.
    assert discriminator_loss(torch.full((4,), 20.0), torch.full((4,), -20.0))[0] < 1e-6
    assert generator_adversarial_loss(torch.full((4,), -20.0)) > 19


def test_perceptual_loss_is_zero_on_identical_images_and_responds_to_a_shift(vgg19_file, slices):
    loss = PerceptualLoss.pretrained("vgg19", "relu5_4", weights=vgg19_file)
    a, b = slices
    shifted = torch.roll(a, 1, dims=-1)
    assert loss(a, a).item() == 0.0
    shift, unrelated = loss(shifted, a).item(), loss(b, a).item()
    mse_shift, mse_unrelated = F.mse_loss(shifted, a).item(), F.mse_loss(b, a).item()
    # A one-pixel shift of the same anatomy is seen, at a fraction of the distance to an
    # unrelated slice; deep features are slightly more shift-tolerant than pixels.
    assert 0.01 * unrelated < shift < 0.5 * unrelated
    assert 0.01 * mse_unrelated < mse_shift < 0.5 * mse_unrelated
    assert shift / unrelated != pytest.approx(mse_shift / mse_unrelated, rel=1e-3)


def test_perceptual_network_is_frozen_and_stays_in_eval_mode(vgg19_file, slices):
    loss = PerceptualLoss.pretrained("vgg19", "relu2_2", weights=vgg19_file).train()
    assert not loss.features.training and not any(p.requires_grad for p in loss.parameters())
    assert len(loss.features) == 9  # conv1_1 ... relu2_2
    a, b = slices
    sr = b.clone().requires_grad_(True)
    loss(sr, a).backward()
    assert sr.grad is not None and sr.grad.abs().sum() > 0
    assert all(p.grad is None for p in loss.parameters())


def test_state_dict_layouts_load_alike(tmp_path, vgg19_file):
    reference = load_vgg_state_dict("vgg19", vgg19_file)
    assert set(reference) == set(vgg_features("vgg19").state_dict())
    bare, lpips = tmp_path / "bare.pth", tmp_path / "lpips.pth"
    torch.save(reference, bare)
    torch.save({f"slice{1 + int(k.split('.')[0]) // 10}.{k}": v for k, v in reference.items()}, lpips)
    for path in (bare, lpips):
        loaded = load_vgg_state_dict("vgg19", path)
        assert all(torch.equal(loaded[k], reference[k]) for k in reference)


def test_wrong_network_is_a_clear_error(vgg19_file):
    with pytest.raises(FaganError, match="not a VGG16 convolution stack.*perceptual_network=vgg19"):
        load_vgg_state_dict("vgg16", vgg19_file)
    with pytest.raises(FaganError, match="unknown vgg19 layer 'relu6_1'"):
        PerceptualLoss.pretrained("vgg19", "relu6_1", weights=vgg19_file)


def test_weights_are_found_in_the_torch_cache(tmp_path, monkeypatch, vgg19_file):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    cached = perceptual_module.cached_weights_path("vgg19")
    assert cached == tmp_path / "checkpoints" / "vgg19-dcbb9e9d.pth"
    cached.parent.mkdir()
    cached.write_bytes(vgg19_file.read_bytes())
    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", pytest.fail)
    assert "0.weight" in load_vgg_state_dict("vgg19")


def test_offline_without_weights_names_both_ways_out(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))

    def offline(*args, **kwargs):
        raise OSError("Temporary failure in name resolution")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", offline)
    with pytest.raises(FaganError) as info:
        load_vgg_state_dict("vgg19")
    message = str(info.value)
    assert "--vgg-weights PATH" in message and str(tmp_path / "checkpoints" / "vgg19-dcbb9e9d.pth") in message


def test_generator_loss_weights_and_terms(vgg19_file, slices):
    a, b = slices
    perceptual = PerceptualLoss.pretrained("vgg19", "relu2_2", weights=vgg19_file)
    loss = GeneratorLoss(PixelLoss(), 1.0, perceptual, 0.5, 1e-3)
    logits = torch.tensor([0.3])
    total, terms = loss(b, a, logits)
    assert set(terms) == {"pixel", "perceptual", "adversarial", "g_total"}
    expected = terms["pixel"] + 0.5 * terms["perceptual"] + 1e-3 * terms["adversarial"]
    torch.testing.assert_close(total.detach(), expected)
    torch.testing.assert_close(terms["g_total"], expected)
    total, terms = loss(b, a, warmup=True)
    assert set(terms) == {"pixel", "g_total"} and total == terms["pixel"]
    zero, _ = loss(a, a, torch.tensor([50.0]))
    assert zero.item() < 1e-6
    pixel_only = GeneratorLoss(PixelLoss("l1"), 1.0, None, 0.0, 0.0)
    assert not pixel_only.adversarial and set(pixel_only(b, a)[1]) == {"pixel", "g_total"}


def test_a_vgg16_with_extra_layers_loads_by_the_order_of_its_convolutions(tmp_path):
    """The layout of ST-LPIPS's VGG16: slices with blur-pool filters between the convolutions
    (other indices than torchvision's), a scaling layer and 1x1 LPIPS heads."""
    torch.manual_seed(0)
    reference = vgg_features("vgg16").state_dict()
    state: dict[str, torch.Tensor] = {"scaling_layer.shift": torch.zeros(1, 3, 1, 1)}
    for n, key in enumerate(k for k in reference if k.endswith(".weight")):
        index = int(key.split(".")[0]) + n // 3  # shifted, as by the blur layers
        state[f"net.slice{1 + n // 3}.{index}.filt"] = torch.ones(4, 1, 3, 3)
        state[f"net.slice{1 + n // 3}.{index}.weight"] = reference[key]
        state[f"net.slice{1 + n // 3}.{index}.bias"] = reference[key.replace("weight", "bias")]
    state["lin0.model.1.weight"] = torch.ones(1, 64, 1, 1)
    path = tmp_path / "st-lpips-like.pth"
    torch.save(state, path)
    loaded = load_vgg_state_dict("vgg16", path)
    assert set(loaded) == set(reference) and all(torch.equal(loaded[k], reference[k]) for k in reference)
    with pytest.raises(FaganError, match="not a VGG19 convolution stack"):
        load_vgg_state_dict("vgg19", path)


def test_packaged_vgg16_is_used_before_a_download(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "empty-cache"))
    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", pytest.fail)
    package = tmp_path / "site" / "stlpips_pytorch"
    (package / "weights" / "vST0.0").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    state = {f"features.{k}": v for k, v in vgg_features("vgg16").state_dict().items()}
    torch.save(state, package / "weights" / "vST0.0" / "vgg_shift_tolerant.pth")
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    loaded = load_vgg_state_dict("vgg16")
    assert torch.equal(loaded["28.weight"], state["features.28.weight"])
