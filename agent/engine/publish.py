"""Publishing a validated stage: one atomic exchange with the target, and back.

renameat2(RENAME_EXCHANGE) swaps two directory entries in one step, so the
target is at every instant either the old complete tree or the new one, and
it stays a real directory (AppArmor's dhcpd profile follows no symlinks out).
"""

from __future__ import annotations

import ctypes
import errno
import os
import re
from collections.abc import Iterable
from pathlib import Path

from agent import fault, tree
from agent.engine.stage import Workspace
from agent.errors import PublishError

_AT_FDCWD = -100
_RENAME_EXCHANGE = 1 << 1
_libc = ctypes.CDLL(None, use_errno=True)
_DIGEST = re.compile(r"[0-9a-f]{64}")


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


def swap_in(ws: Workspace, digest: str) -> None:
    """Make the stage (whose tree.digest() is `digest`) live; the old tree is left at
    the stage path.

    Power-loss view, in this order: (1) stage.build fsync'd every staged file and
    then every staged folder; (2) the journal naming the new tree's digest is
    written, fsync'd, and its folder fsync'd; (3) the exchange; (4) both parent
    folders are fsync'd, so the swap is on disk before dhcpd is restarted onto it.
    So after a power cut the target is the old tree or the new one, each whole
    (1), and if it is the new one the journal says so (2 before 3): recovery
    (agent/engine/recovery.py) then puts the recorded tree back, unless state.json,
    written only after (4), already names the new one.
    """
    fault.point("before-exchange")
    _write_journal(ws, digest)
    _exchange_durably(ws, ws.stage)
    fault.point("after-exchange")


def swap_back(ws: Workspace) -> None:
    """Undo swap_in: the old tree is live again and the refused one is removed."""
    _exchange_durably(ws, ws.stage)
    tree.remove(ws.stage)
    tree.fsync_dir(ws.root)


def put_back(ws: Workspace, old: Path) -> None:
    """Recovery's undo of a swap_in no record followed: `old` (the stage, or previous
    once kept) is live again and holds the unrecorded tree."""
    _exchange_durably(ws, old)


def keep_previous(ws: Workspace) -> None:
    """After a good deploy the old tree (at the stage path) becomes the rollback tree.

    Power-loss view: a cut during the rmtree or before the rename is durable
    leaves the old tree at the stage path; recovery looks there first.
    """
    tree.remove(ws.previous)
    ws.stage.rename(ws.previous)
    tree.fsync_dir(ws.root)


def journal(ws: Workspace) -> str | None:
    """The digest of the tree the last swap_in made live, while no record names it.

    A journal that names no digest (empty: a power cut before its fsync) was never
    followed by an exchange, which comes only after the journal is durable: None.
    """
    try:
        text = ws.journal.read_text(encoding="ascii", errors="replace").strip()
    except FileNotFoundError:
        return None
    return text if _DIGEST.fullmatch(text) else None


def unrecorded(ws: Workspace, recorded: str | None, exclude: Iterable[str]) -> bool:
    """The journal names the live tree and the record (digest `recorded`) does not: a
    step failed after the exchange without undoing it (a full state dir at the record).
    The journal must then outlive the attempt, so that recovery puts the recorded tree
    back before the next deploy, as after a crash at the same point."""
    digest = journal(ws)
    return digest is not None and digest != recorded and tree.digest(ws.target, exclude) == digest


def settle(ws: Workspace) -> None:
    """state.json now names what is live (or the exchange was undone): drop the journal.

    Power-loss view: called after state.json is durable; a journal that outlives
    a cut names a tree state.json already records, or one a rollback already
    exchanged back: either way recovery leaves the live tree as it is.
    """
    if ws.journal.exists():
        ws.journal.unlink()
        tree.fsync_dir(ws.root)


def _write_journal(ws: Workspace, digest: str) -> None:
    ws.journal.unlink(missing_ok=True)
    try:
        tree.write_file(ws.journal, f"{digest}\n".encode(), 0o600)  # fsync'd before close
        tree.fsync_dir(ws.root)
    except OSError:
        # A full or failing disk: no exchange follows, so no journal may stay to
        # make the next recovery restart dhcpd for an exchange that never was.
        ws.journal.unlink(missing_ok=True)
        raise


def _exchange_durably(ws: Workspace, other: Path) -> None:
    try:
        exchange(other, ws.target)
    except OSError as err:
        hint = " (is the target a mount point?)" if err.errno in (errno.EXDEV, errno.EBUSY) else ""
        message = f"cannot exchange {other} and {ws.target}: {err.strerror}{hint}"
        raise PublishError(message) from err
    tree.fsync_dir(ws.target.parent)
    tree.fsync_dir(other.parent)
