"""agent.logs and the lines the agent logs: one per result, one per peer-gate decision,
text or JSON, with the levels journald reads."""

from __future__ import annotations

import io
import json
import logging
import os
import shutil
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from agent import logs
from agent.config import Peer, Result
from agent.daemon.gate import PairGate
from agent.daemon.loop import Loop, summary
from agent.daemon.peer import PeerClient
from agent.engine.state import Attempt
from agent.errors import Problem
from lab.repo import ConfigRepo, git
from tests.conftest import NodeFactory, StartAgent
from tests.fakepeer import peer_document

SHA, OLD = "a" * 40, "b" * 40


def attempt(result: Result, **fields: Any) -> Attempt:
    return Attempt(started_at="2026-05-01T10:00:00+00:00", sha=SHA, result=result, **fields)


@pytest.mark.parametrize(
    ("tried", "line"),
    [
        (attempt("deployed", subject='Add "pc7"'), 'deployed aaaaaaaaaaaa "Add \\"pc7\\""'),
        (attempt("current"), "current aaaaaaaaaaaa: nothing to do"),
        (attempt("refused", message="refused: 2 problem(s) in the config", problems=[
            Problem("/etc/dhcp/hosts.conf", 31, "semicolon expected.", source="dhcp/hosts.conf"),
            Problem("/etc/dhcp/dhcpd.conf", None, "no subnet declared"),
         ]), "refused aaaaaaaaaaaa: dhcp/hosts.conf:31: semicolon expected.; "
             "/etc/dhcp/dhcpd.conf: no subnet declared"),
        (attempt("refused", step="trust", message="unsigned"), "refused aaaaaaaaaaaa: unsigned"),
        (attempt("rolled_back", message="dhcpd did not come back.\ndhcpd exited with 1:\n  x"),
         "rolled back aaaaaaaaaaaa: dhcpd did not come back.; dhcpd exited with 1:; x"),
        (attempt("failed", step="record", message="No space left on device (/s/state.json)"),
         "failed aaaaaaaaaaaa at record: No space left on device (/s/state.json)"),
        (Attempt(started_at="t", result="failed", step="lock", message="Is a directory"),
         "failed at lock: Is a directory"),
    ],
)  # fmt: skip
def test_one_line_per_result(tried: Attempt, line: str) -> None:
    assert summary(tried) == line


def test_a_long_message_is_cut_in_the_line() -> None:
    line = summary(attempt("rolled_back", message="x" * 5000))
    assert len(line) < 1100 and line.endswith("…")


def record(message: str, level: int = logging.WARNING, **extra: Any) -> logging.LogRecord:
    made = logging.makeLogRecord({"msg": message, "levelno": level, "name": "agent.x",
                                  "levelname": logging.getLevelName(level), **extra})  # fmt: skip
    return made


def test_json_lines_carry_time_level_logger_message_and_the_extra_fields() -> None:
    doc = json.loads(logs.JsonFormatter().format(record("deployed x", sha=SHA, result="deployed")))
    assert doc.pop("time").endswith("+00:00")
    assert doc == {"level": "warning", "logger": "agent.x", "message": "deployed x",
                   "sha": SHA, "result": "deployed"}  # fmt: skip


def test_on_the_journal_every_line_starts_with_its_priority() -> None:
    text = logs.TextFormatter(journal=True).format(record("two\nlines", logging.ERROR))
    assert text == "<3>ERROR agent.x: two\n<3>lines"
    assert logs.JsonFormatter(journal=True).format(record("x", logging.INFO)).startswith("<6>{")
    assert [logs.priority(level) for level in (10, 20, 25, 30, 40, 50)] == [7, 6, 6, 4, 3, 3]


