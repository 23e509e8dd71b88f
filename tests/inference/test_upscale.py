import numpy as np
import pytest
import torch

from fagan import FaganError
from fagan.data.degrade import degrade
from fagan.data.io import Volume
from fagan.data.normalize import IntensityScaling, fit_scaling
from fagan.inference import upscale as upscale_module
from fagan.inference import upscale_batch, upscale_volume
from fagan.inference.upscale import bright_end, default_tile, is_magnitude

from .conftest import tiny_generator


@pytest.mark.parametrize("size", [(40, 40), (37, 53)])
def test_tiling_matches_a_single_pass(size: tuple[int, int]) -> None:
    generator = tiny_generator(2)
    lr = torch.rand(2, 1, *size)
    whole = upscale_batch(generator, lr, tile=0)
    tiled = upscale_batch(generator, lr, tile=24, overlap=8)
    assert tiled.shape == whole.shape == (2, 1, 2 * size[0], 2 * size[1])
    # Global attention and channel statistics see a tile, not the slice: close, not equal.
    assert (tiled - whole).abs().mean() < 0.01
    assert (tiled - whole).abs().max() < 0.1


def test_default_tile_is_a_1024_pixel_output() -> None:
    assert [default_tile(s) for s in (2, 4, 8)] == [512, 256, 128]


def test_default_tile_runs_smaller_slices_whole_and_tiles_larger_ones(monkeypatch) -> None:
    generator = tiny_generator(2)
    lr = torch.rand(1, 1, 40, 40)
    whole = upscale_batch(generator, lr, tile=0)
    assert torch.equal(upscale_batch(generator, lr), whole)  # 40 <= 512: no seams at all
    monkeypatch.setattr(upscale_module, "DEFAULT_TILE_OUTPUT", 66)  # x2: 33-pixel tiles
    tiled = upscale_batch(generator, lr)
    assert torch.equal(tiled, upscale_batch(generator, lr, tile=33))
    assert not torch.equal(tiled, whole)
    volume = Volume(lr[0, 0, :, :, None].numpy() * 100.0, np.eye(4), {})
    assert np.array_equal(
        upscale_volume(volume, generator).array, upscale_volume(volume, generator, tile=33).array
    )


def test_overlap_must_be_smaller_than_tile() -> None:
    with pytest.raises(ValueError, match="overlap"):
        upscale_batch(tiny_generator(2), torch.rand(1, 1, 40, 40), tile=8, overlap=8)


@pytest.mark.parametrize("axis", [0, 1, 2])
def test_volume_shape_units_and_axis(axis: int) -> None:
    rng = np.random.default_rng(0)
    array = (rng.random((6, 8, 10)) * 800 - 200).astype(np.float32)  # signed: nothing is clipped
    volume = Volume(array, np.diag([1.0, 2.0, 3.0, 1.0]), {})
    generator = tiny_generator(2)
    out = upscale_volume(volume, generator, axis=axis, batch_size=3, consistency=False)
    expected = [n * 2 for n in array.shape]
    expected[axis] = array.shape[axis]
    assert out.array.shape == tuple(expected) and out.array.dtype == np.float32
    zooms = np.abs(np.diag(out.affine)[:3])
    np.testing.assert_allclose(zooms[axis], [1.0, 2.0, 3.0][axis])
    # Each output slice is exactly the generator applied to that input slice.
    k = 1
    lr = torch.from_numpy(np.take(array, k, axis=axis))[None, None]
    from fagan.data.normalize import fit_scaling

    scaling = fit_scaling(array)
    with torch.inference_mode():
        expected_slice = scaling.invert(generator(scaling.apply(lr)))[0, 0].numpy()
    np.testing.assert_allclose(np.take(out.array, k, axis=axis), expected_slice, rtol=1e-4, atol=1e-2)
    # By default the output is projected so that, downsampled again, it is the input itself.
    consistent = upscale_volume(volume, generator, axis=axis, batch_size=3).array
    again = degrade(torch.from_numpy(np.moveaxis(consistent, axis, 0))[:, None], 2)[:, 0].numpy()
    np.testing.assert_allclose(np.moveaxis(again, 0, axis), array, rtol=0, atol=1e-2)
    assert np.abs(consistent - out.array).max() > 1.0


