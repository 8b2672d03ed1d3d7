"""Remote faults: unreachable, slow, refusing credentials, force-pushed, branch deleted,
and a damaged mirror. The last good tree keeps serving, the status says why, failed
reconciles back off, and the agent recovers on its own once the remote does.

Real git remotes (file://, https:// with git http-backend on 127.0.0.1) and, for the
service behaviour, the real agent process.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from agent import tree
from agent.engine.reconcile import Node, reconcile
from lab.agent import TOKEN, AgentProcess
from lab.repo import ConfigRepo, git
from tests.conftest import NodeFactory, StartAgent

if TYPE_CHECKING:  # loaded by conftest's pytest_plugins
    from tests.remotes import HttpsServer


@pytest.fixture(autouse=True)
def _needs_dhcpd(dhcpd_binary: str) -> None:
    """Every deploy here is validated by the real dhcpd -t."""


def live_tree(node: Node) -> dict[str, bytes]:
    return {rel: path.read_bytes() for rel, path in tree.files(node.config.deploy.target)}


def change(repo: ConfigRepo, note: str) -> str:
    repo.write("dhcp/hosts.conf", repo.read("dhcp/hosts.conf") + f"# {note}\n")
    return repo.commit(note)


# --- history and branches ---------------------------------------------------------------


def test_force_pushed_history_is_followed(repo: ConfigRepo, make_node: NodeFactory) -> None:
    node = make_node()
    first = git(repo.work, "rev-parse", "HEAD")
    change(repo, "to be rewritten")
    assert reconcile(node).result == "deployed"
    git(repo.work, "reset", "-q", "--hard", first)
    repo.write("dhcp/hosts.conf", repo.read("dhcp/hosts.conf") + "# rewritten\n")
    git(repo.work, "commit", "-qam", "Rewritten")
    git(repo.work, "push", "-qf", "origin", "HEAD:main")
    rewritten = git(repo.work, "rev-parse", "HEAD")
    attempt = reconcile(node)
    assert attempt.result == "deployed" and attempt.sha == rewritten
    assert b"# rewritten" in (node.config.deploy.target / "hosts.conf").read_bytes()


def test_a_deleted_branch_fails_keeps_the_live_tree_and_recovers(
    repo: ConfigRepo, make_node: NodeFactory
) -> None:
    node = make_node()
    assert reconcile(node).result == "deployed"
    before = live_tree(node)
    git(repo.bare, "update-ref", "-d", "refs/heads/main")
    attempt = reconcile(node)
    assert attempt.result == "failed" and attempt.step == "fetch"
    assert "branch 'main' does not exist on" in attempt.message
    assert live_tree(node) == before
    sha = change(repo, "branch back")
    assert reconcile(node).sha == sha


# --- a damaged mirror is cloned again ---------------------------------------------------


def loose_object(node: Node, sha: str) -> Path:
    return node.mirror.path / "objects" / sha[:2] / sha[2:]


def garbage_ref(node: Node, repo: ConfigRepo) -> None:
    (node.mirror.path / "refs" / "heads" / "main").write_text("not a sha\n")


def garbage_config(node: Node, repo: ConfigRepo) -> None:
    (node.mirror.path / "config").write_text("[[[ not git config\n")


def lost_tree(node: Node, repo: ConfigRepo) -> None:
    """The head's roles/ tree is gone: a new commit reuses it, so fetch will not notice."""
    roles = git(repo.work, "rev-parse", "HEAD:roles")
    loose_object(node, roles).unlink()


def no_head_file(node: Node, repo: ConfigRepo) -> None:
    (node.mirror.path / "HEAD").unlink()
    (node.mirror.path / "objects").rename(node.mirror.path / "objects.lost")


DAMAGE = {
    "garbage ref": garbage_ref,
    "garbage config": garbage_config,
    "lost tree": lost_tree,
    "no HEAD, no objects": no_head_file,
}


@pytest.mark.parametrize("damage", DAMAGE)
def test_a_damaged_mirror_is_cloned_again_in_the_same_reconcile(
    repo: ConfigRepo, make_node: NodeFactory, damage: str
) -> None:
    node = make_node()
    assert reconcile(node).result == "deployed"
    DAMAGE[damage](node, repo)
    sha = change(repo, "after the damage")
    attempt = reconcile(node)
    assert attempt.result == "deployed", attempt.message
    assert attempt.sha == sha


