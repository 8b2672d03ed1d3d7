"""GET /status under load: many clients at once against an agent with a large live tree.

    python bench/status_load.py [--code DIR] [--tree-mb 60] [--clients 40]
                                [--seconds 20] [--out FILE]

Standalone (no tests/, no bench/ helpers): it makes a config repo from DIR's
repo-template plus --tree-mb of extra files (legal: within the default [limits],
and not included by dhcpd.conf, so dhcpd -t does not read them), starts
`DIR/.venv/bin/dhcp-gitops agent` on 127.0.0.1 with PYTHONPATH=DIR, waits for the
deploy, then runs --clients closed-loop clients (each sends its next GET /status
on a kept-alive connection as soon as the last one is answered) for --seconds.
Prints one JSON object: latency percentiles in ms, requests, throughput, errors.

DIR is the code under test: this worktree by default, or a second worktree of an
older commit to measure "before" (issue 13: every request hashed the tree).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent.parent
FILE_MB = 1  # the extra tree comes in files of this many MiB
START_TIMEOUT = 300.0  # seconds for the agent to deploy the large tree
GIT_ENV = {
    "GIT_AUTHOR_NAME": "Bench", "GIT_AUTHOR_EMAIL": "bench@example.net",
    "GIT_COMMITTER_NAME": "Bench", "GIT_COMMITTER_EMAIL": "bench@example.net",
    "GIT_CONFIG_GLOBAL": "/dev/null", "GIT_CONFIG_NOSYSTEM": "1",
}  # fmt: skip


def main() -> int:
    args = _arguments()
    code = args.code.resolve()
    with tempfile.TemporaryDirectory(prefix="status-load-") as tmp:
        home = Path(tmp)
        url = make_repo(code, home, args.tree_mb)
        port = free_port()
        config = write_config(home, url, port)
        agent = start_agent(code, config, home / "agent.log")
        try:
            base = f"http://127.0.0.1:{port}"
            wait_deployed(base, agent, home / "agent.log")
            result = asyncio.run(load(port, args.clients, args.seconds))
        finally:
            stop(agent)
    result.update(code=str(code), commit=_commit(code), tree_mb=args.tree_mb,
                  clients=args.clients, seconds=args.seconds)  # fmt: skip
    text = json.dumps(result, indent=2)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")
    return 0


def _arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--code", type=Path, default=HERE, help="the worktree to run")
    parser.add_argument("--tree-mb", type=int, default=60, help="extra MiB in the live tree")
    parser.add_argument("--clients", type=int, default=40, help="concurrent clients")
    parser.add_argument("--seconds", type=float, default=20.0, help="how long they ask")
    parser.add_argument("--out", type=Path, help="also write the JSON here")
    return parser.parse_args()


# --- the agent ----------------------------------------------------------------------


def git(cwd: Path, *args: str) -> None:
    subprocess.run(["git", *args], cwd=cwd, env={**os.environ, **GIT_ENV}, check=True,
                   capture_output=True)  # fmt: skip


def make_repo(code: Path, home: Path, tree_mb: int) -> str:
    """The example pair, plus tree_mb files of comments no config includes; a bare remote."""
    work, bare = home / "work", home / "remote.git"
    shutil.copytree(code / "repo-template", work)
    extra = work / "dhcp" / "archive"
    extra.mkdir()
    line = b"# an archived note kept with the config, never included by dhcpd.conf\n"
    block = line * (FILE_MB * 1024 * 1024 // len(line))
    for n in range(tree_mb // FILE_MB):
        (extra / f"note-{n:03}.txt").write_bytes(block + f"# {n}\n".encode())
    git(home, "init", "-q", "--bare", "-b", "main", str(bare))
    git(work, "init", "-q", "-b", "main")
    git(work, "add", "-A")
    git(work, "commit", "-qm", f"Example pair and {tree_mb} MiB of notes")
    git(work, "push", "-q", str(bare), "HEAD:main")
    return f"file://{bare}"


def write_config(home: Path, url: str, port: int) -> Path:
    (home / "etc").mkdir()
    config = home / "agent.toml"
    config.write_text(f"""[node]