@pytest.mark.parametrize("axis", [0, 1, 2])
def test_a_4d_volume_is_upscaled_volume_by_volume_each_on_its_own_scaling(axis: int) -> None:
    rng = np.random.default_rng(2)
    base = rng.random((6, 8, 5)).astype(np.float32)
    # a b0-like volume and a ten times dimmer weighted one: each is normalised on its own
    array = np.stack([base * 1000, base[::-1] * 100, base * 300 - 200], axis=-1)
    volume = Volume(array, np.diag([1.0, 2.0, 3.0, 1.0]), {"frame_interval": 2.0})
    generator = tiny_generator(2)
    out = upscale_volume(volume, generator, axis=axis, batch_size=4)
    expected = [n * 2 for n in array.shape[:3]]
    expected[axis] = array.shape[axis]
    assert out.array.shape == (*expected, 3) and out.meta["frame_interval"] == 2.0
    assert not is_magnitude(array)  # the third volume's negatives are deep: decided for all
    for t in range(3):
        alone = upscale_volume(
            Volume(array[..., t], volume.affine, {}), generator, axis=axis, batch_size=4, clip_negative=False
        )
        np.testing.assert_allclose(out.array[..., t], alone.array, rtol=1e-5, atol=1e-3)
        np.testing.assert_array_equal(out.affine, alone.affine)
    assert (out.array[..., 0] < 0).any()  # not clipped, although the first volume alone would be


def test_a_constant_volume_of_a_series_comes_back_constant_and_one_that_cannot_be_fitted_is_named(
    monkeypatch,
) -> None:
    rng = np.random.default_rng(3)
    array = np.stack([rng.random((10, 10, 3)) * 500, np.full((10, 10, 3), 40.0)], axis=-1).astype(np.float32)
    out = upscale_volume(Volume(array, np.eye(4), {}), tiny_generator(2))
    assert out.array.shape == (20, 20, 3, 2) and (out.array[..., 1] == 40.0).all()
    array[..., 1] = 5.0
    array[0, 0, 0, 1] = 0.0  # all 5 but one voxel: no percentile fit exists
    calls = []
    monkeypatch.setattr(upscale_module, "upscale_batch", lambda *a, **k: calls.append(a))
    refused = r"^volume 1 of 2 cannot be normalised \(the image is constant.*input file\)$"  # no CLI advice
    with pytest.raises(upscale_module.UnfittableVolume, match=refused) as caught:
        upscale_volume(Volume(array, np.eye(4), {}), tiny_generator(2))
    assert (caught.value.index, caught.value.count) == (1, 2) and isinstance(caught.value, FaganError)
    assert calls == []  # refused before any slice went through the network


def test_intensities_come_back_in_input_units() -> None:
    """With its output convolution zeroed the generator is bicubic upsampling in [0, 1] units;
    mapped back, the volume must equal bicubic upsampling of the raw intensities."""
    rng = np.random.default_rng(1)
    array = (rng.random((12, 10, 3)) * 3000 - 500).astype(np.float32)
    generator = tiny_generator(4)
    torch.nn.init.zeros_(generator.tail.weight)
    torch.nn.init.zeros_(generator.tail.bias)
    out = upscale_volume(Volume(array, np.eye(4), {}), generator, consistency=False)
    raw = torch.from_numpy(np.moveaxis(array, 2, 0))[:, None]
    bicubic = torch.nn.functional.interpolate(raw, scale_factor=4, mode="bicubic", align_corners=False)
    np.testing.assert_allclose(out.array, np.moveaxis(bicubic[:, 0].numpy(), 0, 2), atol=0.05)


