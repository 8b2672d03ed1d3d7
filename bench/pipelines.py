"""The ways one pushed commit reaches a serving dhcpd, each on a DhcpdBox of its own.

    Floor     the bare minimum, each step timed alone: git fetch, write the files,
              dhcpd -t, exchange the folders, restart
    AgentPipe dhcp-gitops: a signed GitHub webhook to a running agent (dhcpd supervised)
    Rsync     the hand-made pipeline: git pull into a checkout, inotifywait, rsync, restart
    Ansible   ansible-pull of the repo: template + validate dhcpd -t, restart handler

Every deploy(sha, marker) starts its clock at its trigger (the forge has the
commit) and stops it when dhcpd serves the new config (bench/lab.py: wait_live),
then lets the pipeline finish what it does after that, untimed.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import tarfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from agent import tree
from agent.engine import publish
from bench.agentproc import RECORD_TIMEOUT, box_config, start_agent
from bench.lab import BenchError, DhcpdBox, Lab, wait_live
from bench.repo import BenchRepo
from bench.stats import Stopwatch, ms_since
from lab.agent import AgentProcess
from lab.proc import read_pid

HERE = Path(__file__).resolve().parent
WATCH_SCRIPT = HERE / "scripts" / "rsync-watch.sh"
ANSIBLE_PULL = str(Path(sys.executable).with_name("ansible-pull"))
SYSTEM_PYTHON = "/usr/bin/python3"  # what ansible would find on a Debian server
LIVE_TIMEOUT = 120.0
CONFIG = "dhcpd.conf"


@dataclass
class Sample:
    total_ms: float  # trigger to live
    steps: dict[str, float] = field(default_factory=dict)  # ms, where the pipeline tells
    extra: dict[str, Any] = field(default_factory=dict)  # figures after live


class Pipeline(Protocol):
    name: str
    box: DhcpdBox

    def deploy(self, sha: str, marker: str) -> Sample: ...


def run(argv: list[str], cwd: Path | None = None, **kwargs: Any) -> str:
    done = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, check=False, **kwargs)
    if done.returncode != 0:
        raise BenchError(f"{' '.join(argv[:4])}... exited {done.returncode}: {done.stderr[-2000:]}")
    return str(done.stdout)


# --- the floor ---------------------------------------------------------------


class Floor:
    """What any correct deploy must do at least, by hand: the steps timed one by one."""

    def __init__(self, lab: Lab, repo: BenchRepo, name: str = "floor") -> None:
        self.name = name
        self.box = lab.box(name)
        self.url = repo.url
        self.mirror = self.box.home / "mirror.git"
        self.stage = self.box.target.with_name(".stage")
        run(["git", "init", "-q", "--bare", str(self.mirror)])
        head = self._fetch()
        tree.write(self.box.target, self._files(head))
        self.box.first_start()

    def deploy(self, sha: str, marker: str) -> Sample:
        watch = Stopwatch()
        with watch.step("fetch"):
            head = self._fetch()
        if head != sha:
            raise BenchError(f"floor fetched {head}, not {sha}")
        with watch.step("write"):
            tree.write(self.stage, self._files(head))
        with watch.step("dhcpd -t"):
            # Through the box's wrapper (ip netns exec, +2.5 ms), as the agent's dhcpd -t runs.
            run([str(self.box.wrapper), "-t", "-cf", str(self.stage / CONFIG)])
        with watch.step("exchange"):
            publish.exchange(self.stage, self.box.target)
            tree.fsync_dir(self.box.target.parent)
        with watch.step("restart"):
            before = read_pid(self.box.pid_file)
            self.box.restart()
            wait_live(self.box.pid_file, before, self.box.target / CONFIG, marker, LIVE_TIMEOUT)
        tree.remove(self.stage)  # the old tree, now at the stage path
        return Sample(watch.total, dict(watch.steps))

    def _fetch(self) -> str:
        ref = "refs/heads/main"
        run(["git", "-C", str(self.mirror), "fetch", "-q", "--no-tags", self.url, f"+{ref}:{ref}"])
        return run(["git", "-C", str(self.mirror), "rev-parse", ref]).strip()

    def _files(self, sha: str) -> dict[str, bytes]:
        """The commit's dhcp/ folder, from `git archive` (one process, like a checkout)."""
        argv = ["git", "-C", str(self.mirror), "archive", "--format=tar", f"{sha}:dhcp"]
        data = subprocess.run(argv, capture_output=True, check=True).stdout
        files: dict[str, bytes] = {}
        with tarfile.open(fileobj=io.BytesIO(data)) as archive:
            for member in archive.getmembers():
                if member.isfile():
                    extracted = archive.extractfile(member)
                    assert extracted is not None
                    files[member.name] = extracted.read()
        return files


# --- dhcp-gitops ---------------------------------------------------------------


