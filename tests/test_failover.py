"""Failover state from the lease file and from OMAPI: table tests, then a real pair.

The real pair runs the example of repo-template/ as it is: the primary's dhcpd in
namespace "p" (192.0.2.1), the secondary's in "s" (192.0.2.2), one veth between
them (lab/netns.py's peer_link), each started by the test through a wrapper
that execs it inside its namespace, and stopped by pid after the test.
"""

from __future__ import annotations

import base64
import secrets
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from agent.engine.render import render_pair
from agent.errors import OmapiError
from agent.servers.base import PairState
from agent.servers.dhcpd import failover, omapi
from agent.servers.dhcpd.omapi import OmapiKey
from agent.source.snapshot import WorkTree
from lab.netns import Namespace, PeerLink, dhcpd_wrapper
from lab.proc import dhcpd_pids_using

TEMPLATE = Path(__file__).resolve().parent.parent / "repo-template"
PEER = "dhcp-failover"  # repo-template/pair.toml [failover] name

# --- the lease file: real-shaped texts ----------------------------------------

HEAD = """\
# The format of this file is documented in the dhcpd.leases(5) manual page.
# This lease file was written by isc-dhcp-4.4.3-P1

# authoring-byte-order entry is generated, DO NOT DELETE
authoring-byte-order little-endian;

"""

LEASE = """\
lease 192.0.2.150 {
  starts 3 2026/11/25 00:27:45;
  ends 3 2026/11/25 00:57:45;
  tstp 3 2026/11/25 00:57:45;
  cltt 3 2026/11/25 00:27:45;
  binding state active;
  next binding state expired;
  hardware ethernet 02:00:00:00:01:50;
  client-hostname "laptop";
}
"""

SERVER_DUID = 'server-duid "\\000\\001\\000\\0012\\230\\347\\374fA\\2071la";\n'


def record(mine: str, partner: str, peer: str = PEER, at: str = "3 2026/11/25 00:27:45",
           mclt: bool = False) -> str:  # fmt: skip
    """A record as dhcpd 4.4.3 writes it: a newline first, mclt on the secondary only."""
    return (
        f'\nfailover peer "{peer}" state {{\n'
        f"  my state {mine} at {at};\n"
        f"  partner state {partner} at {at};\n" + ("  mclt 1800;\n" if mclt else "") + "}\n"
    )


def state(
    mine: str, partner: str, peer: str = PEER, since: str = "2026-11-25T00:27:45+00:00"
) -> PairState:
    return PairState(peer, mine, partner, since, since)


# The primary's file of a first start: recover, then the way to normal, with the
# leases dhcpd writes between the records.
FIRST_START = (
    HEAD
    + record("recover", "unknown-state")
    + record("recover", "unknown-state")
    + SERVER_DUID
    + record("recover", "recover")
    + LEASE
    + record("recover-done", "recover")
    + record("recover-done", "recover-done")
    + record("normal", "recover-done")
    + LEASE
    + record("normal", "normal")
    + LEASE
)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param("", [], id="empty"),
        pytest.param(HEAD + SERVER_DUID + LEASE, [], id="no failover peer"),
        pytest.param(
            HEAD + record("recover", "unknown-state"),
            [state("recover", "unknown-state")],
            id="one record",
        ),
        pytest.param(FIRST_START, [state("normal", "normal")], id="the last record wins"),
        pytest.param(
            FIRST_START + record("communications-interrupted", "normal") + LEASE,
            [state("communications-interrupted", "normal")],
            id="leases after the last record",
        ),
        pytest.param(
            HEAD + record("normal", "normal", mclt=True) + LEASE,
            [state("normal", "normal")],
            id="the secondary's record, with mclt",
        ),
        pytest.param(
            HEAD
            + record("normal", "normal", peer="site-a")
            + record("recover", "unknown-state", peer="site-b")
            + LEASE
            + record("communications-interrupted", "normal", peer="site-a")
            + record("recover-done", "recover-done", peer="site-b"),
            [
                state("communications-interrupted", "normal", peer="site-a"),
                state("recover-done", "recover-done", peer="site-b"),
            ],
            id="two peers, each its last record, in order of appearance",
        ),
        pytest.param(
            HEAD + record("normal", "normal") + record("recover", "unknown-state")[:70],
            [state("normal", "normal")],
            id="a half-written last record is ignored",
        ),
        pytest.param(
            HEAD + record("normal", "normal") + record("partner-down", "normal")[:60] + LEASE,
            [state("normal", "normal")],
            id="a record cut short by a lease is ignored",
        ),
        pytest.param(
            HEAD
            + record("normal", "normal")
            + '\nfailover peer "dhcp-failover" state {\n  my state partner-down at 3 2026/1'
            + record("communications-interrupted", "normal"),
            [state("communications-interrupted", "normal")],
            id="a cut record, then a whole one",
        ),
        pytest.param(
            HEAD + record("normal", "normal").replace("  partner state normal", "  # junk"),
            [],
            id="a record without its partner line",
        ),
        pytest.param(
            "\x00\xff garbage {\n}\n" + record("normal", "normal") + "more garbage;\n}}}\n",
            [state("normal", "normal")],
            id="junk around a record",
        ),
        pytest.param(
            HEAD + LEASE.replace('"laptop"', '"failover peer x state {"') + "}\n",
            [],
            id="a header inside a quoted string is not a record",
        ),
        pytest.param(
            'failover peer "p" state {\nmy state normal at 3 2026/11/25 00:27:45;\n'
            "peer state normal at 3 2026/11/25 00:27:45;\n}\n",
            [state("normal", "normal", peer="p")],
            id="dhcpd.leases(5)'s 'peer state' spelling",
        ),
    ],
)
def test_from_lease_file(text: str, expected: list[PairState]) -> None:
    assert failover.from_lease_file(text) == expected


