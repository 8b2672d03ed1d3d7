"""Past rendered trees under the state dir, `keep_releases` of them, newest kept.

A release is what the repo rendered to for one commit (preserved files are
the server's own and stay out): status compares the live tree with it to
name the files that drifted.
"""

from __future__ import annotations

from pathlib import Path

from agent import tree


class Releases:
    def __init__(self, state_dir: Path, keep: int) -> None:
        self.dir = state_dir / "releases"
        self.keep = keep

    def path(self, sha: str) -> Path:
        return self.dir / sha

    def save(self, sha: str, files: dict[str, bytes]) -> None:
        """Written whole to a temp folder, then renamed into place.

        Power-loss view: the rename's folder is not fsync'd: a release is only a
        help to name drifted files, and one lost to a power cut is a lost hint.
        """
        if self.keep == 0:
            return
        self.dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        tmp = self.dir / f".{sha}.tmp"
        tree.remove(tmp)
        tree.write(tmp, files)
        tree.remove(self.path(sha))
        tmp.rename(self.path(sha))
        self._prune()

    def _prune(self) -> None:
        kept = sorted(
            (p for p in self.dir.iterdir() if not p.name.startswith(".")),
            key=lambda p: p.stat().st_mtime,
            reverse=True,
        )
        for old in kept[self.keep :]:
            tree.remove(old)
        for tmp in self.dir.glob(".*.tmp"):
            tree.remove(tmp)

    def changed_files(self, sha: str, live: Path, exclude: tuple[str, ...]) -> list[str] | None:
        """Files of the live tree that differ from the release; None without one."""
        release = self.path(sha)
        if not release.is_dir():
            return None
        ours, theirs = _files(release, exclude), _files(live, exclude)
        changed = [
            rel
            for rel in sorted(ours.keys() | theirs.keys())
            if rel not in ours
            or rel not in theirs
            or tree.file_digest(ours[rel]) != tree.file_digest(theirs[rel])
        ]
        return changed


def _files(root: Path, exclude: tuple[str, ...]) -> dict[str, Path]:
    return {rel: p for rel, p in tree.files(root) if not tree.matches(rel, exclude)}
