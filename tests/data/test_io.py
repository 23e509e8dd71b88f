"""Reading and writing volumes: fagan.data.io."""

from __future__ import annotations

import os
import uuid

import h5py
import nibabel as nib
import numpy as np
import pytest
from PIL import Image

from fagan import FaganError
from fagan.data import io
from fagan.data.io import SUPPORTED_SUFFIXES, Volume, read_volume, write_nifti

from .dicom_helpers import base_dataset, write_multiframe, write_slice

RNG = np.random.default_rng(0)


def _shear_affine() -> np.ndarray:
    return np.array(
        [[-1.5, 0.1, 0.0, 90.0], [0.0, 1.25, -0.2, -126.5], [0.05, 0.0, 2.0, -72.0], [0, 0, 0, 1]]
    )


def _blob(shape: tuple[int, ...]) -> np.ndarray:
    return RNG.random(shape).astype(np.float32) * 100 + 1


# -- NIfTI --------------------------------------------------------------------------------------


@pytest.mark.parametrize("suffix", [".nii", ".nii.gz"])
def test_nifti_round_trip_keeps_array_and_affine(tmp_path, suffix):
    array, affine = _blob((5, 6, 7)), _shear_affine()
    path = tmp_path / f"vol{suffix}"
    write_nifti(path, array, affine)
    volume = read_volume(path)
    assert isinstance(volume, Volume)
    assert volume.array.dtype == np.float32 and volume.array.shape == (5, 6, 7)
    np.testing.assert_array_equal(volume.array, array)
    np.testing.assert_allclose(volume.affine, affine, atol=1e-5)
    assert volume.affine.dtype == np.float64
    assert nib.load(path).get_data_dtype() == np.float32
    assert volume.meta["format"] == "nifti"
    assert sorted(p.name for p in tmp_path.iterdir()) == [path.name]  # no temp file left


@pytest.mark.parametrize("dtype", ["u1", "<i2", ">i2", ">f4", "<f8", "<i4"])
def test_nifti_reads_any_dtype_and_endianness(tmp_path, dtype):
    data = np.arange(60).reshape(3, 4, 5).astype(dtype)
    header = nib.Nifti1Header(endianness=">" if dtype.startswith(">") else "<")
    header.set_data_dtype(np.dtype(dtype))
    path = tmp_path / "v.nii"
    nib.save(nib.Nifti1Image(data, np.eye(4), header), path)
    on_disk = nib.load(path).get_data_dtype()
    assert on_disk == np.dtype(dtype) or on_disk == np.dtype(dtype).newbyteorder("=")
    assert (on_disk.byteorder == ">") == dtype.startswith(">")
    volume = read_volume(path)
    assert volume.array.dtype == np.float32
    np.testing.assert_array_equal(volume.array, data.astype(np.float32))


def test_nifti_scaling_is_applied(tmp_path):
    data = np.linspace(-1e5, 4e5, 120).reshape(4, 5, 6)  # beyond int16: needs slope/intercept
    image = nib.Nifti1Image(data, np.eye(4))
    image.set_data_dtype(np.int16)  # nibabel stores int16 with slope/intercept
    path = tmp_path / "scaled.nii.gz"
    nib.save(image, path)
    slope = nib.load(path).dataobj.slope
    assert slope > 1.0
    np.testing.assert_allclose(read_volume(path).array, data, atol=slope)


@pytest.mark.parametrize(
    ("unit", "mm"), [("micron", 0.001), ("meter", 1000.0), ("mm", 1.0), ("unknown", 1.0)]
)
def test_nifti_spatial_units_become_millimetres(tmp_path, unit, mm):
    affine = np.diag([900.0, 1300.0, 3000.0, 1.0])
    affine[:3, 3] = [10.0, -20.0, 30.0]
    img = nib.Nifti1Image(_blob((3, 4, 5)), affine)
    img.header.set_xyzt_units(unit, "sec")
    nib.save(img, tmp_path / "v.nii")
    expected = affine.copy()
    expected[:3] *= mm
    np.testing.assert_allclose(read_volume(tmp_path / "v.nii").affine, expected)


def test_complex_nifti_is_refused(tmp_path):
    data = (_blob((3, 4, 5)) + 1j * _blob((3, 4, 5))).astype(np.complex64)
    nib.save(nib.Nifti1Image(data, np.eye(4)), tmp_path / "c.nii")
    with pytest.raises(FaganError, match="complex data"):
        read_volume(tmp_path / "c.nii")


def test_colour_nifti_is_refused_as_colour(tmp_path):
    rgb = np.zeros((3, 4, 5), dtype=[("R", "u1"), ("G", "u1"), ("B", "u1")])
    nib.save(nib.Nifti1Image(rgb, np.eye(4)), tmp_path / "rgb.nii")
    with pytest.raises(FaganError, match="a colour NIfTI image .*; save it as grayscale"):
        read_volume(tmp_path / "rgb.nii")


