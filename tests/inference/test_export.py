import numpy as np
import pytest
import torch

from fagan.inference.export import export_onnx, onnx_max_difference

from .conftest import tiny_generator

onnx = pytest.importorskip("onnx")
onnxruntime = pytest.importorskip("onnxruntime")


@pytest.mark.parametrize("scale", [2, 4])
def test_onnx_matches_pytorch_at_other_sizes_and_batches(tmp_path, scale: int) -> None:
    generator = tiny_generator(scale)
    path = export_onnx(generator, tmp_path / "g.onnx", metadata={"model": "fagan"})
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    # Dynamic batch, height and width: none of these is the traced 1x16x16.
    for shape in [(1, 1, 16, 16), (3, 1, 9, 23), (2, 1, 40, 31)]:
        lr = torch.rand(*shape)
        (out,) = session.run(["sr"], {"lr": lr.numpy()})
        with torch.inference_mode():
            expected = generator(lr).numpy()
        assert out.shape == (shape[0], 1, scale * shape[2], scale * shape[3])
        np.testing.assert_allclose(out, expected, rtol=1e-4, atol=1e-5)
    assert onnx_max_difference(path, generator, torch.rand(1, 1, 12, 12)) < 1e-4


def test_onnx_metadata_describes_the_model(tmp_path) -> None:
    path = export_onnx(tiny_generator(2), tmp_path / "g.onnx", metadata={"model": "fagan"})
    props = {p.key: p.value for p in onnx.load(str(path)).metadata_props}
    assert props["model"] == "fagan" and props["scale"] == "2" and '"channels": 16' in props["config"]


def test_following_the_input_scaling_metadata_gives_what_fagan_upscale_gives(tmp_path) -> None:
    """The metadata's recipe, done with numpy and ONNX Runtime alone, reproduces
    ``upscale_volume`` without the consistency projection (which the text says comes on top)."""
    from fagan.data import Volume
    from fagan.data.normalize import fit_scaling
    from fagan.inference import upscale_volume

    generator = tiny_generator(2)
    path = export_onnx(generator, tmp_path / "g.onnx")
    props = {p.key: p.value for p in onnx.load(str(path)).metadata_props}
    assert (
        "0.5th" in props["input_scaling"]
        and "99.5th percentile of the voxels above low" in props["input_scaling"]
    )
    rng = np.random.default_rng(0)
    array = (rng.random((14, 12, 3)) * 20).astype(np.float32)  # a noisy background
    array[3:11, 2:10] = rng.random((8, 8, 3)) * 900 + 300  # and tissue
    expected = upscale_volume(Volume(array, np.eye(4), {}), generator, consistency=False).array

    low = np.percentile(array, 0.5)
    high = np.percentile(array[array > low], 99.5)
    scaling = fit_scaling(array)  # the text describes the code
    np.testing.assert_allclose((low, high), (scaling.low, scaling.high), rtol=1e-6)
    lr = (np.moveaxis(array, 2, 0)[:, None] - low) / (high - low)
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (sr,) = session.run(["sr"], {"lr": lr.astype(np.float32)})
    ours = np.clip(np.moveaxis(sr[:, 0], 0, 2) * (high - low) + low, 0, None)
    np.testing.assert_allclose(ours, expected, rtol=1e-4, atol=1e-3 * float(high))


def test_missing_onnx_is_a_one_line_error(tmp_path, monkeypatch) -> None:
    import importlib.util

    from fagan import FaganError

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "onnx" else real(name, *a)
    )
    with pytest.raises(FaganError, match=r"pip install 'fagan\[onnx\]'"):
        export_onnx(tiny_generator(2), tmp_path / "g.onnx")
    assert not (tmp_path / "g.onnx").exists()
