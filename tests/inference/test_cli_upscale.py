"""``fagan upscale`` end to end through the real CLI."""

import subprocess
import sys

import nibabel as nib
import numpy as np
import pytest
from data.dicom_helpers import write_multiframe, write_slice
from PIL import Image

from fagan.cli import main
from fagan.data.io import read_volume
from fagan.inference.geometry import resampled_affine


def _nifti(path, shape=(12, 10, 4), affine=None, offset=0):
    rng = np.random.default_rng(0)
    array = (rng.random(shape) * 1000 + offset).astype(np.int16)
    affine = np.diag([1.5, 1.5, 4.0, 1.0]) if affine is None else affine
    affine[:3, 3] = [-10, 20, 5]
    nib.save(nib.Nifti1Image(array, affine), path)
    return array, affine


def test_nifti_round_trip_geometry_and_dtype(tmp_path, weights_dir, capsys) -> None:
    array, affine = _nifti(tmp_path / "lr.nii.gz")
    out = tmp_path / "sr.nii.gz"
    code = main(
        [
            "upscale",
            str(tmp_path / "lr.nii.gz"),
            "-o",
            str(out),
            "--scale",
            "2",
            "--weights",
            str(weights_dir / "x2.safetensors"),
            "--batch-size",
            "3",
        ]
    )
    assert code == 0, capsys.readouterr().err
    img = nib.load(out)
    assert img.shape == (24, 20, 4)
    assert img.get_data_dtype() == np.float32
    np.testing.assert_allclose(img.header.get_zooms(), (0.75, 0.75, 4.0))
    centre_in = affine @ np.r_[(np.array(array.shape) - 1) / 2, 1]
    centre_out = img.affine @ np.r_[(np.array(img.shape) - 1) / 2, 1]
    np.testing.assert_allclose(centre_out, centre_in, atol=1e-6)
    sr = img.get_fdata()
    assert 0.5 * array.mean() < sr.mean() < 1.5 * array.mean()  # input units, not [0, 1]
    assert sr.min() >= 0.0  # a magnitude image (no negative values) gets no negative output


def test_thick_voxels_in_the_upscaled_planes_get_a_warning(tmp_path, weights_dir, capsys) -> None:
    _nifti(tmp_path / "cor.nii.gz", shape=(12, 4, 10), affine=np.diag([1.0, 3.0, 1.0, 1.0]))
    argv = [
        "upscale",
        str(tmp_path / "cor.nii.gz"),
        "--scale",
        "2",
        "--weights",
        str(weights_dir / "x2.safetensors"),
    ]
    assert main([*argv, "-o", str(tmp_path / "a.nii.gz")]) == 0
    err = capsys.readouterr().err
    assert (
        err.count("\n") == 1 and "warning" in err and "3 mm voxels along axis 1" in err and "--axis 1" in err
    )
    assert main([*argv, "-o", str(tmp_path / "b.nii.gz"), "--axis", "1"]) == 0
    assert "warning" not in capsys.readouterr().err


def _upscale_header(tmp_path, weights_dir, affine, sform, qform):
    """Upscale x2 a NIfTI with ``affine`` in its sform/qform under these codes; the output header."""
    img = nib.Nifti1Image(np.random.default_rng(0).random((12, 10, 4)).astype(np.float32), affine)
    img.set_sform(affine, sform)
    img.set_qform(affine, qform)
    nib.save(img, tmp_path / "lr.nii")
    out = tmp_path / "sr.nii"
    argv = ["upscale", str(tmp_path / "lr.nii"), "-o", str(out), "--scale", "2"]
    assert main([*argv, "--weights", str(weights_dir / "x2.safetensors")]) == 0
    return nib.load(out).header


@pytest.mark.parametrize(("sform", "qform", "expected"), [(1, 1, 1), (4, 0, 4), (0, 1, 1), (0, 0, 0)])
def test_the_output_keeps_the_space_of_the_input(tmp_path, weights_dir, sform, qform, expected) -> None:
    """Both sform and qform of the output hold its affine, with the code of the input's space;
    an input in no space (both codes 0) gives an output in none, whose fallback affine (voxel size,
    centred on the origin) covers the input's field of view."""
    affine = np.diag([1.5, 1.5, 4.0, 1.0])
    affine[:3, 3] = [-10, 20, 5]
    header = _upscale_header(tmp_path, weights_dir, affine, sform, qform)
    assert int(header["sform_code"]) == int(header["qform_code"]) == expected
    np.testing.assert_allclose(header.get_qform(), header.get_sform(), atol=1e-5)
    lr, sr = nib.load(tmp_path / "lr.nii"), nib.load(tmp_path / "sr.nii")
    np.testing.assert_allclose(sr.header.get_zooms(), (0.75, 0.75, 4.0))
    np.testing.assert_allclose(
        sr.affine @ np.r_[(np.array(sr.shape) - 1) / 2, 1], lr.affine @ np.r_[(np.array(lr.shape) - 1) / 2, 1]
    )
    np.testing.assert_allclose(sr.affine[:3, 0] * 2, lr.affine[:3, 0])  # the same orientation


def test_a_singular_sform_gives_way_to_a_valid_qform_with_a_warning(tmp_path, weights_dir, capsys) -> None:
    affine = np.diag([1.5, 1.5, 4.0, 1.0])
    affine[:3, 3] = [-10, 20, 5]
    img = nib.Nifti1Image(np.random.default_rng(0).random((12, 10, 4)).astype(np.float32), affine)
    img.set_qform(affine, 1)
    img.set_sform(np.diag([1.5, 0.0, 4.0, 1.0]), 2)  # a zeroed column: voxel axis 1 of length 0
    nib.save(img, tmp_path / "lr.nii")
    out = tmp_path / "sr.nii"
    argv = ["upscale", str(tmp_path / "lr.nii"), "-o", str(out), "--scale", "2"]
    assert main([*argv, "--weights", str(weights_dir / "x2.safetensors")]) == 0
    assert "its sform is set but singular, so its valid qform places it" in capsys.readouterr().err
    sr = nib.load(out)
    assert int(sr.header["sform_code"]) == int(sr.header["qform_code"]) == 1
    np.testing.assert_allclose(sr.header.get_sform(), sr.header.get_qform(), atol=1e-5)
    np.testing.assert_allclose(sr.affine, resampled_affine(affine, 2, axis=2), atol=1e-5)