def test_the_journal_is_known_by_the_device_and_inode_systemd_names(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with (tmp_path / "stderr").open("w") as stream:
        monkeypatch.setattr(sys, "stderr", stream)
        st = os.fstat(stream.fileno())
        monkeypatch.setenv("JOURNAL_STREAM", f"{st.st_dev}:{st.st_ino}")
        assert logs.on_journal() is True
        monkeypatch.setenv("JOURNAL_STREAM", f"{st.st_dev}:{st.st_ino + 1}")  # another stream
        assert logs.on_journal() is False


def test_a_fault_that_repeats_is_logged_once_per_period_with_a_count() -> None:
    out = io.StringIO()
    logger = logging.getLogger("tests.throttle")
    logger.addHandler(handler := logging.StreamHandler(out))
    logger.propagate = False
    try:
        say = logs.Throttle(logger, every=0.2)
        for _ in range(5000):
            say("cannot accept")
        time.sleep(0.25)
        say("cannot accept")
    finally:
        logger.removeHandler(handler)
    assert out.getvalue().splitlines() == [
        "cannot accept",
        "cannot accept (and 4999 more like it since the last such line)",
    ]


def test_every_error_reads_as_one_line() -> None:
    assert logs.one_line(OSError(28, "No space left on device", "/s/lock")) == (
        "No space left on device (/s/lock)"
    )
    assert logs.one_line(KeyError("sha")) == "KeyError: 'sha'"
    assert logs.one_line(AttributeError()) == "AttributeError"


# --- the lines a running loop logs -------------------------------------------------------


def results(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if getattr(r, "result", None)]


def test_the_loop_logs_one_line_per_result(
    repo: ConfigRepo, make_node: NodeFactory, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="agent")
    home = repo.bare.parent.parent / "dhcp1"
    broken = f"! grep -q BROKEN {home}/etc/dhcp/hosts.conf"  # dhcpd "fails" on such a tree
    dhcpd = {"restart": "command", "restart_command": ["true"], "health_command": ["sh", "-c",
             broken]}  # fmt: skip
    loop = Loop(make_node(dhcpd=dhcpd))
    head = git(repo.work, "rev-parse", "HEAD")

    def result_of_a_reconcile() -> tuple[int, str, str | None]:
        loop._reconcile("test")
        last = results(caplog)[-1]
        return last.levelno, last.getMessage(), getattr(last, "sha", None)

    assert result_of_a_reconcile() == (20, f'deployed {head[:12]} "Initial pair config"', head)
    assert result_of_a_reconcile() == (20, f"current {head[:12]}: nothing to do", head)
    repo.replace("dhcp/hosts.conf", "fixed-address 192.0.2.10;", "fixed-address 192.0.2.10")
    typo = repo.commit("Typo")
    level, line, _ = result_of_a_reconcile()  # every problem dhcpd found, file:line
    assert level == 30 and line.startswith(
        f"refused {typo[:12]}: dhcp/hosts.conf:6: semicolon expected.; dhcp/hosts.conf:11: "
    )
    repo.replace("dhcp/hosts.conf", "fixed-address 192.0.2.10", "fixed-address 192.0.2.10;")
    repo.write("dhcp/hosts.conf", repo.read("dhcp/hosts.conf") + "# BROKEN\n")
    bad = repo.commit("Breaks dhcpd")
    level, line, _ = result_of_a_reconcile()
    assert level == 40 and line.startswith(f"rolled back {bad[:12]}: dhcpd did not come back")
    assert "health check failed" in line and "\n" not in line
    shutil.move(repo.bare, repo.bare.with_name("gone.git"))
    level, line, sha = result_of_a_reconcile()
    assert (level, sha) == (40, None) and line.startswith("failed at fetch: ")


class _Primary(BaseHTTPRequestHandler):
    runs = OLD

    def do_GET(self) -> None:
        body = json.dumps(peer_document(deployed=self.runs)).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def primary() -> Iterator[tuple[str, type[_Primary]]]:
    class Handler(_Primary):
        pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/status", Handler
    finally:
        server.shutdown()
        server.server_close()


def test_the_gate_logs_each_decision_once_with_its_reason(
    primary: tuple[str, type[_Primary]], caplog: pytest.LogCaptureFixture
) -> None:
    """The secondary waits (a few dozen looks) until the primary runs the commit."""
    url, handler = primary
    caplog.set_level(logging.INFO, logger="agent.daemon.gate")
    client = PeerClient(Peer(status_url=url, wait=20))
    gate = PairGate("secondary", client, 0, lambda: None, threading.Event())
    timer = threading.Timer(1.0, lambda: setattr(handler, "runs", SHA))
    timer.start()
    gate.before_restart(SHA)
    timer.join()
    said = [r.getMessage() for r in caplog.records if r.name == "agent.daemon.gate"]
    assert len(said) == 2, said  # one line per decision, not one per look
    assert said[0].startswith(f"peer gate: {SHA[:12]} waits for the peer: ")
    assert said[1].startswith(f"peer gate: {SHA[:12]} may restart now: ")


def test_the_agent_logs_json_lines_when_asked(
    repo: ConfigRepo, start_agent: StartAgent, dhcpd_binary: str
) -> None:
    head = git(repo.work, "rev-parse", "HEAD")
    agent = start_agent(log={"format": "json"})
    agent.wait_deployed(head)
    assert agent.stop() == 0
    lines = [json.loads(line) for line in agent.output().splitlines()]
    assert all({"time", "level", "logger", "message"} <= set(doc) for doc in lines), lines
    deployed = [doc for doc in lines if doc.get("result") == "deployed"]
    assert len(deployed) == 1 and deployed[0]["sha"] == head and deployed[0]["level"] == "info"
    assert deployed[0]["message"] == f'deployed {head[:12]} "Initial pair config"'
