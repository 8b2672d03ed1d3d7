"""Publishing a validated stage: one atomic exchange with the target, and back.

renameat2(RENAME_EXCHANGE) swaps two directory entries in one step, so the
target is at every instant either the old complete tree or the new one, and
it stays a real directory (AppArmor's dhcpd profile follows no symlinks out).
"""

from __future__ import annotations

import ctypes
import errno
import os
from pathlib import Path

from agent import tree
from agent.errors import PublishError
from agent.stage import Workspace

_AT_FDCWD = -100
_RENAME_EXCHANGE = 1 << 1
_libc = ctypes.CDLL(None, use_errno=True)


def exchange(a: Path, b: Path) -> None:
    """Swap the two paths atomically; both must exist on one filesystem."""
    if _libc.renameat2(_AT_FDCWD, bytes(a), _AT_FDCWD, bytes(b), _RENAME_EXCHANGE) != 0:
        code = ctypes.get_errno()
        raise OSError(code, os.strerror(code), str(a), None, str(b))


def ensure_target(target: Path) -> None:
    """A first deploy onto a machine without the target exchanges with an empty folder."""
    if not target.exists():
        tree.make_dir(target)
        tree.fsync_dir(target.parent)


def swap_in(ws: Workspace) -> None:
    """Make the stage live; the old tree is left at the stage path.

    Power-loss view: the stage was fsync'd whole before this call; after the
    exchange both parent folders are fsync'd, so the swap itself is durable.
    """
    _exchange_durably(ws)


def swap_back(ws: Workspace) -> None:
    """Undo swap_in: the old tree is live again and the refused one is removed."""
    _exchange_durably(ws)
    tree.remove(ws.stage)
    tree.fsync_dir(ws.root)


def keep_previous(ws: Workspace) -> None:
    """After a good deploy the old tree (at the stage path) becomes the rollback tree."""
    tree.remove(ws.previous)
    ws.stage.rename(ws.previous)
    tree.fsync_dir(ws.root)


def _exchange_durably(ws: Workspace) -> None:
    try:
        exchange(ws.stage, ws.target)
    except OSError as err:
        hint = " (is the target a mount point?)" if err.errno in (errno.EXDEV, errno.EBUSY) else ""
        message = f"cannot exchange {ws.stage} and {ws.target}: {err.strerror}{hint}"
        raise PublishError(message) from err
    tree.fsync_dir(ws.target.parent)
    tree.fsync_dir(ws.root)
