"""The SIGKILL campaign: the real agent killed at every fault point, restarted, checked.

One CrashLab is one primary server: a config repo (lab/repo.py), the
real `dhcp-gitops agent` process supervising the real dhcpd, which serves only
inside a network namespace made for it (lab/netns.py), and a lease file
seeded with two active leases. One trial:

  1. commits a new tree: a good one, or a bad one that passes `dhcpd -t` but
     on which dhcpd does not start (no subnet for eth0), which the agent must
     roll back; every other trial of a point is bad, every one of
     during-rollback (only a bad commit gets there);
  2. starts the agent with DHCP_GITOPS_FAULT armed (agent/fault.py) at the
     point, on a random pass and after a random delay where those move the
     moment; the agent must die there, by SIGKILL;
  3. checks the wreck: the target is byte for byte the old tree or the new
     one, state.json parses and records what is live, or the old commit with
     the exchange journal naming the live new tree;
  4. starts the agent again, unarmed, and waits for its reconcile of the new
     commit to conclude: deployed, or rolled back for the bad commit;
  5. checks the recovery: the target is the expected tree byte for byte and
     state.json says so, no stage, journal, temp file or lease link is left,
     exactly one dhcpd runs, in the namespace, and the lease declarations are
     byte for byte those dhcpd wrote before the campaign.

From 2 to 5 a reader samples the target through a directory descriptor (one
whole tree per sample): every sample must be the old tree or the new one.

tests/test_crash.py runs a few trials per point in the test command; the
campaign runs more and prints a table (root, as the tests):

    scripts/crash-campaign.sh [TRIALS_PER_POINT]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import re
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import git
import httpx

from agent import fault, tree
from agent.engine import render
from agent.engine.state import State, Store
from agent.review.template import template_dir
from agent.source.snapshot import CommitSnapshot
from lab.agent import EXE
from lab.netns import DHCPD, Lan, NetLab, make_lan
from lab.ports import free_port
from lab.proc import dhcpd_pids_using
from lab.repo import ConfigRepo
from lab.toml import toml_text

NODE = "dhcp1"
HEALTH_TIMEOUT = 0.6  # seconds dhcpd must stay up; the bad commit's dhcpd dies in ~50 ms
KILL_TIMEOUT = 30.0  # seconds an armed agent gets to reach its fault point
CONCLUDE_TIMEOUT = 40.0  # seconds a restarted agent gets to conclude its reconcile
SAMPLE_EVERY = 0.005

# Active leases in both subnets of the example pair; the bad commit drops the first one's.
LEASES = {"192.0.2.150": "02:00:00:00:01:50", "198.51.100.150": "02:00:00:00:02:50"}


@dataclass(frozen=True)
class Point:
    name: str
    passes: int = 1  # the pass that kills is drawn from 1..passes (0: one per staged file)
    delay: float = 0.0  # seconds, drawn from [0, delay)
    bad_every: int = 2  # 1: every new commit is one dhcpd will not start on; 2: every other


POINTS = (
    Point("after-fetch"),
    Point("during-render", passes=0),
    Point("after-validate"),
    Point("before-exchange"),
    Point("after-exchange"),
    Point("during-restart", passes=2, delay=0.3),
    Point("during-rollback", passes=2, delay=0.3, bad_every=1),
    Point("before-record"),
    Point("after-record"),
)
POINT = {p.name: p for p in POINTS}

Tree = dict[str, tuple[int, str]]  # path -> (mode, sha256 of the content)


@dataclass
class Trial:
    point: str
    bad: bool  # the new commit is one dhcpd does not start on
    spec: str = ""
    crashed_with: str = "?"  # the target right after the kill: "old" or "new"
    recorded: bool = False  # state.json named the new commit when the agent died
    concluded: str = "?"  # the restarted agent's result for the new commit
    samples: Counter[str] = field(default_factory=Counter)
    failures: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def expect(self, ok: bool, what: str) -> bool:
        if not ok:
            self.failures.append(what)
        return ok


# --- trees, read the way a reader of the live folder would -------------------------


def rendered_tree(files: dict[str, bytes]) -> Tree:
    return {rel: (tree.FILE_MODE, hashlib.sha256(data).hexdigest()) for rel, data in files.items()}


def live_tree(target: Path) -> Tree | None:
    """The one tree at target, read through a descriptor of its folder; None when an
    exchange moved that folder away during the read (the next read sees the other)."""
    try:
        fd = os.open(target, os.O_RDONLY | os.O_DIRECTORY)
    except FileNotFoundError:
        return None
    try:
        found = _read_tree(fd)
        still_there = os.fstat(fd).st_ino == target.stat().st_ino
    except FileNotFoundError:
        return None
    finally:
        os.close(fd)
    return found if still_there else None


def _read_tree(top: int) -> Tree:
    found: Tree = {}
    for dirpath, _dirs, names, dirfd in os.fwalk(".", dir_fd=top):
        for name in names:
            st = os.stat(name, dir_fd=dirfd, follow_symlinks=False)
            rel = (Path(dirpath) / name).as_posix()  # Path drops the leading ./
            found[rel] = (stat.S_IMODE(st.st_mode), _content(name, dirfd, st.st_mode))
    return found


def _content(name: str, dirfd: int, mode: int) -> str:
    if not stat.S_ISREG(mode):
        return f"not a file ({stat.S_IFMT(mode):o})"
    with os.fdopen(os.open(name, os.O_RDONLY | os.O_NOFOLLOW, dir_fd=dirfd), "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


class Sampler:
    """A reader of the live folder in a thread: which tree every sample saw."""

    def __init__(self, target: Path, trees: dict[str, Tree]) -> None:
        self.target, self.trees = target, trees
        self.counts: Counter[str] = Counter()
        self.strange: list[Tree] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Sampler:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stop.wait(SAMPLE_EVERY):
            seen = live_tree(self.target)
            if seen is None:
                continue
            label = next((name for name, t in self.trees.items() if t == seen), "other")
            self.counts[label] += 1
            if label == "other" and len(self.strange) < 3:
                self.strange.append(seen)


# --- the lease file ----------------------------------------------------------------

_LEASE = re.compile(r"^lease (\S+) \{\n.*?^\}\n", re.M | re.S)


def lease_blocks(leases: Path) -> dict[str, str]:
    """Each address's lease declaration, the last one dhcpd wrote (later ones win)."""
    return {m[1]: m[0] for m in _LEASE.finditer(leases.read_text())}


