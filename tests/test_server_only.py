"""Server-only files (pair.toml `server_only`): the repo's stand-in validates in CI, the
agent never deploys it and keeps the server's real file (agent/engine/serveronly.py)."""

from __future__ import annotations

import base64
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from agent import tree
from agent.config import Dhcpd
from agent.engine.reconcile import Node, reconcile
from agent.errors import OmapiError
from agent.servers.dhcpd import omapi
from agent.servers.dhcpd.lift import holds_secret, stand_in
from agent.servers.dhcpd.omapi import OmapiKey
from agent.servers.dhcpd.server import Server as DhcpdServer
from lab.repo import ConfigRepo
from tests.conftest import NodeFactory
from tests.test_adopt import SECRET, server_copy
from tests.test_failover import NORMAL_TIMEOUT, Pair, until
from tests.test_failover import pair as pair  # the fixture: both dhcpd in namespaces

EXE = str(Path(sys.executable).with_name("dhcp-gitops"))
KEY = 'key omapi_key {{\n  algorithm hmac-sha256;\n  secret "{}";\n}}\n'
STAND_IN = KEY.format("A" * 43 + "=")
REAL = KEY.format("c2VydmVyLW9ubHkgc2VjcmV0IG9mIHRoaXMgaG9zdCE=")


@pytest.fixture(autouse=True)
def _needs_dhcpd(dhcpd_binary: str) -> None:
    """The agent and validate run the real dhcpd -t: fail, never skip, without it."""


def declare_key(repo: ConfigRepo, server_only: str = '["omapi.key"]') -> str:
    """The template with an OMAPI key: a stand-in in dhcp/, included, declared server-only."""
    repo.write("dhcp/omapi.key", STAND_IN)
    keyed = 'include "{{ target }}/omapi.key";\nomapi-key omapi_key;\nomapi-port 7911;'
    repo.replace("dhcp/dhcpd.conf.j2", "omapi-port 7911;", keyed)
    repo.write("pair.toml", f"server_only = {server_only}\n" + repo.read("pair.toml"))
    return repo.commit("OMAPI key, kept on the servers")


def live_key(node: Node, text: str = REAL) -> Path:
    """The server's own key in its live target, before the first deploy."""
    path = node.config.deploy.target / "omapi.key"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_the_agent_keeps_the_live_key_and_never_deploys_the_stand_in(
    repo: ConfigRepo, make_node: NodeFactory
) -> None:
    declare_key(repo)
    node = make_node(deploy={"preserve": ["omapi.key"]})
    key = live_key(node)
    attempt = reconcile(node)
    assert attempt.result == "deployed", attempt.message
    assert key.read_text() == REAL
    sha = attempt.sha
    assert sha is not None
    assert not (node.releases.path(sha) / "omapi.key").exists()  # nowhere on the server
    repo.write("dhcp/omapi.key", STAND_IN.replace("AAAA", "BBBB", 1))
    repo.commit("Another stand-in")
    again = reconcile(node)
    assert again.result == "current", again.message  # a stand-in change deploys nothing
    assert key.read_text() == REAL


def test_a_key_not_preserved_fails_and_the_live_key_stays(
    repo: ConfigRepo, make_node: NodeFactory
) -> None:
    """Before server_only, the stand-in replaced the server's key."""
    declare_key(repo)
    node = make_node()
    key = live_key(node)
    attempt = reconcile(node)
    assert attempt.result == "failed" and attempt.step == "render", attempt.message
    assert "server-only file omapi.key (pair.toml)" in attempt.message
    assert "list it in [deploy] preserve" in attempt.message
    assert "put the real file" not in attempt.message
    assert key.read_text() == REAL


def test_a_missing_live_key_fails_with_the_remedy(repo: ConfigRepo, make_node: NodeFactory) -> None:
    """Before server_only, the stand-in went live as the server's key."""
    declare_key(repo)
    node = make_node(deploy={"preserve": ["omapi.key"]})
    attempt = reconcile(node)
    target = node.config.deploy.target
    assert attempt.result == "failed" and attempt.step == "render", attempt.message
    assert f"put the real file at {target}/omapi.key" in attempt.message
    assert not (target / "omapi.key").exists()
    live_key(node)
    assert reconcile(node).result == "deployed"  # retried once the server has its key


@pytest.mark.parametrize("value", ['"omapi.key"', '["../omapi.key"]', '["/etc/dhcp/omapi.key"]',
                                   '["./omapi.key"]', "[1]"])  # fmt: skip
def test_a_wrong_server_only_is_refused_naming_pair_toml(
    repo: ConfigRepo, make_node: NodeFactory, value: str
) -> None:
    declare_key(repo, value)
    node = make_node(deploy={"preserve": ["omapi.key"]})
    live_key(node)
    attempt = reconcile(node)
    assert attempt.result == "refused" and attempt.step == "render", attempt.message
    assert attempt.problems[0].file == "pair.toml" and "server_only" in attempt.message


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([EXE, *args], capture_output=True, text=True, timeout=120, check=False)


def test_validate_checks_the_stand_in_as_it_is(repo: ConfigRepo) -> None:
    declare_key(repo)
    done = cli("validate", str(repo.work))
    assert done.returncode == 0, done.stdout + done.stderr
    repo.write("dhcp/omapi.key", STAND_IN.replace("hmac-sha256;", "hmac-sha256"))
    done = cli("validate", str(repo.work))
    assert done.returncode == 1 and "dhcp/omapi.key:" in done.stdout, done.stdout


