"""``fagan train`` killed with SIGKILL at random steps, then resumed, ends where an uninterrupted run does.

Each run is a real ``python -m fagan train`` process on the CPU (one thread, so the arithmetic is
the same in every process) training the tiny configuration on one shipped volume. The kill steps
and the delay after each step (which lands the kill in the step, the validation or the save) are
drawn from a seeded generator, so a failure reproduces. Before resuming, the test also damages
the newest checkpoint (cut short on disk) and plants a temporary file such as a kill mid-save
leaves: the resumed run must skip the first (its checksum fails) and delete the second.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from fagan.data.sample import FILES
from fagan.training import checkpoint, save_config, train
from fagan.training.logs import read_jsonl

from .tiny import tiny_config

VOLUME = FILES / "fsl_mni152_t1_2mm.nii.gz"  # the smallest shipped 3D volume (91x109x91)
STEPS = 8
SEED = 20261126


def _env() -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}


def _start(args: list[str], log: Path) -> subprocess.Popen:
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "fagan", "train", "--device", "cpu", *args],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=_env(),
        )


def _finish(process: subprocess.Popen, log: Path) -> None:
    assert process.wait(timeout=300) == 0, log.read_text()[-3000:]


def _last_step(run: Path) -> int:
    return max((r["step"] for r in read_jsonl(run / "losses.jsonl")), default=0)


def _kill_after(process: subprocess.Popen, run: Path, step: int, delay: float, log: Path) -> int:
    """SIGKILL ``process`` ``delay`` seconds after it logs ``step``; returns the last step logged."""
    deadline = time.monotonic() + 300
    while _last_step(run) < step:
        assert process.poll() is None, f"the run ended before step {step}:\n{log.read_text()[-3000:]}"
        assert time.monotonic() < deadline, "the run did not reach the step in time"
        time.sleep(0.002)
    time.sleep(delay)
    process.send_signal(signal.SIGKILL)
    assert process.wait(timeout=60) == -signal.SIGKILL, "the run ended before it could be killed"
    return _last_step(run)


def _damage_newest_checkpoint(run: Path) -> str | None:
    """Cut the newest checkpoint short (its checksum no longer matches) when an older one is left
    to fall back on; its name, or None."""
    kept = checkpoint.list_checkpoints(run)
    if len(kept) < 2:
        return None
    data = kept[-1].read_bytes()
    kept[-1].write_bytes(data[: len(data) // 3])
    return kept[-1].name


def _same_weights(a: Path, b: Path, steps: int) -> None:
    first, second = checkpoint.read_checkpoint(a), checkpoint.read_checkpoint(b)
    assert first["step"] == second["step"] == steps
    for part in ("generator", "ema", "discriminator"):
        assert first[part].keys() == second[part].keys()
        for key in first[part]:
            assert torch.equal(first[part][key], second[part][key]), f"{part}.{key} differs"


def _kill_and_resume(tmp_path: Path, kills: int, steps: int = STEPS) -> None:
    rng = random.Random(SEED + kills)
    config = save_config(
        tiny_config(f"schedule.steps={steps}", "schedule.checkpoint_every=2", "schedule.validate_every=4"),
        tmp_path / "tiny.yaml",
    )
    data = ["--data", str(VOLUME)]
    straight, killed, log = tmp_path / "straight", tmp_path / "killed", tmp_path / "train.log"
    reference = _start(["--config", str(config), "--out", str(straight), *data], tmp_path / "straight.log")
    process = _start(["--config", str(config), "--out", str(killed), *data], log)
    reached, damaged, plan = 0, [], []
    for left in range(kills, 0, -1):
        if reached >= steps - 1:
            break
        # A random step in the next 1/left of what remains, so that every kill has room.
        step = rng.randint(reached + 1, reached + max(1, (steps - 1 - reached) // left))
        delay = rng.uniform(0.0, 0.08)
        reached = _kill_after(process, killed, step, delay, log)
        damaged.append(_damage_newest_checkpoint(killed))
        plan.append(
            f"SIGKILL {delay * 1000:.0f} ms after step {step} (last logged {reached}, cut {damaged[-1]})"
        )
        (killed / checkpoint.FOLDER).mkdir(exist_ok=True)
        (killed / checkpoint.FOLDER / ".step_00000099.pt.k1ll3d_0.tmp").write_bytes(b"half a checkpoint")
        process = _start(["--resume", str(killed), *data], log)
    _finish(process, log)
    _finish(reference, tmp_path / "straight.log")
    print("\n" + "\n".join(plan))

    _same_weights(checkpoint.list_checkpoints(straight)[-1], checkpoint.list_checkpoints(killed)[-1], steps)
    a, b = load_file(straight / "release.safetensors"), load_file(killed / "release.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)

    def losses(run: Path) -> list[dict]:
        return [{k: v for k, v in r.items() if k != "time"} for r in read_jsonl(run / "losses.jsonl")]

    assert [r["step"] for r in losses(killed)] == list(range(1, steps + 1))
    assert losses(killed) == losses(straight)
    assert checkpoint.leftovers(killed) == []
    text = log.read_text()
    for name in filter(None, damaged):
        assert f"skipping damaged checkpoint: {killed / checkpoint.FOLDER / name} does not match" in text


def test_killed_training_resumes_to_the_weights_of_an_uninterrupted_run(tmp_path) -> None:
    _kill_and_resume(tmp_path, kills=1)


@pytest.mark.slow
@pytest.mark.parametrize("kills", [2, 3, 5])
def test_killed_training_resumes_after_several_kills(tmp_path, kills) -> None:
    _kill_and_resume(tmp_path, kills, steps=16)


@pytest.fixture
def one_thread() -> Iterator[None]:
    """Torch on one thread, like the subprocesses above (much faster on a busy two-core machine)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.mark.parametrize("kill", ["before the save", "between the checkpoint and its checksum"])
