"""No secret in any output (docs/design.md, invariant 5): a whole run of an agent, every
output searched.

One real agent, with secrets it could leak: a webhook secret and an API token
in files, an SMTP password for a real aiosmtpd server (STARTTLS and AUTH), and
an ssh deploy key for a real sshd. It deploys through every kind of trigger
and outcome (good deploys by each forge's webhook, a refused commit, a
rollback, fetches that fail because the key is refused or the repo is gone,
the CLI's rollback), notifies each by mail and JSON webhook, and is knocked on
with wrong signatures, wrong tokens, the secrets themselves in the wrong
places, and broken requests. Then every output is searched for every secret,
raw and in the encodings a leak would take (base64 at any alignment, hex,
URL-encoding, JSON escapes; the key's base64 lines): each HTTP answer with its
headers, the agent's log, the state dir's files, the mails (decoded), the
posted JSON, and what the CLI printed.

Then a git token, in each form an operator may hand it over (in the https URL as
GitHub and GitLab document it, or in [source] token_file), for an agent fetching
from a real https remote that answers 401 without it: the same outputs searched,
and the argv of every process the agent ran, read from /proc while it ran.
"""

from __future__ import annotations

import base64
import email
import email.policy
import json
import socket
import ssl
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from email.message import EmailMessage
from pathlib import Path
from typing import Any
from urllib.parse import quote, quote_plus

import httpx
import pytest

from lab.agent import EXE, TOKEN, AgentProcess
from lab.forge import PUSH_EVENTS, push_payload, signed_headers
from lab.ports import LOOPBACK, free_port
from lab.repo import ConfigRepo
from tests.conftest import StartAgent
from tests.receivers import PASSWORD, USER, Inbox, Receiver, hook_url
from tests.receivers import smtp_server as smtp_receiver
from tests.remotes import Children, HttpsServer, SshServer, make_cert

# Distinctive, and each changed by URL-encoding and by base64 at every alignment.
WEBHOOK_SECRET = "wh+Q7vX/2pLm9=Zr4%kT"
API_TOKEN = "tk/9Zx+Lp2=Qr8%Kw5yN"
RESULTS = ["deployed", "current", "refused", "rolled_back", "failed"]
MARKER = "BREAK-ON-RESTART"  # a commit with it validates, but its restart fails


@pytest.fixture(autouse=True)
def _needs_dhcpd(dhcpd_binary: str) -> None:
    """Every deploy validates with the real dhcpd: fail, never skip, without it."""


# --- what counts as the secret showing ---------------------------------------------------