def test_a_qform_that_differs_from_the_sform_is_kept_and_resampled_alike(tmp_path, weights_dir) -> None:
    """A registered file (sform: aligned space, qform: the scanner's) keeps both transforms, each
    resampled, so a reader of either (ITK reads the qform, FSL the sform) overlays output and input."""
    sform = np.diag([1.5, 1.5, 4.0, 1.0])
    sform[:3, 3] = [-10, 20, 5]
    c, s = np.cos(0.3), np.sin(0.3)
    qform = np.array([[c, -s, 0, 0], [s, c, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]]) @ np.diag([1.5, 1.5, 4.0, 1])
    qform[:3, 3] = [30, -40, 12]
    img = nib.Nifti1Image(np.random.default_rng(0).random((12, 10, 4)).astype(np.float32), sform)
    img.set_sform(sform, 2)
    img.set_qform(qform, 1)
    img.header.set_xyzt_units("micron")  # both transforms are converted to mm
    nib.save(img, tmp_path / "lr.nii")
    argv = ["upscale", str(tmp_path / "lr.nii"), "-o", str(tmp_path / "sr.nii"), "--scale", "2"]
    assert main([*argv, "--weights", str(weights_dir / "x2.safetensors")]) == 0
    header = nib.load(tmp_path / "sr.nii").header
    assert (int(header["sform_code"]), int(header["qform_code"])) == (2, 1)
    for transform, written in ((sform, header.get_sform()), (qform, header.get_qform())):
        in_mm = np.diag([1e-3, 1e-3, 1e-3, 1.0]) @ transform
        np.testing.assert_allclose(written, resampled_affine(in_mm, 2, 2), atol=1e-6)
        # the centre of the field of view stays where it was under either transform
        np.testing.assert_allclose(written @ [11.5, 9.5, 1.5, 1], in_mm @ [5.5, 4.5, 1.5, 1], atol=1e-6)


def test_a_qform_with_its_own_code_keeps_it(tmp_path, weights_dir) -> None:
    affine = np.diag([1.5, 1.5, 4.0, 1.0])
    img = nib.Nifti1Image(np.random.default_rng(0).random((12, 10, 4)).astype(np.float32), affine)
    img.set_sform(affine, 2)
    img.set_qform(affine, 1)  # the same transform, called scanner space in the qform
    nib.save(img, tmp_path / "lr.nii")
    argv = ["upscale", str(tmp_path / "lr.nii"), "-o", str(tmp_path / "sr.nii"), "--scale", "2"]
    assert main([*argv, "--weights", str(weights_dir / "x2.safetensors")]) == 0
    header = nib.load(tmp_path / "sr.nii").header
    assert (int(header["sform_code"]), int(header["qform_code"])) == (2, 1)
    np.testing.assert_allclose(header.get_qform(), header.get_sform(), atol=1e-6)


def test_a_kept_qform_follows_any_new_grid_of_the_volume(tmp_path) -> None:
    """The qform is kept as a map between the two worlds, so a volume built from a read one with
    another grid (here cropped by 3 voxels and resampled x2 along axis 0) gets a matching qform."""
    from fagan.inference.output import save_result

    sform = np.diag([1.5, 1.5, 4.0, 1.0])
    qform = np.diag([-1.5, 1.5, 4.0, 1.0])
    qform[:3, 3] = [30, -40, 12]
    img = nib.Nifti1Image(np.random.default_rng(0).random((12, 10, 4)).astype(np.float32), sform)
    img.set_sform(sform, 2)
    img.set_qform(qform, 1)
    nib.save(img, tmp_path / "in.nii")
    volume = read_volume(tmp_path / "in.nii")
    crop = np.eye(4)
    crop[:3, 3] = [3, 0, 0]
    grid = resampled_affine(volume.affine @ crop, 2, 0)
    save_result(tmp_path / "out.nii", volume._replace(array=np.ones((18, 20, 8), np.float32), affine=grid))
    written = nib.load(tmp_path / "out.nii").header.get_qform()
    np.testing.assert_allclose(written, resampled_affine(qform @ crop, 2, 0), atol=1e-6)


def test_the_output_keeps_the_display_window_and_says_what_made_it(tmp_path, weights_dir) -> None:
    img = nib.Nifti1Image(np.random.default_rng(0).random((12, 10, 4)).astype(np.float32) * 900, np.eye(4))
    img.header["cal_min"], img.header["cal_max"] = 50.0, 700.0  # the window a viewer opens it with
    nib.save(img, tmp_path / "lr.nii")
    argv = ["upscale", str(tmp_path / "lr.nii"), "-o", str(tmp_path / "sr.nii"), "--scale", "2"]
    assert main([*argv, "--weights", str(weights_dir / "x2.safetensors")]) == 0
    header = nib.load(tmp_path / "sr.nii").header
    assert (float(header["cal_min"]), float(header["cal_max"])) == (50.0, 700.0)
    assert header["descrip"].item().decode().endswith("x2 super-resolution of lr.nii")
    assert header.get_intent()[0] == "none" and header["aux_file"].item() == b""


