"""A disk that fills up while the stage is written: nothing live changes, the error
says so, and the stage is gone.

The target sits on a small tmpfs mounted in a private mount namespace (`unshare
--mount`), so neither the mount nor a full disk is ever seen outside the test.
The real `dhcp-gitops sync` runs inside it, twice: the good commit, then one that
does not fit. The tree before and after is archived from inside the namespace.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tarfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from agent.engine.state import Store
from lab.agent import TOKEN, AgentProcess
from lab.ports import free_port
from lab.repo import ConfigRepo, git
from tests.conftest import NodeFactory

EXE = str(Path(sys.executable).with_name("dhcp-gitops"))

# Inside the namespace: mount, deploy the good head, archive it, push the commit
# that does not fit (prepared on a side branch), sync again, archive again.
SCRIPT = r"""
set -u
mount -t tmpfs -o "size=$SIZE,nr_inodes=$INODES,mode=0755" dhcp-gitops-test "$MNT"
"$EXE" sync --config "$CONFIG" > "$OUT/first.log" 2>&1 || exit 90
tar -C "$MNT" -cf "$OUT/before.tar" .
git -C "$WORK" push -q origin bad:main || exit 91
"$EXE" sync --config "$CONFIG" > "$OUT/second.log" 2>&1
echo $? > "$OUT/second.rc"
tar -C "$MNT" -cf "$OUT/after.tar" .
"""


def contents(archive: Path) -> dict[str, bytes]:
    """Every entry of a tar: files with their bytes, folders as empty."""
    found: dict[str, bytes] = {}
    with tarfile.open(archive) as tar:
        for member in tar.getmembers():
            data = tar.extractfile(member) if member.isfile() else None
            found[member.name] = data.read() if data else b""
    return found


def full_disk_sync(tmp_path: Path, repo: ConfigRepo, config: Path, size: str, inodes: int) -> Path:
    mnt, out = tmp_path / "mnt", tmp_path / "out"
    out.mkdir()
    env = {
        "SIZE": size, "INODES": str(inodes), "MNT": str(mnt), "OUT": str(out),
        "EXE": EXE, "CONFIG": str(config), "WORK": str(repo.work),
        "PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
    }  # fmt: skip
    done = subprocess.run(
        ["unshare", "--mount", "--propagation", "private", "sh", "-c", SCRIPT],
        env=env, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 0, f"{done.returncode}: {done.stderr}{_logs(out)}"
    assert not any(mnt.iterdir())  # the mount never showed outside the namespace
    return out


def _logs(out: Path) -> str:
    return "".join(f"\n--- {p.name}\n{p.read_text()}" for p in sorted(out.glob("*.log")))


@pytest.mark.parametrize(
    ("size", "inodes", "bad"),
    [
        ("256k", 4096, {"dhcp/fill.conf": b"#" * 600_000}),  # out of blocks
        ("4m", 40, {f"dhcp/hosts.d/h{i}.conf": b"# host\n" for i in range(60)}),  # of inodes
    ],
    ids=["blocks", "inodes"],
)
def test_a_full_disk_while_staging_changes_nothing_live(
    tmp_path: Path,
    repo: ConfigRepo,
    make_node: NodeFactory,
    dhcpd_binary: str,
    size: str,
    inodes: int,
    bad: dict[str, bytes],
) -> None:
    good = git(repo.work, "rev-parse", "HEAD")
    git(repo.work, "checkout", "-q", "-b", "bad")
    for rel, data in bad.items():
        repo.write(rel, data)
    git(repo.work, "add", "-A")
    git(repo.work, "commit", "-qm", "Does not fit")
    (tmp_path / "mnt").mkdir()
    lease_file = tmp_path / "dhcpd.leases"
    lease_file.write_bytes(b"lease 192.0.2.10 {\n  binding state active;\n}\n")
    node = make_node(
        deploy={"target": str(tmp_path / "mnt" / "dhcp")},
        dhcpd={"lease_file": str(lease_file)},
    )
    out = full_disk_sync(tmp_path, repo, node.config.file, size, inodes)

    second = (out / "second.log").read_text()
    assert (out / "second.rc").read_text().strip() != "0"
    assert "No space left on device" in second
    before, after = contents(out / "before.tar"), contents(out / "after.tar")
    assert after == before  # target, its files and the workspace: byte for byte
    assert not any("dhcp-gitops/stage" in name for name in after)
    state = Store(node.config.deploy.state_dir).load()
    assert state.deployed is not None and state.deployed.sha == good
    assert state.last_attempt is not None and state.last_attempt.result == "failed"
    assert "No space left on device" in state.last_attempt.message
    assert ".dhcp.dhcp-gitops/stage/" in state.last_attempt.message  # names the file
    assert lease_file.read_bytes() == b"lease 192.0.2.10 {\n  binding state active;\n}\n"


# --- the running agent, its state dir filled at each place it writes -------------------
#
# Inside the namespace every place the agent writes is a tmpfs of its own, so that one
# of them can be filled while the others have room:
#
#     etc/                   the target's folder: dhcp/ and .dhcp.dhcp-gitops/ (stage,
#                            previous, the exchange journal)
#     state/                 lock, state.json
#     state/mirror.git/      the git mirror (roomy: fetches never fail here)
#     state/releases/        the rendered trees kept
#     hist/                  history.jsonl, linked from state/
#
# A mount is filled from outside through nsenter: to its last block, or to exactly the
# blocks or inodes the writes before the one under test need (tmpfs counts file pages
# and inodes, never folder blocks).

AGENT_SCRIPT = r"""
set -eu
mount -t tmpfs -o size=1m,nr_inodes=400,mode=0755 dhcp-gitops-etc "$ROOT/etc"
mount -t tmpfs -o size=256k,mode=0700 dhcp-gitops-state "$ROOT/state"
mkdir "$ROOT/state/mirror.git" "$ROOT/state/releases"
mount -t tmpfs -o size=16m,mode=0700 dhcp-gitops-mirror "$ROOT/state/mirror.git"
mount -t tmpfs -o size=1m,mode=0700 dhcp-gitops-releases "$ROOT/state/releases"
mount -t tmpfs -o size=256k,nr_inodes=16,mode=0700 dhcp-gitops-history "$ROOT/hist"
ln -s "$ROOT/hist/history.jsonl" "$ROOT/state/history.jsonl"
if [ -n "$PREFILL" ]; then
    free=$(stat -f -c %d "$PREFILL")
    mkdir "$PREFILL/.fill"; i=1
    while [ "$i" -lt "$free" ]; do : > "$PREFILL/.fill/$i"; i=$((i + 1)); done
