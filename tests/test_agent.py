"""`dhcp-gitops agent` for real: a process on loopback, real pushes, signed webhooks."""

from __future__ import annotations

import json
import resource
import shutil
import socket
import ssl
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from agent.engine.state import Store
from lab.agent import EXE, TOKEN, AgentProcess
from lab.forge import SECRET, github_signature, push_payload
from lab.ports import free_port
from lab.repo import ConfigRepo
from lab.toml import toml_text
from tests.conftest import NodeFactory, StartAgent
from tests.receivers import Inbox, Receiver, hook_url


@pytest.fixture(autouse=True)
def _needs_dhcpd(dhcpd_binary: str) -> None:
    """Every deploy validates with the real dhcpd: fail, never skip, without it."""


def new_commit(repo: ConfigRepo, n: int) -> str:
    repo.write("dhcp/hosts.conf", repo.read("dhcp/hosts.conf") + f"\n# change {n}\n")
    return repo.commit(f"Change {n}")


def test_start_up_deploys_the_branch_head(repo: ConfigRepo, start_agent: StartAgent) -> None:
    head = repo.commit("Head at start")
    agent = start_agent()
    doc = agent.wait_deployed(head)
    assert doc["node"] == {"name": "dhcp1", "role": "primary"}
    assert doc["last_attempt"]["result"] == "deployed"
    assert doc["live"]["drift"] == "none" and doc["version"]
    assert doc["deployed"]["subject"] == "Head at start"


def test_a_push_and_a_signed_webhook_deploy_the_pushed_commit(
    repo: ConfigRepo, start_agent: StartAgent
) -> None:
    agent = start_agent()
    agent.wait_for(lambda d: d["deployed"] is not None)
    sha = new_commit(repo, 1)
    answer = agent.github_push(sha)
    assert answer.status_code == 202 and answer.json()["status"] in ("queued", "already queued")
    agent.wait_deployed(sha)


@pytest.mark.parametrize(
    ("headers", "body", "code"),
    [
        ({"X-GitHub-Event": "push"}, push_payload("a" * 40), 401),
        ({"X-GitHub-Event": "push", "X-Hub-Signature-256": "sha256=" + "0" * 64},
         push_payload("a" * 40), 403),
        ({"X-GitHub-Event": "push", "X-Hub-Signature-256": github_signature(b"{}", "wrong")},
         b"{}", 403),
        ({"X-GitHub-Event": "push", "X-Hub-Signature-256": github_signature(b"{not json")},
         b"{not json", 400),
    ],
)  # fmt: skip
def test_bad_webhooks_are_refused(
    start_agent: StartAgent, headers: dict[str, str], body: bytes, code: int
) -> None:
    agent = start_agent()
    answer = agent.client.post("/webhook/github", content=body, headers=headers)
    assert answer.status_code == code, answer.text
    assert SECRET not in answer.text


def test_webhook_edge_cases(repo: ConfigRepo, start_agent: StartAgent) -> None:
    agent = start_agent(http={"max_body": 4096})
    big = b"{" + b" " * 5000 + b"}"
    headers = {"X-GitHub-Event": "push", "X-Hub-Signature-256": github_signature(big)}
    assert agent.client.post("/webhook/github", content=big, headers=headers).status_code == 413
    assert agent.client.post("/webhook/nowhere", content=b"{}").status_code == 404
    other = agent.github_push("b" * 40, branch="feature")
    assert other.status_code == 200 and "ignored" in other.json()["status"]
    ping = b'{"zen": "Keep it logically awesome.", "hook_id": 1}'
    answer = agent.client.post(
        "/webhook/github", content=ping,
        headers={"X-GitHub-Event": "ping", "X-Hub-Signature-256": github_signature(ping)},
    )  # fmt: skip
    assert answer.status_code == 200 and answer.json()["status"] == "pong"
    sha = new_commit(repo, 2)
    body = push_payload(sha)
    replay = {"X-GitHub-Event": "push", "X-GitHub-Delivery": "same-id",
              "X-Hub-Signature-256": github_signature(body)}  # fmt: skip
    assert agent.client.post("/webhook/github", content=body, headers=replay).status_code == 202
    again = agent.client.post("/webhook/github", content=body, headers=replay)
    assert again.status_code == 200 and "duplicate" in again.json()["status"]


def test_webhooks_are_off_without_a_secret(start_agent: StartAgent) -> None:
    agent = start_agent(http={"webhook_secret_file": None})
    answer = agent.github_push("c" * 40)
    assert answer.status_code == 403 and "webhook_secret_file" in answer.text


