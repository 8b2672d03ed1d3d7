"""A supervised dhcpd's output: a FIFO in the state dir that outlives the agent, read
line by line into the agent's log.

dhcpd outlives an agent that is killed or that hands it over (restart.py), so
its output cannot go to a pipe of the agent's: the pipe dies with the agent.
dhcpd ignores SIGPIPE (its SigIgn mask has it; measured with isc-dhcpd 4.4.3),
so it would go on serving, but every line it wrote after would be lost, the next
agent's log would never see it, and neither would a failed start's message. So
dhcpd's stdout and stderr are a FIFO at a fixed path, state_dir/dhcpd.output,
which every agent opens again:

- the agent opens it O_RDWR: the open never blocks, and a read never sees
  end-of-file between one dhcpd and the next;
- dhcpd inherits a spare read end it never reads, so its writes always have a
  reader: while no agent runs, its lines wait in the FIFO (64 KiB, the pipe
  size) and the next agent logs them when it opens the FIFO;
- dhcpd's write end is non-blocking: a FIFO that filled up while no agent read
  it drops dhcpd's lines (EAGAIN, which dhcpd ignores) and never stalls dhcpd.

Each line goes to the agent's log (the journal, `podman logs`) at INFO as
"dhcpd: <line>", and the last LINES are kept to quote when dhcpd fails.
"""

from __future__ import annotations

import contextlib
import logging
import os
import select
import stat
import threading
from collections import deque
from collections.abc import Iterator
from pathlib import Path

log = logging.getLogger(__name__)

LINES = 200
READ_SIZE = 65536


class Output:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.lines: deque[str] = deque(maxlen=LINES)
        self._fd: int | None = None
        self._wake: tuple[int, int] | None = None  # a pipe that ends the reader thread
        self._partial = b""
        self._lock = threading.Lock()  # one reader of the FIFO at a time: lines stay in order
        self._reader: threading.Thread | None = None

    def open(self) -> None:
        """Read the FIFO (made if missing) in a thread, until close()."""
        if self._fd is not None:
            return
        _make_fifo(self.path)
        self._fd = os.open(self.path, os.O_RDWR | os.O_NONBLOCK | os.O_CLOEXEC)
        self._wake = os.pipe()
        self._reader = threading.Thread(
            target=self._follow, args=(self._fd, self._wake[0]), name="dhcpd-output", daemon=True
        )
        self._reader.start()

    @contextlib.contextmanager
    def ends(self) -> Iterator[tuple[int, int]]:
        """dhcpd's write end and its spare read end, for one spawn; ours are closed after."""
        self.open()
        write = os.open(self.path, os.O_WRONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        try:
            spare = os.open(self.path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
            try:
                yield write, spare
            finally:
                os.close(spare)
        finally:
            os.close(write)

    def written_by(self, pid: int) -> bool:
        """Whether the process's stdout is this FIFO (an adopted dhcpd's lines reach us)."""
        try:
            theirs, ours = Path(f"/proc/{pid}/fd/1").stat(), self.path.lstat()
        except OSError:
            return False
        return (theirs.st_dev, theirs.st_ino) == (ours.st_dev, ours.st_ino)

    def drain(self) -> None:
        """Log every line written so far (once dhcpd has exited: all its last words)."""
        with self._lock:
            self._read_all()

    def forget(self) -> None:
        """Before a new dhcpd: what is written so far is logged, and not kept for it."""
        with self._lock:
            self._read_all()
            self.lines.clear()
            self._partial = b""

    def _read_all(self) -> None:
        if self._fd is None:
            return
        while chunk := _read(self._fd):
            self._take(chunk)

    def close(self) -> None:
        """Log what is left, then stop reading; dhcpd's spare end keeps the FIFO open."""
        self.drain()
        if self._fd is None or self._wake is None or self._reader is None:
            return
        os.write(self._wake[1], b"x")
        self._reader.join()
        with self._lock:
            for fd in (self._fd, *self._wake):
                os.close(fd)
            self._fd, self._wake, self._reader = None, None, None
            self._partial = b""

    def _follow(self, fd: int, wake: int) -> None:
        poll = select.poll()
        poll.register(fd, select.POLLIN)
        poll.register(wake, select.POLLIN)
        while True:
            ready = {ready_fd for ready_fd, _ in poll.poll()}
            if wake in ready:
                return
            self.drain()

    def _take(self, chunk: bytes) -> None:
        *complete, self._partial = (self._partial + chunk).split(b"\n")
        for raw in complete:
            line = raw.decode(errors="replace").rstrip("\r")
            self.lines.append(line)
            log.info("dhcpd: %s", line)


def _read(fd: int) -> bytes:
    try:
        return os.read(fd, READ_SIZE)
    except BlockingIOError:  # nothing more for now
        return b""


def _make_fifo(path: Path) -> None:
    """The FIFO at path; anything else found there (a file, a link) is replaced."""
    try:
        if stat.S_ISFIFO(path.lstat().st_mode):
            return
        path.unlink()
    except FileNotFoundError:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.mkfifo(path, 0o600)