@pytest.mark.parametrize("intent", ["label", "neuroname"])
def test_a_label_map_is_refused(tmp_path, intent):
    img = nib.Nifti1Image(RNG.integers(0, 3, (3, 4, 5)).astype(np.int16), np.eye(4))
    img.header.set_intent(intent)
    nib.save(img, tmp_path / "labels.nii")
    with pytest.raises(FaganError, match=f"a label map \\(NIfTI intent '{intent}'\\).*nearest-neighbour"):
        read_volume(tmp_path / "labels.nii")


@pytest.mark.parametrize("code", [2006, 2007, 1007])
def test_warp_fields_and_coefficients_are_refused(tmp_path, code):
    img = nib.Nifti1Image(RNG.random((4, 5, 6, 3)).astype(np.float32), np.diag([10.0, 10.0, 10.0, 1.0]))
    img.header["intent_code"] = code  # e.g. FNIRT's displacement field, its spline coefficients
    nib.save(img, tmp_path / "warp.nii.gz")
    with pytest.raises(FaganError, match=f"NIfTI intent {code} .*not an image's intensities"):
        read_volume(tmp_path / "warp.nii.gz", frame=io.ALL_FRAMES)


def test_nifti_4d_needs_a_frame(tmp_path):
    data = np.stack([_blob((3, 4, 5)) + 10 * t for t in range(3)], axis=-1)
    path = tmp_path / "bold.nii.gz"
    nib.save(nib.Nifti1Image(data, np.eye(4)), path)
    with pytest.raises(FaganError, match="--frame 0..2"):
        read_volume(path)
    np.testing.assert_allclose(read_volume(path, frame=1).array, data[..., 1])
    with pytest.raises(FaganError, match="frame 3 does not exist"):
        read_volume(path, frame=3)


def test_nifti_4d_read_whole_keeps_the_time_between_volumes(tmp_path):
    data = np.stack([_blob((3, 4, 5)) * (t + 1) for t in range(3)], axis=-1)
    img = nib.Nifti1Image(data, np.diag([2.0, 2.0, 3.0, 1.0]))
    img.header.set_zooms((2.0, 2.0, 3.0, 1500.0))
    img.header.set_xyzt_units("mm", "msec")
    nib.save(img, tmp_path / "bold.nii.gz")
    volume = read_volume(tmp_path / "bold.nii.gz", frame=io.ALL_FRAMES)
    np.testing.assert_allclose(volume.array, data)
    # as the header says it, unit and all (an unknown unit stays unknown)
    assert (volume.meta["frame_interval"], volume.meta["time_unit"]) == (1500.0, "msec")
    assert volume.meta["shape"] == (3, 4, 5, 3)
    assert io.claimed_shape(tmp_path / "bold.nii.gz", all_frames=True) == (3, 4, 5, 3)
    assert io.claimed_shape(tmp_path / "bold.nii.gz") == (3, 4, 5)
    three_d = tmp_path / "t1.nii.gz"
    nib.save(nib.Nifti1Image(data[..., 0], np.eye(4)), three_d)
    assert read_volume(three_d, frame=io.ALL_FRAMES).array.shape == (3, 4, 5)  # 3D stays 3D
    assert io.claimed_shape(three_d, all_frames=True) == (3, 4, 5)
    data[..., 1] = 7.0  # a constant volume (a dummy scan) is read: upscaling passes it through
    data[0, 0, 0, 2] = np.nan
    nib.save(nib.Nifti1Image(data, np.eye(4)), tmp_path / "odd.nii.gz")
    with pytest.raises(FaganError, match=r"1 voxels are NaN or infinite \(in volume 2\)"):
        read_volume(tmp_path / "odd.nii.gz", frame=io.ALL_FRAMES)
    data[0, 0, 0, 2] = 1.0
    nib.save(nib.Nifti1Image(data, np.eye(4)), tmp_path / "odd.nii.gz")
    assert read_volume(tmp_path / "odd.nii.gz", frame=io.ALL_FRAMES).array[..., 1].max() == 7.0
    nib.save(nib.Nifti1Image(np.stack([np.full((3, 4, 5), t, np.float32) for t in range(3)], -1), np.eye(4)),
             tmp_path / "dead.nii.gz")  # fmt: skip
    with pytest.raises(FaganError, match="every one of its 3 volumes is constant"):
        read_volume(tmp_path / "dead.nii.gz", frame=io.ALL_FRAMES)
    with pytest.raises(FaganError, match="non-negative integer or 'all'"):
        read_volume(tmp_path / "bold.nii.gz", frame="every")