@pytest.mark.parametrize(
    ("at", "since"),
    [
        ("3 2026/11/25 00:27:45;", "2026-11-25T00:27:45+00:00"),  # dhcpd's default, UTC
        ("0 2024/1/7 3:04:05;", "2024-01-07T03:04:05+00:00"),
        # `db-time-format local;`: seconds since the epoch, then the local time for humans
        ("epoch 1795566465; # Wed Nov 25 00:27:45 2026", "2026-11-25T00:27:45+00:00"),
        ("never;", "never"),  # print_time's MAX_TIME: kept as written
        ("3 2026/13/45 00:00:00;", "3 2026/13/45 00:00:00"),  # no such date: as written
    ],
)
def test_times_become_iso_8601_utc(at: str, since: str) -> None:
    text = (
        f'failover peer "p" state {{\n  my state normal at {at}\n  partner state normal at {at}\n}}'
    )
    [found] = failover.from_lease_file(text)
    assert (found.mine_since, found.partner_since) == (since, since)


def test_every_cut_of_an_appended_record_leaves_the_one_before() -> None:
    """dhcpd appends while we read: any prefix of the new record is the old state."""
    before = HEAD + record("normal", "normal") + LEASE
    appended = record("communications-interrupted", "normal")
    complete_at = appended.rindex("}") + 1
    for cut in range(len(appended) + 1):
        found = failover.from_lease_file(before + appended[:cut])
        mine = "communications-interrupted" if cut >= complete_at else "normal"
        assert found == [state(mine, "normal")], f"cut at {cut}: {appended[:cut]!r}"


def test_read_tolerates_a_missing_or_partial_file(tmp_path: Path) -> None:
    lease_file = tmp_path / "dhcpd.leases"
    assert failover.read(lease_file) == []
    lease_file.write_bytes(b"\xff\xfe not utf-8\n" + FIRST_START.encode() + b"\nfailover peer")
    assert failover.read(lease_file) == [state("normal", "normal")]
    assert failover.read(lease_file) == failover.from_lease_file(lease_file.read_text("latin-1"))


def test_read_follows_appends_and_rewrites(tmp_path: Path) -> None:
    """What was read is kept per file: appends, a half-written record, a rewrite."""
    lease_file = tmp_path / "dhcpd.leases"
    lease_file.write_text(HEAD + record("normal", "normal") + LEASE)
    assert failover.read(lease_file) == [state("normal", "normal")]
    appended = record("communications-interrupted", "normal")
    half = len(appended) // 2
    for part in (LEASE + appended[:half], appended[half:]):
        with lease_file.open("a") as out:
            out.write(part)
        text = lease_file.read_text()
        assert failover.read(lease_file) == failover.from_lease_file(text), part
    assert failover.read(lease_file) == [state("communications-interrupted", "normal")]
    rewrite = tmp_path / "dhcpd.leases.new"  # dhcpd writes a new file and renames it over
    rewrite.write_text(HEAD + record("partner-down", "communications-interrupted"))
    rewrite.rename(lease_file)
    assert failover.read(lease_file) == [state("partner-down", "communications-interrupted")]
    lease_file.write_text(HEAD)  # the same file, shorter: read again from the start
    assert failover.read(lease_file) == []


