"""Where the benchmarks run: temp folders, network namespaces with a real dhcpd, our processes.

A dhcpd that serves may run only inside a namespace made here (lab/netns.py's
NetLab: created with `ip netns add`, cabled with veth pairs inside it, and on
teardown emptied by pid and deleted). Everything written goes under one temp
folder; every process started goes into Lab.procs and is ended by its id.

    Lab        temp root, namespaces, processes; close() undoes all of it
    DhcpdBox   one server: a namespace with eth0 192.0.2.1/24, a dhcpd wrapper,
               the target folder, lease and pid file; restart and "live" detection

"Live" is the same for every pipeline: dhcpd writes its pid file after it has
opened its sockets, just before "Server starting service." (seen with strace),
so a pid file naming a new, running dhcpd whose config holds the round's marker
means the change is being served.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from lab.netns import SERVER_CIDR, Namespace, NetLab, dhcpd_wrapper, find_dhcpd
from lab.proc import read_pid, running

HERE = Path(__file__).resolve().parent
RESTART_SCRIPT = HERE / "scripts" / "restart-dhcpd.sh"
DHCPD = find_dhcpd() or "/usr/sbin/dhcpd"
INTERFACE = "eth0"
POLL = 0.002  # seconds between two looks at a pid file: the resolution of "live"
STOP_WAIT = 10.0
PR_SET_CHILD_SUBREAPER = 36
REAP_EVERY = 1.0


class BenchError(Exception):
    """A pipeline did not do what the benchmark needs (not a slow one: a broken one)."""


@dataclass
class Lab:
    root: Path
    netlab: NetLab = field(default_factory=NetLab)
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)
    boxes: list[DhcpdBox] = field(default_factory=list)
    reaper: Reaper = field(init=False)

    def __post_init__(self) -> None:
        self.reaper = Reaper(self)

    def path(self, *parts: str) -> Path:
        path = self.root.joinpath(*parts)
        path.mkdir(parents=True, exist_ok=True)
        return path

    def box(self, name: str) -> DhcpdBox:
        """A server namespace of its own (eth0 with 192.0.2.1/24) and its folders."""
        ns = self.netlab.namespace(name)
        # Both ends of the cable stay in ns: dhcpd needs a broadcast link with an
        # address in a declared subnet, and no packet ever leaves the namespace.
        ns.ip("link", "add", INTERFACE, "type", "veth", "peer", "name", "peer0")
        ns.up(INTERFACE)
        ns.up("peer0")
        ns.add_address(INTERFACE, SERVER_CIDR)
        home = self.path(name)
        box = DhcpdBox(name, ns, home, dhcpd_wrapper(home / "dhcpd-in-netns", ns, DHCPD))
        box.target.parent.mkdir()
        self.boxes.append(box)
        return box

    def start(
        self,
        argv: Sequence[str],
        log: Path,
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
    ) -> subprocess.Popen[bytes]:
        """A process of ours in a session of its own (its children end with it), logged."""
        with log.open("ab") as out:
            proc = subprocess.Popen(
                list(argv), stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                start_new_session=True, env=env, cwd=cwd,
            )  # fmt: skip
        self.procs.append(proc)
        return proc

    def stop(self, proc: subprocess.Popen[bytes], sig: int = signal.SIGTERM) -> None:
        """End a process we started and its session's children, by its id."""
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, sig)  # the session we made: its pgid is its pid
            try:
                proc.wait(STOP_WAIT)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        if proc in self.procs:
            self.procs.remove(proc)

    def close(self) -> list[str]:
        """Stop our processes, empty and delete our namespaces, remove the temp folder."""
        for proc in reversed(list(self.procs)):
            self.stop(proc)
        for box in self.boxes:
            box.stop()  # the detached dhcpd of a hand-made pipeline: ours, by its pid file
        left = self.netlab.teardown()
        self.reaper.stop()
        shutil.rmtree(self.root, ignore_errors=True)
        return left