def lease_record(ip: str, mac: str) -> str:
    fmt = "%w %Y/%m/%d %H:%M:%S"
    start, end = time.gmtime(time.time() - 600), time.gmtime(time.time() + 30 * 86400)
    return (
        f"lease {ip} {{\n  starts {time.strftime(fmt, start)};\n"
        f"  ends {time.strftime(fmt, end)};\n  cltt {time.strftime(fmt, start)};\n"
        "  binding state active;\n  next binding state expired;\n"
        f"  hardware ethernet {mac};\n}}\n"
    )


# --- the agent process ----------------------------------------------------------------


@dataclass
class Run:
    proc: subprocess.Popen[bytes]
    url: str
    log: Path

    def tail(self, lines: int = 25) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])


class CrashLab:
    def __init__(self, root: Path, lan: Lan, seed: int) -> None:
        self.root, self.lan = root, lan
        self.rng = random.Random(seed)  # noqa: S311 - picks passes and delays, not secrets
        self.home = root / NODE
        self.target = self.home / "etc" / "dhcp"
        self.state_dir = self.home / "state"
        self.leases = self.home / "dhcpd.leases"
        self.logs = root / "logs"
        self.runs: list[Run] = []
        self.trials = 0
        self.per_point: Counter[str] = Counter()
        self.repo = ConfigRepo(root / "repo", template_dir())
        self.hosts = self.repo.read("dhcp/hosts.conf")
        self.subnets = self.repo.read("dhcp/subnets.conf.j2")
        self.sha = self.repo.commit("Initial pair config")
        (self.home / "etc").mkdir(parents=True)
        self.logs.mkdir()
        self.leases.write_text("".join(lease_record(ip, mac) for ip, mac in LEASES.items()))
        self.old, self.lease_reference = self._first_deploy()

    @property
    def workspace_leftovers(self) -> list[Path]:
        ws = self.target.parent / f".{self.target.name}.dhcp-gitops"
        candidates = [ws / "stage", ws / "exchanged", self.state_dir / ".state.json.tmp",
                      self.leases.with_name(f".{self.leases.name}.dhcp-gitops")]  # fmt: skip
        releases = self.state_dir / "releases"
        candidates += list(releases.glob(".*.tmp")) if releases.is_dir() else []
        return [p for p in candidates if p.exists() or p.is_symlink()]

    def _first_deploy(self) -> tuple[Tree, dict[str, str]]:
        run = self._start(None, "first-deploy")
        doc = self._conclude(run, self.sha)
        if doc is None or doc["last_attempt"]["result"] != "deployed":
            raise RuntimeError(f"the first deploy did not happen:\n{run.tail()}")
        self._stop(run)
        live = live_tree(self.target)
        blocks = lease_blocks(self.leases)
        active = all("binding state active;" in blocks.get(ip, "") for ip in LEASES)
        if live is None or not active:
            raise RuntimeError(f"no live tree or no active leases after the first deploy: {blocks}")
        return live, {ip: blocks[ip] for ip in LEASES}

    # --- one trial --------------------------------------------------------------

    def trial(self, point: Point) -> Trial:
        started = time.monotonic()
        self.trials += 1
        self.per_point[point.name] += 1
        result = Trial(point.name, bad=self.per_point[point.name] % point.bad_every == 0)
        new_sha, files = self._commit(point, result.bad)
        new, old, old_sha = rendered_tree(files), self.old, self.sha
        result.spec = self._arm(point, len(files))
        with Sampler(self.target, {"old": old, "new": new}) as sampler:
            armed = self._start(result.spec, f"{self.trials:03}-{point.name}-armed")
            if self._killed_at(armed, point, result):
                self._check_wreck(result, old, new, old_sha, new_sha)
                self._recover(result, point, old if result.bad else new, new_sha)
        result.samples = sampler.counts
        result.expect(not sampler.strange, f"a reader saw neither tree: {sampler.strange}")
        self._carry_on()
        result.seconds = time.monotonic() - started
        return result

    def _commit(self, point: Point, bad: bool) -> tuple[str, dict[str, bytes]]:
        """A new tree: one more line in hosts.conf, and for a bad commit no subnet
        for eth0 (dhcpd -t passes, dhcpd exits: "Not configured to listen...")."""
        self.hosts += f"# trial {self.trials}: {point.name}\n"
        self.repo.write("dhcp/hosts.conf", self.hosts)
        self.repo.write("dhcp/subnets.conf.j2", _drop_subnet(self.subnets) if bad else
                        self.subnets)  # fmt: skip
        sha = self.repo.commit(f"Trial {self.trials}: {point.name}")
        snapshot = CommitSnapshot(git.Repo(self.repo.work).commit(sha).tree)
        rendered = render.render_pair(snapshot, "", "primary", NODE, str(self.target))
        return sha, rendered.files

    def _arm(self, point: Point, staged_files: int) -> str:
        passes = self.rng.randint(1, point.passes or staged_files)
        delay = self.rng.uniform(0, point.delay) if point.delay else 0.0
        return f"{point.name}:{passes}:{delay:.3f}"

    def _killed_at(self, run: Run, point: Point, result: Trial) -> bool:
        try:
            code = run.proc.wait(KILL_TIMEOUT)
        except subprocess.TimeoutExpired:
            self._kill(run)
            return result.expect(False, f"not killed within {KILL_TIMEOUT:g} s:\n{run.tail()}")
        said = f"fault point {point.name}: SIGKILL" in run.log.read_text(errors="replace")
        return result.expect(
            code == -signal.SIGKILL and said,
            f"the armed agent exited with {code}, not by SIGKILL at {point.name}:\n{run.tail()}",
        )

    def _check_wreck(self, result: Trial, old: Tree, new: Tree, old_sha: str, new_sha: str) -> None:
        """Right after the kill: one whole tree, and records that tell the truth about it."""
        live = live_tree(self.target)
        result.crashed_with = "old" if live == old else "new" if live == new else "neither"
        if not result.expect(result.crashed_with != "neither", f"after the kill: {live}"):
            return
        state = self._state(result)
        if state is None:
            return
        deployed = state.deployed
        digest, journal = tree.digest(self.target), self._journal()
        result.recorded = deployed is not None and deployed.sha == new_sha
        if deployed is not None and deployed.sha == new_sha:
            truthful = deployed.digest == digest  # recorded: the new tree is live
        elif deployed is not None and deployed.sha == old_sha:
            truthful = digest in (deployed.digest, journal)  # else the journal names the new
        else:
            truthful = False
        result.expect(truthful, f"after the kill state.json records {deployed} with the "
                      f"{result.crashed_with} tree live (journal {journal})")  # fmt: skip

    def _recover(self, result: Trial, point: Point, expected: Tree, new_sha: str) -> None:
        run = self._start(None, f"{self.trials:03}-{point.name}-recovery")
        doc = self._conclude(run, new_sha)
        if not result.expect(doc is not None, f"the restarted agent hung:\n{run.tail()}"):
            self._kill(run)
            return
        assert doc is not None
        result.concluded = doc["last_attempt"]["result"]
        wanted = "rolled_back" if result.bad else "current" if result.recorded else "deployed"
        result.expect(result.concluded == wanted, f"concluded {result.concluded}, not {wanted}: "
                      f"{doc['last_attempt']['message']}")  # fmt: skip
        self._check_recovered(result, doc, expected, None if result.bad else new_sha)
        code = self._stop(run)
        result.expect(code == 0, f"the restarted agent exited with {code} on SIGTERM")
        result.expect(not dhcpd_pids_using(str(self.root)), "a dhcpd outlived its agent's stop")

    def _check_recovered(
        self, result: Trial, doc: dict[str, Any], expected: Tree, new_sha: str | None
    ) -> None:
        live = live_tree(self.target)
        result.expect(live == expected, f"after recovery the target is not the expected: {live}")
        state = self._state(result)
        if state is not None:
            deployed = state.deployed
            sha_ok = deployed is not None and (new_sha is None or deployed.sha == new_sha)
            result.expect(sha_ok and deployed is not None and
                          deployed.digest == tree.digest(self.target),
                          f"state.json records {deployed} for what is live")  # fmt: skip
        result.expect(not self.workspace_leftovers, f"left over: {self.workspace_leftovers}")
        self._check_history(result)
        pid = doc["dhcpd"].get("pid")
        running = doc["dhcpd"].get("running") is True and self.lan.server.holds(pid)
        result.expect(running, f"dhcpd is not running in the namespace: {doc['dhcpd']}")
        pids = dhcpd_pids_using(str(self.root))
        result.expect(pids == [pid], f"dhcpd processes {pids}, /status says {pid}")
        blocks = lease_blocks(self.leases)
        changed = [ip for ip in LEASES if blocks.get(ip) != self.lease_reference[ip]]
        result.expect(not changed, f"leases changed: {changed}\n{self.leases.read_text()}")

    def _check_history(self, result: Trial) -> None:
        for line in (self.state_dir / "history.jsonl").read_text().splitlines():
            try:
                json.loads(line)
            except ValueError:
                result.expect(False, f"history.jsonl has a line that is not JSON: {line!r}")

    def _state(self, result: Trial) -> State | None:
        try:
            return Store(self.state_dir).load()
        except Exception as err:  # noqa: BLE001 - any failure to read it is the finding
            result.expect(False, f"state.json does not load: {err}")
            return None

    def _journal(self) -> str | None:
        path = self.target.parent / f".{self.target.name}.dhcp-gitops" / "exchanged"
        return path.read_text().strip() if path.exists() else None

    def _carry_on(self) -> None:
        """The next trial starts from whatever is live and recorded now."""
        self.old = live_tree(self.target) or {}
        state = Store(self.state_dir).load()
        self.sha = state.deployed.sha if state.deployed else ""

    # --- processes --------------------------------------------------------------------

    def _start(self, spec: str | None, label: str) -> Run:
        port = free_port()
        config = self.home / "agent.toml"
        config.write_text(toml_text(self._tables(port)))
        env = {k: v for k, v in os.environ.items() if k != fault.ENV}
        if spec:
            env[fault.ENV] = spec
        log = self.logs / f"{label}.log"
        with log.open("wb") as out:
            proc = subprocess.Popen([EXE, "agent", "--config", str(config)], env=env,
                                    stdout=out, stderr=subprocess.STDOUT)  # fmt: skip
        run = Run(proc, f"http://127.0.0.1:{port}", log)
        self.runs.append(run)
        return run

    def _tables(self, port: int) -> dict[str, dict[str, Any]]:
        return {
            "node": {"name": NODE, "role": "primary"},
            "source": {"url": self.repo.url, "branch": "main", "poll_interval": 0},
            "deploy": {"target": str(self.target), "state_dir": str(self.state_dir)},
            "dhcpd": {
                "restart": "supervise",
                "binary": str(self.lan.dhcpd),
                "validate_binary": DHCPD,
                "args": [self.lan.interface],
                "lease_file": str(self.leases),
                "health_timeout": HEALTH_TIMEOUT,
            },
            "http": {"listen": f"127.0.0.1:{port}"},
        }

    def _conclude(self, run: Run, sha: str) -> dict[str, Any] | None:
        """/status once the agent's reconcile of sha is over and dhcpd is up; None if not."""

        def done(doc: dict[str, Any]) -> bool:
            last = doc.get("last_attempt") or {}
            return last.get("sha") == sha and doc["state"] in ("idle", "failed")

        deadline = time.monotonic() + CONCLUDE_TIMEOUT
        with httpx.Client(base_url=run.url, timeout=5) as client:
            while time.monotonic() < deadline and run.proc.poll() is None:
                try:
                    doc: dict[str, Any] = client.get("/status").json()
                except httpx.TransportError:
                    doc = {}
                if doc and done(doc):
                    return doc
                time.sleep(0.05)
        return None

    def _stop(self, run: Run) -> int:
        run.proc.send_signal(signal.SIGTERM)
        try:
            return run.proc.wait(30)
        except subprocess.TimeoutExpired:
            self._kill(run)
            return -1

    def _kill(self, run: Run) -> None:
        if run.proc.poll() is None:
            run.proc.kill()
            run.proc.wait()

    def close(self) -> None:
        """Every agent this lab started is gone (its dhcpd goes with the namespace)."""
        for run in self.runs:
            self._kill(run)


