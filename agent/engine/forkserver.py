"""The renderers' fork server: one warm process that forks a renderer per render.

Starting Python and importing Jinja costs a renderer about 50 ms, paid on every
render (a deploy of a pair renders twice: its own side and the partner's). A
fork of a process that did both once costs about a millisecond. So the agent
keeps one fork server, its own child, started on the first render: it is
single-threaded (a fork is safe in it) and never reads what a render is
handed. It takes a request (the Bounds and the renderer's three memfds, passed
over a unix socket), forks, and the child becomes exactly the renderer that
`python -m agent.engine.renderer` would be: it limits and seals itself
(agent/engine/renderer.py) before touching a template. The server waits for
it, kills it past its deadline, and answers with its wait status and CPU time.

It ends when the agent closes its socket or dies (the read sees the end). A
server that stops answering is killed and started again; render.py falls back
to spawning a renderer when none can be had.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import signal
import socket
import sys
import threading
import traceback
from dataclasses import asdict

from agent.engine import renderer
from agent.engine.renderer import Bounds

MODULE = "agent.engine.forkserver"
REQUEST_MAX = 64 * 1024  # bytes of one request: the Bounds as JSON
ANSWER_SLACK = 10.0  # seconds the server may take beyond a renderer's deadline

Outcome = tuple[int, float, bool]  # wait status, CPU seconds, killed for its deadline


class Unavailable(Exception):
    """No fork server could be had or it stopped answering: spawn a renderer instead."""


class Client:
    """The agent's end: one fork server, asked by one thread at a time."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._sock: socket.socket | None = None
        self._pid: int | None = None
        self.peak_kib = 0  # the largest renderer's peak RSS so far (not our child: not in
        # getrusage(RUSAGE_CHILDREN)), for the measurements of the limits' tests

    def run(self, bounds: Bounds, fds: tuple[int, int, int]) -> Outcome:
        """A renderer forked on these stdin, stdout, stderr: how it ended."""
        with self._lock:
            sock = self._sock if self._sock is not None else self._start()
            try:
                status, cpu, timed_out, peak = _ask(sock, bounds, fds)
            except (OSError, ValueError, Unavailable) as err:
                self._stop()  # the next render starts a fresh one
                raise Unavailable(str(err)) from err
            self.peak_kib = max(self.peak_kib, peak)
            return status, cpu, timed_out

    def _start(self) -> socket.socket:
        mine, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        argv = [sys.executable, "-s", "-P", "-m", MODULE]
        env = {"PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
        try:
            # Its own session: a Ctrl-C for the agent is not one for the server.
            actions = [(os.POSIX_SPAWN_DUP2, theirs.fileno(), 0)]
            self._pid = os.posix_spawn(sys.executable, argv, env, setsid=True,
                                       file_actions=actions)  # fmt: skip
        except OSError as err:
            mine.close()
            raise Unavailable(f"cannot start the fork server: {err.strerror}") from err
        finally:
            theirs.close()
        self._sock = mine
        return mine

    def _stop(self) -> None:
        if self._sock is not None:
            self._sock.close()  # the server reads the end and exits
            self._sock = None
        if self._pid is not None:
            with contextlib.suppress(ChildProcessError, ProcessLookupError):
                os.kill(self._pid, signal.SIGKILL)
                os.waitpid(self._pid, 0)
            self._pid = None


def _ask(
    sock: socket.socket, bounds: Bounds, fds: tuple[int, int, int]
) -> tuple[int, float, bool, int]:
    request = json.dumps(asdict(bounds)).encode()
    socket.send_fds(sock, [request], list(fds))
    poll = select.poll()
    poll.register(sock, select.POLLIN)
    if not poll.poll((bounds.deadline + ANSWER_SLACK) * 1000):
        raise Unavailable("the fork server did not answer in time")
    answer = sock.recv(REQUEST_MAX)
    if not answer:
        raise Unavailable("the fork server ended")
    said = json.loads(answer)
    return int(said["status"]), float(said["cpu"]), bool(said["timed_out"]), int(said["kib"])


_shared = Client()


def shared() -> Client:
    """The agent's one fork server."""
    return _shared


# --- the server's end (python -m agent.engine.forkserver, the socket on fd 0) -----------


def serve(sock: socket.socket) -> int:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    while True:
        try:
            request, fds, _, _ = socket.recv_fds(sock, REQUEST_MAX, 3)
        except OSError:
            return 0
        if not request:
            return 0  # the agent closed its end, or died
        try:
            outcome = _render(request.decode(), fds)
        finally:
            for fd in fds:
                os.close(fd)
        status, cpu, timed_out, kib = outcome
        said = {"status": status, "cpu": cpu, "timed_out": timed_out, "kib": kib}
        sock.send(json.dumps(said).encode())


def _render(bounds_json: str, fds: list[int]) -> tuple[int, float, bool, int]:
    """A renderer forked on fds: its wait status, CPU seconds, whether it was killed for
    its deadline, and its peak RSS in KiB."""
    deadline = Bounds(**json.loads(bounds_json)).deadline
    pid = os.fork()
    if pid == 0:
        _become_renderer(bounds_json, fds)
    pidfd = os.pidfd_open(pid)  # the child is ours and unreaped: its pid cannot be reused
    try:
        poll = select.poll()
        poll.register(pidfd, select.POLLIN)
        timed_out = not poll.poll(deadline * 1000)
        if timed_out:
            signal.pidfd_send_signal(pidfd, signal.SIGKILL)
    finally:
        os.close(pidfd)
    _, status, usage = os.wait4(pid, 0)
    return status, usage.ru_utime + usage.ru_stime, timed_out, usage.ru_maxrss


def _become_renderer(bounds_json: str, fds: list[int]) -> None:
    """The forked child: the renderer on the request's streams; it never returns."""
    code = 1
    try:
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        for number, fd in enumerate(fds):
            os.dup2(fd, number)
        code = renderer.main([bounds_json])
    except SystemExit as done:
        code = done.code if isinstance(done.code, int) else 1
    except BaseException:  # noqa: BLE001 - as an uncaught exception ends a spawned one
        traceback.print_exc()
    finally:
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(OSError, ValueError):
                stream.flush()
        os._exit(code)


if __name__ == "__main__":
    sys.exit(serve(socket.socket(fileno=0)))
