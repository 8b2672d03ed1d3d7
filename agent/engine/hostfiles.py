"""Files on the host that the repo does not cover: never deleted silently.

A deploy replaces the whole target with the rendered tree plus the preserved
live files (stage.py). But the target is not always ours alone: on Debian,
/etc/dhcp also holds isc-dhcp-client's dhclient.conf, its hook folders and
`debug`, systemd-timesyncd's dhclient-exit-hooks.d/timesyncd, and
isc-dhcp-server's dhcpd6.conf. So before a stage is built, the live entries
the new tree would not have are sorted (docs/design.md, invariant 9):

    preserved     matched by [deploy] preserve: copied into the new tree
    the repo's    rendered by the deployed commit or a kept release: the repo
                  removed them, so they go, as designed
    the host's    every other one: on the first deploy, all the new tree lacks;
                  later, the ones that appeared since (not from us)

A deploy that would remove the host's is refused and names them: nothing is
changed. The operator then keeps them ([deploy] preserve) or lets the repo's
tree replace them ([deploy] host_files = "replace", or `sync
--replace-host-files` once; they stay in the rollback tree until the next
deploy). Keeping them without naming them in preserve is no option: preserve
is also what leaves a file out of the tree's digest, and a kept file that
counted would look like drift at every look, and be deployed again.
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from agent import tree
from agent.engine import stage
from agent.errors import HostFilesError

if TYPE_CHECKING:
    from agent.engine.reconcile import Node
    from agent.engine.state import State

log = logging.getLogger(__name__)

NAMED = 20  # host files named in a message; the rest are counted


def check(node: Node, state: State, files: Mapping[str, bytes]) -> None:
    """HostFilesError if deploying `files` would delete the host's files (see above)."""
    found = foreign(node, state, files)
    if not found:
        return
    target = node.config.deploy.target
    if node.config.deploy.host_files == "refuse":
        raise HostFilesError(refusal(target, found, files))
    log.warning('%s: replacing files the repo does not cover ([deploy] host_files = "replace"; '
                "they stay in the rollback tree): %s", target, names(found))  # fmt: skip


def foreign(node: Node, state: State, files: Mapping[str, bytes]) -> list[str]:
    """The live entries a deploy of `files` would remove that are not the repo's; a
    folder that would go empty as a whole is named with a trailing "/"."""
    target, preserve = node.workspace.target, node.preserve
    if not target.is_dir():
        return []
    if state.deployed is None:
        return dropped(target, files.keys(), preserve)
    if tree.digest(target, preserve) == state.deployed.digest:
        return []  # the tree we deployed, unchanged: nothing in it is new
    return dropped(target, files.keys() | released(node.releases.dir), preserve)


def released(releases: Path) -> set[str]:
    """Every file the kept releases hold: what the repo rendered at some deploy. (With
    keep_releases = 0 there are none, and every file the new tree lacks is named.)"""
    if not releases.is_dir():
        return set()
    kept = [p for p in releases.iterdir() if p.is_dir() and not p.name.startswith(".")]
    return {rel for release in kept for rel, _ in tree.files(release)}


def dropped(live: Path, ours: Collection[str], preserve: Iterable[str]) -> list[str]:
    """Entries of the live tree that neither `ours` nor `preserve` keep in the new one."""
    globs = tuple(preserve)
    found = [rel for rel, _ in tree.files(live) if rel not in ours and not tree.matches(rel, globs)]
    found += [f"{rel}/" for rel in stage.empty_dirs(live) if not _kept_dir(rel, ours, globs)]
    return sorted(found)


def _kept_dir(rel: str, ours: Collection[str], globs: tuple[str, ...]) -> bool:
    return tree.matches(rel, globs) or any(path.startswith(f"{rel}/") for path in ours)


def refusal(target: Path, found: list[str], files: Mapping[str, bytes]) -> str:
    return (
        f"{target} holds files the repo does not cover: {names(found)}. Deploying would "
        f"delete them, so nothing was changed. To keep them, add them to [deploy] preserve: "
        f"preserve = [{', '.join(repr(g) for g in suggested_globs(found, files))}]. To let the "
        "repo's tree replace them: dhcp-gitops sync --replace-host-files, or "
        '[deploy] host_files = "replace".'
    )


def names(found: list[str]) -> str:
    shown = ", ".join(found[:NAMED])
    return shown + (f" and {len(found) - NAMED} more" if len(found) > NAMED else "")


def suggested_globs(found: list[str], files: Mapping[str, bytes]) -> list[str]:
    """A preserve entry per host file: its top folder when the repo puts nothing there
    (preserve wins over the repo), else the file itself."""
    globs = []
    for rel in found:
        top = rel.rstrip("/").split("/", 1)[0]
        repo_uses_top = any(path == top or path.startswith(f"{top}/") for path in files)
        globs.append(rel.rstrip("/") if repo_uses_top else top)
    return list(dict.fromkeys(globs))
