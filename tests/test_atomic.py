"""fagan.atomic: whole writes or nothing, and recognising what a killed write left."""

from __future__ import annotations

import os

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