def base64_cores(secret: bytes) -> list[str]:
    """The base64 characters that only `secret` determines, at each of the 3 alignments.

    Inside a longer base64 text the secret starts at byte offset 0, 1 or 2 of a
    group; the characters fully inside it are the same whatever surrounds it.
    """
    cores = []
    for offset in range(3):
        text = base64.b64encode(b"\0" * offset + secret).decode()
        first = -(-8 * offset // 6)  # the first character whose 6 bits are all the secret's
        last = (8 * (offset + len(secret)) - 6) // 6
        cores += [
            text[first : last + 1],
            text[first : last + 1].replace("+", "-").replace("/", "_"),
        ]
    return cores


def forms(secret: str) -> dict[str, str]:
    """The secret as a leak might carry it, by name."""
    raw = secret.encode()
    found = {
        "raw": secret,
        "hex": raw.hex(),
        "HEX": raw.hex().upper(),
        "url-encoded": quote(secret, safe=""),
        "form-encoded": quote_plus(secret),
        "json": json.dumps(secret)[1:-1],
    }
    found |= {f"base64 ({i})": core for i, core in enumerate(base64_cores(raw))}
    return found


def key_forms(private_key: Path) -> dict[str, str]:
    """An OpenSSH private key: each base64 line of its body, and the body in one piece."""
    lines = [line for line in private_key.read_text().splitlines() if not line.startswith("-")]
    found = {f"key line {i}": line for i, line in enumerate(lines) if len(line) >= 16}
    return found | {"key body": "".join(lines)}


# --- every output, kept ------------------------------------------------------------------


@dataclass
class Outputs:
    """(where, text) of everything the agent and its tools said."""

    seen: list[tuple[str, str]] = field(default_factory=list)

    def add(self, where: str, data: str | bytes) -> None:
        text = data.decode("utf-8", "replace") if isinstance(data, bytes) else data
        self.seen.append((where, text))

    def add_response(self, response: httpx.Response) -> None:
        where = f"{response.request.method} {response.request.url.path} -> {response.status_code}"
        response.read()
        self.add(where + " headers", "\n".join(f"{k}: {v}" for k, v in response.headers.items()))
        self.add(where, response.content)
        if response.headers.get("content-type", "").startswith("application/json"):
            self.add(where + " (decoded)", repr(response.json()))  # \\u escapes undone

    def add_mail(self, index: int, raw: bytes) -> None:
        self.add(f"mail {index} (as sent)", raw)
        parsed = email.message_from_bytes(raw, policy=email.policy.default)
        assert isinstance(parsed, EmailMessage)
        self.add(f"mail {index} headers", "\n".join(f"{k}: {v}" for k, v in parsed.items()))
        for part in parsed.walk():  # quoted-printable and base64 parts, decoded
            if part.get_content_maintype() == "text":
                self.add(f"mail {index} {part.get_content_type()}", part.get_content())

    def add_post(self, index: int, path: str, content_type: str, body: bytes) -> None:
        self.add(f"notification post {index}", f"{path}\n{content_type}\n" + body.decode())
        self.add(f"notification post {index} (decoded)", repr(json.loads(body)))

    def add_tree(self, root: Path) -> None:
        """Every file under root but git's compressed objects (searched raw, as bytes)."""
        for path in sorted(root.rglob("*")):
            if path.is_file() and not path.is_symlink() and "objects" not in path.parts:
                self.add(str(path), path.read_bytes())

    def leaks(self, secrets: dict[str, dict[str, str]]) -> list[str]:
        return [
            f"{name} ({form}) in {where}"
            for where, text in self.seen
            for name, shown in secrets.items()
            for form, value in shown.items()
            if value in text
        ]


# --- the servers around the agent --------------------------------------------------------


@dataclass
class Mailbox:
    inbox: Inbox
    cert: Path  # its certificate, which is also its CA


@pytest.fixture
def mailbox(tmp_path: Path) -> Iterator[Mailbox]:
    """aiosmtpd on loopback: STARTTLS with a certificate of its own, then AUTH, required."""
    cert, key = make_cert(_folder(tmp_path / "smtp-tls"))
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    inbox = Inbox(port=free_port())
    with smtp_receiver(
        inbox, tls_context=context, require_starttls=True, auth_required=True,
        auth_require_tls=True, authenticator=inbox.authenticate,
    ):  # fmt: skip
        yield Mailbox(inbox, cert)


def _folder(path: Path) -> Path:
    path.mkdir(parents=True)
    return path


def secret_file(folder: Path, name: str, value: str) -> Path:
    path = folder / name
    path.write_text(value + "\n")
    path.chmod(0o600)
    return path


# --- the run -----------------------------------------------------------------------------


@dataclass
class Run:
    agent: AgentProcess
    repo: ConfigRepo
    sshd: SshServer
    known_hosts: Path
    outputs: Outputs
    changes: int = 0

    @property
    def client(self) -> httpx.Client:
        return self.agent.client

    def new_commit(self, line: str = "") -> str:
        self.changes += 1
        text = self.repo.read("dhcp/hosts.conf") + f"# change {self.changes} {line}\n"
        self.repo.write("dhcp/hosts.conf", text)
        return self.repo.commit(f"Change {self.changes}")

    def reconciles(self) -> int:
        return int(self.agent.status()["reconciles"])

    def sync(self) -> None:
        answer = self.client.post("/sync", headers={"Authorization": f"Bearer {API_TOKEN}"})
        assert answer.status_code == 202, answer.text

    def sync_until(self, done: Callable[[dict[str, Any]], bool]) -> dict[str, Any]:
        """POST /sync, then wait for a reconcile after it that ends as `done` says."""
        before = self.reconciles()
        self.sync()
        return self.agent.wait_for(
            lambda d: d["reconciles"] > before and d["state"] in ("idle", "failed") and done(d)
        )

    def push(self, provider: str, sha: str) -> None:
        body = forge_payload(provider, sha)
        headers = signed_headers(provider, body, WEBHOOK_SECRET) | {
            "Content-Type": "application/json"
        }
        if provider in PUSH_EVENTS:
            headers.update([PUSH_EVENTS[provider]])
        answer = self.client.post(f"/webhook/{provider}", content=body, headers=headers)
        assert answer.status_code == 202, answer.text
        self.agent.wait_deployed(sha)


def forge_payload(provider: str, sha: str) -> bytes:
    if provider != "bitbucket":
        return push_payload(sha)
    change = {"new": {"type": "branch", "name": "main", "target": {"hash": sha}}}
    return json.dumps({"push": {"changes": [change]}}).encode()


@pytest.fixture
def run(
    tmp_path: Path,
    repo: ConfigRepo,
    start_agent: StartAgent,
    sshd: SshServer,
    mailbox: Mailbox,
    receiver: Receiver,
    monkeypatch: pytest.MonkeyPatch,
) -> Run:
    """The agent: repo over ssh with the deploy key, both notifiers, every secret set."""
    for name in ("http_proxy", "https_proxy", "all_proxy", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.upper(), raising=False)
    # The agent checks the SMTP server's certificate against the system CAs, which
    # SSL_CERT_FILE replaces: the agent process inherits it.
    monkeypatch.setenv("SSL_CERT_FILE", str(mailbox.cert))
    secrets = _folder(tmp_path / "secrets")
    target = tmp_path / "dhcp1" / "etc" / "dhcp"
    outputs = Outputs()
    known_hosts = sshd.known_hosts()
    agent = start_agent(
        source={
            "url": sshd.url(repo.bare), "ssh_key": str(sshd.client_key),
            "known_hosts": str(known_hosts), "timeout": 10,
            "retry_min": 0.5, "retry_max": 1,
        },
        dhcpd={
            "restart": "command", "health_timeout": 0.2,
            "restart_command": ["sh", "-c", f"! grep -q {MARKER} {target}/hosts.conf"],
        },
        http={
            "webhook_secret_file": str(secret_file(secrets, "webhook", WEBHOOK_SECRET)),
            "token_file": str(secret_file(secrets, "token", API_TOKEN)),
        },
        notify={
            "on": RESULTS, "timeout": 5, "smtp_host": LOOPBACK, "smtp_port": mailbox.inbox.port,
            "smtp_starttls": True, "smtp_user": USER,
            "smtp_password_file": str(secret_file(secrets, "smtp", PASSWORD)),
            "mail_to": ["noc@example.net"], "webhook_url": hook_url(receiver),
        },
    )  # fmt: skip
    agent.client.close()  # every answer from here on is kept
    agent.client = httpx.Client(
        base_url=agent.url, timeout=10, trust_env=False,
        event_hooks={"response": [outputs.add_response]},
    )  # fmt: skip
    return Run(agent, repo, sshd, known_hosts, outputs)


# --- the scenarios -----------------------------------------------------------------------


def deploy_by_every_forge(run: Run) -> None:
    run.agent.wait_for(lambda d: d["deployed"] is not None and d["state"] == "idle")
    for provider in ("github", "gitea", "forgejo", "gitlab", "bitbucket", "generic"):
        run.push(provider, run.new_commit(provider))


def refuse_a_commit(run: Run) -> None:
    run.repo.replace("dhcp/hosts.conf", "fixed-address 192.0.2.10;", "fixed-address 192.0.2.10")
    bad = run.repo.commit("Typo")
    doc = run.sync_until(lambda d: (d["last_attempt"] or {}).get("sha") == bad)
    assert doc["last_attempt"]["result"] == "refused"
    run.repo.replace("dhcp/hosts.conf", "fixed-address 192.0.2.10\n", "fixed-address 192.0.2.10;\n")
    run.push("github", run.repo.commit("Fix the typo"))


def roll_back_a_commit(run: Run) -> None:
    broken = run.new_commit(MARKER)
    doc = run.sync_until(lambda d: (d["last_attempt"] or {}).get("sha") == broken)
    assert doc["last_attempt"]["result"] == "rolled_back", doc["last_attempt"]
    run.repo.replace("dhcp/hosts.conf", MARKER, "mended")
    run.push("generic", run.new_commit())


def fail_fetches(run: Run) -> None:
    """Fetches that fail, each then mended: ssh's and git's complaints reach every output."""
    for fault, (break_it, mend) in fetch_faults(run).items():
        head = run.new_commit(fault)
        break_it()
        try:
            doc = run.sync_until(lambda d: (d["last_attempt"] or {}).get("result") == "failed")
            assert doc["last_attempt"]["step"] == "fetch", (fault, doc["last_attempt"])
        finally:
            mend()
        run.sync_until(deployed(head))


def deployed(sha: str) -> Callable[[dict[str, Any]], bool]:
    return lambda doc: (doc["deployed"] or {}).get("sha") == sha


Fault = tuple[Callable[[], object], Callable[[], object]]  # break it, mend it


def fetch_faults(run: Run) -> dict[str, Fault]:
    keys, known_hosts = run.sshd.home / "authorized_keys", run.known_hosts
    authorized, trusted = keys.read_text(), known_hosts.read_text()
    impostor = run.sshd.known_hosts_line(run.sshd.new_key("impostor"))
    moved = run.repo.bare.with_name("moved.git")
    return {
        "our key refused": (lambda: keys.write_text(""), lambda: keys.write_text(authorized)),
        "host key changed": (
            lambda: known_hosts.write_text(impostor), lambda: known_hosts.write_text(trusted),
        ),
        "repository gone": (
            lambda: run.repo.bare.rename(moved), lambda: moved.rename(run.repo.bare),
        ),
    }  # fmt: skip


def knock_with_wrong_proofs(run: Run) -> None:
    """Wrong signatures and tokens, and the right secrets in the wrong places."""
    body = push_payload("c" * 40)
    for provider, (header, value) in {
        "github": ("X-Hub-Signature-256", "sha256=" + "0" * 64),
        "gitea": ("X-Gitea-Signature", WEBHOOK_SECRET),  # the secret as a signature
        "gitlab": ("X-Gitlab-Token", WEBHOOK_SECRET + "x"),
        "bitbucket": ("X-Hub-Signature", "sha1=" + WEBHOOK_SECRET),
        "generic": ("X-Signature", API_TOKEN),
    }.items():
        answer = run.client.post(f"/webhook/{provider}", content=body, headers={header: value})
        assert answer.status_code == 403, (provider, answer.text)
    signed_wrongly = signed_headers("github", body, API_TOKEN)
    assert run.client.post("/webhook/github", content=body, headers=signed_wrongly).is_error
    assert run.client.post("/webhook/github", content=body).status_code == 401
    for authorization in (
        f"Bearer {WEBHOOK_SECRET}", f"Bearer {API_TOKEN}x", f"Bearer {PASSWORD}",
        f"Token {API_TOKEN}", "Basic " + base64.b64encode(f"x:{API_TOKEN}".encode()).decode(),
        "Bearer", "",
    ):  # fmt: skip
        answer = run.client.post("/sync", headers={"Authorization": authorization})
        assert answer.status_code in (401, 403), authorization
    assert run.client.post("/sync", params={"token": API_TOKEN}).status_code == 401


def send_bad_requests(run: Run) -> None:
    """Broken in every layer; some carry a secret where it must not be echoed."""
    run.client.get("/history", params={"limit": API_TOKEN})
    run.client.get("/status", params={"token": API_TOKEN, "secret": WEBHOOK_SECRET})
    run.client.get(f"/{quote(WEBHOOK_SECRET, safe='')}")
    run.client.post(f"/webhook/{quote(API_TOKEN, safe='')}", content=b"{}")
    run.client.get("/sync", headers={"Authorization": f"Bearer {API_TOKEN}"})
    malformed = b"{" + WEBHOOK_SECRET.encode()
    run.client.post("/webhook/generic", content=malformed,
                    headers=signed_headers("generic", malformed, WEBHOOK_SECRET))  # fmt: skip
    big = b" " * (2 * 1024 * 1024)
    run.client.post("/webhook/github", content=big, headers={"X-Hub-Signature-256": "sha256=0"})
    for raw in (
        f"POST /webhook/gitlab HTTP/1.1\r\nHost: x\r\nX-Gitlab-Token {WEBHOOK_SECRET}\r\n\r\n",
        f"GET /status?{API_TOKEN} HTTP/9.9\r\n\r\n",
        f"{PASSWORD} / HTTP/1.1\r\nHost: x\r\n\r\n",
    ):
        run.outputs.add("raw answer", raw_exchange(run.agent, raw.encode()))


def raw_exchange(agent: AgentProcess, request: bytes) -> bytes:
    port = int(agent.url.rsplit(":", 1)[1])
    with socket.create_connection((LOOPBACK, port), timeout=10) as sock:
        sock.sendall(request)
        sock.shutdown(socket.SHUT_WR)
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
        return data


def use_the_cli(run: Run) -> None:
    config = str(run.agent.config)
    run.agent.wait_for(lambda d: d["state"] == "idle")
    for argv in (
        ["status", "--config", config], ["status", "--config", config, "--json"],
        ["status", "--url", run.agent.url], ["status", "--url", run.agent.url, "--json"],
        ["rollback", "--config", config, "--no-wait"], ["sync", "--config", config, "--no-wait"],
        ["status", "--config", config],
    ):  # fmt: skip
        done = subprocess.run([EXE, *argv], capture_output=True, text=True, timeout=60, check=False)
        run.outputs.add(f"dhcp-gitops {' '.join(argv)} (exit {done.returncode})",
                        done.stdout + done.stderr)  # fmt: skip
        assert done.returncode in (0, 1), (argv, done.stderr)
    run.push("forgejo", run.new_commit())  # the branch moves on: the rollback's pin ends


def read_everything(run: Run) -> None:
    for path in ("/status", "/history?limit=1000", "/metrics", "/healthz", "/openapi.json",
                 "/docs", "/redoc"):  # fmt: skip
        run.client.get(path)


def notifications_arrived(run: Run, inbox: Inbox, receiver: Receiver) -> None:
    """Wait (bounded) for both channels' report of the last deploy: the last one sent."""
    last = run.agent.status()["deployed"]["sha"][:12]
    deadline = time.monotonic() + 20
    while not (inbox.mails and last in inbox.message(-1)["Subject"]
               and receiver.bodies and last in receiver.bodies[-1][2].decode()):  # fmt: skip
        assert time.monotonic() < deadline, f"no report of {last}"
        time.sleep(0.1)


def collect(run: Run, inbox: Inbox, receiver: Receiver) -> None:
    outputs = run.outputs
    for i, (_, _, raw) in enumerate(inbox.mails):
        outputs.add_mail(i, raw)
    for i, (path, content_type, body) in enumerate(receiver.bodies):
        outputs.add_post(i, path, content_type, body)
    assert run.agent.stop() == 0
    outputs.add("agent log", run.agent.output())
    home = run.agent.config.parent
    outputs.add_tree(home / "state")
    outputs.add_tree(home / "etc")
    outputs.add("agent.toml", run.agent.config.read_text())


def test_no_secret_in_any_output_of_a_whole_run(
    run: Run, mailbox: Mailbox, receiver: Receiver
) -> None:
    inbox = mailbox.inbox
    deploy_by_every_forge(run)
    refuse_a_commit(run)
    roll_back_a_commit(run)
    fail_fetches(run)
    knock_with_wrong_proofs(run)
    send_bad_requests(run)
    use_the_cli(run)
    read_everything(run)
    notifications_arrived(run, inbox, receiver)
    collect(run, inbox, receiver)

    secrets = {
        "webhook secret": forms(WEBHOOK_SECRET),
        "API token": forms(API_TOKEN),
        "SMTP password": forms(PASSWORD),
        "ssh key": key_forms(run.sshd.client_key),
    }
    assert run.outputs.leaks(secrets) == []
    # The run did what it says: every outcome, both channels, the log and the mails.
    results = {a["result"] for a in json.loads(_last(run.outputs, "/history"))}
    assert {"deployed", "refused", "rolled_back", "failed"} <= results, results
    assert inbox.mechanisms and set(inbox.mechanisms) <= {"PLAIN", "LOGIN"}
    assert len(inbox.mails) >= 10 and len(receiver.bodies) >= 10
    codes = {where.split(" -> ")[1] for where, _ in run.outputs.seen if " -> " in where}
    codes = {code.split()[0] for code in codes}
    assert {"200", "202", "401", "403", "404", "405", "413", "422"} <= codes, codes
    assert len(run.outputs.seen) > 200


def _last(outputs: Outputs, path: str) -> str:
    return next(text for where, text in reversed(outputs.seen) if f"GET {path} -> 200" == where)


def test_the_search_finds_what_it_looks_for() -> None:
    """The forms are right: each one planted in an output is found."""
    for secret in (WEBHOOK_SECRET, API_TOKEN, PASSWORD):
        for form, value in forms(secret).items():
            outputs = Outputs()
            outputs.add("planted", f"prefix {value} suffix")
            assert outputs.leaks({"s": {form: value}}), form
        for offset in range(3):  # inside longer base64, at each alignment
            outputs = Outputs()
            outputs.add("planted", base64.b64encode(b"x" * offset + secret.encode() + b"yz"))
            assert outputs.leaks({"s": forms(secret)}), offset


def test_the_key_search_finds_a_printed_key(tmp_path: Path) -> None:
    key = tmp_path / "key"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    outputs = Outputs()
    outputs.add("planted", "Load key: " + key.read_text())
    assert len(outputs.leaks({"key": key_forms(key)})) >= 2


# --- a git token: in the https URL or in token_file -------------------------------------

# Changed by percent-encoding ("/", "+", "=", "%") and by base64 at every alignment.
GIT_TOKEN = "ghp_Q7vX/2pLm9=Zr4%kT+wY"
QUOTED = quote(GIT_TOKEN, safe="")


@dataclass(frozen=True)
class Form:
    """How the operator hands over the token, and the user:password the server wants."""

    userinfo: str | None  # put into the URL; None: the token is in token_file
    wanted: tuple[str, str]
    username: str | None = None  # [source] username, with token_file


FORMS = {
    "TOKEN@": Form(QUOTED, (GIT_TOKEN, "")),
    "x-access-token:TOKEN@ (GitHub)": Form(f"x-access-token:{QUOTED}",
                                           ("x-access-token", GIT_TOKEN)),
    "oauth2:TOKEN@ (GitLab)": Form(f"oauth2:{QUOTED}", ("oauth2", GIT_TOKEN)),
    "TOKEN:x-oauth-basic@": Form(f"{QUOTED}:x-oauth-basic", (GIT_TOKEN, "x-oauth-basic")),
    "token_file": Form(None, ("x-access-token", GIT_TOKEN)),
    "token_file, username": Form(None, ("oauth2", GIT_TOKEN), username="oauth2"),
}  # fmt: skip


def source_keys(form: Form, server: HttpsServer, bare: Path, folder: Path) -> dict[str, Any]:
    """The [source] keys of this form; a token file is written mode 0600."""
    url = server.url(bare)
    if form.userinfo is not None:
        return {"url": url.replace("https://", f"https://{form.userinfo}@", 1)}
    return {
        "url": url,
        "token_file": str(secret_file(folder, "git-token", GIT_TOKEN)),
        "username": form.username,
    }


def fetch_refused_then_mended(
    agent: AgentProcess, repo: ConfigRepo, server: HttpsServer, wanted: tuple[str, str]
) -> dict[str, Any]:
    """The forge revokes the token: the attempt fails and says so; then it works again."""
    server.credentials = ("someone", "else")
    repo.write("dhcp/hosts.conf", repo.read("dhcp/hosts.conf") + "# token revoked\n")
    sha = repo.commit("Pushed while the token is revoked")
    assert agent.client.post("/sync", headers={"Authorization": f"Bearer {TOKEN}"}).is_success
    doc = agent.wait_for(lambda d: (d["last_attempt"] or {}).get("result") == "failed", 30)
    server.credentials = wanted
    agent.wait_deployed(sha, timeout=30)  # the backoff's retry, no trigger
    return dict(doc["last_attempt"])


def run_with_token(
    agent: AgentProcess, repo: ConfigRepo, server: HttpsServer, form: Form, outputs: Outputs
) -> dict[str, Any]:
    """Deploy, fail on a revoked token, deploy again; keep what the API and CLI said."""
    agent.wait_for(lambda d: d["deployed"] is not None and d["state"] == "idle")
    failed = fetch_refused_then_mended(agent, repo, server, form.wanted)
    for path in ("/status", "/history?limit=100", "/metrics"):
        outputs.add(f"GET {path}", agent.client.get(path).content)
    cli = subprocess.run([EXE, "status", "--config", str(agent.config)], capture_output=True,
                         text=True, timeout=60, check=False)  # fmt: skip
    outputs.add("dhcp-gitops status", cli.stdout + cli.stderr)
    return failed


@pytest.mark.timeout(180)
@pytest.mark.parametrize("form", FORMS.values(), ids=FORMS.keys())
def test_no_git_token_in_any_output_or_argv(
    tmp_path: Path,
    repo: ConfigRepo,
    start_agent: StartAgent,
    locked_https: HttpsServer,
    receiver: Receiver,
    form: Form,
) -> None:
    outputs = Outputs()
    source = source_keys(form, locked_https, repo.bare, _folder(tmp_path / "git-secrets"))
    locked_https.credentials = form.wanted
    with Children() as children:
        agent = start_agent(
            source={**source, "timeout": 10, "retry_min": 0.5, "retry_max": 1},
            notify={"on": RESULTS, "timeout": 5, "webhook_url": hook_url(receiver)},
        )
        failed = run_with_token(agent, repo, locked_https, form, outputs)
        assert agent.stop() == 0
    outputs.add("agent log", agent.output())
    outputs.add_tree(agent.config.parent / "state")  # state.json, history.jsonl, the mirror's
    for i, (path, content_type, body) in enumerate(receiver.bodies):
        outputs.add_post(i, path, content_type, body)
    argvs = [" ".join(child.argv) for child in children.seen.values()]
    for i, argv in enumerate(argvs):
        outputs.add(f"argv {i}", argv)

    assert outputs.leaks({"git token": forms(GIT_TOKEN)}) == []
    # What was searched holds what matters: the refusal named, its notification, git's children.
    assert "Authentication failed" in failed["message"], failed
    shown = f"https://{'***@' if form.userinfo else ''}127.0.0.1:{locked_https.port}/"
    assert shown in failed["message"], failed
    assert any(b'"result": "failed"' in body for _, _, body in receiver.bodies)
    assert any("remote-https" in argv for argv in argvs), argvs
