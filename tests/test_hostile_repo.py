"""Hostile repo content: every commit here is refused with a message naming the repo
file, the live tree stays byte for byte what it was, and no file of the machine
outside the config (the stand-in secret below, /etc/passwd) shows up anywhere.

Real git commits, the real dhcpd -t, the agent's own reconcile.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from agent import tree
from agent.engine import status
from agent.engine.reconcile import Node, reconcile
from agent.engine.state import Attempt
from lab.repo import ConfigRepo
from tests.conftest import NodeFactory

# A line of the machine's own /etc/passwd: it must never reach a report.
PASSWD_LINE = Path("/etc/passwd").read_text().splitlines()[0]


@pytest.fixture(autouse=True)
def _needs_dhcpd(dhcpd_binary: str) -> None:
    """The good commit before each hostile one is validated by the real dhcpd."""


@pytest.fixture
def secret(tmp_path: Path) -> Path:
    """A file outside the config that hostile content tries to read."""
    path = tmp_path / "outside" / "secret.key"
    path.parent.mkdir()
    path.write_text("OUTSIDE-SECRET-7f3a\n")
    return path


def live_tree(node: Node) -> dict[str, bytes]:
    return {rel: path.read_bytes() for rel, path in tree.files(node.config.deploy.target)}


def refused(node: Node, *, step: str = "render") -> Attempt:
    """Reconcile the hostile head; it must be refused with the live tree untouched."""
    before = live_tree(node)
    attempt = reconcile(node)
    assert attempt.result == "refused", attempt.message
    assert attempt.step == step
    assert live_tree(node) == before
    assert not node.workspace.stage.exists()
    return attempt


def reports(node: Node) -> str:
    """Everything a user can read about the node: /status, state.json, history.jsonl."""
    store = node.store
    return "\n".join(
        [
            json.dumps(status.report(node)),
            store.state_file.read_text(),
            (store.dir / "history.jsonl").read_text(),
        ]
    )


def assert_nothing_leaked(node: Node) -> None:
    text = reports(node)
    assert "OUTSIDE-SECRET" not in text
    assert PASSWD_LINE not in text


@pytest.fixture
def node(repo: ConfigRepo, make_node: NodeFactory) -> Node:
    """A node with the template repo deployed: the good tree hostile commits must keep."""
    n = make_node(limits={"file_size": 64 * 1024, "files": 40, "tree_size": 256 * 1024})
    assert reconcile(n).result == "deployed"
    return n


# --- links, folders, names -------------------------------------------------------------


@pytest.mark.parametrize(
    "link_to", ["/etc/passwd", "../../../../../../etc/passwd", "/dev/sda", "/etc", "SECRET"]
)
def test_symbolic_links_are_refused(
    repo: ConfigRepo, node: Node, secret: Path, link_to: str
) -> None:
    link = repo.work / "dhcp" / "hosts.d"
    link.symlink_to(str(secret) if link_to == "SECRET" else link_to)
    repo.commit("A link")
    attempt = refused(node)
    assert "dhcp/hosts.d" in attempt.message and "symbolic link" in attempt.message
    assert_nothing_leaked(node)


def test_a_file_where_the_base_has_a_folder_is_refused(repo: ConfigRepo, node: Node) -> None:
    repo.write("dhcp/hosts.d/lab.conf", "# lab hosts\n")
    repo.write("roles/primary/hosts.d", "# a file over the folder\n")
    repo.commit("File in the way of a folder")
    attempt = refused(node)
    assert "roles/primary/hosts.d" in attempt.message or "hosts.d/lab.conf" in attempt.message
    assert "is a file where a folder is" in attempt.message


def test_a_repo_file_in_the_way_of_a_preserved_folder_is_refused(
    repo: ConfigRepo, make_node: NodeFactory
) -> None:
    node = make_node(deploy={"preserve": ["keys/*"]})
    tree.write(node.config.deploy.target, {"keys/omapi.key": b"key omapi { secret x; }\n"})
    assert reconcile(node).result == "deployed"
    repo.write("dhcp/keys", "# a file where the preserved folder is\n")
    repo.commit("keys as a file")
    attempt = refused(node)
    assert "keys/omapi.key" in attempt.message and "a file keys" in attempt.message


@pytest.mark.parametrize(
    "name",
    [b"dhcp/new\nline.conf", b"dhcp/\xff\xfe.conf", b'dhcp/quote".conf', b"dhcp/tab\t.conf"],
)
def test_unsafe_file_names_are_refused(repo: ConfigRepo, node: Node, name: bytes) -> None:
    path = Path(os.fsdecode(bytes(repo.work) + b"/" + name))
    path.write_text("# a name dhcpd or a shell could misread\n")
    repo.commit("An odd name")
    attempt = refused(node)
    assert "file name" in attempt.message


# --- sizes ------------------------------------------------------------------------------


def test_a_huge_file_is_refused_before_it_is_read(repo: ConfigRepo, node: Node) -> None:
    repo.write("dhcp/leases-dump.conf", b"#" * (64 * 1024 + 1))
    repo.commit("A committed dump")
    attempt = refused(node)
    assert "dhcp/leases-dump.conf" in attempt.message
    assert "limits.file_size (65536)" in attempt.message


def test_too_many_files_are_refused(repo: ConfigRepo, node: Node) -> None:
    for i in range(41):
        repo.write(f"dhcp/hosts.d/h{i:02}.conf", f"# host {i}\n")
    repo.commit("Many files")
    attempt = refused(node)
    assert "dhcp" in attempt.message and "more than 40 files (limits.files)" in attempt.message


def test_too_many_bytes_in_all_are_refused(repo: ConfigRepo, node: Node) -> None:
    for i in range(5):
        repo.write(f"dhcp/big{i}.conf", b"#" * 60_000)
    repo.commit("Many big files")
    attempt = refused(node)
    assert "limits.tree_size" in attempt.message


def test_a_very_deep_tree_is_refused(repo: ConfigRepo, node: Node) -> None:
    deep = "/".join(f"d{i}" for i in range(20))
    repo.write(f"dhcp/{deep}/x.conf", "# deep\n")
    repo.commit("Deep folders")
    attempt = refused(node)
    assert "more than 16 folder levels deep (limits.depth)" in attempt.message
    assert "dhcp/d0/d1/" in attempt.message


# --- templates --------------------------------------------------------------------------

SANDBOX_ESCAPES = [
    "{{ ''.__class__.__mro__ }}",
    "{{ ''.__class__.__mro__[1].__subclasses__() }}",
    "{{ ''|attr('__class__') }}",
    "{{ cycler.__init__.__globals__.os.popen('id').read() }}",
    "{{ joiner.__init__.__globals__ }}",
    "{{ namespace.__init__.__globals__ }}",
    "{{ self._TemplateReference__context }}",
    "{{ range.__self__ }}",
    "{{ '{0.__class__.__init__.__globals__}'.format('') }}",
    "{{ lipsum.__globals__ }}",
    "{% include '/etc/passwd' %}",
    "{% import '../../../../etc/passwd' as p %}",
    "{% extends 'SECRET' %}",
]


@pytest.mark.parametrize("text", SANDBOX_ESCAPES)
def test_template_sandbox_escapes_are_refused(
    repo: ConfigRepo, node: Node, secret: Path, text: str
) -> None:
    repo.write("dhcp/escape.conf.j2", "# before\n" + text.replace("SECRET", str(secret)) + "\n")
    repo.commit("Sandbox escape")
    attempt = refused(node)
    assert "dhcp/escape.conf.j2" in attempt.message
    assert_nothing_leaked(node)
    assert "uid=" not in reports(node)  # popen('id') never ran


TEMPLATE_BOMBS = [
    ("{{ 'x' * 10**9 }}", "over limits.file_size"),
    ("{{ [0] * 10**9 }}", "over limits.file_size"),
    ("{{ 2 ** 999999999 }}", "too large a number"),
    ("{{ 'x'.ljust(10**10) }}", "over limits.file_size"),
    ("{% for i in range(99999) %}{% for j in range(99999) %}{% endfor %}{% endfor %}", "loop"),
    ("{% for i in range(9000) %}{{ 'x' * 60 }}\n{% endfor %}", "renders to more than"),
]


@pytest.mark.parametrize(("text", "why"), TEMPLATE_BOMBS)
def test_template_bombs_are_refused(repo: ConfigRepo, node: Node, text: str, why: str) -> None:
    repo.write("dhcp/bomb.conf.j2", text + "\n")
    repo.commit("A template that never ends")
    attempt = refused(node)
    assert "dhcp/bomb.conf.j2" in attempt.message and why in attempt.message


# --- what dhcpd would read --------------------------------------------------------------


@pytest.mark.parametrize("path", ["SECRET", "/etc/passwd", "../../../../../../etc/passwd"])
def test_includes_outside_the_config_are_refused_unread(
    repo: ConfigRepo, node: Node, secret: Path, path: str
) -> None:
    repo.write("dhcp/hosts.conf", 'include "' + path.replace("SECRET", str(secret)) + '";\n')
    repo.commit("Include from outside")
    attempt = refused(node, step="validate")
    assert "outside" in attempt.message or "outside" in str(attempt.problems)
    assert_nothing_leaked(node)


def test_a_pair_folder_that_does_not_exist_is_named(
    repo: ConfigRepo, make_node: NodeFactory
) -> None:
    node = make_node(source={"path": "sites/gone"})
    attempt = reconcile(node)
    assert attempt.result == "refused" and "sites/gone: pair folder not found" in attempt.message
    assert not node.config.deploy.target.exists() or live_tree(node) == {}
