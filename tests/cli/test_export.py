import pytest
import torch

from fagan.cli import main
from fagan.models import build_generator
from fagan.models.release import save_release

pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

TINY = dict(channels=16, lffb_blocks=1, path_channels=8, residual_blocks=2, head_kernel=3, reduction=4)


@pytest.fixture
def tiny_release(tmp_path):
    torch.manual_seed(0)
    return save_release(tmp_path / "tiny.safetensors", build_generator("fagan", 2, **TINY).eval(), "fagan")


def test_export_writes_a_checked_onnx_model(tmp_path, tiny_release, capsys) -> None:
    out = tmp_path / "m.onnx"
    assert main(["export", "--weights", str(tiny_release), "--out", str(out)]) == 0
    line = capsys.readouterr().out
    assert out.is_file() and "fagan x2" in line
    assert float(line.rsplit(" ", 1)[1]) < 1e-4  # ONNX Runtime vs PyTorch
    # An existing output is not replaced without --overwrite.
    assert main(["export", "--weights", str(tiny_release), "--out", str(out)]) == 2
    assert "--overwrite" in capsys.readouterr().err


def test_export_scale_must_match_the_weights(tmp_path, tiny_release, capsys) -> None:
    assert (
        main(["export", "--weights", str(tiny_release), "--scale", "4", "--out", str(tmp_path / "m.onnx")])
        == 2
    )
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "x2 weights but x4" in err


def test_export_without_onnx_names_the_extra(tmp_path, tiny_release, capsys, monkeypatch) -> None:
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "onnx" else real(name, *a)
    )
    assert main(["export", "--weights", str(tiny_release), "--out", str(tmp_path / "m.onnx")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "fagan[onnx]" in err