def test_the_output_keeps_what_the_values_are_and_their_colour_map(tmp_path, weights_dir) -> None:
    rng = np.random.default_rng(0)
    img = nib.Nifti1Image((rng.standard_normal((12, 10, 4)) * 3).astype(np.float32), np.eye(4))
    img.header.set_intent("t test", (24.0,), "tstat1")  # a t map with 24 degrees of freedom
    img.header["aux_file"] = b"hot"
    nib.save(img, tmp_path / "tstat.nii.gz")
    argv = ["upscale", str(tmp_path / "tstat.nii.gz"), "-o", str(tmp_path / "sr.nii.gz"), "--scale", "2"]
    assert main([*argv, "--weights", str(weights_dir / "x2.safetensors")]) == 0
    header = nib.load(tmp_path / "sr.nii.gz").header
    assert header.get_intent() == ("t test", (24.0,), "tstat1") and header["aux_file"].item() == b"hot"
    # the fields are copied as they are, bytes that are not ASCII too
    img.header["intent_code"], img.header["intent_p2"] = 5, 2.5
    img.header["intent_name"], img.header["aux_file"] = b"z\xe9stat", b"h\xf6t"
    nib.save(img, tmp_path / "odd.nii.gz")
    argv = ["upscale", str(tmp_path / "odd.nii.gz"), "-o", str(tmp_path / "odd_sr.nii.gz"), "--scale", "2"]
    assert main([*argv, "--weights", str(weights_dir / "x2.safetensors")]) == 0
    header = nib.load(tmp_path / "odd_sr.nii.gz").header
    assert (int(header["intent_code"]), float(header["intent_p2"])) == (5, 2.5)
    assert header["intent_name"].item() == b"z\xe9stat" and header["aux_file"].item() == b"h\xf6t"


@pytest.mark.parametrize("code", [22, 2, 9999])  # a p value, a correlation, a code nibabel does not know
def test_an_intent_upscaling_can_break_is_left_out_and_said(tmp_path, weights_dir, capsys, code) -> None:
    img = nib.Nifti1Image(np.random.default_rng(0).random((12, 10, 4)).astype(np.float32), np.eye(4))
    img.header["intent_code"] = code
    nib.save(img, tmp_path / "map.nii.gz")
    argv = ["upscale", str(tmp_path / "map.nii.gz"), "-o", str(tmp_path / "sr.nii.gz"), "--scale", "2"]
    assert main([*argv, "--weights", str(weights_dir / "x2.safetensors")]) == 0
    assert int(nib.load(tmp_path / "sr.nii.gz").header["intent_code"]) == 0
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"has NIfTI intent code {code}; its output does not say so" in err


def test_a_sheared_affine_stays_in_the_sform_alone(tmp_path, weights_dir) -> None:
    affine = np.array([[1.5, 0.3, 0, -10], [0, 1.5, 0, 20], [0, 0, 4.0, 5], [0, 0, 0, 1]])
    header = _upscale_header(tmp_path, weights_dir, affine, 1, 0)
    assert (int(header["sform_code"]), int(header["qform_code"])) == (1, 0)  # a qform cannot shear
    np.testing.assert_allclose(header.get_sform()[:3, :2], affine[:3, :2] / 2, atol=1e-6)


def test_dicom_series_to_nifti(tmp_path, weights_dir) -> None:
    series = tmp_path / "series"
    series.mkdir()
    rng = np.random.default_rng(0)
    for k in range(3):
        pixels = (rng.random((8, 10)) * 2000).astype(np.uint16)
        write_slice(
            series / f"im{k}.dcm",
            pixels,
            position=(0.0, 0.0, 2.0 * k),
            spacing=(0.8, 0.8),
            thickness=2.0,
            instance=k + 1,
        )
    out = tmp_path / "sr.nii"
    assert (
        main(
            [
                "upscale",
                str(series),
                "-o",
                str(out),
                "--scale",
                "4",
                "--weights",
                str(weights_dir / "x4.safetensors"),
            ]
        )
        == 0
    )
    img = nib.load(out)
    assert img.shape == (40, 32, 3)
    np.testing.assert_allclose(img.header.get_zooms(), (0.2, 0.2, 2.0), rtol=1e-5)
    # DICOM positions are scanner coordinates: both transforms say so, and agree.
    assert int(img.header["sform_code"]) == int(img.header["qform_code"]) == 1
    np.testing.assert_allclose(img.header.get_qform(), img.header.get_sform(), atol=1e-5)


def test_a_series_volume_that_cannot_be_normalised_is_named_with_the_frame_advice(
    tmp_path, weights_dir, capsys
) -> None:
    good = np.random.default_rng(0).random((12, 10, 3)) * 500
    flat = np.full((12, 10, 3), 5.0)
    flat[0, 0, 0] = 0.0  # all 5 but one voxel: no percentile fit exists
    nib.save(nib.Nifti1Image(np.stack([good, flat], -1).astype(np.float32), np.eye(4)), tmp_path / "s.nii")
    weights = str(weights_dir / "x2.safetensors")
    argv = ["upscale", str(tmp_path / "s.nii"), "--scale", "2", "--weights", weights]
    _fails(capsys, [*argv, "-o", str(tmp_path / "x.nii")],
           "s.nii: volume 1 of 2 cannot be normalised (the image is constant")
    _fails(capsys, [*argv, "-o", str(tmp_path / "x.nii")], "; upscale the others one by one with --frame N")
    assert not (tmp_path / "x.nii").exists()
    assert main([*argv, "-o", str(tmp_path / "v0.nii"), "--frame", "0"]) == 0