fi
exec "$EXE" agent --config "$CONFIG"
"""

# sh run in the agent's namespace: fill a mount to `leave` free blocks or inodes, free it.
FILL_BLOCKS = r"""
free=$(stat -f -c %a "$1"); size=$(stat -f -c %S "$1")
head -c $(( (free - $2) * size )) /dev/zero > "$1/.fill-blocks"
test "$(stat -f -c %a "$1")" -eq "$2"
"""
FILL_INODES = r"""
free=$(stat -f -c %d "$1"); mkdir "$1/.fill"; i=1
while [ "$i" -lt "$((free - $2))" ]; do : > "$1/.fill/$i"; i=$((i + 1)); done
test "$(stat -f -c %d "$1")" -eq "$2"
"""
FREE = r"""rm -rf "$1/.fill" "$1/.fill-blocks" """


@dataclass
class Namespaced:
    """A `dhcp-gitops agent` in a mount namespace of its own, with its tmpfs mounts."""

    agent: AgentProcess
    root: Path

    @property
    def pid(self) -> int:
        return self.agent.proc.pid

    def sh(self, script: str, *args: str) -> str:
        done = subprocess.run(
            ["nsenter", "--target", str(self.pid), "--mount", "--", "sh", "-c", script,
             "sh", *args],
            capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
        assert done.returncode == 0, f"{script}: {done.stderr}"
        return done.stdout

    def fill(self, mount: str, leave: int = 0, inodes: bool = False) -> None:
        self.sh(FILL_INODES if inodes else FILL_BLOCKS, str(self.root / mount), str(leave))

    def free(self, mount: str) -> None:
        self.sh(FREE, str(self.root / mount))

    def pages(self, folder: str) -> int:
        """The blocks a copy of the tree takes on tmpfs: its files' pages, no more."""
        sizes = self.sh('find "$1" -type f -exec stat -c %s {} +', str(self.root / folder))
        return sum(-(-int(size) // 4096) for size in sizes.split())

    def read(self, path: str) -> str:
        return self.sh('cat "$1"', str(self.root / path))

    def state_files(self) -> list[str]:
        return self.sh('ls -A "$1"', str(self.root / "state")).split()

    def history(self) -> list[dict[str, Any]]:
        text = self.sh('cat "$1" 2>/dev/null || true', str(self.root / "hist/history.jsonl"))
        return [json.loads(line) for line in text.splitlines()]


@pytest.fixture
def namespaced_agent(
    tmp_path: Path, make_node: NodeFactory, dhcpd_binary: str
) -> Iterator[Callable[..., Namespaced]]:
    started: list[AgentProcess] = []

    def start(prefill: str = "") -> Namespaced:
        root = tmp_path / "ns"
        for mount in ("etc", "state", "hist"):
            (root / mount).mkdir(parents=True)
        (tmp_path / "token").write_text(TOKEN + "\n")
        port = free_port()
        restarts = tmp_path / "restarts"  # one line per restart of "dhcpd"
        node = make_node(
            deploy={"target": str(root / "etc" / "dhcp"), "state_dir": str(root / "state")},
            source={"poll_interval": 0, "retry_min": 0.2, "retry_max": 0.5},
            http={"listen": f"127.0.0.1:{port}", "token_file": str(tmp_path / "token")},
            dhcpd={"restart": "command",
                   "restart_command": ["sh", "-c", f"echo restart >> {restarts}"]},
        )  # fmt: skip
        env = {**os.environ, "ROOT": str(root), "EXE": EXE, "CONFIG": str(node.config.file),
               "PREFILL": str(root / prefill) if prefill else ""}  # fmt: skip
        log = tmp_path / "agent.log"
        with log.open("w") as out:
            proc = subprocess.Popen(
                ["unshare", "--mount", "--propagation", "private", "sh", "-c", AGENT_SCRIPT],
                env=env, stdout=out, stderr=subprocess.STDOUT,
            )  # fmt: skip
        agent = AgentProcess(proc, f"http://127.0.0.1:{port}", node.config.file, log)
        started.append(agent)
        wait_until_up(agent)
        return Namespaced(agent, root)

    yield start
    for agent in started:
        agent.stop()  # its mounts go with its namespace


def wait_until_up(agent: AgentProcess, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert agent.proc.poll() is None, f"the agent exited:\n{agent.output()}"
        try:
            agent.client.get("/healthz")
            return
        except httpx.TransportError:
            time.sleep(0.05)
    pytest.fail(f"the agent did not answer:\n{agent.output()}")


def sync_now(agent: AgentProcess) -> None:
    answer = agent.client.post("/sync", headers={"Authorization": f"Bearer {TOKEN}"})
    assert answer.status_code == 202, answer.text


def wait_failed(agent: AgentProcess, step: str) -> dict[str, Any]:
    """/status once an attempt failed at `step` for want of space; the agent still up."""
    doc = agent.wait_for(
        lambda d: d["state"] == "failed" and (d["last_attempt"] or {}).get("step") == step
    )
    assert "No space left on device" in doc["last_attempt"]["message"], doc["last_attempt"]
    assert agent.proc.poll() is None
    assert agent.client.get("/healthz").json()["ok"] is True  # the loop runs on
    return doc


# point -> (the mount filled, blocks or inodes left free, inodes?, the step that fails).
# The lock's note takes the first block a reconcile asks of state/; state.json the next.
POINTS = {
    "lock": ("state", 0, False, "lock"),
    "state.json": ("state", 1, False, "record"),
    "releases": ("state/releases", 0, False, "record"),
}


@pytest.mark.parametrize("point", [*POINTS, "journal"])
def test_a_full_state_dir_fails_the_attempt_and_the_agent_converges_once_freed(
    repo: ConfigRepo, namespaced_agent: Callable[..., Namespaced], point: str
) -> None:
    ns = namespaced_agent()
    agent = ns.agent
    good = agent.wait_deployed(git(repo.work, "rev-parse", "HEAD"))["deployed"]["sha"]
    if point == "journal":  # blocks for exactly the stage: the journal beside it gets none
        mount, step = "etc", "publish"
        ns.fill(mount, ns.pages("etc/dhcp"))
    else:
        mount, leave, inodes, step = POINTS[point]
        ns.fill(mount, leave, inodes)
    repo.write("dhcp/hosts.conf", repo.read("dhcp/hosts.conf") + "# while the disk is full\n")
    new = repo.commit("While the disk is full")
    sync_now(agent)

    doc = wait_failed(agent, step)
    # A release is written last, once the live tree is recorded: only it is missing.
    assert doc["deployed"]["sha"] == (new if point == "releases" else good)
    assert doc["last_attempt"]["sha"] in (new, None)
    leftovers = {".state.json.tmp"} & set(ns.state_files())
    assert not leftovers  # nothing half-written in the state dir
    assert all(line["result"] for line in ns.history())  # every history line whole
    if point == "journal":
        assert doc["live"]["drift"] == "none"  # the journal first: nothing was exchanged
        assert not (set(ns.sh('ls -A "$1"', str(ns.root / "etc/.dhcp.dhcp-gitops")).split())
                    & {"exchanged"})  # fmt: skip
    pid = agent.proc.pid
    ns.free(mount)
    done = agent.wait_for(  # the backoff's retry: no trigger, no restart of the agent
        lambda d: d["state"] == "idle" and d["last_attempt"]["result"] != "failed"
    )
    assert done["deployed"]["sha"] == new and agent.proc.pid == pid
    assert done["last_attempt"]["result"] == ("current" if point == "releases" else "deployed")
    assert done["live"]["drift"] == "none"
    assert ns.history()[-1]["result"] == done["last_attempt"]["result"]
    # The rollback tree is the good commit's, not a copy of the new one.
    assert "while the disk is full" not in ns.read("etc/.dhcp.dhcp-gitops/previous/hosts.conf")
    # dhcpd restarted for the start-up deploy and once for the new tree: a deploy that
    # went live is recorded by the retry, not put back and restarted onto again.
    assert (ns.root.parent / "restarts").read_text().splitlines() == ["restart"] * 2


def test_history_the_disk_cannot_take_fails_the_attempt_until_it_can(
    repo: ConfigRepo, namespaced_agent: Callable[..., Namespaced]
) -> None:
    """history.jsonl on a file system without a free inode: the first line cannot be
    made. state.json records the deploy (it is the truth); the attempt is failed until
    a retry can write the history, without a restart."""
    head = git(repo.work, "rev-parse", "HEAD")
    ns = namespaced_agent(prefill="hist")
    agent = ns.agent
    doc = wait_failed(agent, "record")
    assert "history.jsonl" in doc["last_attempt"]["message"]
    assert doc["deployed"]["sha"] == head  # the live tree is recorded all the same
    ns.free("hist")
    done = agent.wait_for(lambda d: d["state"] == "idle" and d["last_attempt"]["result"]
                          in ("deployed", "current"))  # fmt: skip
    assert done["deployed"]["sha"] == head and done["live"]["drift"] == "none"
    assert [line["result"] for line in ns.history()] == [done["last_attempt"]["result"]]
