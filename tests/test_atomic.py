"""fagan.atomic: whole writes or nothing, and recognising what a killed write left."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from fagan import atomic


def test_a_write_that_raises_leaves_the_target_untouched_and_no_temporary_file(tmp_path):
    target = tmp_path / "out.nii.gz"
    target.write_bytes(b"old")
    with pytest.raises(RuntimeError), atomic.atomic_path(target, suffix=".nii.gz") as tmp:
        open(tmp, "wb").write(b"half")
        assert atomic.leftovers(tmp_path, "out\\.nii\\.gz", ".nii.gz") == [tmp_path / os.path.basename(tmp)]
        raise RuntimeError("killed")
    assert target.read_bytes() == b"old" and os.listdir(tmp_path) == ["out.nii.gz"]
    with atomic.atomic_path(target, suffix=".nii.gz") as tmp:
        open(tmp, "wb").write(b"new")
    assert target.read_bytes() == b"new" and os.listdir(tmp_path) == ["out.nii.gz"]


def test_leftovers_match_only_mkstemp_names_of_the_given_targets(tmp_path):
    mine = [".step_7.pt.ab_cd012.tmp", ".step_12.pt.sha256.zzzzzzzz.tmp"]
    others = [".step_7.pt.short.tmp", ".step_x.pt.abcdefgh.tmp", "step_7.pt", ".step_7.pt.abcdefgh.nii"]
    for name in mine + others:
        (tmp_path / name).write_bytes(b"")
    found = atomic.leftovers(tmp_path, r"step_\d+\.pt(?:\.sha256)?")
    assert found == sorted(tmp_path / n for n in mine)
    assert atomic.leftovers(tmp_path / "absent", "x") == []


def test_a_signal_right_after_the_temporary_file_is_made_still_cleans_it_up(tmp_path, monkeypatch):
    """A SIGTERM/SIGHUP/Ctrl-C whose handler raises (as fagan's do) can land the moment the
    temporary file exists, before the call that made it has returned its name."""
    import signal

    class Stopped(Exception):
        pass

    def stop(signum, frame):
        raise Stopped

    real_open = os.open

    def open_then_signal(name, *args, **kwargs):
        fd = real_open(name, *args, **kwargs)
        if str(name).startswith(str(tmp_path)):
            os.kill(os.getpid(), signal.SIGHUP)  # raises here, in the making of the file
        return fd

    previous = signal.signal(signal.SIGHUP, stop)
    try:
        monkeypatch.setattr(atomic.os, "open", open_then_signal)
        with pytest.raises(Stopped), atomic.atomic_path(tmp_path / "out.nii.gz", suffix=".nii.gz") as tmp:
            open(tmp, "wb").write(b"never")
    finally:
        signal.signal(signal.SIGHUP, previous)
        monkeypatch.undo()
    assert os.listdir(tmp_path) == []


def test_atomic_folder_replaces_a_folder_whole_or_not_at_all(tmp_path) -> None:
    target = tmp_path / "a" / "b" / "out"
    with pytest.raises(RuntimeError), atomic.atomic_folder(target) as folder:
        (folder / "half.csv").write_text("1")
        raise RuntimeError("killed")
    assert not (tmp_path / "a").exists(), "the parents it made are gone too"
    with atomic.atomic_folder(target) as folder:
        (folder / "old.csv").write_text("old")
    assert [p.name for p in target.iterdir()] == ["old.csv"]
    with pytest.raises(RuntimeError), atomic.atomic_folder(target) as folder:
        (folder / "new.csv").write_text("new")
        raise RuntimeError("killed")
    assert [p.name for p in target.iterdir()] == ["old.csv"]
    with atomic.atomic_folder(target) as folder:
        (folder / "new.csv").write_text("new")
    assert [p.name for p in target.iterdir()] == ["new.csv"]
    assert sorted(p.name for p in target.parent.iterdir()) == ["out"], "no temporary or old folder left"


def _replace_then(fail_on: int, error: BaseException, monkeypatch) -> None:
    """Make the ``fail_on``-th os.replace (1-based) raise ``error``: before renaming when it is an
    OSError (the rename failed), after it otherwise (a signal landed right after it)."""
    real, calls = os.replace, []

    def replace(src, dst):
        calls.append(src)
        if len(calls) == fail_on:
            if isinstance(error, OSError):
                raise error
            real(src, dst)
            raise error
        real(src, dst)

    monkeypatch.setattr(atomic.os, "replace", replace)


@pytest.mark.parametrize("fail_on", [1, 2])
def test_atomic_folder_keeps_old_or_new_when_a_signal_lands_between_its_renames(
    tmp_path, monkeypatch, fail_on
):
    target = tmp_path / "out"
    target.mkdir()
    (target / "old.csv").write_text("old")
    _replace_then(fail_on, KeyboardInterrupt(), monkeypatch)
    with pytest.raises(KeyboardInterrupt), atomic.atomic_folder(target) as folder:
        (folder / "new.csv").write_text("new")
    # After the first rename (old moved aside) the old folder comes back; after the second the new
    # one is in place. Either way the other is gone and the interruption is what surfaces.
    assert [p.name for p in target.iterdir()] == ["old.csv" if fail_on == 1 else "new.csv"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_atomic_folder_keeps_a_finished_output_whose_rename_failed(tmp_path, monkeypatch):
    target = tmp_path / "out"
    target.mkdir()
    (target / "old.csv").write_text("old")
    _replace_then(1, OSError(16, "Device or resource busy"), monkeypatch)
    with pytest.raises(
        OSError, match=r"could not put the output in place .*busy.*; it is kept in .*\.out\."
    ) as caught:
        with atomic.atomic_folder(target) as folder:
            (folder / "new.csv").write_text("new")
    assert [p.name for p in target.iterdir()] == ["old.csv"]
    kept = caught.value.args[0].rsplit("it is kept in ", 1)[1]
    assert [p.name for p in Path(kept).iterdir()] == ["new.csv"]


def test_atomic_folder_writes_through_a_link_to_its_target(tmp_path):
    real = tmp_path / "real"
    real.mkdir()
    (tmp_path / "link").symlink_to(real)
    with atomic.atomic_folder(tmp_path / "link") as folder:
        (folder / "new.csv").write_text("new")
    assert (tmp_path / "link").is_symlink() and [p.name for p in real.iterdir()] == ["new.csv"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["link", "real"]


def test_a_folder_that_cannot_be_made_names_the_output_not_the_hidden_folder(tmp_path, monkeypatch):
    import errno
    import pathlib

    from fagan.atomic import atomic_folder

    made = pathlib.Path.mkdir

    def read_only(self, *args, **kwargs):
        if self.name.endswith(".tmp"):
            raise OSError(errno.EROFS, "Read-only file system", str(self))
        return made(self, *args, **kwargs)

    monkeypatch.setattr(pathlib.Path, "mkdir", read_only)
    with pytest.raises(OSError, match=r"^cannot write .*ev: Read-only file system in ") as info:
        with atomic_folder(tmp_path / "ev"):
            pass
    assert ".tmp" not in str(info.value) and not (tmp_path / "ev").exists()