def test_a_4d_nifti_comes_back_4d_and_one_volume_can_be_picked(tmp_path, weights_dir, capsys) -> None:
    rng = np.random.default_rng(3)
    base = rng.random((12, 10, 3))
    data = np.stack([base * 1000, base[::-1] * 90, base * 400], axis=-1).astype(np.int16)
    affine = np.diag([1.5, 1.5, 4.0, 1.0])
    img = nib.Nifti1Image(data, affine)
    img.header.set_zooms((1.5, 1.5, 4.0, 2000.0))
    img.header.set_xyzt_units("mm", "msec")
    img.header.set_dim_info(freq=0, phase=1, slice=2)  # slice timing holds for slices kept whole
    img.header.set_slice_duration(0.5)
    img.header["slice_code"], img.header["slice_end"] = 1, 2
    img.header.set_intent("time series")
    nib.save(img, tmp_path / "dwi.nii.gz")
    argv = ["upscale", str(tmp_path / "dwi.nii.gz"), "--scale", "2",
            "--weights", str(weights_dir / "x2.safetensors")]  # fmt: skip
    assert main([*argv, "-o", str(tmp_path / "all.nii.gz")]) == 0
    assert "(24x20x3x3, x2 along axes [0, 1]; 3 volumes)" in capsys.readouterr().out
    out = nib.load(tmp_path / "all.nii.gz")
    assert out.shape == (24, 20, 3, 3) and out.get_data_dtype() == np.float32
    np.testing.assert_allclose(out.header.get_zooms(), (0.75, 0.75, 4.0, 2000.0))  # TR kept, in ms
    assert out.header.get_xyzt_units() == ("mm", "msec") and out.header.get_dim_info() == (0, 1, 2)
    assert out.header.get_slice_duration() == 0.5 and out.header.get_intent()[0] == "time series"
    assert out.header.get_value_label("slice_code") == "sequential increasing"
    assert main([*argv, "-o", str(tmp_path / "ax0.nii.gz"), "--axis", "0"]) == 0  # the slices resampled
    assert "4 mm voxels along axis 2" in capsys.readouterr().err
    sagittal = nib.load(tmp_path / "ax0.nii.gz").header
    assert sagittal.get_dim_info() == (0, 1, 2) and int(sagittal["slice_code"]) == 0
    assert float(sagittal["slice_duration"]) == 0.0
    np.testing.assert_allclose(out.affine, resampled_affine(affine, 2, 2))
    for t in (0, 1):  # each volume as if upscaled alone, in its own units
        assert main([*argv, "-o", str(tmp_path / f"v{t}.nii.gz"), "--frame", str(t)]) == 0
        alone = nib.load(tmp_path / f"v{t}.nii.gz")
        assert alone.shape == (24, 20, 3) and alone.header.get_intent()[0] == "none"  # not a series
        assert "intent code 2001; its output does not say so" in capsys.readouterr().err
        # the time unit stays the one slice_duration is in
        assert alone.header.get_xyzt_units() == ("mm", "msec") and alone.header.get_slice_duration() == 0.5
        np.testing.assert_allclose(out.get_fdata()[..., t], alone.get_fdata(), rtol=1e-5, atol=1e-3)
    assert 0.5 < out.get_fdata()[..., 1].mean() / data[..., 1].mean() < 1.5
    _fails(capsys, [*argv, "-o", str(tmp_path / "x.npy")], "holds one 2D slice")
    _fails(capsys, [*argv, "-o", str(tmp_path / "x.nii"), "--frame", "3"], "frame 3 does not exist")
    _fails(capsys, [*argv, "-o", str(tmp_path / "x.nii"), "--frame", "b0"], "expected all or a volume index")
    assert not (tmp_path / "x.nii").exists() and not (tmp_path / "x.npy").exists()


def test_a_dicom_series_with_time_points_comes_back_4d(tmp_path, weights_dir) -> None:
    series = tmp_path / "series"
    series.mkdir()
    rng = np.random.default_rng(4)
    for t in range(2):
        for k in range(3):
            write_slice(
                series / f"t{t}_{k}.dcm",
                (rng.random((8, 10)) * 2000 / (t + 1)).astype(np.uint16),
                position=(0.0, 0.0, 2.0 * k),
                spacing=(0.8, 0.8),
                thickness=2.0,
                instance=3 * t + k + 1,
                TemporalPositionIdentifier=t + 1,
                RepetitionTime=3000.0,
                AcquisitionTime=f"1200{3 * t:02d}.5{k}",  # 3 s apart (slices 10 ms apart)
            )
    out = tmp_path / "sr.nii"
    assert main(["upscale", str(series), "-o", str(out), "--scale", "2", "--weights",
                 str(weights_dir / "x2.safetensors")]) == 0
    img = nib.load(out)
    assert img.shape == (20, 16, 3, 2)
    np.testing.assert_allclose(img.header.get_zooms(), (0.4, 0.4, 2.0, 3.0), rtol=1e-5)
    assert int(img.header["sform_code"]) == 1 and img.header.get_xyzt_units() == ("mm", "sec")
    assert main(["upscale", str(series), "-o", str(tmp_path / "one.npy"), "--scale", "2", "--frame", "1",
                 "--axis", "2", "--weights", str(weights_dir / "x2.safetensors")]) != 0  # 3 slices
    # a cine series of one slice: its time points are not slices, so one of them is a 2D image
    cine = tmp_path / "cine"
    cine.mkdir()
    for t in range(3):
        pixels = (rng.random((8, 10)) * 2000).astype(np.uint16)
        write_slice(cine / f"t{t}.dcm", pixels, position=(0.0, 0.0, 0.0), instance=t + 1,
                    TemporalPositionIdentifier=t + 1)  # fmt: skip
    assert main(["upscale", str(cine), "-o", str(tmp_path / "t1.npy"), "--scale", "2", "--frame", "1",
                 "--weights", str(weights_dir / "x2.safetensors")]) == 0
    assert np.load(tmp_path / "t1.npy").shape == (20, 16)


