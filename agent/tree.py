"""Directory trees on disk: write durably, hash, remove."""

from __future__ import annotations

import fnmatch
import hashlib
import os
import shutil
import stat
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path

FILE_MODE = 0o644
DIR_MODE = 0o755


def write(
    root: Path, files: Mapping[str, bytes], after_each: Callable[[], None] | None = None
) -> None:
    """Create root with the files (0644, folders 0755), every byte on disk before return.

    Power-loss view: each file is fsync'd before close, then every folder
    bottom-up, so once this returns the tree survives a crash whole; the
    exchange that publishes it comes only after. after_each runs after every
    file (a fault point: a crash with half the stage written).
    """
    make_dir(root)
    for rel, data in files.items():
        path = root / rel
        for parent in reversed(path.relative_to(root).parents[:-1]):
            if not (root / parent).is_dir():
                make_dir(root / parent)
        write_file(path, data, FILE_MODE)
        if after_each is not None:
            after_each()
    fsync_dirs(root)


def make_dir(path: Path) -> None:
    path.mkdir()
    path.chmod(DIR_MODE)  # the umask must not narrow what dhcpd may read


def write_file(path: Path, data: bytes, mode: int, owner: tuple[int, int] | None = None) -> None:
    """A new file, its bytes, mode and owner on disk (fsync'd) before it is closed."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, mode)
    try:
        if owner is not None:
            os.fchown(fd, *owner)  # before fchmod: a chown may clear set-id bits
        os.fchmod(fd, mode)  # whatever the umask
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        os.fsync(fd)
    except OSError as err:  # write() names no file; a full disk should say which
        raise OSError(err.errno, err.strerror, str(path)) from err
    finally:
        os.close(fd)


def fsync_dirs(root: Path) -> None:
    """fsync every folder below root, deepest first, then root itself."""
    for dirpath, _dirs, _files in os.walk(root, topdown=False):
        fsync_dir(Path(dirpath))


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def files(root: Path) -> Iterator[tuple[str, Path]]:
    """(relative path, path) of every entry that is not a folder, sorted, links not followed."""
    for dirpath, dirs, names in os.walk(root):
        base = Path(dirpath)
        links = [d for d in dirs if (base / d).is_symlink()]  # walk lists, never enters them
        dirs.sort()
        for name in sorted(names + links):
            path = base / name
            yield path.relative_to(root).as_posix(), path


def matches(rel: str, globs: Iterable[str]) -> bool:
    return any(fnmatch.fnmatchcase(rel, g) or rel.startswith(g.rstrip("/") + "/") for g in globs)


READ_TRIES = 3


def digest(root: Path, exclude: Iterable[str] = ()) -> str | None:
    """A hash of names, kinds, modes and contents; None when root is not a folder.

    Files matching `exclude` (the preserve globs) are left out: they are the
    server's own and change without a deploy. A tree exchanged while it is read
    (/status during a deploy) is read again.
    """
    for _ in range(READ_TRIES - 1):
        try:
            return _digest(root, tuple(exclude))
        except FileNotFoundError:
            continue
    return _digest(root, tuple(exclude))


def _digest(root: Path, exclude: tuple[str, ...]) -> str | None:
    if not root.is_dir() or root.is_symlink():
        return None
    h = hashlib.sha256()
    for rel, path in sorted(files(root)):
        if matches(rel, exclude):
            continue
        st = path.lstat()
        h.update(f"{rel}\0{stat.S_IFMT(st.st_mode):o}\0{stat.S_IMODE(st.st_mode):o}\0".encode())
        if stat.S_ISREG(st.st_mode):
            h.update(file_digest(path))
        elif stat.S_ISLNK(st.st_mode):
            h.update(str(path.readlink()).encode())
    return h.hexdigest()


def content_digest(files: Mapping[str, bytes], exclude: Iterable[str] = ()) -> str:
    """The digest() a tree written by write(files) will have."""
    excluded = tuple(exclude)
    h = hashlib.sha256()
    for rel in sorted(files):
        if matches(rel, excluded):
            continue
        h.update(f"{rel}\0{stat.S_IFREG:o}\0{FILE_MODE:o}\0".encode())
        h.update(hashlib.sha256(files[rel]).digest())
    return h.hexdigest()


def file_digest(path: Path) -> bytes:
    with path.open("rb") as f:
        return hashlib.file_digest(f, "sha256").digest()


def remove(path: Path) -> None:
    """Remove a tree if it is there; a link is removed, never followed."""
    if path.is_symlink() or path.is_file():
        path.unlink()
    elif path.exists():
        shutil.rmtree(path)
