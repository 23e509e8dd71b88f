"""Every ``fagan`` command, misused: one line on stderr, a non-zero exit, no traceback.

The generic cases are generated from each command's argparse parser, for every command in
``fagan.cli.COMMANDS``, so a command added later is covered without editing this file: an unknown
option, the required arguments left out, each option left without its value, a number option
given a word, a choice option given something else. The hand-written cases give the original
commands arguments that parse but make no sense (missing or wrong files, impossible values).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from fagan.cli import COMMANDS, build_parser, main


def _subparsers() -> dict[str, argparse.ArgumentParser]:
    parser = build_parser()
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(action.choices)


def _generic_cases() -> list[tuple[str, list[str]]]:
    """(case id, argv) of parse-level misuse for every command."""
    cases = []
    for name, parser in _subparsers().items():
        cases.append((f"{name}:unknown-option", [name, "--no-such-option"]))
        if any(a.required for a in parser._actions):
            cases.append((f"{name}:required-missing", [name]))
        for action in parser._actions:
            if not action.option_strings or action.nargs == 0 or isinstance(action, argparse._HelpAction):
                continue
            option = action.option_strings[-1]
            cases.append((f"{name}:{option}-without-value", [name, option]))
            if action.type in (int, float):
                cases.append((f"{name}:{option}-not-a-number", [name, option, "many"]))
            if action.choices:
                bad = "99" if action.type in (int, float) else "no-such-choice"
                cases.append((f"{name}:{option}-not-a-choice", [name, option, bad]))
    return cases


GENERIC = _generic_cases()


def _run(argv: list[str], capsys) -> tuple[int, str]:
    try:
        code = main(argv)
    except SystemExit as exc:  # argparse's usage errors
        code = exc.code if isinstance(exc.code, int) else 1
    captured = capsys.readouterr()
    return code, captured.err


def _one_line(code: int, err: str) -> str:
    lines = err.strip().splitlines()
    assert code != 0, "the command succeeded"
    assert len(lines) == 1, f"expected one line on stderr, got {len(lines)}:\n{err}"
    assert "Traceback" not in err and lines[0].startswith("fagan"), err
    assert "error:" in lines[0], err
    return lines[0]


def test_every_command_is_covered() -> None:
    assert set(_subparsers()) == set(COMMANDS)
    covered = {argv[0] for _, argv in GENERIC}
    assert covered == set(COMMANDS)


@pytest.mark.parametrize("argv", [argv for _, argv in GENERIC], ids=[case for case, _ in GENERIC])
def test_parse_level_misuse_is_one_line(argv, capsys) -> None:
    code, err = _run(argv, capsys)
    assert code == 2
    line = _one_line(code, err)
    assert "(see --help)" in line


@pytest.mark.parametrize("command", COMMANDS)
def test_misuse_in_a_real_process_prints_one_line(command) -> None:
    """What a person at a terminal sees: exit status 2 and one line, nothing else."""
    run = subprocess.run(
        [sys.executable, "-m", "fagan", command, "--no-such-option"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 2
    _one_line(run.returncode, run.stderr)
    assert run.stdout == ""


def test_no_command_and_unknown_command(capsys) -> None:
    for argv in ([], ["no-such-command"], ["--no-such-option"]):
        code, err = _run(argv, capsys)
        _one_line(code, err)


# ----------------------------------------------------------------------------------------------
# Arguments that parse but cannot work


@pytest.fixture
def place(tmp_path, monkeypatch) -> Path:
    """A working folder with a plain file, an empty folder and a broken YAML file."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "afile").write_text("not an image")
    (tmp_path / "empty").mkdir()
    (tmp_path / "bad.yaml").write_text("{{{")
    (tmp_path / "taken.json").write_text("{}")
    return tmp_path


CONFIG = str(Path(__file__).resolve().parents[2] / "configs" / "fagan_x4_psnr.yaml")
NO_GPU = not torch.cuda.is_available()