name = "dhcp1"
role = "primary"
[source]
url = "{url}"
branch = "main"
poll_interval = 0
[deploy]
target = "{home}/etc/dhcp"
state_dir = "{home}/state"
[dhcpd]
restart = "none"
lease_file = "{home}/dhcpd.leases"
health_timeout = 0.2
[http]
listen = "127.0.0.1:{port}"
""")
    return config


def start_agent(code: Path, config: Path, log: Path) -> subprocess.Popen[bytes]:
    exe = code / ".venv" / "bin" / "dhcp-gitops"
    env = {**os.environ, "PYTHONPATH": str(code)}
    with log.open("wb") as out:
        return subprocess.Popen([str(exe), "agent", "--config", str(config)], env=env,
                                stdout=out, stderr=subprocess.STDOUT)  # fmt: skip


def wait_deployed(base: str, agent: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if agent.poll() is not None:
            raise SystemExit(f"the agent exited:\n{log.read_text()}")
        try:
            with urllib.request.urlopen(base + "/status", timeout=60) as answer:  # noqa: S310
                doc = json.load(answer)
            if doc["deployed"] is not None and doc["state"] == "idle":
                return
        except OSError:
            pass
        time.sleep(0.5)
    raise SystemExit(f"not deployed within {START_TIMEOUT} s:\n{log.read_text()}")


def stop(agent: subprocess.Popen[bytes]) -> None:
    agent.send_signal(signal.SIGTERM)
    try:
        agent.wait(60)
    except subprocess.TimeoutExpired:
        agent.kill()
        agent.wait()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _commit(code: Path) -> str:
    done = subprocess.run(["git", "rev-parse", "HEAD"], cwd=code, capture_output=True,
                          text=True, check=False)  # fmt: skip
    return done.stdout.strip()


# --- the clients ----------------------------------------------------------------------

REQUEST = b"GET /status HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: application/json\r\n\r\n"


async def load(port: int, clients: int, seconds: float) -> dict[str, Any]:
    """Closed-loop clients on kept-alive connections; the latency of every answer."""
    deadline = time.monotonic() + seconds
    latencies: list[float] = []
    errors: list[str] = []
    started = time.monotonic()
    await asyncio.gather(*(client(port, deadline, latencies, errors) for _ in range(clients)))
    took = time.monotonic() - started
    return summary(latencies, errors, took)


async def client(port: int, deadline: float, latencies: list[float], errors: list[str]) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        while time.monotonic() < deadline:
            sent = time.perf_counter()
            writer.write(REQUEST)
            code = await answer(reader)
            latencies.append(time.perf_counter() - sent)
            if code != 200:
                errors.append(f"HTTP {code}")
    except (OSError, asyncio.IncompleteReadError, ValueError) as err:
        errors.append(repr(err))
    finally:
        writer.close()


async def answer(reader: asyncio.StreamReader) -> int:
    """One HTTP/1.1 answer read whole (Content-Length); its status code."""
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    length = next(int(v) for k, _, v in (h.partition(":") for h in lines[1:])
                  if k.lower() == "content-length")  # fmt: skip
    await reader.readexactly(length)
    return int(lines[0].split()[1])


def summary(latencies: list[float], errors: list[str], took: float) -> dict[str, Any]:
    ordered = sorted(latencies)

    def pct(p: float) -> float | None:
        if not ordered:
            return None
        return round(1000 * ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))], 2)

    return {
        "requests": len(ordered),
        "per_second": round(len(ordered) / took, 1),
        "p50_ms": pct(50), "p95_ms": pct(95), "p99_ms": pct(99),
        "max_ms": round(1000 * ordered[-1], 2) if ordered else None,
        "errors": len(errors), "first_errors": errors[:3],
    }  # fmt: skip


if __name__ == "__main__":
    sys.exit(main())