def test_an_afni_bucket_is_read_as_its_sub_bricks(tmp_path):
    """AFNI writes a bucket as (X, Y, Z, 1, N): no time axis, N sub-bricks along the fifth."""
    data = RNG.random((6, 7, 5, 1, 3)).astype(np.float32)
    nib.save(nib.Nifti1Image(data, np.eye(4)), tmp_path / "stats+tlrc.nii.gz")
    assert io.claimed_shape(tmp_path / "stats+tlrc.nii.gz", all_frames=True) == (6, 7, 5, 3)
    np.testing.assert_array_equal(read_volume(tmp_path / "stats+tlrc.nii.gz", frame=io.ALL_FRAMES).array,
                                  data[:, :, :, 0])  # fmt: skip
    np.testing.assert_array_equal(read_volume(tmp_path / "stats+tlrc.nii.gz", frame=2).array, data[..., 0, 2])
    five = RNG.random((6, 7, 5, 2, 3)).astype(np.float32)
    nib.save(nib.Nifti1Image(five, np.eye(4)), tmp_path / "5d.nii.gz")
    with pytest.raises(FaganError, match=r"a 5D NIfTI image \(6, 7, 5, 2, 3\) is not supported"):
        read_volume(tmp_path / "5d.nii.gz", frame=io.ALL_FRAMES)


def test_write_nifti_4d_with_the_time_between_volumes(tmp_path):
    data = RNG.random((3, 4, 5, 2)).astype(np.float32)
    io.write_nifti(tmp_path / "o.nii", data, np.eye(4), frame_interval=2500.0, time_unit="msec")
    img = nib.load(tmp_path / "o.nii")
    np.testing.assert_array_equal(img.get_fdata(), data)
    assert img.header.get_zooms() == (1.0, 1.0, 1.0, 2500.0) and img.header.get_xyzt_units() == ("mm", "msec")
    for interval in (None, -2.0, float("nan")):  # not known (or nonsense): 0, unit unknown, not made up
        io.write_nifti(tmp_path / "o.nii", data, np.eye(4), overwrite=True, frame_interval=interval)
        header = nib.load(tmp_path / "o.nii").header
        assert header.get_xyzt_units() == ("mm", "unknown") and header.get_zooms()[3] == 0.0


def test_nifti_2d_becomes_one_slice(tmp_path):
    path = tmp_path / "slice.nii"
    nib.save(nib.Nifti1Image(_blob((6, 5)), np.eye(4)), path)
    assert read_volume(path).array.shape == (6, 5, 1)


def test_write_nifti_refuses_an_unknown_space_code(tmp_path):
    with pytest.raises(FaganError, match="xform_code"):
        write_nifti(tmp_path / "out.nii", _blob((3, 3, 3)), np.eye(4), xform_code=5)
    assert not (tmp_path / "out.nii").exists()


def test_a_nifti_in_no_space_reads_with_code_0(tmp_path):
    img = nib.Nifti1Image(_blob((4, 3, 2)), np.diag([2.0, 3.0, 4.0, 1.0]))
    img.set_sform(None, 0)
    img.set_qform(None, 0)
    nib.save(img, tmp_path / "none.nii")
    assert read_volume(tmp_path / "none.nii").meta["xform_code"] == 0


def test_write_nifti_refuses_to_overwrite(tmp_path):
    path = tmp_path / "out.nii.gz"
    write_nifti(path, _blob((3, 3, 3)), np.eye(4))
    with pytest.raises(FileExistsError, match="overwrite"):
        write_nifti(path, _blob((3, 3, 3)), np.eye(4))
    new = _blob((3, 3, 3))
    write_nifti(path, new, np.eye(4), overwrite=True)
    np.testing.assert_array_equal(read_volume(path).array, new)
    with pytest.raises(FaganError, match=r"\.nii"):
        write_nifti(tmp_path / "out.img", new, np.eye(4))