SEMANTIC: dict[str, tuple[list[str], str]] = {
    "prepare:not-a-folder": (["prepare", "afile", "--out", "m.json"], "not a folder"),
    "prepare:missing-folder": (["prepare", "nowhere", "--out", "m.json"], "no such folder"),
    "prepare:no-volumes": (["prepare", "empty", "--out", "m.json"], "no volumes found"),
    "prepare:zero-ratios": (
        ["prepare", "empty", "--out", "m.json", "--ratios", "0", "0", "0"],
        "ratios must be",
    ),
    "prepare:negative-ratio": (
        ["prepare", "empty", "--out", "m.json", "--ratios", "-1", "1", "1"],
        "ratios must be",
    ),
    "prepare:output-exists": (["prepare", "empty", "--out", "taken.json"], "already exists"),
    "upscale:missing-input": (["upscale", "nowhere.nii", "-o", "o.nii", "--scale", "2"], "not found"),
    "upscale:unknown-format": (["upscale", "afile", "-o", "o.nii", "--scale", "2"], "unknown file format"),
    "upscale:empty-folder": (["upscale", "empty", "-o", "o.nii", "--scale", "2"], "no DICOM files"),
    "upscale:output-suffix": (["upscale", "afile", "-o", "empty", "--scale", "2"], "output must end in"),
    "upscale:output-folder-missing": (
        ["upscale", "afile", "-o", "no/o.nii", "--scale", "2"],
        "does not exist",
    ),
    "upscale:negative-frame": (["upscale", "afile", "-o", "o.nii", "--scale", "2", "--frame", "-1"], "frame"),
    "upscale:zero-batch": (
        ["upscale", "afile", "-o", "o.nii", "--scale", "2", "--batch-size", "0"],
        "at least 1",
    ),
    "upscale:negative-tile": (
        ["upscale", "afile", "-o", "o.nii", "--scale", "2", "--tile", "-1"],
        "--tile must",
    ),
    "upscale:no-gan-weights": (
        ["upscale", "afile", "-o", "o.nii", "--scale", "8", "--variant", "gan"],
        "no shipped gan weights",
    ),
    "demo:out-is-a-file": (["demo", "--out", "afile"], "not a folder"),
    "train:bad-yaml": (["train", "--config", "bad.yaml", "--out", "run"], "not valid YAML"),
    "train:config-is-a-folder": (["train", "--config", "empty", "--out", "run"], "config file not found"),
    "train:readme-config-path-elsewhere": (
        ["train", "--config", "configs/fagan_x4_psnr.yaml", "--out", "run"],
        "the repository's config of that name is",
    ),
    "train:set-without-equals": (
        ["train", "--config", CONFIG, "--out", "run", "--set", "steps"],
        "KEY=VALUE",
    ),
    "train:set-wrong-type": (
        ["train", "--config", CONFIG, "--out", "run", "--set", "schedule.steps=abc"],
        "int",
    ),
    "train:missing-data": (["train", "--config", CONFIG, "--out", "run", "--data", "none.json"], "not found"),
    "train:resume-nothing": (["train", "--resume", "nowhere"], "config.yaml not found"),
    "train:export-nothing": (
        ["train", "--export", "empty", "--out", "w.safetensors"],
        "config.yaml not found",
    ),
}
SEMANTIC["models:zero-size"] = (["models", "--size", "0"], "--size")
SEMANTIC["models:negative-size"] = (["models", "--size", "-8"], "--size")
if NO_GPU:
    SEMANTIC["upscale:cuda-without-gpu"] = (
        ["upscale", "afile", "-o", "o.nii", "--scale", "2", "--device", "cuda"],
        "no CUDA GPU",
    )
    SEMANTIC["demo:cuda-without-gpu"] = (["demo", "--out", "d", "--device", "cuda"], "no CUDA GPU")


@pytest.mark.parametrize("case", list(SEMANTIC))
def test_arguments_that_cannot_work_are_one_line(case, place, capsys) -> None:
    argv, match = SEMANTIC[case]
    before = sorted(p.name for p in place.iterdir())
    code, err = _run(argv, capsys)
    assert code == 2
    assert match in _one_line(code, err)
    created = sorted(set(p.name for p in place.iterdir()) - set(before))
    assert created in ([], ["run"], ["d"]), created  # no outputs; at most an empty run/demo folder
