"""Real git remotes on 127.0.0.1 for the fetch tests: sshd, smart HTTP over TLS, a mute port;
and a watcher of the processes git runs against them (what each child was given).

Every server binds 127.0.0.1 only, keeps its keys and config under the test's
tmp_path, and is stopped by its own pid or handle in the fixture's teardown,
also when the test fails. Loaded by test modules through `pytest_plugins`.
"""

from __future__ import annotations

import base64
import contextlib
import http.server
import os
import shutil
import socket
import ssl
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from lab.ports import LOOPBACK, free_port

START_TIMEOUT = 10.0  # seconds a server gets to come up before the fixture gives up


def require(binary: str) -> None:
    if shutil.which(binary) is None:
        pytest.fail(f"{binary} is missing: scripts/setup.sh --test installs it")


def run(*argv: str) -> None:
    subprocess.run(argv, check=True, capture_output=True, text=True, timeout=30)


# --- ssh ---------------------------------------------------------------------------------


def make_key(path: Path, comment: str) -> Path:
    """An unencrypted ed25519 key pair at path and path.pub; returns the private key."""
    run("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(path))
    return path


def public_key(private: Path) -> str:
    """'ssh-ed25519 AAAA...' without the comment, as known_hosts wants it."""
    kind, blob, *_ = Path(f"{private}.pub").read_text().split()
    return f"{kind} {blob}"


@dataclass
class SshServer:
    """A real sshd on 127.0.0.1:port that lets in root with client_key only."""

    port: int
    host_key: Path
    client_key: Path
    log: Path
    home: Path

    def url(self, bare: Path) -> str:
        return f"ssh://root@{LOOPBACK}:{self.port}{bare}"

    def new_key(self, name: str) -> Path:
        """Another key pair in tmp, unknown to this server (a stranger or an impostor)."""
        return make_key(self.home / name, name)

    def known_hosts_line(self, key: Path | None = None) -> str:
        """The known_hosts entry for this server, with its own host key or another one."""
        return f"[{LOOPBACK}]:{self.port} {public_key(key or self.host_key)}\n"

    def known_hosts(self, text: str | None = None) -> Path:
        """A known_hosts file in tmp: the server's real entry unless text is given."""
        path = self.home / f"known_hosts.{time.monotonic_ns()}"
        path.write_text(self.known_hosts_line() if text is None else text)
        return path


def _sshd_config(home: Path, port: int, host_key: Path, authorized: Path) -> Path:
    # Public keys only, root only, nothing read from /etc/ssh or ~root/.ssh: the
    # test's own files are the whole trust. StrictModes is off because tmp_path
    # folders are not laid out the way sshd wants for a home directory.
    text = f"""\
ListenAddress {LOOPBACK}:{port}
HostKey {host_key}
PidFile {home / "sshd.pid"}
AuthorizedKeysFile {authorized}
AuthenticationMethods publickey
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
HostbasedAuthentication no
PermitRootLogin prohibit-password
AllowUsers root
UsePAM no
StrictModes no
PermitUserEnvironment no
PermitTTY no
AllowTcpForwarding no
AllowAgentForwarding no
X11Forwarding no
PrintMotd no
LoginGraceTime 15
LogLevel VERBOSE
"""
    path = home / "sshd_config"
    path.write_text(text)
    return path


def _wait_for_log(proc: subprocess.Popen[bytes], log: Path, needle: str) -> None:
    """Wait, bounded, until the server logs needle; fail with its log if it exits."""
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        text = log.read_text(errors="replace") if log.exists() else ""
        if needle in text:
            return
        if proc.poll() is not None:
            pytest.fail(f"server exited with {proc.returncode} at start:\n{text}")
        time.sleep(0.05)
    pytest.fail(f"server did not log {needle!r} within {START_TIMEOUT} s:\n{log.read_text()}")


def _stop(proc: subprocess.Popen[bytes]) -> None:
    """End the process we started, by its own pid: TERM first, KILL if it lingers."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)


@pytest.fixture
def sshd(tmp_path: Path) -> Iterator[SshServer]:
    """A real OpenSSH server on a free 127.0.0.1 port serving the repos under tmp_path."""
    binary = Path("/usr/sbin/sshd")
    if not binary.exists():
        pytest.fail("/usr/sbin/sshd is missing: scripts/setup.sh --test installs openssh-server")
    require("ssh-keygen")
    # sshd refuses to start without its privilege separation folder.
    Path("/run/sshd").mkdir(mode=0o755, parents=True, exist_ok=True)
    home = tmp_path / "sshd"
    home.mkdir()
    host_key = make_key(home / "ssh_host_ed25519_key", "test-host")
    client_key = make_key(home / "client_ed25519", "test-client")
    authorized = home / "authorized_keys"
    authorized.write_text(Path(f"{client_key}.pub").read_text())
    port = free_port()
    config = _sshd_config(home, port, host_key, authorized)
    log = home / "sshd.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [str(binary), "-D", "-e", "-f", str(config)],
            stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip
    try:
        _wait_for_log(proc, log, "Server listening on")
        yield SshServer(port, host_key, client_key, log, home)
    finally:
        _stop(proc)


# --- https (git http-backend behind a small TLS server) ---------------------------------


@dataclass
class HttpsServer:
    """Smart HTTP git over TLS on 127.0.0.1; optional basic auth with one user."""

    port: int
    root: Path  # GIT_PROJECT_ROOT: every repository below it is served
    cert: Path  # the self-signed certificate, also the CA to trust
    credentials: tuple[str, str] | None = None
    requests: list[str] = field(default_factory=list)
    delay: float = 0.0  # seconds each request waits before it is served: a slow remote

    def url(self, bare: Path, user: str | None = None, password: str | None = None) -> str:
        auth = f"{user}:{password}@" if user is not None and password is not None else ""
        return f"https://{auth}{LOOPBACK}:{self.port}/{bare.relative_to(self.root)}"


def make_cert(folder: Path) -> tuple[Path, Path]:
    """A self-signed certificate for IP 127.0.0.1, valid one day; returns (cert, key)."""
    cert, key = folder / "cert.pem", folder / "key.pem"
    # An own config file keeps the host's openssl.cnf out of it; the cert must be
    # a CA (to be its own trust anchor) and name 127.0.0.1 as an IP SAN.
    conf = folder / "openssl.cnf"
    conf.write_text(
        "[req]\ndistinguished_name = dn\nx509_extensions = ext\nprompt = no\n"
        f"[dn]\nCN = {LOOPBACK}\n"
        f"[ext]\nbasicConstraints = critical, CA:TRUE\nsubjectAltName = IP:{LOOPBACK}\n"
    )
    run(
        "openssl", "req", "-x509", "-config", str(conf), "-newkey", "ec",
        "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-days", "1",
        "-keyout", str(key), "-out", str(cert),
    )  # fmt: skip
    return cert, key


def parse_cgi(output: bytes) -> tuple[int, list[tuple[str, str]], bytes]:
    """Split a CGI response into status, headers and body (the 'Status:' header is the code)."""
    head, sep, body = output.partition(b"\r\n\r\n")
    if not sep:
        head, sep, body = output.partition(b"\n\n")
    status, headers = 200, []
    for line in head.decode("latin-1").splitlines():
        name, _, value = line.partition(":")
        if name.strip().lower() == "status":
            status = int(value.split()[0])
        elif name.strip():
            headers.append((name.strip(), value.strip()))
    return status, headers, body


class GitHandler(http.server.BaseHTTPRequestHandler):
    """Runs `git http-backend` as a CGI for each request."""

    server: _GitHttpServer
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        self._serve()

    def do_POST(self) -> None:
        self._serve()

    def log_message(self, format: str, *args: object) -> None:
        self.server.state.requests.append(format % args)

    def _serve(self) -> None:
        time.sleep(min(self.server.state.delay, 30.0))  # bounded: a test's slow remote
        user = self._authenticated_user()
        if user is False:
            self._reply(401, [("WWW-Authenticate", 'Basic realm="git"')], b"auth required\n")
            return
        length = self.headers.get("Content-Length")
        if self.command == "POST" and length is None:
            # git streams chunked bodies only above http.postBuffer (1 MiB); our
            # test repos are far smaller, so a chunked request is a test bug.
            self._reply(411, [], b"length required\n")
            return
        body = self.rfile.read(int(length)) if length else b""
        done = subprocess.run(
            ["git", "http-backend"], input=body, env=self._cgi_env(user, len(body)),
            capture_output=True, timeout=30, check=False,
        )  # fmt: skip
        status, headers, out = parse_cgi(done.stdout)
        self._reply(status, headers, out)

    def _authenticated_user(self) -> str | bool | None:
        """None without auth configured, the user name if it matches, False if not."""
        wanted = self.server.state.credentials
        if wanted is None:
            return None
        given = self.headers.get("Authorization", "")
        expected = "Basic " + base64.b64encode(":".join(wanted).encode()).decode()
        return wanted[0] if given == expected else False

    def _cgi_env(self, user: str | bool | None, length: int) -> dict[str, str]:
        path, _, query = self.path.partition("?")
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "GIT_PROJECT_ROOT": str(self.server.state.root),
            "GIT_HTTP_EXPORT_ALL": "1",
            "GIT_CONFIG_NOSYSTEM": "1",
            "GIT_CONFIG_GLOBAL": "/dev/null",
            "GATEWAY_INTERFACE": "CGI/1.1",
            "REQUEST_METHOD": self.command,
            "PATH_INFO": path,
            "QUERY_STRING": query,
            "CONTENT_TYPE": self.headers.get("Content-Type", ""),
            "CONTENT_LENGTH": str(length),
            "REMOTE_ADDR": self.client_address[0],
        }
        if isinstance(user, str):
            env["REMOTE_USER"] = user
        # Headers as CGI passes them: Git-Protocol (v2) and Content-Encoding (gzip) matter.
        for name, value in self.headers.items():
            env["HTTP_" + name.upper().replace("-", "_")] = value
        return env

    def _reply(self, status: int, headers: list[tuple[str, str]], body: bytes) -> None:
        self.send_response(status)
        for name, value in headers:
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


class _GitHttpServer(http.server.ThreadingHTTPServer):
    daemon_threads = True
    state: HttpsServer

    def handle_error(self, request: object, client_address: object) -> None:
        # Clients that reject our certificate abort the handshake: expected, not news.
        pass


@pytest.fixture
def https_git(tmp_path: Path) -> Iterator[HttpsServer]:
    """git smart HTTP over TLS on a free 127.0.0.1 port, serving the repos under tmp_path."""
    require("openssl")
    folder = tmp_path / "https"
    folder.mkdir()
    cert, key = make_cert(folder)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    server = _GitHttpServer((LOOPBACK, 0), GitHandler)
    # The handshake runs lazily in the handler thread, so a client that stalls or
    # refuses the certificate never blocks the accept loop.
    server.socket = context.wrap_socket(
        server.socket, server_side=True, do_handshake_on_connect=False
    )
    server.state = HttpsServer(port=server.server_address[1], root=tmp_path, cert=cert)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        yield server.state
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


@pytest.fixture
def locked_https(https_git: HttpsServer, monkeypatch: pytest.MonkeyPatch) -> HttpsServer:
    """The https remote answering 401 to anyone without the credential (tests set it),
    its certificate trusted by git, in agent processes too; no host git config or proxy."""
    monkeypatch.setenv("GIT_SSL_CAINFO", str(https_git.cert))
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", "/dev/null")
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    for name in ("http_proxy", "https_proxy", "all_proxy", "GIT_CONFIG_COUNT"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.upper(), raising=False)
    https_git.credentials = ("nobody", "yet")
    return https_git


# --- a port that accepts and never answers ----------------------------------------------


@pytest.fixture
def mute_port() -> Iterator[int]:
    """A 127.0.0.1 port that accepts connections and never sends a byte."""
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind((LOOPBACK, 0))
    listener.listen(8)
    listener.settimeout(0.1)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept_and_hold() -> None:
        while not stop.is_set() and len(held) < 64:  # bounded: a test makes a few
            with contextlib.suppress(TimeoutError):
                conn, _ = listener.accept()
                held.append(conn)

    thread = threading.Thread(target=accept_and_hold, daemon=True)
    thread.start()
    try:
        yield int(listener.getsockname()[1])
    finally:
        stop.set()
        thread.join(timeout=5)
        for conn in held:
            conn.close()
        listener.close()


# --- what the children were given: every descendant's argv, read from /proc -------------


@dataclass
class Child:
    pid: int
    argv: tuple[str, ...]
    environ: tuple[str, ...]  # readable here: our children run as our own uid


class Children:
    """A thread that polls /proc for every descendant of this process and keeps its argv.

    /proc/PID/cmdline is readable by every local user, so an argv is public on the
    host; /proc/PID/environ only by the same uid and root, which is where a credential
    may travel. Polled, not traced: a child that lives less than one sweep can be
    missed, so a test slows its remote down (HttpsServer.delay) and checks that the
    children it is about were seen.
    """

    def __init__(self, every: float = 0.001) -> None:
        self.every = every
        self.seen: dict[tuple[int, tuple[str, ...]], Child] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)

    def __enter__(self) -> Children:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    @property
    def argvs(self) -> list[tuple[str, ...]]:
        return [child.argv for child in self.seen.values()]

    def _watch(self) -> None:
        root = os.getpid()
        while not self._stop.is_set():
            for pid in _descendants(root):
                self._note(pid)
            time.sleep(self.every)

    def _note(self, pid: int) -> None:
        argv = _proc_strings(pid, "cmdline")
        if argv and (pid, argv) not in self.seen:
            self.seen[(pid, argv)] = Child(pid, argv, _proc_strings(pid, "environ"))


def _descendants(root: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            ppid = _parent(int(entry.name))
            if ppid is not None:
                children.setdefault(ppid, []).append(int(entry.name))
    found, todo = [], list(children.get(root, []))
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo += children.get(pid, [])
    return found


def _parent(pid: int) -> int | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:  # gone meanwhile
        return None
    # "pid (comm) state ppid ...": comm may hold spaces and parentheses, the last ")" ends it.
    return int(stat.rpartition(")")[2].split()[1])


def _proc_strings(pid: int, name: str) -> tuple[str, ...]:
    try:
        raw = Path(f"/proc/{pid}/{name}").read_bytes()
    except OSError:
        return ()
    return tuple(part.decode("utf-8", "replace") for part in raw.split(b"\0") if part)