def test_write_nifti_removes_temp_file_on_failure(tmp_path, monkeypatch):
    path = tmp_path / "out.nii"
    write_nifti(path, np.ones((2, 2, 2)) * np.arange(2), np.eye(4))
    before = path.read_bytes()

    def boom(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(nib, "save", boom)
    with pytest.raises(OSError, match="disk full"):
        write_nifti(path, _blob((2, 2, 2)), np.eye(4), overwrite=True)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["out.nii"]


# -- DICOM --------------------------------------------------------------------------------------

ROW_COS, COL_COS = np.array([0.0, 1.0, 0.0]), np.array([0.0, 0.0, -1.0])  # a sagittal series
NORMAL = np.cross(ROW_COS, COL_COS)
SPACING = (0.5, 0.75)  # (between rows, between columns)
ORIGIN, STEP = np.array([10.0, -20.0, 30.0]), 2.5


def _write_series(folder, pixels, order, *, slope=2.0, intercept=-100.0, skip=(), **extra):
    """Slice k at ORIGIN + k*STEP*NORMAL; file names and instance numbers follow ``order``."""
    folder.mkdir(parents=True, exist_ok=True)
    for k, image in enumerate(pixels):
        if k in skip:
            continue
        write_slice(
            folder / f"{order[k]:03d}_{uuid.uuid4().hex[:6]}.dcm",
            image,
            position=tuple(ORIGIN + k * STEP * NORMAL),
            orientation=(*ROW_COS, *COL_COS),
            spacing=SPACING,
            thickness=STEP,
            slope=slope,
            intercept=intercept,
            instance=int(order[k]) + 1,
            **extra,
        )


def _series_pixels(n=5, rows=6, columns=4):
    return [RNG.integers(0, 1000, (rows, columns)).astype(np.uint16) for _ in range(n)]


def test_dicom_series_sorted_by_position_not_file_name(tmp_path):
    pixels = _series_pixels()
    _write_series(tmp_path / "a", pixels, order=[3, 0, 4, 1, 2])
    _write_series(tmp_path / "b", pixels, order=[1, 4, 2, 0, 3])
    volume = read_volume(tmp_path / "a")
    expected = np.stack([p.T for p in pixels], axis=-1).astype(np.float32) * 2 - 100
    assert volume.array.shape == (4, 6, 5)  # (columns, rows, slices)
    np.testing.assert_array_equal(volume.array, expected)
    np.testing.assert_array_equal(read_volume(tmp_path / "b").array, expected)
    assert volume.meta["format"] == "dicom-series"
    # Each voxel maps to the DICOM-defined patient position, converted from LPS to RAS.
    for i, j, k in [(0, 0, 0), (3, 5, 4), (1, 2, 3)]:
        lps = ORIGIN + k * STEP * NORMAL + i * SPACING[1] * ROW_COS + j * SPACING[0] * COL_COS
        np.testing.assert_allclose(volume.affine @ [i, j, k, 1], [-lps[0], -lps[1], lps[2], 1], atol=1e-9)


def test_dicom_single_file_matches_its_series_slice(tmp_path):
    pixels = _series_pixels()
    _write_series(tmp_path / "s", pixels, order=range(5))
    series = read_volume(tmp_path / "s")
    one = read_volume(sorted((tmp_path / "s").iterdir())[2])
    assert one.array.shape == (4, 6, 1)
    np.testing.assert_array_equal(one.array[..., 0], series.array[..., 2])
    np.testing.assert_allclose(one.affine[:, [0, 1]], series.affine[:, [0, 1]])
    np.testing.assert_allclose(one.affine @ [0, 0, 0, 1], series.affine @ [0, 0, 2, 1])
    np.testing.assert_allclose(one.affine[:, 2], series.affine[:, 2])  # thickness == step


def test_dicom_series_with_a_missing_slice_is_refused(tmp_path):
    _write_series(tmp_path / "s", _series_pixels(), order=range(5), skip=(2,))
    with pytest.raises(FaganError, match="unevenly spaced"):
        read_volume(tmp_path / "s")


def _write_slices(folder, positions, spacings):
    folder.mkdir(parents=True, exist_ok=True)
    for k, (position, spacing) in enumerate(zip(positions, spacings, strict=True)):
        write_slice(
            folder / f"{k:03d}.dcm",
            _series_pixels(1)[0],
            position=tuple(position),
            orientation=(*ROW_COS, *COL_COS),
            spacing=spacing,
            thickness=STEP,
            instance=k + 1,
        )


def test_dicom_series_whose_slices_differ_in_pixel_spacing_is_refused(tmp_path):
    positions = [ORIGIN + k * STEP * NORMAL for k in range(4)]
    _write_slices(tmp_path / "s", positions, [SPACING, SPACING, (1.0, 1.5), SPACING])
    with pytest.raises(FaganError, match=r"different pixel spacings \(1x1.5 mm in 002.dcm, 0.5x0.75"):
        read_volume(tmp_path / "s")
    # Spacings written to fewer digits in some files (0.4688 for 0.46875) are the same spacing.
    _write_slices(tmp_path / "t", positions, [(0.46875, 0.75), (0.4688, 0.75)] * 2)
    assert read_volume(tmp_path / "t").array.shape == (4, 6, 4)


@pytest.mark.parametrize(
    ("n", "moved", "by"), [(5, 3, 10.0), (5, 0, 4.0), (5, 4, 1.0), (4, 3, 1.0), (4, 0, 1.0)]
)
def test_dicom_series_with_a_slice_off_the_line_of_the_others_is_refused(tmp_path, n, moved, by):
    """The file blamed is the one moved, an end slice included, with its distance from the line
    through the others (a slice next to a moved end one lies further from the line through all)."""
    positions = [ORIGIN + k * STEP * NORMAL for k in range(n)]
    positions[moved] = positions[moved] + by * ROW_COS  # within its plane
    _write_slices(tmp_path / "s", positions, [SPACING] * n)
    with pytest.raises(FaganError, match=f"{moved:03d}.dcm lies {by:g} mm off the line"):
        read_volume(tmp_path / "s")


def test_three_slices_off_one_line_are_refused_without_blaming_one(tmp_path):
    positions = [ORIGIN + k * STEP * NORMAL for k in range(3)]
    positions[2] = positions[2] + 2 * ROW_COS
    _write_slices(tmp_path / "s", positions, [SPACING] * 3)
    with pytest.raises(FaganError, match="of 000.dcm, 001.dcm, 002.dcm do not lie on one line .*1 mm off"):
        read_volume(tmp_path / "s")


def test_dicom_series_with_jittered_positions_is_read(tmp_path):
    """Gaps varying by up to 8% and positions rounded to 0.1 mm, as a scanner may write them: read
    (the line check measures within the plane; along the normal the gap check allows 10%)."""
    rng = np.random.default_rng(5)
    positions = [
        np.round(ORIGIN + (k * STEP + rng.uniform(-0.1, 0.1)) * NORMAL + rng.uniform(-0.05, 0.05, 3), 1)
        for k in range(9)
    ]
    _write_slices(tmp_path / "s", positions, [SPACING] * 9)
    assert read_volume(tmp_path / "s").array.shape == (4, 6, 9)


def test_dicom_series_tilted_along_a_straight_line_is_read_with_its_tilt(tmp_path):
    """A gantry-tilted stack: each slice shifted in its plane by the same step. The slice axis
    of the affine follows the line through the positions, so every voxel is where DICOM puts it."""
    positions = [ORIGIN + k * (STEP * NORMAL + 0.4 * COL_COS) for k in range(5)]
    _write_slices(tmp_path / "s", positions, [SPACING] * 5)
    volume = read_volume(tmp_path / "s")
    for i, j, k in [(0, 0, 0), (3, 5, 4)]:
        lps = positions[k] + i * SPACING[1] * ROW_COS + j * SPACING[0] * COL_COS
        np.testing.assert_allclose(volume.affine @ [i, j, k, 1], [-lps[0], -lps[1], lps[2], 1], atol=1e-9)


def test_dicom_series_with_one_image_lacking_its_position_is_refused(tmp_path):
    _write_series(tmp_path / "s", _series_pixels(), order=range(5), skip=(3,))
    write_slice(
        tmp_path / "s" / "no_position.dcm",
        _series_pixels(1)[0],
        position=None,
        orientation=(*ROW_COS, *COL_COS),
        spacing=SPACING,
        thickness=STEP,
        instance=9,
    )
    with pytest.raises(FaganError, match="1 of 5 images have no ImagePositionPatient"):
        read_volume(tmp_path / "s")


def test_dicom_folder_mixing_series_is_refused(tmp_path):
    _write_series(tmp_path / "s", _series_pixels(2), order=range(2), series_uid="1.2.3")
    _write_series(tmp_path / "s", _series_pixels(2), order=[5, 6], series_uid="1.2.4")
    with pytest.raises(FaganError, match="mixes 2 DICOM series"):
        read_volume(tmp_path / "s")


def test_dicom_series_with_time_points_needs_a_frame(tmp_path):
    first, second = _series_pixels(3), _series_pixels(3)
    _write_series(tmp_path / "s", first, order=[0, 1, 2], TemporalPositionIdentifier=1)
    _write_series(tmp_path / "s", second, order=[3, 4, 5], TemporalPositionIdentifier=2)
    with pytest.raises(FaganError, match="--frame 0..1"):
        read_volume(tmp_path / "s")
    expected = np.stack([p.T for p in second], axis=-1) * 2.0 - 100
    np.testing.assert_array_equal(read_volume(tmp_path / "s", frame=1).array, expected)


def test_dicom_series_with_time_points_read_whole(tmp_path):
    first, second = _series_pixels(3), _series_pixels(3)
    # a dynamic series: TR 4.2 ms, volumes 12.5 s apart (its acquisition times say so, not its TR)
    common = {"RepetitionTime": 4.2, "EchoTime": 2.0}
    _write_series(tmp_path / "s", first, order=[0, 1, 2], TemporalPositionIdentifier=1,
                  AcquisitionTime="101500.000", **common)  # fmt: skip
    _write_series(tmp_path / "s", second, order=[3, 4, 5], TemporalPositionIdentifier=2,
                  AcquisitionTime="101512.500", **common)  # fmt: skip
    volume = read_volume(tmp_path / "s", frame=io.ALL_FRAMES)
    assert volume.array.shape == (*first[0].T.shape, 3, 2)
    for t, pixels in enumerate((first, second)):
        np.testing.assert_array_equal(volume.array[..., t], np.stack([p.T for p in pixels], -1) * 2.0 - 100)
    np.testing.assert_array_equal(volume.affine, read_volume(tmp_path / "s", frame=0).affine)
    assert volume.meta["n_frames"] == 2 and volume.meta["frame_interval"] == 12.5
    assert volume.meta["time_unit"] == "sec"


def test_dicom_echoes_or_missing_times_give_no_time_between_volumes(tmp_path):
    pixels = _series_pixels(2)
    for echo in (1, 2):  # a multi-echo series: its fourth axis is not time
        _write_series(tmp_path / "echoes", pixels, order=[2 * echo, 2 * echo + 1], EchoTime=10.0 * echo,
                      AcquisitionTime=f"1015{echo:02d}")  # fmt: skip
        _write_series(tmp_path / "untimed", pixels, order=[2 * echo, 2 * echo + 1],
                      TemporalPositionIdentifier=echo)  # fmt: skip
    uneven = [0, 1, 2]  # volumes 10 s and then 20 s apart: no one interval
    for t, clock in enumerate(["101500", "101510", "101530"]):
        _write_series(tmp_path / "uneven", pixels, order=[2 * t + 10, 2 * t + 11], AcquisitionTime=clock,
                      TemporalPositionIdentifier=uneven[t])  # fmt: skip
    for folder in ("echoes", "untimed", "uneven"):
        volume = read_volume(tmp_path / folder, frame=io.ALL_FRAMES)
        assert volume.array.shape[3] >= 2 and volume.meta["frame_interval"] is None
        assert volume.meta["time_unit"] == "unknown"


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("101512.5", 36912.5), ("101512", 36912.0), ("1015", 36900.0), ("20240101101512.25+0100", 36912.25),
     ("202401011015", None), ("10:15", None), ("", None), (None, None)],
)  # fmt: skip
def test_dicom_times_are_read_as_seconds_into_the_day(text, seconds):
    assert io._seconds(text) == seconds