def test_post_sync_needs_the_token(repo: ConfigRepo, start_agent: StartAgent) -> None:
    agent = start_agent()
    agent.wait_for(lambda d: d["deployed"] is not None and d["state"] == "idle")
    assert agent.client.post("/sync").status_code == 401
    wrong = agent.client.post("/sync", headers={"Authorization": "Bearer nope"})
    assert wrong.status_code == 403 and TOKEN not in wrong.text
    sha = new_commit(repo, 3)
    right = agent.client.post("/sync", headers={"Authorization": f"Bearer {TOKEN}"})
    assert right.status_code == 202
    agent.wait_deployed(sha)


def test_a_storm_of_webhooks_during_a_slow_reconcile_collapses(
    repo: ConfigRepo, start_agent: StartAgent
) -> None:
    """100 deliveries while a reconcile runs: at most 2 reconciles, the newest commit live."""
    agent = start_agent(dhcpd={"restart": "command", "restart_command": ["sleep", "1.5"]})
    start = agent.wait_for(lambda d: d["deployed"] is not None and d["state"] == "idle")
    before = start["reconciles"]
    shas = [new_commit(repo, 100)]
    assert agent.github_push(shas[0]).status_code == 202
    agent.wait_for(lambda d: d["state"] != "idle", timeout=10)
    for i in range(100):
        if i % 20 == 0:
            shas.append(new_commit(repo, 101 + i))
        assert agent.github_push(shas[-1]).status_code == 202
    doc = agent.wait_deployed(shas[-1], timeout=30)
    time.sleep(0.5)  # a third reconcile, if one were wrongly queued, would start now
    doc = agent.status()
    assert doc["reconciles"] - before <= 2, doc["reconciles"] - before
    assert doc["deployed"]["sha"] == shas[-1]


def test_the_timer_picks_up_a_push_without_a_webhook(
    repo: ConfigRepo, start_agent: StartAgent
) -> None:
    agent = start_agent(source={"poll_interval": 0.3})
    agent.wait_for(lambda d: d["deployed"] is not None)
    sha = new_commit(repo, 4)
    agent.wait_deployed(sha)


def test_read_endpoints(repo: ConfigRepo, start_agent: StartAgent) -> None:
    agent = start_agent()
    agent.wait_for(lambda d: d["deployed"] is not None and d["state"] == "idle")
    assert agent.client.get("/healthz").json() == {"ok": True, "problems": []}
    history = agent.client.get("/history").json()
    assert history[-1]["result"] == "deployed"
    metrics = agent.client.get("/metrics").text
    for name in (
        "dhcp_gitops_deployed_info{sha=",
        "dhcp_gitops_last_success_timestamp_seconds",
        "dhcp_gitops_reconcile_duration_seconds_bucket",
        'dhcp_gitops_reconciles_total{result="deployed"}',
        "dhcp_gitops_drift 0.0",
    ):
        assert name in metrics, name
    assert "/webhook/{provider}" in agent.client.get("/openapi.json").json()["paths"]
    assert agent.client.get("/docs").status_code == 200
    doc = agent.status()
    for key in ("state", "working_on", "dhcpd", "uptime_seconds", "server_time", "version"):
        assert key in doc


def test_a_refused_commit_is_reported_with_file_and_line(
    repo: ConfigRepo, start_agent: StartAgent
) -> None:
    agent = start_agent()
    good = agent.wait_for(lambda d: d["deployed"] is not None)["deployed"]["sha"]
    repo.replace("dhcp/hosts.conf", "fixed-address 192.0.2.10;", "fixed-address 192.0.2.10")
    bad = repo.commit("Typo")
    agent.github_push(bad)
    doc = agent.wait_for(lambda d: (d["last_attempt"] or {}).get("sha") == bad)
    assert doc["last_attempt"]["result"] == "refused"
    problem = doc["last_attempt"]["problems"][0]
    assert (problem["source"], problem["line"]) == ("dhcp/hosts.conf", 6)
    assert doc["deployed"]["sha"] == good
    failures = agent.client.get("/metrics").text
    assert 'dhcp_gitops_failures_total{step="validate"} 1.0' in failures