def test_a_truncated_blob_fails_once_then_the_fresh_clone_deploys(
    repo: ConfigRepo, make_node: NodeFactory
) -> None:
    node = make_node()
    assert reconcile(node).result == "deployed"
    before = live_tree(node)
    sha = change(repo, "a blob that will rot")
    node.mirror.fetch()
    blob = loose_object(node, git(repo.work, "rev-parse", "HEAD:dhcp/hosts.conf"))
    blob.chmod(0o644)
    blob.write_bytes(blob.read_bytes()[:10])  # a torn write: the zlib stream ends early
    attempt = reconcile(node)
    assert attempt.result == "failed" and attempt.step == "fetch"
    assert "damaged" in attempt.message and "clones it again" in attempt.message
    assert live_tree(node) == before
    assert not node.mirror.path.exists()
    assert reconcile(node).sha == sha


# --- the agent service: status, backoff, recovery ---------------------------------------

FAST_RETRY = {"retry_min": 0.5, "retry_max": 2.0}


def failing_attempts(agent: AgentProcess) -> list[dict[str, Any]]:
    history: list[dict[str, Any]] = agent.client.get("/history?limit=50").json()
    return [a for a in history if a["result"] == "failed"]


def wait_failing(agent: AgentProcess, times: int, why: str) -> dict[str, Any]:
    """Status once `times` reconciles in a row failed; the good tree still serves."""
    # Between two retries, not during one: /status says "deploying" while one runs.
    doc = agent.wait_for(
        lambda d: len(failing_attempts(agent)) >= times and d["live"]["drift"] != "deploying",
        timeout=30,
    )
    last = doc["last_attempt"]
    assert last["result"] == "failed" and last["step"] == "fetch", json.dumps(doc)
    assert why in last["message"].lower(), last["message"]
    assert doc["live"]["drift"] == "none"  # the last good tree keeps serving
    return doc


def assert_backs_off(agent: AgentProcess) -> None:
    """The agent's log plans each retry twice as far out, up to retry_max."""
    planned = re.findall(r"failed (\d+) time\(s\) in a row; retry in ([\d.]+) s", agent.output())
    assert [(int(n), float(s)) for n, s in planned[:3]] == [(1, 0.5), (2, 1.0), (3, 2.0)]


def break_and_recover(
    agent: AgentProcess, repo: ConfigRepo, why: str, *, broken: Any, fixed: Any
) -> None:
    good = agent.status()["deployed"]["sha"]
    new = change(repo, "pushed just before the remote fails")  # the agent polls no timer
    broken()
    agent.client.post("/sync", headers={"Authorization": f"Bearer {TOKEN}"})
    doc = wait_failing(agent, 3, why)
    assert doc["deployed"]["sha"] == good
    assert doc["next_retry_in"] is not None
    assert_backs_off(agent)
    fixed()
    agent.wait_deployed(new, timeout=30)  # no trigger: the backoff's retry finds it


@pytest.mark.timeout(120)
def test_an_unreachable_remote(repo: ConfigRepo, start_agent: StartAgent) -> None:
    agent = start_agent(source=FAST_RETRY)
    agent.wait_for(lambda d: d["deployed"] is not None)
    away = repo.bare.with_name("away.git")
    break_and_recover(
        agent,
        repo,
        "does not appear to be a git repository",
        broken=lambda: repo.bare.rename(away),
        fixed=lambda: away.rename(repo.bare),
    )


@pytest.fixture
def trusted_https(https_git: HttpsServer, monkeypatch: pytest.MonkeyPatch) -> HttpsServer:
    """The https remote, its certificate trusted by git in the agent process too."""
    monkeypatch.setenv("GIT_SSL_CAINFO", str(https_git.cert))
    return https_git


@pytest.mark.timeout(120)
def test_a_slow_remote_times_out(
    repo: ConfigRepo, start_agent: StartAgent, trusted_https: HttpsServer
) -> None:
    url = trusted_https.url(repo.bare)
    agent = start_agent(source={"url": url, "timeout": 1.0, **FAST_RETRY})
    agent.wait_for(lambda d: d["deployed"] is not None)

    def slow() -> None:
        trusted_https.delay = 3.0

    def fast() -> None:
        trusted_https.delay = 0.0

    break_and_recover(agent, repo, "timeout", broken=slow, fixed=fast)


@pytest.mark.timeout(120)
def test_refused_credentials(
    repo: ConfigRepo, start_agent: StartAgent, trusted_https: HttpsServer
) -> None:
    password = "deploy-Pa55-4f2c"
    trusted_https.credentials = ("deploy", password)
    agent = start_agent(
        source={"url": trusted_https.url(repo.bare, "deploy", password), **FAST_RETRY}
    )
    agent.wait_for(lambda d: d["deployed"] is not None)

    def revoke() -> None:
        trusted_https.credentials = ("deploy", "rotated-elsewhere")

    def restore() -> None:
        trusted_https.credentials = ("deploy", password)

    break_and_recover(agent, repo, "authentication failed", broken=revoke, fixed=restore)
    assert password not in agent.output()