def test_dicom_multiframe_sorted_by_frame_position(tmp_path):
    frames = RNG.integers(0, 500, (4, 5, 3)).astype(np.uint16)
    positions = [(0.0, 0.0, 2.0 * (3 - f)) for f in range(4)]  # stored top to bottom
    write_multiframe(tmp_path / "mf.dcm", frames, positions, spacing=(0.5, 0.25), slope=0.5, intercept=1)
    volume = read_volume(tmp_path / "mf.dcm")
    expected = np.stack([frames[3 - k].T for k in range(4)], axis=-1) * 0.5 + 1
    np.testing.assert_array_equal(volume.array, expected)
    np.testing.assert_allclose(volume.affine, np.diag([-0.25, -0.5, 2.0, 1.0]))


def test_dicom_rgb_is_refused(tmp_path):
    ds = base_dataset(4, 4, "1.2.3")
    ds.SamplesPerPixel, ds.PhotometricInterpretation, ds.PlanarConfiguration = 3, "RGB", 0
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = 8, 8, 7
    ds.PixelData = bytes(range(48))
    ds.save_as(tmp_path / "rgb.dcm", enforce_file_format=True)
    with pytest.raises(FaganError, match="colour"):
        read_volume(tmp_path / "rgb.dcm")


def test_dicom_claiming_huge_dimensions_is_refused(tmp_path):
    ds = base_dataset(65535, 65535, "1.2.3")
    ds.NumberOfFrames = 1000
    ds.PixelData = b"\0\0" * 8
    ds.save_as(tmp_path / "huge.dcm", enforce_file_format=True)
    with pytest.raises(FaganError, match="voxels"):
        read_volume(tmp_path / "huge.dcm")