def test_a_run_killed_before_its_first_checkpoint_is_finished_starts_again_on_resume(
    tmp_path, monkeypatch, one_thread, kill
) -> None:
    """With no checkpoint to restore, ``--resume`` used to fail and a fresh start was refused
    because the directory already held losses.jsonl: the run could be neither resumed nor restarted.
    Killed between writing step_*.pt and its checksum, the run held one unverifiable checkpoint and
    no finished one, and resuming refused it as damaged (found by the slow SIGKILL test). Both now
    start again from step 0."""
    config = tiny_config(
        "schedule.steps=3",
        "schedule.checkpoint_every=3",
        "schedule.validate_every=3",
        f"data.manifest={VOLUME}",
    )
    train(config, tmp_path / "straight", device="cpu")
    real_write = checkpoint._atomic_write

    def killed(path: Path, data: bytes) -> None:
        if kill == "before the save" or path.name.endswith(".sha256"):
            raise KeyboardInterrupt  # stands in for SIGKILL
        real_write(path, data)

    with monkeypatch.context() as patch:
        patch.setattr(checkpoint, "_atomic_write", killed)
        with pytest.raises(KeyboardInterrupt):
            train(config, tmp_path / "killed", device="cpu")
    left = [] if kill == "before the save" else ["step_00000003.pt"]
    assert [p.name for p in checkpoint.list_checkpoints(tmp_path / "killed")] == left
    assert checkpoint.finished_checkpoints(tmp_path / "killed") == []
    assert len(read_jsonl(tmp_path / "killed" / "losses.jsonl")) == 3
    train(config, tmp_path / "killed", device="cpu", resume=True)
    _same_weights(
        *(checkpoint.list_checkpoints(tmp_path / run)[-1] for run in ("straight", "killed")), steps=3
    )


class _RunsCode:
    """Unpickling this creates the folder ``marker``: proof that a checkpoint's code ran."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple:
        return (os.mkdir, (self.marker,))


def test_a_checkpoint_that_would_run_code_is_skipped_unrun(tmp_path, caplog) -> None:
    """A hostile step_*.pt with a matching checksum (whoever can write one can write both) is
    loaded with weights_only=True: refused, skipped for the previous checkpoint, never executed."""
    run, marker = tmp_path / "run", tmp_path / "code-ran"
    checkpoint.save_checkpoint(run, 1, {"step": 1, "weights": torch.ones(2)})
    checkpoint.save_checkpoint(run, 2, {"step": 2, "weights": _RunsCode(str(marker))})
    payload, path = checkpoint.load_latest(run)
    assert payload["step"] == 1 and path.name == "step_00000001.pt"
    assert "step_00000002.pt cannot be loaded (UnpicklingError" in caplog.text
    assert not marker.exists()