def test_an_output_that_is_the_input_under_another_name_is_refused(tmp_path, weights_dir, capsys) -> None:
    """On a case-insensitive file system the input's name in other case is the input itself, and
    --overwrite would replace it. The check asks the file system (os.path.samefile), which this
    test shows with the second name Linux can make, a hard link (which the write through a
    temporary file would not harm, but which is the input all the same)."""
    _nifti(tmp_path / "lr.nii.gz")
    (tmp_path / "LR.nii.gz").hardlink_to(tmp_path / "lr.nii.gz")
    before = (tmp_path / "lr.nii.gz").read_bytes()
    args = ["upscale", str(tmp_path / "lr.nii.gz"), "-o", str(tmp_path / "LR.nii.gz"), "--overwrite"]
    weights = ["--scale", "2", "--weights", str(weights_dir / "x2.safetensors")]
    _fails(capsys, [*args, *weights], "overwrite the input")
    assert (tmp_path / "lr.nii.gz").read_bytes() == before


def test_clipping_shallow_negatives_is_said_and_can_be_turned_off(tmp_path, weights_dir, capsys) -> None:
    """An input with one shallow negative voxel is clipped like a magnitude image, with a note;
    --clip-negative no keeps the output's negative values, and yes clips a signed input."""
    array, _ = _nifti(tmp_path / "lr.nii.gz", offset=100)
    array[0, 0, 0] = -20  # 1.8% of the bright end
    nib.save(nib.Nifti1Image(array, np.diag([1.5, 1.5, 4.0, 1.0])), tmp_path / "lr.nii.gz")
    nib.save(nib.Nifti1Image(array - 600, np.diag([1.5, 1.5, 4.0, 1.0])), tmp_path / "signed.nii.gz")
    weights = ["--scale", "2", "--weights", str(weights_dir / "x2.safetensors")]
    minima = {}
    for name, source, extra in (
        ("auto", "lr", []),
        ("no", "lr", ["--clip-negative", "no"]),
        ("signed", "signed", []),
        ("signed_yes", "signed", ["--clip-negative", "yes"]),
    ):
        out = tmp_path / f"sr_{name}.nii.gz"
        assert main(["upscale", str(tmp_path / f"{source}.nii.gz"), "-o", str(out), *weights, *extra]) == 0
        err = capsys.readouterr().err
        assert ("below 0 (1 voxel, down to -20, 1.8% of its bright end)" in err) == (name == "auto")
        minima[name] = nib.load(out).get_fdata().min()
    assert minima["auto"] == 0 and minima["no"] < 0 and minima["signed"] < -100 and minima["signed_yes"] == 0


def test_a_wrapped_phase_map_gets_a_warning(tmp_path, weights_dir, capsys) -> None:
    phase = np.angle(np.exp(1j * np.linspace(0, 12, 12 * 10 * 4))).reshape(12, 10, 4).astype(np.float32)
    nib.save(nib.Nifti1Image(phase, np.diag([1.5, 1.5, 4.0, 1.0])), tmp_path / "phase.nii.gz")
    for clip in ("auto", "yes"):  # whatever the clipping
        out = tmp_path / f"sr_{clip}.nii.gz"
        args = ["upscale", str(tmp_path / "phase.nii.gz"), "-o", str(out), "--clip-negative", clip]
        assert main([*args, "--scale", "2", "--weights", str(weights_dir / "x2.safetensors")]) == 0
        assert "like a wrapped phase map" in capsys.readouterr().err
    img = nib.load(tmp_path / "phase.nii.gz")
    img.header.set_intent("z score")  # a z map spanning -3.1..3.2 says what its values are
    nib.save(img, tmp_path / "zstat.nii.gz")
    args = ["upscale", str(tmp_path / "zstat.nii.gz"), "-o", str(tmp_path / "z.nii.gz"), "--scale", "2"]
    assert main([*args, "--weights", str(weights_dir / "x2.safetensors")]) == 0
    assert "phase" not in capsys.readouterr().err


def test_a_phase_image_by_its_image_type_gets_a_warning(tmp_path, weights_dir, capsys) -> None:
    """Siemens stores phase as -4096..4094, which no value test can tell from a signed map; DICOM's
    ImageType (or the copy dcm2niix puts in a NIfTI's JSON sidecar) names it."""
    series = tmp_path / "series"
    series.mkdir()
    for k in range(2):
        pixels = np.random.default_rng(k).integers(0, 4096, (8, 10)).astype(np.uint16)
        write_slice(series / f"im{k}.dcm", pixels, position=(0.0, 0.0, 2.0 * k), instance=k + 1,
                    slope=2.0, intercept=-4096.0, ImageType=["ORIGINAL", "PRIMARY", "P", "ND"])  # fmt: skip
    _nifti(tmp_path / "ph.nii.gz", offset=-500)
    (tmp_path / "ph.json").write_text('{"ImageType": ["ORIGINAL", "PRIMARY", "P", "ND"]}')
    _nifti(tmp_path / "mag.nii.gz")
    (tmp_path / "mag.json").write_text('{"ImageType": ["ORIGINAL", "PRIMARY", "M", "ND"]}')
    _nifti(tmp_path / "odd.nii.gz")
    (tmp_path / "odd.json").write_text('["not", "a sidecar"')  # unreadable: ignored
    _nifti(tmp_path / "one.nii")
    (tmp_path / "one.json").write_text('{"ImageType": "ORIGINAL\\\\PRIMARY\\\\P\\\\ND"}')  # one string
    # a series holding magnitude and then phase images (Philips, GE): any phase file counts
    mixed = tmp_path / "mixed"
    mixed.mkdir()
    for k, kind in enumerate(["M_FFE", "M_FFE", "PHASE MAP", "PHASE MAP"]):
        pixels = np.random.default_rng(k).integers(0, 4096, (8, 10)).astype(np.uint16)
        write_slice(mixed / f"IM_{k:04d}.dcm", pixels, position=(0.0, 0.0, 2.0 * (k % 2)), instance=k + 1,
                    ImageType=["ORIGINAL", "PRIMARY", kind, kind[0]])  # fmt: skip
    cases = [(series, True), (tmp_path / "ph.nii.gz", True), (tmp_path / "one.nii", True)]
    cases += [(tmp_path / "mag.nii.gz", False), (tmp_path / "odd.nii.gz", False)]
    for source, warned in cases:
        out = tmp_path / f"sr_{source.name}.nii"
        args = ["upscale", str(source), "-o", str(out), "--scale", "2"]
        assert main([*args, "--weights", str(weights_dir / "x2.safetensors")]) == 0
        err = capsys.readouterr().err
        assert ("ImageType is ORIGINAL\\PRIMARY\\P" in err and "a phase image" in err) == warned, err
    args = ["upscale", str(mixed), "--scale", "2", "--weights", str(weights_dir / "x2.safetensors")]
    assert main([*args, "-o", str(tmp_path / "both.nii")]) == 0
    err = capsys.readouterr().err
    assert "volume 1 (of 0..1) is a phase image (ORIGINAL\\PRIMARY\\PHASE MAP\\P)" in err
    assert "upscale the magnitude volumes one by one with --frame N" in err
    assert main([*args, "-o", str(tmp_path / "mag.nii"), "--frame", "0"]) == 0  # the magnitude: as asked
    assert "phase" not in capsys.readouterr().err
    assert main([*args, "-o", str(tmp_path / "ph.nii"), "--frame", "1"]) == 0
    assert "ImageType is ORIGINAL\\PRIMARY\\PHASE MAP\\P, a phase image" in capsys.readouterr().err