def test_truncated_dicom_is_refused(tmp_path):
    pixels = RNG.integers(1, 1000, (32, 32)).astype(np.uint16)
    write_slice(tmp_path / "full.dcm", pixels, position=(0, 0, 0))
    data = (tmp_path / "full.dcm").read_bytes()
    (tmp_path / "cut.dcm").write_bytes(data[: len(data) - 1000])
    with pytest.raises(FaganError, match="truncated"):
        read_volume(tmp_path / "cut.dcm")


def test_non_dicom_with_dcm_suffix_is_refused(tmp_path):
    (tmp_path / "fake.dcm").write_bytes(b"hello, not a DICOM file" * 10)
    with pytest.raises(FaganError, match="not a DICOM file"):
        read_volume(tmp_path / "fake.dcm")


def test_dicom_without_suffix_is_found_by_magic(tmp_path):
    write_slice(tmp_path / "IM0001", RNG.integers(1, 9, (4, 4)).astype(np.uint16), position=(0, 0, 0))
    assert read_volume(tmp_path / "IM0001").meta["format"] == "dicom"


# -- fastMRI HDF5 -------------------------------------------------------------------------------

ISMRMRD = """<?xml version="1.0"?><ismrmrdHeader xmlns="http://www.ismrm.org/ISMRMRD">
<encoding><reconSpace><matrixSize><x>6</x><y>8</y><z>1</z></matrixSize>
<fieldOfView_mm><x>3.0</x><y>4.0</y><z>3.5</z></fieldOfView_mm></reconSpace></encoding></ismrmrdHeader>"""


