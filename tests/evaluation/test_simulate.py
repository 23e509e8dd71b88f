import nibabel as nib
import numpy as np
import pytest
import torch
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from fagan.data.io import Volume
from fagan.evaluation import bicubic_volume, score_volume, simulate_low_resolution


@pytest.mark.parametrize("axis", [0, 2])
@pytest.mark.parametrize("scale", [2, 4, 8])
def test_simulated_lr_matches_the_external_protocol(axis: int, scale: int) -> None:
    """Crop to a multiple, antialiased bicubic per slice, voxel size x scale, same FOV centre."""
    rng = np.random.default_rng(0)
    array = rng.random((35, 26, 17)).astype(np.float32)
    affine = np.diag([0.5, 0.7, 1.5, 1.0])
    pair = simulate_low_resolution(Volume(array, affine, {}), scale, axis=axis)
    keep = [n // scale * scale for n in array.shape]
    keep[axis] = array.shape[axis]
    assert pair.hr.array.shape == tuple(keep)
    lr_shape = [n // scale for n in keep]
    lr_shape[axis] = array.shape[axis]
    assert pair.lr.array.shape == tuple(lr_shape)
    slices = torch.from_numpy(np.moveaxis(pair.hr.array, axis, 0).copy())[:, None]
    expected = torch.nn.functional.interpolate(
        slices, scale_factor=1 / scale, mode="bicubic", antialias=True, align_corners=False
    )
    np.testing.assert_allclose(np.moveaxis(pair.lr.array, axis, 0), expected[:, 0].numpy(), atol=1e-6)
    zooms = np.array(nib.Nifti1Image(pair.lr.array, pair.lr.affine).header.get_zooms())
    expected_zooms = np.array([0.5, 0.7, 1.5])
    expected_zooms[[i for i in range(3) if i != axis]] *= scale
    np.testing.assert_allclose(zooms, expected_zooms)
    assert bicubic_volume(pair.lr, scale, axis).shape == pair.hr.array.shape


def test_scores_agree_with_scikit_image() -> None:
    rng = np.random.default_rng(1)
    hr = rng.random((24, 20, 3)) * 500
    sr = hr + rng.normal(0, 20, hr.shape)
    scores = score_volume(sr, hr)
    rng_ = hr.max() - hr.min()
    assert scores.psnr == pytest.approx(peak_signal_noise_ratio(hr, sr, data_range=rng_), abs=1e-6)
    ssims = [
        structural_similarity(
            hr[:, :, k],
            sr[:, :, k],
            data_range=rng_,
            gaussian_weights=True,
            sigma=1.5,
            use_sample_covariance=False,
        )
        for k in range(3)
    ]
    assert scores.ssim == pytest.approx(np.mean(ssims), abs=1e-4)