def test_an_enhanced_multiframe_phase_image_is_named_by_its_complex_component(tmp_path, weights_dir, capsys):
    frames = np.random.default_rng(0).integers(0, 4096, (3, 8, 10)).astype(np.uint16)
    positions = [(0.0, 0.0, 2.0 * k) for k in range(3)]
    write_multiframe(tmp_path / "ph.dcm", frames, positions, ImageType=["ORIGINAL", "PRIMARY", "T1", "NONE"],
                     ComplexImageComponent="PHASE")  # fmt: skip
    args = ["upscale", str(tmp_path / "ph.dcm"), "-o", str(tmp_path / "sr.nii"), "--scale", "2"]
    assert main([*args, "--weights", str(weights_dir / "x2.safetensors")]) == 0
    assert "ImageType is ORIGINAL\\PRIMARY\\T1\\NONE\\PHASE, a phase image" in capsys.readouterr().err


def test_a_segmentation_without_a_label_intent_gets_a_warning(tmp_path, weights_dir, capsys) -> None:
    labels = np.zeros((32, 32, 4), np.int16)
    labels[8:24, 8:24], labels[12:20, 12:20] = 1, 2
    nib.save(nib.Nifti1Image(labels, np.eye(4)), tmp_path / "seg.nii.gz")
    args = ["upscale", str(tmp_path / "seg.nii.gz"), "-o", str(tmp_path / "sr.nii.gz"), "--scale", "2"]
    assert main([*args, "--weights", str(weights_dir / "x2.safetensors")]) == 0
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "holds only 3 integer values (0, 1, 2), like a label map" in err
    _nifti(tmp_path / "t1.nii.gz", shape=(32, 32, 4))  # an image: hundreds of values
    args = ["upscale", str(tmp_path / "t1.nii.gz"), "-o", str(tmp_path / "t1_sr.nii.gz"), "--scale", "2"]
    assert main([*args, "--weights", str(weights_dir / "x2.safetensors")]) == 0
    assert "label" not in capsys.readouterr().err


def test_a_dicom_without_geometry_warns_once_for_a_nifti_output(tmp_path, weights_dir, capsys) -> None:
    """Its position in space is unknown; a NIfTI output keeps its voxel sizes and says nothing
    true of the scanner's coordinates, so the user is told. A .npy output has no geometry at all."""
    pixels = (np.random.default_rng(3).random((8, 10)) * 2000).astype(np.uint16)
    write_slice(tmp_path / "nogeo.dcm", pixels, position=None, orientation=None, spacing=(0.8, 0.6))
    write_slice(tmp_path / "geo.dcm", pixels, position=(0.0, 0.0, 0.0), spacing=(0.8, 0.6))
    weights = ["--scale", "2", "--weights", str(weights_dir / "x2.safetensors")]
    cases = (("nogeo.dcm", "a.nii", True), ("nogeo.dcm", "a.npy", False), ("geo.dcm", "b.nii", False))
    for name, out, warned in cases:
        capsys.readouterr()
        assert main(["upscale", str(tmp_path / name), "-o", str(tmp_path / out), *weights]) == 0
        lines = [line for line in capsys.readouterr().err.splitlines() if "warning" in line]
        assert len(lines) == warned
        assert all("no usable patient position and orientation" in line for line in lines)
    output = nib.load(tmp_path / "a.nii")
    np.testing.assert_allclose(output.header.get_zooms()[:2], (0.3, 0.4))
    # Placed as it was read (code 2 for both transforms: code 0 would make readers flip it).
    assert int(output.header["sform_code"]) == int(output.header["qform_code"]) == 2
    assert nib.aff2axcodes(output.affine) == nib.aff2axcodes(read_volume(tmp_path / "nogeo.dcm").affine)


@pytest.mark.parametrize("suffix", [".npy", ".png"])
def test_2d_image(tmp_path, weights_dir, suffix, capsys) -> None:
    image = (np.random.default_rng(0).random((9, 11)) * 4000 + 100).astype(np.uint16)
    src = tmp_path / "lr.png"
    Image.fromarray(image).save(src)
    out = tmp_path / f"sr{suffix}"
    assert (
        main(
            [
                "upscale",
                str(src),
                "-o",
                str(out),
                "--scale",
                "2",
                "--weights",
                str(weights_dir / "x2.safetensors"),
            ]
        )
        == 0
    )
    result = np.load(out) if suffix == ".npy" else np.array(Image.open(out))
    assert result.shape == (18, 22)
    assert f"wrote {out} (18x22, x2" in capsys.readouterr().out  # the file's shape, no third axis