@pytest.mark.parametrize("chunk", [1, 7, 64])
def test_a_file_read_as_it_grows_reads_as_the_whole(tmp_path: Path, chunk: int) -> None:
    lease_file = tmp_path / "dhcpd.leases"
    lease_file.write_text("")
    text = FIRST_START + record("communications-interrupted", "normal") + LEASE
    for start in range(0, len(text), chunk):
        with lease_file.open("a") as out:
            out.write(text[start : start + chunk])
        expected = failover.from_lease_file(text[: start + chunk])
        assert failover.read(lease_file) == expected, f"after {start + chunk} characters"


@pytest.mark.parametrize(
    ("states", "expected"),
    [
        ([], False),  # no record: not known to be normal
        ([state("normal", "normal")], True),
        ([state("normal", "communications-interrupted")], False),
        ([state("communications-interrupted", "normal")], False),
        ([state("startup", "normal")], False),
        ([state("normal", "normal", "a"), state("normal", "normal", "b")], True),
        ([state("normal", "normal", "a"), state("recover-wait", "normal", "b")], False),
    ],
)
def test_all_normal(states: list[PairState], expected: bool) -> None:
    assert failover.all_normal(states) is expected


# --- OMAPI: omshell's answer ---------------------------------------------------

# omshell 4.4.3's answer to `new failover-state`, `set name = ...`, `open`.
OMSHELL_ANSWER = """\
> > > obj: <null>
> obj: failover-state
> obj: failover-state
name = "dhcp-failover"
> obj: failover-state
name = "dhcp-failover"
partner-address = 10:aa:d8:de:6c:55:00:00
partner-port = 00:00:02:87
local-address = 60:a9:d8:de:6c:55:00:00
local-port = 00:00:02:87
mclt = 00:00:07:08
partner-state = 00:00:00:02
local-state = 00:00:00:01
partner-stos = 6b:06:2b:c9
local-stos = 6b:06:2b:c4
max-response-delay = 00:00:00:1e
> """


def test_omshell_answer_is_read() -> None:
    fields = omapi._omshell_fields(OMSHELL_ANSWER)
    assert omapi._omapi_state(PEER, fields) == PairState(
        PEER, "startup", "normal", "2026-11-25T00:28:52+00:00", "2026-11-25T00:28:57+00:00"
    )


def test_omshell_prints_printable_bytes_as_text() -> None:
    """print_hex_or_string: a stos whose four bytes all print comes as "..."."""
    answer = OMSHELL_ANSWER.replace("6b:06:2b:c4", '"kABC"').replace("00:00:00:01", "00:00:00:fe")
    found = omapi._omapi_state(PEER, omapi._omshell_fields(answer))
    assert found.mine == "recover-wait"
    assert found.mine_since == failover.from_epoch(int.from_bytes(b"kABC", "big"))


@pytest.mark.parametrize(
    "answer",
    [
        "> dhcpctl_connect: no more\n",  # dhcpd not listening (yet)
        "> > > obj: <null>\n> can't open object: not found\nobj: failover-state\n"
        'name = "other"\n> ',
    ],
)
def test_an_omshell_answer_without_state_is_an_error(answer: str) -> None:
    with pytest.raises(OmapiError):
        omapi._omapi_state(PEER, omapi._omshell_fields(answer))


@pytest.mark.parametrize(
    ("peer", "key"),
    [
        ('bad"name', None),
        ("two\nlines", None),
        (PEER, OmapiKey("key name", "c2VjcmV0")),
        (PEER, OmapiKey("k", "not base64!\nconnect")),
        (PEER, OmapiKey("k", "c2VjcmV0", "rot13")),
    ],
)
def test_what_would_change_the_omshell_script_is_refused(peer: str, key: OmapiKey | None) -> None:
    with pytest.raises(OmapiError) as caught:
        omapi.from_omapi(peer, key=key, omshell=["false"])
    assert "c2VjcmV0" not in caught.value.message


def test_the_secret_stays_out_of_repr_and_argv() -> None:
    key = OmapiKey("omapi_key", "c2VjcmV0LXNlY3JldA==", "hmac-sha256")
    assert "c2VjcmV0" not in repr(key)
    script = omapi._omshell_script(PEER, "127.0.0.1", 7911, key)
    assert "key omapi_key c2VjcmV0LXNlY3JldA==\nkey-algorithm hmac-sha256\n" in script


def test_a_missing_omshell_is_an_error() -> None:
    with pytest.raises(OmapiError, match="not found"):
        omapi.from_omapi(PEER, omshell=["/nonexistent/omshell"])


