import nibabel as nib
import numpy as np
import pytest

from fagan.inference.geometry import coarse_in_plane_axis, resampled_affine


def _centre(affine: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    return affine @ np.r_[(np.array(shape) - 1) / 2, 1]


def _corner(affine: np.ndarray, shape: tuple[int, ...], axes: tuple[int, int]) -> np.ndarray:
    """World position of the outer edge of voxel 0 along the in-plane axes."""
    index = np.zeros(4)
    index[list(axes)] = -0.5
    index[3] = 1
    return affine @ index


@pytest.mark.parametrize("axis,axes", [(2, (0, 1)), (0, (1, 2)), (1, (0, 2))])
@pytest.mark.parametrize("scale", [2, 4, 8])
def test_upscaled_affine_keeps_field_of_view(axis: int, axes: tuple[int, int], scale: int) -> None:
    rotation = nib.eulerangles.euler2mat(0.3, -0.2, 0.1)
    affine = np.eye(4)
    affine[:3, :3] = rotation @ np.diag([0.9, 1.2, 3.0])
    affine[:3, 3] = [-90, 12.5, 40]
    shape = (10, 12, 7)
    new_shape = tuple(n * scale if i in axes else n for i, n in enumerate(shape))
    new = resampled_affine(affine, scale, axis)
    img = nib.Nifti1Image(np.zeros(new_shape, np.float32), new)
    zooms = np.array(img.header.get_zooms())
    expected = np.array([0.9, 1.2, 3.0])
    expected[list(axes)] /= scale
    np.testing.assert_allclose(zooms, expected, rtol=1e-6)
    assert nib.aff2axcodes(new) == nib.aff2axcodes(affine)
    np.testing.assert_allclose(_centre(new, new_shape), _centre(affine, shape), atol=1e-9)
    np.testing.assert_allclose(_corner(new, new_shape, axes), _corner(affine, shape, axes), atol=1e-9)


def test_down_then_up_is_the_identity() -> None:
    affine = np.diag([1.0, 1.0, 2.0, 1.0])
    affine[:3, 3] = [3, 4, 5]
    np.testing.assert_allclose(resampled_affine(resampled_affine(affine, 1 / 4, 2), 4, 2), affine)


def test_coarse_in_plane_axis_finds_thick_voxels_in_the_planes_to_upscale() -> None:
    rotation = np.array([[0.0, -1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])  # voxel axes turned in space
    affine = np.eye(4)
    affine[:3, :3] = rotation @ np.diag([1.0, 3.0, 1.0])
    assert coarse_in_plane_axis(affine, (64, 20, 64), axis=2) == 1
    assert coarse_in_plane_axis(affine, (64, 20, 64), axis=1) is None  # the thick axis is the slice axis
    assert coarse_in_plane_axis(np.diag([1.0, 1.0, 4.0, 1.0]), (64, 64, 20), axis=2) is None
    assert coarse_in_plane_axis(np.diag([1.0, 1.2, 1.0, 1.0]), (64, 64, 20), axis=2) is None  # near isotropic
    assert coarse_in_plane_axis(np.diag([1.0, 3.0, 1.0, 1.0]), (64, 64, 1), axis=2) is None  # a 2D image