def test_a_given_scaling_replaces_the_fitted_one_in_and_out() -> None:
    rng = np.random.default_rng(3)
    volume = Volume((rng.random((14, 12, 2)) * 900 + 100).astype(np.float32), np.eye(4), {})
    generator = tiny_generator(2)
    fitted = upscale_volume(volume, generator, consistency=False).array
    same = upscale_volume(volume, generator, consistency=False, scaling=fit_scaling(volume.array)).array
    np.testing.assert_array_equal(same, fitted)
    # The network's input is (x - low) / (high - low): shifting the input by a constant and the
    # scaling with it gives the same output, shifted back.
    shifted = Volume(volume.array + 500.0, volume.affine, {})
    moved = fit_scaling(volume.array)
    moved = IntensityScaling(moved.low + 500.0, moved.high + 500.0)
    out = upscale_volume(shifted, generator, consistency=False, scaling=moved).array
    np.testing.assert_allclose(out - 500.0, fitted, atol=1e-3)
    other = upscale_volume(volume, generator, consistency=False, scaling=IntensityScaling(0.0, 2000.0))
    assert np.abs(other.array - fitted).max() > 1.0  # the network is not indifferent to it
    # MONOCHROME1 (stored dark-on-bright): the scaling is given in stored values and turned round.
    inverted = Volume(volume.array, volume.affine, {"photometric": "MONOCHROME1"})
    default = upscale_volume(inverted, generator, consistency=False).array
    net = fit_scaling(-volume.array)  # what the network sees by default
    stored = IntensityScaling(-net.high, -net.low)
    np.testing.assert_array_equal(
        upscale_volume(inverted, generator, consistency=False, scaling=stored).array, default
    )


