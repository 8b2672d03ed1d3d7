"""The sandbox a server's validator runs in: bubblewrap (bwrap), where only the stage is
visible, read-only at the target's path, with the validator binary and what it needs to
start (its ELF interpreter, its shared libraries, /etc/ld.so.cache) and the paths the
node lists in [policy] read_only. No network (unless the caller made one for it), no
devices, no /proc; the validator is uid 65534 with no capability in a user namespace of
its own. Shared by every backend: what a commit holds can read nothing else.
"""

from __future__ import annotations

import functools
import os
import re
from collections.abc import Sequence
from pathlib import Path

from agent import process
from agent.errors import CommandError, SandboxError

BWRAP = "bwrap"  # found on PATH, as every tool the agent runs


# nobody: dhcpd -t is no one in its sandbox. Run by root, bwrap maps it to root outside,
# so dhcpd reads what root may of what it is shown, as live, with no capability.
UID = 65534


# The loader reads its cache to find libraries outside its default folders.
LOADER_CACHE = "/etc/ld.so.cache"


def sandbox_argv(
    stage: Path,
    target: Path,
    argv: list[str],
    read_only: Sequence[Path] = (),
    share_net: bool = False,
) -> list[str]:
    """argv (argv[0] an absolute path) run by bwrap where only argv[0] and what it needs
    to start, the read_only paths and the stage (read-only, at the target) exist.

    share_net: keep the caller's network namespace, one the caller made for the
    validator (Kea's checks the interfaces a config names), never the host's own."""
    mounts = [m for path in startup_files(argv[0]) for m in _shown(path, "--ro-bind")]
    mounts += _shown(LOADER_CACHE, "--ro-bind-try")
    # --ro-bind-try: a read_only path missing here is missing in the sandbox too.
    mounts += [m for path in read_only for m in _shown(str(path), "--ro-bind-try")]
    # Last, so that the stage is the target even where a read_only path lies inside it.
    links, real_target = _walk(str(target))
    mounts += [*links, ("--ro-bind", str(stage), real_target)]
    return [
        BWRAP,
        # Every namespace (user, network, pid, ipc, uts, cgroup), the user namespace a
        # must (--unshare-all only tries it). Not --disable-userns: it writes /proc/sys,
        # read-only under systemd's ProtectKernelTunables and in containers.
        *("--unshare-all", "--unshare-user"),
        *(("--share-net",) if share_net else ()),
        *("--die-with-parent", "--new-session", "--clearenv", "--cap-drop", "ALL"),
        *("--uid", str(UID), "--gid", str(UID)),
        *(word for mount in dict.fromkeys(mounts) for word in mount),
        *("--remount-ro", "/"),  # the sandbox's own root too: nothing in it is writable
        # Debian's service starts dhcpd from /: relative includes resolve there, and fail.
        *("--chdir", "/", "--"),
        *argv,
    ]


Mount = tuple[str, str, str]  # a bwrap option and its two arguments


def _shown(path: str, how: str) -> list[Mount]:
    """A host path shown at the same path: the symbolic links on the way (Debian's
    /lib -> usr/lib, say), then the file itself."""
    links, real = _walk(path)
    return [*links, (how, real, real)]


def _walk(path: str) -> tuple[list[Mount], str]:
    """The symbolic links met resolving path, as bwrap makes them, and the real path."""
    links: list[Mount] = []
    real, todo = Path("/"), _parts(str(Path(path).absolute()))
    while todo:
        part = todo.pop(0)
        here = real.parent if part == ".." else real / part
        if not here.is_symlink():
            real = here
            continue
        if len(links) >= _MAX_LINKS:
            raise SandboxError(f"{path}: too many levels of symbolic links")
        written = str(here.readlink())
        links.append(("--symlink", written, str(here)))
        real = Path("/") if written.startswith("/") else real
        todo = _parts(written) + todo
    return links, str(real)


def _parts(path: str) -> list[str]:
    return [part for part in Path(path).parts if part != "/"]


_MAX_LINKS = 40  # as the kernel's ELOOP


@functools.lru_cache(maxsize=16)
def _needed(binary: str, inode: int, mtime_ns: int) -> tuple[str, ...]:
    """startup_files without the cache; kept per binary as it is on disk (ldd takes
    longer than dhcpd -t on a small config)."""
    files = [binary]
    interpreter = _interpreter(binary)
    if interpreter is not None:
        files += startup_files(interpreter)
    return (*files, *_libraries(binary))


def _interpreter(path: str) -> str | None:
    """The program a `#!` script names (its first word), or None for any other file."""
    with Path(path).open("rb") as file:
        head = file.read(256)
    if not head.startswith(b"#!"):
        return None
    words = head[2:].split(b"\n", 1)[0].split()
    return os.fsdecode(words[0]) if words else None


_LIBRARY = re.compile(r"(/\S+) \(0x[0-9a-f]+\)$")


def _libraries(binary: str) -> list[str]:
    """The ELF interpreter and shared libraries ldd finds for binary: none for a static
    binary or a script (ldd: "not a dynamic executable")."""
    try:
        listed = process.run(["ldd", binary], check=False).stdout
    except CommandError as err:
        raise SandboxError(f"cannot list what {binary} needs to start: {err.message}") from err
    return [m.group(1) for line in listed.splitlines() if (m := _LIBRARY.search(line.strip()))]


# What to grant a machine that cannot make the sandbox.
INSTALL = "install bubblewrap 0.8 or later (apt-get install bubblewrap)"


NAMESPACES = (
    "enable user namespaces (sysctl kernel.unprivileged_userns_clone=1 where that sysctl "
    "exists, and user.max_user_namespaces above 0; a systemd unit's RestrictNamespaces= "
    "or a container's seccomp profile must allow user, mnt, net, pid, ipc and uts)"
)


AS_ROOT = "run the agent as root"


def check_it_ran(result: process.Completed, what: str) -> None:
    """SandboxError if bwrap could not make the sandbox, or the validator (`what`, e.g.
    "dhcpd -t") not start in it: bwrap says "bwrap: ..." first, a loader or a wrapper
    script that misses a file exits 127. A validator's own output never starts so."""
    first = (result.stderr.strip().splitlines() or [""])[0]
    if result.returncode == process.NOT_FOUND:
        raise SandboxError(f"{what} cannot start in its sandbox: {first}")
    if first.startswith("bwrap: "):
        too_old = "Unknown option" in first
        raise no_sandbox(what, first, [INSTALL] if too_old else _namespace_grants())


def _namespace_grants() -> list[str]:
    return [NAMESPACES] if os.geteuid() == 0 else [NAMESPACES, AS_ROOT]


def no_sandbox(what: str, reason: str, grants: Sequence[str]) -> SandboxError:
    """The error for a machine that cannot run the validator in its sandbox: what to grant."""
    return SandboxError(f"{what} cannot run in its sandbox ({reason}): {'; or '.join(grants)}")


def startup_files(binary: str) -> tuple[str, ...]:
    """What binary needs to start: itself, a script's interpreter, and the ELF
    interpreter (the loader) and shared libraries of each."""
    st = Path(binary).stat()
    return _needed(binary, st.st_ino, st.st_mtime_ns)