def test_an_8_bit_png_comes_back_as_an_8_bit_png(tmp_path, weights_dir) -> None:
    """A viewer shows a 16-bit PNG holding values up to 255 as black: the output keeps 8 bits."""
    image = (np.random.default_rng(0).random((9, 11)) * 200 + 40).astype(np.uint8)
    Image.fromarray(image).save(tmp_path / "lr.png")
    args = ["upscale", str(tmp_path / "lr.png"), "-o", str(tmp_path / "sr.png"), "--scale", "2"]
    assert main([*args, "--weights", str(weights_dir / "x2.safetensors")]) == 0
    with Image.open(tmp_path / "sr.png") as img:
        assert img.mode == "L" and img.size == (22, 18)
        result = np.array(img)
    assert result.dtype == np.uint8
    assert abs(float(result.mean()) - float(image.mean())) < 20  # the input's units


def _fails(capsys, args, match):
    try:
        code = main(args)
    except SystemExit as exc:  # argparse's usage errors
        code = exc.code
    err = capsys.readouterr().err
    assert code != 0
    assert err.count("\n") == 1 and err.startswith("fagan") and "error:" in err and match in err, err


def test_bad_inputs_give_one_line_and_no_output(tmp_path, weights_dir, capsys) -> None:
    _nifti(tmp_path / "lr.nii.gz")
    src, out = str(tmp_path / "lr.nii.gz"), tmp_path / "sr.nii.gz"
    w2, w4 = str(weights_dir / "x2.safetensors"), str(weights_dir / "x4.safetensors")
    _fails(capsys, ["upscale", src, "-o", str(out), "--scale", "2", "--weights", w4], "x4 weights but x2")
    _fails(
        capsys,
        ["upscale", src, "-o", str(out), "--scale", "2", "--weights", str(tmp_path / "no.safetensors")],
        "not found",
    )
    _fails(
        capsys,
        ["upscale", str(tmp_path / "none.nii"), "-o", str(out), "--scale", "2", "--weights", w2],
        "not found",
    )
    (tmp_path / "broken.nii.gz").write_bytes(b"\x1f\x8b\x08\x00 truncated")
    _fails(
        capsys,
        ["upscale", str(tmp_path / "broken.nii.gz"), "-o", str(out), "--scale", "2", "--weights", w2],
        "broken.nii.gz",
    )
    _fails(
        capsys,
        ["upscale", src, "-o", src, "--scale", "2", "--weights", w2, "--overwrite"],
        "overwrite the input",
    )
    _fails(
        capsys,
        ["upscale", src, "-o", str(tmp_path / "sr.txt"), "--scale", "2", "--weights", w2],
        "must end in",
    )
    _fails(capsys, ["upscale", src, "-o", str(out), "--scale", "3", "--weights", w2], "invalid choice")
    assert not out.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["broken.nii.gz", "lr.nii.gz"]


def test_requests_that_cannot_work_are_refused_before_any_work(tmp_path, weights_dir, capsys) -> None:
    """Checked before the weights are read: a missing weights file would be the error otherwise."""
    _nifti(tmp_path / "lr.nii.gz")
    src, absent = str(tmp_path / "lr.nii.gz"), str(tmp_path / "absent.safetensors")
    for suffix in (".png", ".npy"):
        out = str(tmp_path / f"sr{suffix}")
        _fails(capsys, ["upscale", src, "-o", out, "--scale", "2", "--weights", absent], "holds one 2D slice")
    _fails(
        capsys,
        ["upscale", src, "-o", str(tmp_path / "sr.nii"), "--scale", "2", "--tile", "8", "--weights", absent],
        "--tile must be 0 (off) or more than 32 pixels",
    )
    # A 2D image along another axis is named as such, whatever the output: not "use .nii.gz",
    # which would only lead to this same refusal.
    Image.fromarray(np.full((9, 11), 500, np.uint16)).save(tmp_path / "slice.png")
    for out in ("sr.png", "sr.nii.gz"):
        args = ["upscale", str(tmp_path / "slice.png"), "-o", str(tmp_path / out), "--axis", "0"]
        _fails(
            capsys, [*args, "--scale", "2", "--weights", absent], "is a 2D image; upscale it along --axis 2"
        )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["lr.nii.gz", "slice.png"]


def test_png_output_is_refused_for_values_a_png_cannot_hold(tmp_path, weights_dir, capsys) -> None:
    w2 = str(weights_dir / "x2.safetensors")
    for name, image in [("neg.npy", np.linspace(-7, 6, 99)), ("frac.npy", np.linspace(0, 1, 99))]:
        np.save(tmp_path / name, image.reshape(9, 11).astype(np.float32))
        args = [
            "upscale",
            str(tmp_path / name),
            "-o",
            str(tmp_path / "sr.png"),
            "--scale",
            "2",
            "--weights",
            w2,
        ]
        _fails(capsys, args, "are not such integers; write .npy or .nii.gz")
    assert not (tmp_path / "sr.png").exists()


def test_a_failed_write_is_one_line(tmp_path, weights_dir, capsys, monkeypatch) -> None:
    import errno

    from fagan.inference import output

    def disk_full(path, volume, overwrite=False):
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    monkeypatch.setattr(output, "save_result", disk_full)
    _nifti(tmp_path / "lr.nii.gz")
    args = ["upscale", str(tmp_path / "lr.nii.gz"), "-o", str(tmp_path / "sr.nii.gz"), "--scale", "2"]
    _fails(capsys, [*args, "--weights", str(weights_dir / "x2.safetensors")], "No space left on device")


def test_an_input_named_like_a_leftover_temporary_file_is_never_deleted(tmp_path, weights_dir) -> None:
    source = tmp_path / ".sr.nii.gz.abcd1234.nii.gz"  # the name a killed run writing sr.nii.gz leaves
    _nifti(source)
    out = tmp_path / "sr.nii.gz"
    weights = str(weights_dir / "x2.safetensors")
    assert main(["upscale", str(source), "-o", str(out), "--scale", "2", "--weights", weights]) == 0
    assert source.exists() and nib.load(out).shape == (24, 20, 4)