class AgentPipe:
    """A signed GitHub push webhook to a running agent; its supervised dhcpd is watched."""

    def __init__(self, lab: Lab, repo: BenchRepo, name: str = "agent") -> None:
        self.name = name
        self.box = lab.box(name)
        self.agent: AgentProcess = start_agent(lab, self.box.home, box_config(self.box, repo.url))

    def deploy(self, sha: str, marker: str) -> Sample:
        pid_file = self.agent.dhcpd_pid_file
        before = read_pid(pid_file)
        start = time.perf_counter()
        answer = self.agent.github_push(sha)
        webhook = ms_since(start)
        if answer.status_code != 202:
            raise BenchError(f"webhook answered {answer.status_code}: {answer.text}")
        seen = wait_live(pid_file, before, self.box.target / CONFIG, marker, LIVE_TIMEOUT)
        self.agent.wait_deployed(sha, RECORD_TIMEOUT)
        recorded = time.perf_counter()
        attempt = self.agent.last_attempt()
        if attempt.get("result") != "deployed":
            raise BenchError(f"agent: {attempt.get('result')}: {attempt.get('message')}")
        steps = {k: v * 1000 for k, v in (attempt.get("timings") or {}).items()}
        extra = {"webhook_ms": webhook, "recorded_ms": (recorded - start) * 1000}
        return Sample((seen - start) * 1000, steps, extra)


# --- the hand-made pipeline ------------------------------------------------------


class Rsync:
    """git pull into a checkout; inotifywait wakes rsync -a --delete and the restart."""

    def __init__(self, lab: Lab, repo: BenchRepo, name: str = "rsync") -> None:
        self.name = name
        self.box = lab.box(name)
        self.checkout = self.box.home / "checkout"
        run(["git", "clone", "-q", "-b", "main", repo.url, str(self.checkout)])
        self.box.target.mkdir(parents=True)
        run(["rsync", "-a", f"{self.checkout}/dhcp/", f"{self.box.target}/"])
        self.box.first_start()
        self.log = self.box.home / "watch.log"
        argv = [str(WATCH_SCRIPT), str(self.checkout / "dhcp"), str(self.box.target)]
        self.proc = lab.start([*argv, *self.box.restart_argv()], self.log)
        self._armed = 0
        self._wait_armed()

    def deploy(self, sha: str, marker: str) -> Sample:
        before = read_pid(self.box.pid_file)
        watch = Stopwatch()
        start = time.perf_counter()
        with watch.step("git pull"):
            run(["git", "-C", str(self.checkout), "pull", "-q", "--ff-only", "origin", "main"])
        seen = wait_live(self.box.pid_file, before, self.box.target / CONFIG, marker, LIVE_TIMEOUT)
        total = (seen - start) * 1000
        watch.steps["inotify + rsync + restart"] = total - watch.steps["git pull"]
        self._wait_armed()  # the next round's change must find inotifywait watching
        return Sample(total, dict(watch.steps))

    def _wait_armed(self) -> None:
        deadline = time.monotonic() + 30
        while self.log.read_text().count("Watches established.") <= self._armed:
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise BenchError(f"the rsync watch loop is not watching: {self.log}")
            time.sleep(0.005)
        self._armed += 1


# --- ansible-pull --------------------------------------------------------------


class Ansible:
    """ansible-pull of the repo at the trigger, running bench/ansible/playbook.yml."""

    def __init__(self, lab: Lab, repo: BenchRepo, gather: bool, name: str = "ansible") -> None:
        self.name = name
        self.box = lab.box(name)
        self.url = repo.url
        self.gather = gather
        self.log = self.box.home / "ansible-pull.log"
        self.lab = lab
        self.box.target.mkdir(parents=True)
        self.box.lease_file.touch()
        proc = self._pull()
        wait_live(self.box.pid_file, None, self.box.target / CONFIG, "", LIVE_TIMEOUT)
        self._finish(proc)

    def deploy(self, sha: str, marker: str) -> Sample:
        before = read_pid(self.box.pid_file)
        start = time.perf_counter()
        proc = self._pull()
        seen = wait_live(self.box.pid_file, before, self.box.target / CONFIG, marker, LIVE_TIMEOUT)
        self._finish(proc)
        return Sample((seen - start) * 1000, extra={"run_ms": ms_since(start)})

    def poll_unchanged(self) -> None:
        """ansible-pull --only-if-changed with nothing new, as a cron poll runs it."""
        before = read_pid(self.box.pid_file)
        self._finish(self._pull("--only-if-changed"))
        if read_pid(self.box.pid_file) != before:
            raise BenchError("ansible-pull -o restarted dhcpd with nothing new")

    def _pull(self, *options: str) -> subprocess.Popen[bytes]:
        home = self.box.home / "ansible-home"
        env = {
            **os.environ,
            "ANSIBLE_HOME": str(home),
            "ANSIBLE_LOCAL_TEMP": str(home / "tmp"),
            "ANSIBLE_REMOTE_TEMP": str(home / "tmp"),
            "ANSIBLE_NOCOLOR": "1",
            "ANSIBLE_GALAXY_SERVER": "http://127.0.0.1:9",  # never the internet
        }
        extra = {
            "target": str(self.box.target),
            "restart": self.box.restart_argv(),
            "ansible_python_interpreter": SYSTEM_PYTHON,
            "gather": self.gather,
        }
        argv = [
            ANSIBLE_PULL, "-U", self.url, "-C", "main", "-d", str(self.box.home / "checkout"),
            "-i", "localhost,", "-e", json.dumps(extra), *options, "playbook.yml",
        ]  # fmt: skip
        return self.lab.start(argv, self.log, env=env, cwd=self.box.home)

    def _finish(self, proc: subprocess.Popen[bytes]) -> None:
        code = proc.wait(LIVE_TIMEOUT)
        self.lab.procs.remove(proc)
        if code != 0:
            raise BenchError(f"ansible-pull exited {code}: see {self.log}")
