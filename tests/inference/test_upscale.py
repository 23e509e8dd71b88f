import numpy as np
import pytest
import torch

from fagan.data.io import Volume
from fagan.inference import upscale_batch, upscale_volume

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


def test_overlap_must_be_smaller_than_tile() -> None:
    with pytest.raises(ValueError, match="overlap"):
        upscale_batch(tiny_generator(2), torch.rand(1, 1, 40, 40), tile=8, overlap=8)


@pytest.mark.parametrize("axis", [0, 1, 2])
def test_volume_shape_units_and_axis(axis: int) -> None:
    rng = np.random.default_rng(0)
    array = (rng.random((6, 8, 10)) * 800 + 200).astype(np.float32)
    volume = Volume(array, np.diag([1.0, 2.0, 3.0, 1.0]), {})
    generator = tiny_generator(2)
    out = upscale_volume(volume, generator, axis=axis, batch_size=3)
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


def test_intensities_come_back_in_input_units() -> None:
    """With its output convolution zeroed the generator is bicubic upsampling in [0, 1] units;
    mapped back, the volume must equal bicubic upsampling of the raw intensities."""
    rng = np.random.default_rng(1)
    array = (rng.random((12, 10, 3)) * 3000 - 500).astype(np.float32)
    generator = tiny_generator(4)
    torch.nn.init.zeros_(generator.tail.weight)
    torch.nn.init.zeros_(generator.tail.bias)
    out = upscale_volume(Volume(array, np.eye(4), {}), generator)
    raw = torch.from_numpy(np.moveaxis(array, 2, 0))[:, None]
    bicubic = torch.nn.functional.interpolate(raw, scale_factor=4, mode="bicubic", align_corners=False)
    np.testing.assert_allclose(out.array, np.moveaxis(bicubic[:, 0].numpy(), 0, 2), atol=0.05)
