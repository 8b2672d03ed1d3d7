"""agent.tree and agent.engine.publish: durable writes, digests, the atomic exchange."""

from __future__ import annotations

import errno
import os
import threading
from pathlib import Path

import pytest

from agent import tree
from agent.engine import publish
from agent.engine.stage import Workspace, build

FILES = {"dhcpd.conf": b"authoritative;\n", "sub/hosts.conf": b"# hosts\n", "z.conf": b""}


def swap_in(ws: Workspace) -> None:
    """publish.swap_in as reconcile calls it, with the staged tree's digest."""
    digest = tree.digest(ws.stage)
    assert digest is not None
    publish.swap_in(ws, digest)


def test_written_tree_has_the_digest_its_content_predicts(tmp_path: Path) -> None:
    tree.write(tmp_path / "t", FILES)
    assert tree.digest(tmp_path / "t") == tree.content_digest(FILES)


def test_written_files_are_0644_and_folders_0755_whatever_the_umask(tmp_path: Path) -> None:
    old = os.umask(0o077)
    try:
        tree.write(tmp_path / "t", FILES)
    finally:
        os.umask(old)
    assert (tmp_path / "t" / "sub" / "hosts.conf").stat().st_mode & 0o777 == 0o644
    assert (tmp_path / "t" / "sub").stat().st_mode & 0o777 == 0o755


def test_digest_sees_content_mode_and_names_but_not_excluded_files(tmp_path: Path) -> None:
    root = tmp_path / "t"
    tree.write(root, FILES)
    before = tree.digest(root)
    (root / "z.conf").chmod(0o600)
    assert tree.digest(root) != before
    (root / "z.conf").chmod(0o644)
    (root / "keys.conf").write_text("secret")
    assert tree.digest(root) != before
    assert tree.digest(root, exclude=["keys.conf"]) == before
    assert tree.content_digest({**FILES, "keys.conf": b"x"}, exclude=["keys.conf"]) == before


def test_exchange_swaps_two_folders(tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    tree.write(a, {"f": b"a"})
    tree.write(b, {"f": b"b"})
    publish.exchange(a, b)
    assert (a / "f").read_bytes() == b"b" and (b / "f").read_bytes() == b"a"


def test_exchange_refuses_a_missing_side(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    with pytest.raises(OSError) as raised:
        publish.exchange(tmp_path / "a", tmp_path / "missing")
    assert raised.value.errno == errno.ENOENT


def test_readers_never_see_a_partial_tree_during_swaps(tmp_path: Path) -> None:
    """Invariant 1: at every instant the target holds one complete tree or the other."""
    ws = Workspace(tmp_path / "etc" / "dhcp")
    (tmp_path / "etc").mkdir()
    old = {f"f{i}.conf": b"old\n" for i in range(30)}
    new = {f"f{i}.conf": b"new\n" for i in range(30)}
    tree.write(ws.target, old)
    seen: set[frozenset[bytes]] = set()
    stop = threading.Event()

    def read_forever() -> None:
        while not stop.is_set():
            try:
                seen.add(frozenset(p.read_bytes() for p in ws.target.iterdir()))
            except FileNotFoundError:
                seen.add(frozenset([b"a file vanished"]))

    reader = threading.Thread(target=read_forever)
    reader.start()
    try:
        for i in range(40):
            build(ws, new if i % 2 == 0 else old, ())
            swap_in(ws)
            publish.keep_previous(ws)
    finally:
        stop.set()
        reader.join()
    # A reader may list the folder of one tree and open files after the swap;
    # with whole-tree swaps every file it reads still comes from one tree.
    assert seen <= {frozenset([b"old\n"]), frozenset([b"new\n"]), frozenset([b"old\n", b"new\n"])}
    assert frozenset([b"a file vanished"]) not in seen


def test_swap_back_restores_the_old_tree_and_drops_the_new(tmp_path: Path) -> None:
    ws = Workspace(tmp_path / "dhcp")
    tree.write(ws.target, {"a": b"old"})
    build(ws, {"a": b"new"}, ())
    swap_in(ws)
    assert (ws.target / "a").read_bytes() == b"new"
    publish.swap_back(ws)
    assert (ws.target / "a").read_bytes() == b"old"
    assert not ws.stage.exists()


def test_keep_previous_keeps_exactly_one_rollback_tree(tmp_path: Path) -> None:
    ws = Workspace(tmp_path / "dhcp")
    tree.write(ws.target, {"a": b"1"})
    for content in (b"2", b"3"):
        build(ws, {"a": content}, ())
        swap_in(ws)
        publish.keep_previous(ws)
        publish.settle(ws)  # as reconcile does once state.json records the deploy
    assert (ws.previous / "a").read_bytes() == b"2"
    assert sorted(p.name for p in ws.root.iterdir()) == ["previous"]


def test_preserved_live_files_are_copied_with_their_mode(tmp_path: Path) -> None:
    ws = Workspace(tmp_path / "dhcp")
    tree.write(ws.target, {"a": b"old", "keys/tsig.key": b"secret"})
    (ws.target / "keys" / "tsig.key").chmod(0o640)
    kept = build(ws, {"a": b"new", "keys/tsig.key": b"from the repo"}, ["keys/*"])
    assert kept == ["keys/tsig.key"]
    assert (ws.stage / "keys" / "tsig.key").read_bytes() == b"secret"
    assert (ws.stage / "keys" / "tsig.key").stat().st_mode & 0o777 == 0o640


def test_exchange_across_filesystems_is_refused(tmp_path: Path) -> None:
    """/dev/shm is a tmpfs: a folder there cannot be exchanged with one here."""
    other = Path("/dev/shm") / f"dgt-{tmp_path.name}"
    tree.write(other, {"a": b"x"})
    (tmp_path / "dhcp").mkdir()
    try:
        with pytest.raises(OSError) as raised:
            publish.exchange(other, tmp_path / "dhcp")
        assert raised.value.errno == errno.EXDEV
    finally:
        tree.remove(other)


def test_swap_in_journals_the_tree_it_made_live_until_settled(tmp_path: Path) -> None:
    """The journal is how recovery tells an unrecorded exchange from a stage never swapped."""
    ws = Workspace(tmp_path / "dhcp")
    tree.write(ws.target, {"a": b"old"})
    build(ws, {"a": b"new"}, ())
    assert publish.journal(ws) is None
    swap_in(ws)
    assert publish.journal(ws) == tree.digest(ws.target)
    publish.settle(ws)
    assert publish.journal(ws) is None and not ws.journal.exists()