def test_plan_marks_a_changed_stand_in(repo: ConfigRepo) -> None:
    declare_key(repo)
    repo.write("dhcp/omapi.key", STAND_IN.replace("AAAA", "BBBB", 1))
    repo.commit("Another stand-in")
    done = cli("plan", "HEAD~1", "HEAD", str(repo.work))
    assert done.returncode == 1, done.stdout + done.stderr
    assert done.stdout.count("`omapi.key` is a stand-in") == 2, done.stdout  # both roles


def test_import_commits_stand_ins_that_validate_and_the_first_deploy_changes_nothing(
    make_node: NodeFactory, tmp_path: Path
) -> None:
    """Before server_only, import left the key file out: the repo did not validate."""
    imported = tmp_path / "imported"
    node = make_node(source={"url": f"file://{imported}"}, deploy={"preserve": ["dhcpd.keys"]})
    target = node.config.deploy.target
    for rel, text in server_copy("primary", keys_included=True).items():
        path = target / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text.replace("/etc/dhcp/", f"{target}/"))
    before = files_of(target)
    done = cli("import", "--from", str(target), "--role", "primary", "--names", "dhcp1,dhcp2",
               "--target", str(target), str(imported))  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert tomllib.loads((imported / "pair.toml").read_text())["server_only"] == ["dhcpd.keys"]
    stand_in = (imported / "dhcp" / "dhcpd.keys").read_text()
    assert SECRET not in stand_in and len(stand_in) == len(before["dhcpd.keys"])
    done = cli("validate", str(imported), "--target", str(target))
    assert done.returncode == 0, done.stdout + done.stderr
    attempt = reconcile(node)
    assert attempt.result == "deployed", attempt.message
    after = files_of(target)
    # Byte for byte, the real key too; the failover declaration is rendered from pair.toml
    # (equivalent, its statements in pair.toml's order: tests/test_adopt.py).
    assert after.keys() == before.keys() and after["dhcpd.keys"] == before["dhcpd.keys"]
    assert {rel for rel in after if after[rel] != before[rel]} <= {"dhcpd.failover"}


def files_of(root: Path) -> dict[str, bytes]:
    return {rel: path.read_bytes() for rel, path in tree.files(root)}


@pytest.mark.parametrize(
    ("text", "masked"),
    [
        ('key k { algorithm hmac-md5; secret "c2VjcmV0IQ=="; }', 'secret "AAAAAAAAAA=="'),
        ("key k {\n  secret ab+c/d==;\n}\n", "secret AAAAAA==;"),
        ('key "k" { secret "s1"; }\nkey j { secret "s2" }', 'secret "AA" }'),
        ('# key k { secret "c2Vj"; }\noption x "c2Vj";\n', 'secret "c2Vj"'),
    ],
)
def test_a_stand_in_masks_every_secret_and_nothing_else(text: str, masked: str) -> None:
    out = stand_in(text.encode()).decode()
    assert masked in out and len(out) == len(text)
    assert not holds_secret(out.encode()) or "AA" in out


# --- the failover check signs with the server's own OMAPI key ----------------------

OMAPI_SECRET = base64.b64encode(bytes(range(32))).decode()


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (KEY.format(OMAPI_SECRET), OmapiKey("omapi_key", OMAPI_SECRET, "hmac-sha256")),
        ('# key x { secret "no"; }\nkey "k" { secret "c2Vj"; }', OmapiKey("k", "c2Vj")),
        ("key k {\n  algorithm HMAC-MD5.SIG-ALG.REG.INT;\n  secret ab+c/d==;\n}\n",
         OmapiKey("k", "ab+c/d==", "hmac-md5")),
    ],
)  # fmt: skip
def test_the_key_is_read_from_a_key_file(text: str, expected: OmapiKey) -> None:
    assert omapi.key_of(text.encode(), "omapi.key") == expected


@pytest.mark.parametrize("text", ["", "omapi-port 7911;\n", "key k { algorithm hmac-md5; }"])
def test_a_key_file_without_a_key_is_an_error(text: str) -> None:
    with pytest.raises(OmapiError, match=r"omapi\.key"):
        omapi.key_of(text.encode(), "omapi.key")


def test_the_failover_check_signs_with_the_live_key_file(pair: Pair, tmp_path: Path) -> None:
    """A pair whose dhcpd.conf sets omapi-key: without [dhcpd] omapi_key_file the check
    cannot ask OMAPI and never sees the pair back to normal."""
    for server in pair.servers():
        server.render(f'include "{server.target}/omapi.key";\nomapi-key omapi_key;\n')
        (server.target / "omapi.key").write_text(KEY.format(OMAPI_SECRET))
        server.start()
    omshell = tuple(pair.primary.ns.argv("omshell"))

    def check(key_file: str | None = None) -> bool | None:
        settings = Dhcpd(restart="none", omshell=omshell, omapi_key_file=key_file)
        return DhcpdServer(settings, pair.primary.target, tmp_path / "state").pair_normal()

    until(lambda: check("omapi.key") is True, NORMAL_TIMEOUT, "normal", pair)
    assert check() is False  # unsigned: dhcpd refuses to answer
    assert check("missing.key") is False