def test_status_url_prints_a_remote_agent(repo: ConfigRepo, start_agent: StartAgent) -> None:
    agent = start_agent()
    agent.wait_for(lambda d: d["deployed"] is not None and d["state"] == "idle")
    done = subprocess.run([EXE, "status", "--url", agent.url], capture_output=True, text=True,
                          timeout=30, check=False)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "dhcp1 (primary)" in done.stdout and "agent      idle" in done.stdout
    as_json = subprocess.run([EXE, "status", "--url", agent.url, "--json"], capture_output=True,
                             text=True, timeout=30, check=False)  # fmt: skip
    assert json.loads(as_json.stdout)["state"] == "idle"


def test_sigterm_stops_the_agent_cleanly(repo: ConfigRepo, start_agent: StartAgent) -> None:
    agent = start_agent()
    agent.wait_for(lambda d: d["deployed"] is not None)
    assert agent.stop() == 0


def test_no_secret_in_any_output(repo: ConfigRepo, start_agent: StartAgent) -> None:
    agent = start_agent(source={"poll_interval": 0.3})
    agent.wait_for(lambda d: d["deployed"] is not None)
    seen = []
    for path in ("/status", "/history", "/metrics", "/healthz", "/openapi.json"):
        seen.append(agent.client.get(path).text)
    seen.append(agent.client.post("/sync", headers={"Authorization": "Bearer x"}).text)
    seen.append(agent.github_push("d" * 40).text)
    agent.stop()
    seen.append(agent.output())
    seen.append(Path(agent.config).parent.joinpath("state", "state.json").read_text())
    for text in seen:
        assert SECRET not in text and TOKEN not in text


def test_a_bad_config_exits_2(tmp_path: Path) -> None:
    path = tmp_path / "agent.toml"
    path.write_text(
        '[node]\nname = "a"\nrole = "primary"\n[source]\nurl = "/x"\n[http]\nlisten = "nowhere"\n'
    )
    done = subprocess.run([EXE, "agent", "--config", str(path)], capture_output=True, text=True,
                          timeout=30, check=False)  # fmt: skip
    assert done.returncode == 2 and "[http] listen" in done.stderr


def test_answers_stay_fast_while_reconciling(repo: ConfigRepo, start_agent: StartAgent) -> None:
    """The API never waits for a reconcile: a slow restart does not block /status."""
    agent: AgentProcess = start_agent(
        dhcpd={"restart": "command", "restart_command": ["sleep", "3"]}
    )
    agent.wait_for(lambda d: d["state"] != "idle", timeout=10)
    assert agent.client.get("/status", timeout=httpx.Timeout(2.0)).status_code == 200


def test_deploys_and_refusals_are_mailed_and_posted(
    repo: ConfigRepo, start_agent: StartAgent, inbox: Inbox, receiver: Receiver
) -> None:
    agent = start_agent(
        notify={
            "smtp_host": "127.0.0.1",
            "smtp_port": inbox.port,
            "mail_to": ["noc@example.net"],
            "webhook_url": hook_url(receiver),
        }
    )
    agent.wait_for(lambda d: d["deployed"] is not None and d["state"] == "idle")
    repo.replace("dhcp/hosts.conf", "fixed-address 192.0.2.10;", "fixed-address 192.0.2.10")
    bad = repo.commit("Typo in hosts")
    agent.github_push(bad)
    agent.wait_for(lambda d: (d["last_attempt"] or {}).get("sha") == bad)
    deadline = time.monotonic() + 10
    while (len(inbox.mails) < 2 or len(receiver.bodies) < 2) and time.monotonic() < deadline:
        time.sleep(0.05)
    subjects = [inbox.message(i)["Subject"] for i in range(len(inbox.mails))]
    assert "deployed" in subjects[0] and "dhcp1 (primary)" in subjects[0]
    assert "refused" in subjects[1] and "Typo in hosts" in subjects[1]
    body = inbox.message(1).get_body(("plain",))
    assert body is not None and "dhcp/hosts.conf:6: semicolon expected." in body.get_content()
    posted = json.loads(receiver.bodies[1][2])
    assert posted["result"] == "refused" and "dhcp/hosts.conf:6" in posted["text"]


