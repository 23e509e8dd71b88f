import json
import os
import subprocess
import sys

from fagan.benchmarks import format_report
from fagan.cli import main


def test_quick_bench_runs_every_measurement(tmp_path) -> None:
    """The real command in its own process (as a user runs it), at tiny sizes."""
    out = tmp_path / "bench.json"
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    proc = subprocess.run(
        [sys.executable, "-m", "fagan", "bench", "--quick", "--json", "--out", str(out)],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    results = json.loads(proc.stdout)
    assert json.loads(out.read_text()) == results
    assert results["machine"]["omp_wait_policy"] == "PASSIVE" and results["matmul_gflops_per_s"] > 0
    rows = {(r["model"], r["scale"]): r for r in results["inference"]}
    assert set(rows) == {(m, s) for m in ("fagan", "srgan", "bicubic") for s in (2, 4, 8)}
    for (model, _), row in rows.items():
        assert row["ms_per_slice"] > 0 and row["slices_per_s"] > 0
        assert (row["gflops_per_slice"] is None) == (model == "bicubic")
    # FA-GAN costs more than SRGAN at every scale (more FLOPs for the same output).
    assert all(rows["fagan", s]["gflops_per_slice"] > rows["srgan", s]["gflops_per_slice"] for s in (2, 4, 8))
    assert results["volume"]["output"] == [32, 32, 4] and results["volume"]["seconds"] > 0
    assert [r["model"] for r in results["training"]] == ["fagan", "srgan"]
    assert [r["positions"] for r in results["attention"]] == [64, 256, 1024]
    assert [r["scale"] for r in results["large_slices"]] == [2, 4, 8]
    # Tiny sizes: the targets are reported but not judged.
    assert results["targets"] and all(t["met"] is None for t in results["targets"].values())
    table = format_report(results)
    assert "fagan_vs_srgan_x4" in table and "whole volume: 4 slices" in table


def test_bench_unknown_model_is_one_line_error(capsys) -> None:
    assert main(["bench", "--quick", "--models", "fagan,esrgan"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "esrgan" in err and "valid: fagan, srgan" in err