def test_existing_output_needs_overwrite(tmp_path, weights_dir, capsys) -> None:
    _nifti(tmp_path / "lr.nii.gz")
    out = tmp_path / "sr.nii.gz"
    out.write_bytes(b"keep me")
    args = [
        "upscale",
        str(tmp_path / "lr.nii.gz"),
        "-o",
        str(out),
        "--scale",
        "2",
        "--weights",
        str(weights_dir / "x2.safetensors"),
    ]
    _fails(capsys, args, "already exists")
    assert out.read_bytes() == b"keep me"
    assert main([*args, "--overwrite"]) == 0
    assert nib.load(out).shape == (24, 20, 4)


def test_subprocess_error_has_no_traceback(tmp_path) -> None:
    p = subprocess.run(
        [
            sys.executable,
            "-m",
            "fagan",
            "upscale",
            str(tmp_path / "x.nii"),
            "-o",
            str(tmp_path / "y.nii"),
            "--scale",
            "2",
            "--weights",
            str(tmp_path / "w.safetensors"),
        ],
        capture_output=True,
        text=True,
    )
    assert p.returncode != 0
    assert p.stderr.count("\n") == 1 and "Traceback" not in p.stderr


def test_shipped_weights_are_the_default(tmp_path, capsys) -> None:
    """Without --weights the shipped FA-GAN weights for the scale are used: the PSNR-oriented ones
    (trained without an adversarial term) unless --variant gan asks for a GAN-trained one."""
    import json

    from fagan.models.release import read_metadata, shipped_weights

    for scale, variant in ((2, "psnr"), (4, "psnr"), (8, "psnr"), (2, "gan"), (4, "gan")):
        meta = read_metadata(shipped_weights(scale, variant))
        assert meta["model"] == "fagan" and meta["scale"] == str(scale)
        loss = json.loads(meta["train_config"])["loss"]
        assert (loss["adversarial_weight"] > 0) == (variant == "gan")
    _nifti(tmp_path / "lr.nii.gz", shape=(16, 12, 2))
    out = tmp_path / "sr.nii.gz"
    assert (
        main(["upscale", str(tmp_path / "lr.nii.gz"), "-o", str(out), "--scale", "4", "--device", "cpu"]) == 0
    )
    assert nib.load(out).shape == (64, 48, 2)
    capsys.readouterr()  # the run's own log lines
    _fails(
        capsys,
        [
            "upscale",
            str(tmp_path / "lr.nii.gz"),
            "-o",
            str(tmp_path / "x8.nii.gz"),
            "--scale",
            "8",
            "--variant",
            "gan",
        ],
        "no shipped gan weights for x8",
    )
    assert not (tmp_path / "x8.nii.gz").exists()


def test_self_ensemble_flag_averages_the_eight_transforms(tmp_path, weights_dir) -> None:
    from fagan.data.io import read_volume
    from fagan.inference import upscale_volume
    from fagan.models.release import load_release

    _nifti(tmp_path / "lr.nii.gz")
    weights = str(weights_dir / "x2.safetensors")
    for name, extra in (("plain", []), ("ensemble", ["--self-ensemble"])):
        args = ["upscale", str(tmp_path / "lr.nii.gz"), "-o", str(tmp_path / f"{name}.nii.gz")]
        assert main([*args, "--scale", "2", "--weights", weights, *extra]) == 0
    plain, ensemble = (nib.load(tmp_path / f"{n}.nii.gz").get_fdata() for n in ("plain", "ensemble"))
    generator, _ = load_release(weights_dir / "x2.safetensors")
    expected = upscale_volume(read_volume(tmp_path / "lr.nii.gz"), generator, self_ensemble=True).array
    np.testing.assert_allclose(ensemble, expected, rtol=1e-4, atol=1e-2)
    assert np.abs(ensemble - plain).max() > 1e-2


def test_consistency_is_on_for_bicubic_weights_and_off_for_kspace_ones(tmp_path, weights_dir, caplog) -> None:
    import torch

    from fagan.data.degrade import degrade
    from fagan.models.release import save_release

    from .conftest import tiny_generator

    caplog.set_level("INFO", logger="fagan")
    # Signed values: a magnitude image's output is also clipped at 0, which this test is not about.
    array, _ = _nifti(tmp_path / "lr.nii.gz", shape=(12, 10, 3), offset=-500)
    kspace = save_release(
        tmp_path / "kspace.safetensors",
        tiny_generator(2),
        "fagan",
        metadata={"train_config": {"data": {"degradation": "kspace"}}},
    )
    runs = {
        "default": [str(weights_dir / "x2.safetensors")],
        "off": [str(weights_dir / "x2.safetensors"), "--no-consistency"],
        "kspace": [str(kspace)],
    }
    out = {}
    for name, extra in runs.items():
        path = tmp_path / f"{name}.nii.gz"
        assert (
            main(
                ["upscale", str(tmp_path / "lr.nii.gz"), "-o", str(path), "--scale", "2", "--weights", *extra]
            )
            == 0
        )
        out[name] = nib.load(path).get_fdata(dtype=np.float32)
    again = degrade(torch.from_numpy(np.moveaxis(out["default"], 2, 0))[:, None], 2)[:, 0].numpy()
    np.testing.assert_allclose(np.moveaxis(again, 0, 2), array, rtol=0, atol=0.05)
    assert np.abs(out["default"] - out["off"]).max() > 1.0
    # the same tiny network trained (so its file says) on k-space LR: no bicubic projection
    np.testing.assert_allclose(out["kspace"], out["off"], rtol=0, atol=1e-3)
    assert "trained on kspace LR" in caplog.text