def _write_fastmri(path, **datasets):
    with h5py.File(path, "w") as f:
        for name, value in datasets.items():
            f.create_dataset(name, data=value)
        f.attrs["acquisition"] = "CORPD_FBK"
        f.attrs["max"] = 1.5


def test_fastmri_reconstruction_is_read(tmp_path):
    recon = _blob((3, 8, 6))  # (slices, rows, columns)
    _write_fastmri(tmp_path / "file1.h5", reconstruction_esc=recon, ismrmrd_header=np.bytes_(ISMRMRD))
    volume = read_volume(tmp_path / "file1.h5")
    assert volume.array.shape == (6, 8, 3)
    np.testing.assert_array_equal(volume.array, recon.transpose(2, 1, 0))
    np.testing.assert_allclose(volume.affine, np.diag([0.5, 0.5, 3.5, 1.0]))
    assert volume.meta["dataset"] == "reconstruction_esc"
    assert volume.meta["attrs"]["acquisition"] == "CORPD_FBK"


def test_fastmri_prefers_rss(tmp_path):
    _write_fastmri(
        tmp_path / "f.h5", reconstruction_esc=_blob((2, 4, 4)), reconstruction_rss=_blob((2, 4, 4))
    )
    assert read_volume(tmp_path / "f.h5").meta["dataset"] == "reconstruction_rss"


def test_fastmri_without_images_is_refused(tmp_path):
    _write_fastmri(tmp_path / "k.h5", kspace=np.ones((2, 4, 4), np.complex64))
    with pytest.raises(FaganError, match="reconstruction_rss or reconstruction_esc"):
        read_volume(tmp_path / "k.h5")


def test_hdf5_claiming_huge_dimensions_is_refused(tmp_path):
    with h5py.File(tmp_path / "big.h5", "w") as f:
        f.create_dataset("reconstruction_rss", shape=(2000, 2000, 2000), dtype="f4")  # never written
    with pytest.raises(FaganError, match="voxels"):
        read_volume(tmp_path / "big.h5")


# -- 2D images ----------------------------------------------------------------------------------


def test_16bit_png_is_one_slice(tmp_path):
    image = (np.arange(12, dtype=np.uint16).reshape(3, 4) * 5000) + 7
    Image.fromarray(image).save(tmp_path / "s.png")
    volume = read_volume(tmp_path / "s.png")
    assert volume.array.shape == (3, 4, 1)
    np.testing.assert_array_equal(volume.array[..., 0], image)
    np.testing.assert_array_equal(volume.affine, np.eye(4))


def test_npy_is_one_slice(tmp_path):
    image = _blob((5, 7)).astype(np.float64)
    np.save(tmp_path / "s.npy", image)
    volume = read_volume(tmp_path / "s.npy")
    assert volume.array.shape == (5, 7, 1) and volume.array.dtype == np.float32
    np.testing.assert_allclose(volume.array[..., 0], image, rtol=1e-6)


# -- bad input ----------------------------------------------------------------------------------


def _truncated_nii(tmp_path):
    write_nifti(tmp_path / "full.nii", _blob((8, 8, 8)), np.eye(4))
    data = (tmp_path / "full.nii").read_bytes()
    path = tmp_path / "cut.nii"
    path.write_bytes(data[:-100])
    return path