def _drop_subnet(text: str, network: str = "192.0.2.0") -> str:
    start = text.index(f"subnet {network} ")
    end = text.index("\n}\n", start) + len("\n}\n")
    return text[:start] + text[end:]


# --- the campaign -------------------------------------------------------------------


def campaign(
    lab: CrashLab,
    points: Sequence[Point],
    trials: int,
    on_trial: Callable[[Trial], None] | None = None,
) -> list[Trial]:
    """trials per point, the points taken in turn, each from what the last one left."""
    done: list[Trial] = []
    for _ in range(trials):
        for point in points:
            result = lab.trial(point)
            done.append(result)
            if on_trial:
                on_trial(result)
    return done


def table(results: Sequence[Trial]) -> str:
    head = ("point", "trials", "bad", "killed: old", "new", "recovered", "samples", "failed")
    rows = [head]
    for name in dict.fromkeys(r.point for r in results):
        mine = [r for r in results if r.point == name]
        crashed = Counter(r.crashed_with for r in mine)
        concluded = Counter(r.concluded for r in mine)
        samples = sum(sum(r.samples.values()) for r in mine)
        recovered = ", ".join(f"{n} {k}" for k, n in sorted(concluded.items()))
        failed = sum(bool(r.failures) for r in mine)
        bad = sum(r.bad for r in mine)
        rows.append((name, str(len(mine)), str(bad), str(crashed["old"]), str(crashed["new"]),
                     recovered, str(samples), str(failed)))  # fmt: skip
    widths = [max(len(row[i]) for row in rows) for i in range(len(head))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip()
                     for row in rows)  # fmt: skip


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="SIGKILL the agent at every fault point.")
    parser.add_argument("--trials", type=int, default=20, help="per point (default 20)")
    parser.add_argument("--points", nargs="*", choices=sorted(POINT), help="default: all")
    parser.add_argument("--seed", type=int, default=None, help="for the passes and delays")
    parser.add_argument("--keep", action="store_true", help="keep the lab folder (logs)")
    args = parser.parse_args(argv)
    dhcpd = shutil.which("dhcpd", path="/usr/sbin:/sbin:" + os.environ.get("PATH", ""))
    if os.geteuid() != 0 or dhcpd is None or shutil.which("ip") is None:
        print("the campaign needs root, iproute2 and dhcpd (scripts/setup.sh --test)")
        return 2
    seed = args.seed if args.seed is not None else random.randrange(1 << 32)  # noqa: S311
    points = [POINT[name] for name in args.points] if args.points else list(POINTS)
    root = Path(tempfile.mkdtemp(prefix="dgt-crash-"))
    netlab = NetLab()
    lab: CrashLab | None = None
    try:
        lab = CrashLab(root, make_lan(netlab, root, dhcpd), seed)
        print(f"seed {seed}; {args.trials} trial(s) per point; lab {root}", flush=True)
        results = campaign(lab, points, args.trials, _say)
    finally:
        if lab is not None:
            lab.close()
        left = netlab.teardown()
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)
    print(table(results))
    for r in results:
        for failure in r.failures:
            print(f"FAILED {r.point} ({r.spec}): {failure}")
    if left:
        print("left running in the namespaces:\n" + "\n".join(left))
    return 1 if left or any(r.failures for r in results) else 0


def _say(r: Trial) -> None:
    verdict = "ok" if not r.failures else f"FAILED: {r.failures[0].splitlines()[0]}"
    commit = "bad" if r.bad else "good"
    samples = sum(r.samples.values())
    print(f"{r.point:<16} {r.spec:<24} {commit:<4} killed with {r.crashed_with:<3} live, "
          f"recovered {r.concluded:<11} {samples:>4} samples {r.seconds:5.1f} s  {verdict}",
          flush=True)  # fmt: skip


if __name__ == "__main__":
    sys.exit(main())
