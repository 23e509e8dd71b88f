"""Atomic file writing: a write either completes or leaves nothing behind."""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import shutil
from collections.abc import Iterator
from pathlib import Path


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, suffix: str = ".tmp") -> Iterator[str]:
    """Yield a temporary file name in ``path``'s folder for the caller to write.

    When the block ends normally the file is flushed to disk, given the permissions a new file
    would get (not the 0600 it is made with) and renamed onto ``path`` in one step; when it
    raises (or the process is interrupted) the temporary file is removed and ``path`` is
    untouched. ``suffix`` keeps writers that choose their format by extension (``.nii.gz``)
    working.

    The name is chosen before the file is made, inside the block that removes it: a signal whose
    handler raises (fagan's SIGTERM and SIGHUP handlers do, as Ctrl-C does) can land the moment
    the file exists, and would leave it behind if only the call that made it knew its name.
    """
    path = Path(path)
    folder = path.parent if str(path.parent) else Path(".")
    tmp = ""
    try:
        while True:
            tmp = str(folder / f".{path.name}.{_token()}{suffix}")
            try:
                os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
                break
            except FileExistsError:
                tmp = ""  # another writer's file: never remove it
        yield tmp
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    finally:
        if tmp:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)


@contextlib.contextmanager
def atomic_folder(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a new, empty folder beside ``path`` for the caller to fill.

    When the block ends normally the folder is renamed onto ``path`` (a link is followed to its
    target); a folder already there is moved aside first and removed once the new one is in place
    (the caller decides whether it may be replaced). When the block raises (or the process is
    interrupted) the new folder is removed, as are the missing parent folders this call made, and
    ``path`` is untouched: a command that writes several files never leaves a mix of new and old
    ones, or half of its output. If only the final renames fail (``path`` is a mount point, say),
    the old folder stays and the finished one is kept under its temporary name, which the
    OSError names.

    What the cleanup does is decided by what is on disk, so a signal between two renames leaves
    either the old folder or the new one at ``path``, never neither.
    """
    path = Path(path)
    if path.is_symlink():
        path = path.resolve()
    made = [p for p in reversed(path.absolute().parents) if not p.exists()]
    tmp: Path | None = None
    old: Path | None = None
    filled = keep = False
    try:
        for parent in made:
            parent.mkdir()
        while tmp is None:
            tmp = path.parent / f".{path.name}.{_token()}.tmp"
            try:
                tmp.mkdir()
            except FileExistsError:
                tmp = None  # another writer's folder: never remove it
            except OSError as exc:  # name the output, not the hidden folder it is made in
                raise OSError(
                    f"cannot write {path}: {exc.strerror or exc} in {path.parent}, where the output "
                    "is assembled before it is put in place"
                ) from None
        yield tmp
        filled = True
        try:
            if path.exists():
                old = path.parent / f".{path.name}.{_token()}.old"
                os.replace(path, old)
            os.replace(tmp, path)
        except OSError as exc:
            keep = True
            message = f"could not put the output in place at {path} ({exc}); it is kept in {tmp}"
            raise OSError(message) from exc
    finally:
        placed = filled and tmp is not None and not tmp.exists() and path.exists()
        if old is not None and old.exists():
            if placed:
                shutil.rmtree(old, ignore_errors=True)
            elif not path.exists():
                with contextlib.suppress(OSError):
                    os.replace(old, path)
        if not placed and not keep:
            if tmp is not None:
                shutil.rmtree(tmp, ignore_errors=True)
            for parent in reversed(made):
                with contextlib.suppress(OSError):
                    parent.rmdir()


_TOKEN_CHARACTERS = "abcdefghijklmnopqrstuvwxyz0123456789_"


def _token() -> str:
    """8 random characters of ``[a-z0-9_]``, as in the names ``tempfile.mkstemp`` makes (and
    temporary files of earlier fagan versions have)."""
    return "".join(secrets.choice(_TOKEN_CHARACTERS) for _ in range(8))


def leftovers(folder: str | os.PathLike, name: str, suffix: str = ".tmp") -> list[Path]:
    """Temporary files that :func:`atomic_path` calls killed before they could clean up left in
    ``folder``, for targets whose file name matches the regular expression ``name`` (and that
    were given ``suffix``): ``.<target name>.<8 characters of [a-z0-9_]><suffix>``, the names
    ``tempfile.mkstemp`` makes. Sorted; an absent folder has none."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    pattern = re.compile(rf"^\.(?:{name})\.[a-z0-9_]{{8}}{re.escape(suffix)}$")
    return sorted(p for p in folder.iterdir() if pattern.match(p.name) and p.is_file())
