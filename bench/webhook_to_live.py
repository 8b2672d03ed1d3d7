"""Webhook-to-live time on the demo repo: `.venv/bin/python bench/webhook_to_live.py [N]`.

Builds the demo in a temp folder, runs the primary's `dhcp-gitops agent` (poll
timer off, so only the webhook triggers), then N times: commits and pushes a
changed host declaration, sends a signed generic webhook, and polls /status
every 5 ms until the pushed commit is live. Prints median, p90, min and max.
"""

from __future__ import annotations

import hashlib
import hmac
import io
import json
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from agent import demo

EXE = str(Path(sys.executable).with_name("dhcp-gitops"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def get(url: str) -> dict[str, object]:
    with urllib.request.urlopen(url, timeout=5) as answer:  # noqa: S310 - loopback only
        doc: dict[str, object] = json.load(answer)
    return doc


def deployed_sha(base: str) -> str | None:
    deployed = get(f"{base}/status")["deployed"]
    return deployed["sha"] if isinstance(deployed, dict) else None


def webhook(base: str, secret: bytes, sha: str) -> None:
    body = json.dumps({"ref": "refs/heads/main", "after": sha}).encode()
    signature = hmac.new(secret, body, hashlib.sha256).hexdigest()
    request = urllib.request.Request(
        f"{base}/webhook/generic", data=body, method="POST",
        headers={"X-Signature": f"sha256={signature}", "Content-Type": "application/json"},
    )  # fmt: skip
    with urllib.request.urlopen(request, timeout=5) as answer:  # noqa: S310 - loopback only
        assert answer.status == 202


def wait_live(base: str, sha: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while deployed_sha(base) != sha:
        if time.monotonic() > deadline:
            raise TimeoutError(sha)
        time.sleep(0.005)


def main(n: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        folder, port = Path(tmp) / "demo", free_port()
        demo.run(folder, io.StringIO(), port=port)
        config = folder / "primary" / "agent.toml"
        config.write_text(config.read_text().replace("poll_interval = 2", "poll_interval = 0"))
        secret = (folder / "webhook-secret").read_text().strip().encode()
        base = f"http://127.0.0.1:{port}"
        agent = subprocess.Popen([EXE, "agent", "--config", str(config)])
        try:
            deadline = time.monotonic() + 20
            while True:
                try:
                    get(f"{base}/healthz")
                    break
                except OSError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.05)
            times = [push_to_live(folder / "config", base, secret, i) for i in range(n)]
        finally:
            agent.terminate()
            agent.wait(30)
    times.sort()
    p90 = times[int(0.9 * (len(times) - 1))]
    print(f"webhook to live, {n} pushes, ms: median {statistics.median(times):.1f}, "
          f"p90 {p90:.1f}, min {times[0]:.1f}, max {times[-1]:.1f}")  # fmt: skip


def push_to_live(work: Path, base: str, secret: bytes, i: int) -> float:
    hosts = work / "dhcp" / "hosts.conf"
    demo._commit(work, hosts, hosts.read_text() + f"\n# change {i}\n")
    sha = subprocess.run(["git", "-C", str(work), "rev-parse", "HEAD"], capture_output=True,
                         text=True, check=True).stdout.strip()  # fmt: skip
    start = time.perf_counter()
    webhook(base, secret, sha)
    wait_live(base, sha)
    return (time.perf_counter() - start) * 1000


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 20)