def test_tls_from_the_configured_certificate(
    tmp_path: Path, repo: ConfigRepo, start_agent: StartAgent
) -> None:
    cert, key = tmp_path / "agent.crt", tmp_path / "agent.key"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
         "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
         "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )  # fmt: skip
    port = free_port()
    start_agent(
        http={"listen": f"127.0.0.1:{port}", "tls_cert": str(cert), "tls_key": str(key)},
        wait=False,
    )
    trust = ssl.create_default_context(cafile=str(cert))
    with httpx.Client(base_url=f"https://127.0.0.1:{port}", verify=trust) as client:
        deadline = time.monotonic() + 20
        while True:
            try:
                assert client.get("/healthz").status_code in (200, 503)
                break
            except httpx.TransportError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        assert client.get("/status").json()["node"]["name"] == "dhcp1"
    with pytest.raises(httpx.TransportError):
        httpx.get(f"http://127.0.0.1:{port}/status", timeout=5)


def test_pushes_of_the_commit_last_tried_start_no_reconcile(
    repo: ConfigRepo, start_agent: StartAgent
) -> None:
    """Redeliveries (new delivery ids) after the deploy only ask the remote (ls-remote);
    one naming that commit while the branch has moved on still deploys the head."""
    agent = start_agent()
    agent.wait_for(lambda d: d["deployed"] is not None and d["state"] == "idle")
    sha = new_commit(repo, 200)
    assert agent.github_push(sha).status_code == 202
    before = agent.wait_deployed(sha)["reconciles"]
    for _ in range(20):
        assert agent.github_push(sha).status_code == 202
    time.sleep(0.5)  # a reconcile, if one were wrongly started, would have begun
    assert agent.status()["reconciles"] == before
    newer = new_commit(repo, 201)
    assert agent.github_push(sha).status_code == 202  # a late redelivery of the old push
    agent.wait_deployed(newer)


def test_status_answers_while_the_tree_is_exchanged(
    repo: ConfigRepo, start_agent: StartAgent
) -> None:
    """/status while deploys swap the live tree under it (and the loop hashes it after
    each one, for the drift /status shows): every answer is a 200."""
    agent = start_agent()
    agent.wait_for(lambda d: d["deployed"] is not None and d["state"] == "idle")
    for n in range(40):
        repo.write(f"dhcp/extra-{n}.conf", f"# file {n}\n")
    codes: list[int] = []
    stop = threading.Event()

    def hammer() -> None:
        with httpx.Client(base_url=agent.url, timeout=10) as client:
            while not stop.is_set() and len(codes) < 5000:
                codes.append(client.get("/status").status_code)

    thread = threading.Thread(target=hammer)
    thread.start()
    try:
        for i in range(8):
            repo.write("dhcp/hosts.conf", repo.read("dhcp/hosts.conf") + f"# {i}\n")
            sha = repo.commit(f"Change {i}")
            agent.github_push(sha)
            agent.wait_deployed(sha)
    finally:
        stop.set()
        thread.join(30)
    assert codes and set(codes) == {200}, sorted(set(codes))


# --- what the machine does wrong is said as such -------------------------------------------


def idle_connections(port: int, count: int) -> list[socket.socket]:
    """Connections that never send a byte (connects not waited for: a full backlog stalls)."""
    opened = []
    for _ in range(count):
        sock = socket.socket()
        sock.setblocking(False)
        sock.connect_ex(("127.0.0.1", port))
        opened.append(sock)
    return opened


def descriptors(pid: int) -> int:
    return sum(1 for _ in Path(f"/proc/{pid}/fd").iterdir())


def deployed_on_disk(agent: AgentProcess) -> str | None:
    """The API may refuse us while its connections are full: the record tells."""
    deployed = Store(Path(agent.config).parent / "state").load().deployed
    return deployed.sha if deployed else None