# --- a real pair -----------------------------------------------------------------

NORMAL_TIMEOUT = 60.0  # seen: 0.2-5 s from start (the peers retry connecting every 5 s)
LOST_TIMEOUT = 10.0  # the stopped peer's socket closes at once: seen well under 1 s
STOP_TIMEOUT = 10.0
POLL = 0.1

NODES = {"primary": "dhcp1", "secondary": "dhcp2"}  # repo-template/pair.toml names


@dataclass
class Server:
    """One dhcpd of the pair, configured from repo-template/, run by the test."""

    role: str
    ns: Namespace
    folder: Path
    dhcpd: Path  # wrapper: execs dhcpd inside ns
    proc: subprocess.Popen[bytes] | None = None

    @property
    def lease_file(self) -> Path:
        return self.folder / "dhcpd.leases"

    @property
    def target(self) -> Path:
        return self.folder / "etc"

    @property
    def log(self) -> Path:
        return self.folder / "dhcpd.log"

    def render(self, extra: str = "") -> None:
        rendered = render_pair(WorkTree(TEMPLATE), "", self.role, NODES[self.role],
                               str(self.target))  # fmt: skip
        for rel, data in rendered.files.items():
            path = self.target / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data + extra.encode() if rel == "dhcpd.conf" else data)

    def start(self) -> None:
        assert self.proc is None, f"the {self.role}'s dhcpd runs already"
        self.lease_file.touch()  # dhcpd refuses to start without one
        conf, pid = self.target / "dhcpd.conf", self.folder / "dhcpd.pid"
        files = ["-cf", str(conf), "-lf", str(self.lease_file), "-pf", str(pid)]
        argv = [str(self.dhcpd), "-f", "-d", *files, "eth0"]
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(argv, cwd=self.target, stdin=subprocess.DEVNULL,
                                         stdout=log, stderr=subprocess.STDOUT,
                                         start_new_session=True)  # fmt: skip

    def stop(self) -> None:
        """SIGTERM by pid (the wrapper exec'd: it is dhcpd's), SIGKILL if it lingers."""
        proc, self.proc = self.proc, None
        if proc is None:
            return
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(STOP_TIMEOUT)

    def recorded(self) -> list[PairState]:
        return failover.read(self.lease_file)

    def omapi(self) -> PairState | None:
        """What dhcpd says now (OMAPI inside its namespace); None while it cannot answer."""
        try:
            return omapi.from_omapi(PEER, omshell=self.ns.argv("omshell"), timeout=5)
        except OmapiError:
            return None

    def describe(self) -> str:
        log = self.log.read_text(errors="replace").splitlines() if self.log.exists() else []
        said = "\n".join(line for line in log if "failover" in line or "peer" in line)
        return f"{self.role}: recorded {self.recorded()}, OMAPI {self.omapi()}\n{said}"


@dataclass
class Pair:
    primary: Server
    secondary: Server
    link: PeerLink

    def servers(self) -> tuple[Server, Server]:
        return self.primary, self.secondary

    def describe(self) -> str:
        return "\n".join(s.describe() for s in self.servers())


@pytest.fixture
def pair(peer_link: PeerLink, tmp_path: Path, dhcpd_binary: str) -> Iterator[Pair]:
    """Both servers rendered and ready to start; every dhcpd stopped by pid after the test."""
    servers = []
    for role, ns in (("primary", peer_link.primary), ("secondary", peer_link.secondary)):
        folder = tmp_path / role
        folder.mkdir()
        server = Server(role, ns, folder, dhcpd_wrapper(folder / "dhcpd", ns, dhcpd_binary))
        server.render()
        servers.append(server)
    the_pair = Pair(servers[0], servers[1], peer_link)
    try:
        yield the_pair
    finally:
        for server in the_pair.servers():
            server.stop()
        # Before netlab's teardown, which would SIGKILL leftovers and fail the test.
        left = {s.role: s.ns.pids() for s in the_pair.servers() if s.ns.pids()}
        assert not left, f"processes left in the pair's namespaces: {left}"
        assert not dhcpd_pids_using(str(tmp_path)), "a dhcpd of this test survived"


def until(condition: Callable[[], bool], timeout: float, what: str, pair: Pair) -> float:
    """Poll condition; the seconds it took, or fail with both servers' state and log."""
    start = time.monotonic()
    while not condition():
        if time.monotonic() - start > timeout:
            pytest.fail(f"{what}: not within {timeout:g} s\n{pair.describe()}")
        time.sleep(POLL)
    return time.monotonic() - start


