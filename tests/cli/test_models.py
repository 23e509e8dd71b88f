from fagan.cli import main
from fagan.models import GENERATORS


def test_models_table_lists_every_name(capsys) -> None:
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert "GFLOPs (256^2 out, x4)" in lines[0]
    names = [line.split()[0] for line in lines[2:]]
    assert names == list(GENERATORS)
    fagan = next(line for line in lines if line.startswith("fagan "))
    assert fagan.split()[1:5] == ["yes", "yes", "yes", "weighted"]


def test_models_bad_size_is_one_line_error(capsys) -> None:
    assert main(["models", "--size", "250"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "not divisible" in err