def _truncated_nii_gz(tmp_path):
    write_nifti(tmp_path / "full.nii.gz", _blob((16, 16, 16)), np.eye(4))
    data = (tmp_path / "full.nii.gz").read_bytes()
    path = tmp_path / "cut.nii.gz"
    path.write_bytes(data[: len(data) // 2])
    return path


def _garbage_nii(tmp_path):
    path = tmp_path / "garbage.nii"
    path.write_bytes(os.urandom(400))
    return path


def _huge_nii(tmp_path):
    header = nib.Nifti1Header()
    header.set_data_dtype(np.float32)
    header.set_data_shape((2048, 2048, 2048))
    path = tmp_path / "huge.nii"
    path.write_bytes(header.binaryblock + b"\0" * 4 + b"\0" * 64)
    return path


def _huge_npy(tmp_path):
    path = tmp_path / "huge.npy"
    with open(path, "wb") as f:
        np.lib.format.write_array_header_1_0(
            f, {"descr": "<f4", "fortran_order": False, "shape": (40000, 40000)}
        )
    return path


def _truncated_npy(tmp_path):
    np.save(tmp_path / "full.npy", _blob((20, 20)))
    data = (tmp_path / "full.npy").read_bytes()
    path = tmp_path / "cut.npy"
    path.write_bytes(data[:-50])
    return path


def _truncated_h5(tmp_path):
    _write_fastmri(tmp_path / "full.h5", reconstruction_rss=_blob((2, 16, 16)))
    data = (tmp_path / "full.h5").read_bytes()
    path = tmp_path / "cut.h5"
    path.write_bytes(data[:1000])
    return path


def _nan_nii(tmp_path):
    data = _blob((4, 4, 4))
    data[1, 2, 3] = np.nan
    path = tmp_path / "nan.nii"
    write_nifti(path, data, np.eye(4))
    return path


def _inf_npy(tmp_path):
    data = _blob((4, 4))
    data[0, 0] = np.inf
    path = tmp_path / "inf.npy"
    np.save(path, data)
    return path


def _constant_nii(tmp_path):
    path = tmp_path / "constant.nii.gz"
    write_nifti(path, np.full((4, 4, 4), 7.0), np.eye(4))
    return path


def _constant_png(tmp_path):
    path = tmp_path / "zeros.png"
    Image.fromarray(np.zeros((4, 4), np.uint8)).save(path)
    return path


def _rgb_png(tmp_path):
    path = tmp_path / "rgb.png"
    Image.fromarray(RNG.integers(0, 255, (4, 4, 3)).astype(np.uint8)).save(path)
    return path


def _rgb_npy(tmp_path):
    path = tmp_path / "rgb.npy"
    np.save(path, _blob((4, 4, 3)))
    return path


def _volume_npy(tmp_path):
    path = tmp_path / "volume.npy"
    np.save(path, _blob((4, 4, 5)))
    return path


def _unknown(tmp_path):
    path = tmp_path / "notes.txt"
    path.write_text("not an image")
    return path


def _empty_folder(tmp_path):
    path = tmp_path / "empty"
    path.mkdir()
    return path


BAD_INPUTS = {
    "truncated .nii": (_truncated_nii, "truncated"),
    "truncated .nii.gz": (_truncated_nii_gz, "truncated or corrupt"),
    "garbage .nii": (_garbage_nii, "cannot read this NIfTI"),
    "huge NIfTI header": (_huge_nii, "more than the 1073741824"),
    "huge .npy header": (_huge_npy, "voxels"),
    "truncated .npy": (_truncated_npy, "truncated or corrupt"),
    "truncated .h5": (_truncated_h5, "truncated or corrupt"),
    "NaN": (_nan_nii, "NaN or infinite"),
    "Inf": (_inf_npy, "NaN or infinite"),
    "constant NIfTI": (_constant_nii, "constant"),
    "constant PNG": (_constant_png, "constant"),
    "RGB PNG": (_rgb_png, "grayscale"),
    "RGB .npy": (_rgb_npy, "RGB"),
    "3D .npy": (_volume_npy, "2D image"),
    "unknown format": (_unknown, "unknown file format"),
    "empty folder": (_empty_folder, "no DICOM files"),
}


@pytest.mark.parametrize("case", list(BAD_INPUTS))
def test_bad_input_raises_one_line_fagan_error(tmp_path, case):
    make, message = BAD_INPUTS[case]
    with pytest.raises(FaganError, match=message) as info:
        read_volume(make(tmp_path))
    assert isinstance(info.value, ValueError)
    assert "\n" not in str(info.value)


def test_missing_file_and_bad_frame(tmp_path):
    with pytest.raises(FileNotFoundError):
        read_volume(tmp_path / "nope.nii")
    path = tmp_path / "v.nii"
    write_nifti(path, _blob((3, 3, 3)), np.eye(4))
    with pytest.raises(FaganError, match="frame"):
        read_volume(path, frame=-1)
    with pytest.raises(FaganError, match="frame 1 does not exist"):
        read_volume(path, frame=1)
    assert read_volume(path, frame=0).array.shape == (3, 3, 3)


def test_supported_suffixes_and_size_limit():
    assert {".nii", ".nii.gz", ".dcm", ".h5", ".npy", ".png"} <= set(SUPPORTED_SUFFIXES)
    assert io.MAX_VOXELS == 2**30


@pytest.mark.parametrize("photometric", ["MONOCHROME1", "MONOCHROME2"])
def test_dicom_photometric_interpretation_reaches_the_upscaler(tmp_path, photometric):
    """``fagan.inference.upscale_volume`` turns a MONOCHROME1 image the right way up by this key."""
    pixels = (np.arange(48, dtype=np.uint16).reshape(6, 8) * 40) + 100
    write_slice(tmp_path / "a.dcm", pixels, position=(0, 0, 0), PhotometricInterpretation=photometric)
    volume = read_volume(tmp_path / "a.dcm")
    assert volume.meta["photometric"] == photometric
    np.testing.assert_array_equal(volume.array[:, :, 0], pixels.T)  # stored values, not inverted