def recorded_normal(pair: Pair) -> bool:
    return all(failover.all_normal(s.recorded()) for s in pair.servers())


def omapi_normal(pair: Pair) -> bool:
    states = [s.omapi() for s in pair.servers()]
    return all(s is not None and failover.all_normal([s]) for s in states)


def mine(server: Server) -> str | None:
    recorded = server.recorded()
    return recorded[-1].mine if recorded else None


def test_a_real_pair_reaches_normal_then_reports_a_lost_partner(
    pair: Pair, record_property: Callable[[str, object], None]
) -> None:
    for server in pair.servers():
        server.start()
    took = until(lambda: recorded_normal(pair), NORMAL_TIMEOUT, "both normal", pair)
    record_property("start_to_normal_s", round(took, 2))
    print(f"from start to normal (both lease files): {took:.2f} s")
    until(lambda: omapi_normal(pair), 5, "OMAPI normal on both", pair)
    [primary] = pair.primary.recorded()
    assert (primary.peer, primary.mine, primary.partner) == (PEER, "normal", "normal")
    assert primary.mine_since is not None and primary.mine_since.endswith("+00:00")

    pair.secondary.stop()
    lost = until(lambda: mine(pair.primary) == "communications-interrupted", LOST_TIMEOUT,
                 "the primary sees its partner gone", pair)  # fmt: skip
    print(f"from stopping the secondary to communications-interrupted: {lost:.2f} s")
    now = pair.primary.omapi()
    assert now is not None and now.mine == "communications-interrupted"
    assert not failover.all_normal(pair.primary.recorded())

    pair.secondary.start()
    back = until(lambda: recorded_normal(pair) and omapi_normal(pair), NORMAL_TIMEOUT,
                 "both normal again", pair)  # fmt: skip
    record_property("restart_to_normal_s", round(back, 2))
    print(f"from restarting the secondary to normal: {back:.2f} s")


def test_the_lease_file_says_normal_while_a_restarted_dhcpd_is_in_startup(pair: Pair) -> None:
    """Why the health check asks OMAPI: dhcpd never records "startup".

    A server stopped while normal is rewritten at start as "my state normal", and
    stays so on disk while, cut off from its partner, it is in startup (15 s,
    then communications-interrupted). OMAPI tells the truth.
    """
    for server in pair.servers():
        server.start()
    until(lambda: omapi_normal(pair), NORMAL_TIMEOUT, "both normal", pair)

    pair.secondary.stop()
    pair.link.cut()
    pair.secondary.start()
    until(lambda: pair.secondary.omapi() is not None, 10, "the secondary's OMAPI", pair)
    now = pair.secondary.omapi()
    assert now is not None and now.mine == "startup", pair.describe()
    assert failover.all_normal(pair.secondary.recorded()), "the lease file stopped lying"

    pair.link.mend()
    back = until(lambda: omapi_normal(pair), NORMAL_TIMEOUT, "both normal after the cut", pair)
    print(f"from mending the link to normal: {back:.2f} s")
    assert recorded_normal(pair)


def test_omapi_with_a_key_and_its_refusals(pair: Pair) -> None:
    secret = base64.b64encode(secrets.token_bytes(32)).decode()
    statement = f'\nkey omapi_key {{ algorithm hmac-sha256; secret "{secret}"; }}\n'
    pair.primary.render(statement + "omapi-key omapi_key;\n")
    assert pair.primary.omapi() is None  # not started: connection refused
    pair.primary.start()
    key = OmapiKey("omapi_key", secret, "hmac-sha256")
    omshell = pair.primary.ns.argv("omshell")

    def ask(k: OmapiKey | None, peer: str = PEER) -> PairState:
        return omapi.from_omapi(peer, key=k, omshell=omshell)

    until(lambda: _answers(lambda: ask(key)), 10, "OMAPI with the key", pair)
    alone = ask(key)  # no partner yet: a first start is recover, then startup
    assert alone.peer == PEER and alone.mine in ("recover", "startup")

    with pytest.raises(OmapiError, match="no key specified"):
        ask(None)
    wrong = OmapiKey("omapi_key", base64.b64encode(secrets.token_bytes(32)).decode(), "hmac-sha256")
    with pytest.raises(OmapiError) as caught:
        ask(wrong)
    assert wrong.secret not in caught.value.message and secret not in caught.value.message
    with pytest.raises(OmapiError, match="not found"):
        ask(key, peer="no-such-peer")


def _answers(ask: Callable[[], PairState]) -> bool:
    try:
        ask()
    except OmapiError:
        return False
    return True
