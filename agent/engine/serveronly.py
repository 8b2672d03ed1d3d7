"""Files only the servers hold: a repo's stand-ins for them are never deployed.

A config repo may include files it must not carry, such as TSIG and OMAPI keys.
pair.toml's `server_only` names them (relative to the target) and the repo holds
a stand-in at the same place (a key of the same name and algorithm, a dummy
secret), so `validate` and `plan` render and check the tree as it is. The agent
drops the stand-ins from what it deploys and requires that the server keeps its
real file: named by [deploy] preserve (stage.copy_preserved copies it into every
new tree) and present in the live target. Without that, the attempt fails and is
retried: it is the server's setup that is missing, not the commit's fault.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from agent import tree
from agent.engine import render
from agent.engine.roles import server_only_of
from agent.errors import StepError
from agent.source.snapshot import Snapshot


def keep_out(
    rendered: render.Rendered,
    snapshot: Snapshot,
    pair: str,
    target: Path,
    preserve: Iterable[str],
) -> render.Rendered:
    """The rendered tree without the pair's server-only files; StepError (step render)
    when this server does not keep the real one."""
    declared = server_only_of(snapshot, pair)
    where = render.join_path(pair, render.PAIR_FILE)
    for path in declared:
        _check_kept(path, where, target, tuple(preserve))
    files = {p: d for p, d in rendered.files.items() if not _covered(p, declared)}
    sources = {p: s for p, s in rendered.sources.items() if not _covered(p, declared)}
    return render.Rendered(files=files, sources=sources)


def _check_kept(path: str, where: str, target: Path, preserve: tuple[str, ...]) -> None:
    live = target / path
    missing = [] if live.is_file() else [f"put the real file at {live}"]
    if not tree.matches(path, preserve):
        missing.append("list it in [deploy] preserve")
    if missing:
        raise StepError(
            f"server-only file {path} ({where}) is not kept on this server: "
            f"{' and '.join(missing)}; the repo's copy is a stand-in and is never deployed. "
            f"{target} is unchanged",
            step="render",
        )


def _covered(rel: str, declared: tuple[str, ...]) -> bool:
    """A declared path, or a file below a declared folder."""
    return tree.matches(rel, declared)