class _Bicubic(torch.nn.Module):
    """Plain bicubic upsampling: the same under every rotation and mirror image."""

    scale = 2

    def forward(self, lr: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.interpolate(lr, scale_factor=2, mode="bicubic", align_corners=False)


def test_monochrome1_goes_through_the_network_the_right_way_up() -> None:
    """Stored dark-on-bright (MONOCHROME1): the network sees the image inverted, the output keeps
    the stored values."""
    array = np.random.default_rng(0).random((16, 12, 2)).astype(np.float32) * 1000.0
    generator = tiny_generator(2)
    inverted = upscale_volume(Volume(array, np.eye(4), {"photometric": "MONOCHROME1"}), generator).array
    upright = upscale_volume(Volume(-array, np.eye(4), {"photometric": "MONOCHROME2"}), generator).array
    # Stored values are never negative, and neither is the output (see the magnitude test below).
    np.testing.assert_allclose(inverted, np.maximum(-upright, 0.0), rtol=1e-5, atol=1e-3)
    as_stored = upscale_volume(Volume(array, np.eye(4), {}), generator).array
    assert np.abs(inverted - as_stored).max() > 1.0  # the network is not indifferent to the inversion


def test_a_magnitude_image_gets_no_negative_output_and_loses_nothing_by_it(monkeypatch) -> None:
    """Undershoot below 0 is clipped for inputs without negative values, after the projection:
    the output stays consistent with the input wherever nothing was clipped, and is no further
    from the (non-negative) truth than before."""
    rng = np.random.default_rng(1)
    hr = np.zeros((32, 32, 2), dtype=np.float32)
    hr[8:24, 8:24] = rng.random((16, 16, 2)) * 900 + 100  # a bright block on a zero background
    lr = degrade(torch.from_numpy(np.moveaxis(hr, 2, 0))[:, None], 2)[:, 0].numpy()
    lr = np.moveaxis(np.maximum(lr, 0.0), 0, 2)  # a magnitude acquisition: no negative values
    generator = tiny_generator(2)
    clipped = upscale_volume(Volume(lr, np.eye(4), {}), generator).array
    monkeypatch.setattr(upscale_module, "is_magnitude", lambda array: False)
    signed = upscale_volume(Volume(lr, np.eye(4), {}), generator).array  # the same, without clipping
    assert signed.min() < -1.0 and clipped.min() == 0.0
    np.testing.assert_allclose(clipped, np.maximum(signed, 0.0), rtol=1e-5, atol=1e-2)
    assert np.linalg.norm(clipped - hr) <= np.linalg.norm(signed - hr)


def test_shallow_undershoot_in_the_input_still_makes_a_magnitude_image() -> None:
    """Resampled magnitude images hold a few shallow negative values; one voxel at -1 used to
    switch the clipping off for the whole volume. Signed images keep their negative output."""
    rng = np.random.default_rng(2)
    magnitude = rng.random((24, 24, 2)).astype(np.float32) * 900 + 100
    magnitude[0, 0, 0] = -1.0  # undershoot: 0.1% of the bright end
    magnitude[5, 5, 1] = -80.0  # 8% of the bright end
    assert is_magnitude(magnitude) and is_magnitude(np.abs(magnitude))
    assert not is_magnitude(magnitude - 500)  # a difference image: as deep below 0 as above
    assert not is_magnitude(np.where(magnitude > 0, magnitude, -120.0))  # 12%: deeper than undershoot
    assert not is_magnitude(-np.abs(magnitude))
    generator = tiny_generator(2)
    out = upscale_volume(Volume(magnitude, np.eye(4), {}), generator).array
    assert out.min() == 0.0
    signed = upscale_volume(Volume(magnitude - 500, np.eye(4), {}), generator).array
    assert signed.min() < -100


def test_the_bright_end_of_a_large_volume_is_not_taken_from_a_few_planes() -> None:
    """A stride through a large volume could fall on a few of its planes; random draws do not."""
    volume = np.ones((128, 128, 256), dtype=np.float32)
    volume[:, :, 1::2] = 100.0  # every other plane bright
    assert bright_end(volume) == 100.0
    small = np.arange(1000, dtype=np.float32)
    assert bright_end(small) == np.percentile(small, 99.5)  # exact below 2**20 values


def test_self_ensemble_averages_the_eight_rotations_and_mirror_images() -> None:
    generator = tiny_generator(2)
    lr = torch.rand(2, 1, 12, 17)  # not square: rotations swap the sides
    ensemble = upscale_batch(generator, lr, tile=0, self_ensemble=True)
    by_hand = []
    for k in range(4):
        for flip in (False, True):
            x = torch.rot90(lr, k, (2, 3))
            x = x.flip(3) if flip else x
            y = upscale_batch(generator, x, tile=0)
            y = y.flip(3) if flip else y
            by_hand.append(torch.rot90(y, -k, (2, 3)))
    assert ensemble.shape == (2, 1, 24, 34)
    torch.testing.assert_close(ensemble, torch.stack(by_hand).mean(0), rtol=1e-5, atol=1e-6)
    # the network is not symmetric, so the average differs from the plain output...
    assert (ensemble - upscale_batch(generator, lr, tile=0)).abs().max() > 1e-4
    # ...while for a symmetric upsampler every transform gives back the same image
    torch.testing.assert_close(
        upscale_batch(_Bicubic(), lr, tile=0, self_ensemble=True), upscale_batch(_Bicubic(), lr, tile=0)
    )


def test_self_ensemble_reaches_whole_volumes_and_tiles() -> None:
    array = np.random.default_rng(1).random((20, 14, 3)).astype(np.float32) * 100
    volume = Volume(array, np.eye(4), {})
    outputs = {}
    for name, generator in (("net", tiny_generator(2)), ("bicubic", _Bicubic())):
        for ensemble in (False, True):
            result = upscale_volume(volume, generator, tile=8, overlap=2, self_ensemble=ensemble)
            outputs[name, ensemble] = result.array
    assert all(a.shape == (40, 28, 3) for a in outputs.values())
    assert np.abs(outputs["net", True] - outputs["net", False]).max() > 1e-3
    np.testing.assert_allclose(outputs["bicubic", True], outputs["bicubic", False], rtol=1e-5, atol=1e-3)