class Reaper:
    """Reaps the detached dhcpd of the restart script, which we adopt as their subreaper.

    The script starts dhcpd and exits, so dhcpd is an orphan; a machine whose
    init does not reap (some containers) would keep each stopped one as a zombie.
    As subreaper we adopt them, and reap those of our zombie children that are in
    a session of their own and not one of Lab.procs: never a child that
    subprocess is waiting for (those share our session).
    """

    def __init__(self, lab: Lab) -> None:
        self.lab = lab
        self.done = threading.Event()
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
        self.thread = threading.Thread(target=self._run, name="reaper", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while not self.done.wait(REAP_EVERY):
            self.sweep()

    def sweep(self) -> None:
        me, session = os.getpid(), os.getsid(0)
        ours = {proc.pid for proc in self.lab.procs}
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit() or int(entry.name) in ours:
                continue
            with contextlib.suppress(OSError, ValueError, IndexError):
                fields = (entry / "stat").read_text().rpartition(")")[2].split()
                state, ppid, sid = fields[0], int(fields[1]), int(fields[3])
                if state == "Z" and ppid == me and sid != session:
                    os.waitpid(int(entry.name), os.WNOHANG)

    def stop(self) -> None:
        self.done.set()
        self.thread.join()
        self.sweep()


@contextlib.contextmanager
def open_lab(keep: bool = bool(os.environ.get("BENCH_KEEP"))) -> Iterator[Lab]:
    """A Lab that is gone afterwards, also after an error or Ctrl-C (keep: the folder stays)."""
    if os.geteuid() != 0:
        raise BenchError("the benchmarks need root: network namespaces and mount namespaces")
    lab = Lab(Path(tempfile.mkdtemp(prefix="dgb-")))
    try:
        yield lab
    finally:
        root = lab.root
        if keep:
            lab.root = Path(tempfile.mkdtemp(prefix="dgb-discard-"))
        left = lab.close()
        if keep:
            print(f"bench: kept {root}")
        if left:
            print("bench: left in namespaces and killed:\n" + "\n".join(left))


@dataclass
class DhcpdBox:
    """One DHCP server of a pipeline: its namespace, its live folder and its dhcpd files."""

    name: str
    ns: Namespace
    home: Path
    wrapper: Path

    @property
    def target(self) -> Path:
        return self.home / "etc" / "dhcp"

    @property
    def lease_file(self) -> Path:
        return self.home / "dhcpd.leases"

    @property
    def pid_file(self) -> Path:
        return self.home / "dhcpd.pid"

    @property
    def log(self) -> Path:
        return self.home / "dhcpd.log"

    def serve_argv(self) -> list[str]:
        """The argv of the agent's Supervisor: dhcpd in the foreground on the live config."""
        files = ["-cf", str(self.target / "dhcpd.conf"), "-lf", str(self.lease_file)]
        return [str(self.wrapper), "-f", "-d", *files, "-pf", str(self.pid_file), INTERFACE]

    def restart_argv(self) -> list[str]:
        """The restart every hand-made pipeline (and the floor) runs: see the script."""
        return [str(RESTART_SCRIPT), str(self.pid_file), str(self.log), *self.serve_argv()]

    def restart(self) -> None:
        subprocess.run(self.restart_argv(), check=True, cwd=self.target)

    def stop(self) -> None:
        """SIGTERM the pid file's dhcpd if it runs in our namespace (teardown kills the rest)."""
        pid = read_pid(self.pid_file)
        if pid is not None and self.ns.holds(pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
            deadline = time.monotonic() + STOP_WAIT
            while running(pid) and time.monotonic() < deadline:
                time.sleep(POLL)

    def first_start(self) -> None:
        """dhcpd on the tree a pipeline deployed first; waits until it serves."""
        self.lease_file.touch()
        before = read_pid(self.pid_file)
        self.restart()
        wait_live(self.pid_file, before, self.target / "dhcpd.conf", "", timeout=30)


def wait_live(
    pid_file: Path,
    before: int | None,
    config: Path,
    marker: str,
    timeout: float,
    passing: bool = False,
) -> float:
    """perf_counter() when a new dhcpd serves config holding marker; BenchError if not.

    A restart onto a config without marker is an error, unless passing: then it
    is a commit on the way (the storm's), and the wait goes on.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        pid = read_pid(pid_file)
        if pid is not None and pid != before and running(pid):
            seen = time.perf_counter()
            if marker in config.read_text():
                return seen
            if not passing:
                raise BenchError(f"dhcpd {pid} restarted on {config} without {marker!r}")
            before = pid
        time.sleep(POLL)
    raise BenchError(f"no new dhcpd wrote {pid_file} within {timeout:g} s")