def wait_on_disk(agent: AgentProcess, sha: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while deployed_on_disk(agent) != sha:
        assert time.monotonic() < deadline, f"{sha} not deployed:\n{agent.output()[-3000:]}"
        time.sleep(0.1)


def test_idle_connections_take_bounded_descriptors_and_a_few_log_lines(
    repo: ConfigRepo, start_agent: StartAgent
) -> None:
    agent = start_agent(source={"poll_interval": 0.2})
    agent.wait_for(lambda d: d["deployed"] is not None and d["state"] == "idle")
    agent.client.close()
    pid, port = agent.proc.pid, int(agent.url.rsplit(":", 1)[1])
    at_rest, logged = descriptors(pid), len(agent.output().splitlines())

    held = idle_connections(port, 300)
    try:
        time.sleep(0.5)
        assert descriptors(pid) <= at_rest + 100 + 5  # [http]'s cap of open connections
        wait_on_disk(agent, new_commit(repo, 300))  # the poll timer deploys meanwhile
        # Now the descriptors themselves run out: accept() fails with EMFILE.
        soft, hard = resource.prlimit(pid, resource.RLIMIT_NOFILE)
        resource.prlimit(pid, resource.RLIMIT_NOFILE, (descriptors(pid) + 2, hard))
        held += idle_connections(port, 300)
        time.sleep(3)
        resource.prlimit(pid, resource.RLIMIT_NOFILE, (soft, hard))
    finally:
        for sock in held:
            sock.close()
    lines = agent.output().splitlines()[logged:]
    accept = [line for line in lines if "cannot accept" in line]
    assert 1 <= len(accept) <= 2 and len(lines) < 60, "\n".join(lines[:80])
    assert agent.proc.poll() is None
    wait_on_disk(agent, new_commit(repo, 301))  # and the loop goes on deploying
    with httpx.Client(base_url=agent.url, timeout=10) as client:
        assert client.get("/healthz").json()["ok"] is True


def test_status_of_a_stopped_agent_says_so_in_one_line() -> None:
    """Exit 2: status cannot tell how the node is (docs/operations.md, status exit codes)."""
    url = f"http://127.0.0.1:{free_port()}"
    done = subprocess.run([EXE, "status", "--url", url], capture_output=True, text=True,
                          timeout=30, check=False)  # fmt: skip
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr == f"dhcp-gitops: {url}/status: no agent answers (Connection refused): "\
        "is it running?\n"  # fmt: skip


@pytest.mark.parametrize("command", ["agent", "sync"])
def test_a_missing_dhcpd_is_a_config_error_at_start(
    tmp_path: Path, make_node: NodeFactory, command: str
) -> None:
    """Not a refusal of the commit: nothing was wrong with it."""
    node = make_node(dhcpd={"binary": str(tmp_path / "no-dhcpd")})
    done = subprocess.run([EXE, command, "--config", str(node.config.file)],
                          capture_output=True, text=True, timeout=30, check=False)  # fmt: skip
    assert done.returncode == 2, done.stdout + done.stderr
    assert done.stderr.count("\n") == 1 and "[dhcpd] binary:" in done.stderr
    assert f"{tmp_path / 'no-dhcpd'} is not an executable file" in done.stderr
    assert not node.store.state_file.exists()


def test_a_kea_node_is_checked_for_kea_dhcp4_not_dhcpd(
    tmp_path: Path, make_node: NodeFactory
) -> None:
    """The binary checked at start is the node's own server's."""
    node = make_node(node={"server": "kea"}, deploy={"target": str(tmp_path / "kea")},
                     dhcpd={"binary": str(tmp_path / "no-dhcpd")},
                     kea={"binary": str(tmp_path / "no-kea")})  # fmt: skip
    done = subprocess.run([EXE, "sync", "--config", str(node.config.file)],
                          capture_output=True, text=True, timeout=30, check=False)  # fmt: skip
    assert done.returncode == 2, done.stdout + done.stderr
    assert "[kea] binary:" in done.stderr and "kea-dhcp4-server" in done.stderr


@pytest.fixture
def shared_dir() -> Iterator[Path]:
    """A folder another user can read (pytest's tmp_path is root's alone)."""
    folder = Path(tempfile.mkdtemp(prefix="dhcp-gitops-rights-"))
    folder.chmod(0o755)
    try:
        yield folder
    finally:
        shutil.rmtree(folder)


@pytest.mark.parametrize("command", ["agent", "sync", "status"])
def test_without_the_rights_it_needs_it_says_what_to_do_in_one_line(
    repo: ConfigRepo, shared_dir: Path, command: str
) -> None:
    (shared_dir / "etc").mkdir(mode=0o755)
    (shared_dir / "state").mkdir(mode=0o700)  # root's, as under systemd's StateDirectory
    config = shared_dir / "agent.toml"
    config.write_text(toml_text({
        "node": {"name": "dhcp1", "role": "primary"},
        "source": {"url": repo.url},
        "deploy": {"target": str(shared_dir / "etc" / "dhcp"),
                   "state_dir": str(shared_dir / "state")},
        "dhcpd": {"restart": "none"},
    }))  # fmt: skip
    config.chmod(0o644)
    nobody = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "--"]
    done = subprocess.run([*nobody, EXE, command, "--config", str(config)],
                          capture_output=True, text=True, timeout=30, check=False)  # fmt: skip
    assert done.returncode == 2, done.stdout + done.stderr
    assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr, done.stderr
    assert "run dhcp-gitops as root" in done.stderr and str(shared_dir / "state") in done.stderr
