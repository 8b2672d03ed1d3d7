"""`dhcp-gitops diff`: what a sync would change on this server, before it runs.

The commit a sync would deploy (the branch head, or a rollback's pin) is
fetched, trusted, rendered and checked against its pair as reconcile does
(agent/engine/reconcile.py; `dhcpd -t` is not run: that needs the stage),
then compared with the live target, file by file, as unified diffs (plan's
`diffs`): `a/` is the live tree, `b/` the branch. Preserved live files are
named as kept, and host files a sync would refuse to delete are named
(agent/engine/hostfiles.py). Exit 0 no change, 1 changes (or a sync would
refuse the commit), 2 error, as `flux diff` and `argocd app diff` do.

It lives with the review commands, not in agent/engine: like `plan`, it shows
a change before it goes live and writes nothing live (only the mirror, a
cache, is fetched into); the engine holds the steps that change the server.
"""

from __future__ import annotations

import stat
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

from agent import tree
from agent.engine import hostfiles, lock, reconcile
from agent.engine.reconcile import Node
from agent.engine.state import State
from agent.errors import RenderError, TrustError, ValidateError
from agent.review.plan import diffs

NO_CHANGE, CHANGES, ERROR = 0, 1, 2


@dataclass
class Diff:
    target: Path
    sha: str
    subject: str
    diffs: dict[str, list[str]] = field(default_factory=dict)  # live path -> unified diff
    modes: list[str] = field(default_factory=list)  # "path: mode 600 -> 644"
    kept: list[str] = field(default_factory=list)  # preserved live files
    host_files: list[str] = field(default_factory=list)  # live, not covered by the repo
    refused: str | None = None  # why a sync would refuse the commit

    @property
    def changed(self) -> bool:
        return bool(self.diffs or self.modes or self.host_files or self.refused)


def diff(node: Node, on_wait: Callable[[str], None] | None = None) -> Diff:
    """The live target against what a sync would make of it now."""
    # Under the state dir's lock: a running reconcile fetches into the same mirror.
    with lock.hold(node.store.dir, "diff", on_wait=on_wait):
        state = node.store.load()
        sha, pin = reconcile._choose_commit(node, state, None)
        commit = node.mirror.commit(sha)
        result = Diff(node.config.deploy.target, commit.sha, commit.subject)
        try:
            reconcile._trust(node, state, commit.sha, history=pin is None)
            rendered = reconcile.render_commit(node, commit.sha)
            reconcile._check_pair(node, commit.sha, rendered)  # the pair would disagree
        except (TrustError, RenderError, ValidateError) as err:
            result.refused = err.message
            return result
    compare(node, state, rendered.files, result)
    return result


def compare(node: Node, state: State, rendered: dict[str, bytes], result: Diff) -> None:
    target, preserve = result.target, node.preserve
    live = _live(target)
    result.kept = [rel for rel in live if tree.matches(rel, preserve)]
    result.host_files = hostfiles.foreign(node, state, rendered)
    if result.host_files and node.config.deploy.host_files == "refuse":
        result.refused = hostfiles.refusal(target, result.host_files, rendered)
    apart = {*result.kept, *result.host_files}  # named, not diffed
    old = {rel: data for rel, (_, data) in live.items() if rel not in apart}
    # A preserved live file wins over the repo's (stage.copy_preserved).
    new = {rel: data for rel, data in rendered.items() if rel not in result.kept}
    result.diffs = diffs(old, new)
    result.modes = _mode_changes(live, new)


def _mode_changes(live: dict[str, tuple[int, bytes]], new: dict[str, bytes]) -> list[str]:
    """Files whose bytes stay but whose mode a sync resets (the repo's are 0644)."""
    return [
        f"{rel}: mode {mode:o} -> {tree.FILE_MODE:o}"
        for rel, (mode, data) in live.items()
        if new.get(rel) == data and mode != tree.FILE_MODE
    ]


def _live(target: Path) -> dict[str, tuple[int, bytes]]:
    """Every live entry that is not a folder: its mode and bytes (a link: its text)."""
    if not target.is_dir():
        return {}
    found = {}
    for rel, path in tree.files(target):
        st = path.lstat()
        if stat.S_ISLNK(st.st_mode):
            data = f"(a symbolic link to {path.readlink()})\n".encode()
        else:
            data = path.read_bytes() if stat.S_ISREG(st.st_mode) else b"(not a file)\n"
        found[rel] = (stat.S_IMODE(st.st_mode), data)
    return found


def print_diff(result: Diff, branch: str, out: TextIO, notes: TextIO) -> int:
    """The diffs on out (a patch: a/ live, b/ the branch), what else to know on notes."""
    head = f"{result.sha[:12]} {result.subject!r} (branch {branch})"
    print(f"diff: {result.target} (a/, live) against {head} (b/)", file=notes)
    for lines in result.diffs.values():
        out.write("".join(line + "\n" for line in lines))
    out.flush()
    for line in result.modes:
        print(f"mode: {line}", file=notes)
    if result.kept:
        print(f"kept: {', '.join(result.kept)}", file=notes)
    if result.host_files and result.refused is None:
        print(f"replaced, not in the repo: {hostfiles.names(result.host_files)}", file=notes)
    if result.refused is not None:
        print(f"a sync would refuse it: {result.refused}", file=notes)
    if not result.changed:
        print(f"no change: {result.target} is what {result.sha[:12]} renders to", file=notes)
        return NO_CHANGE
    print(f"{len(result.diffs) + len(result.modes)} file(s) would change", file=notes)
    return CHANGES
