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
