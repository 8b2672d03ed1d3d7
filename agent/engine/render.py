"""Repo files in, the files of the live tree out: overlay the role, render *.j2.

Files come through a Snapshot (a commit or a checkout), so the agent, `validate`
and `plan` render identically. The templates are rendered by one renderer per
render (agent/engine/renderer.py), a child process under the [limits]: a template
can exhaust its memory or CPU time, never the agent's. Its answer is read here as
untrusted input, bounded in size; its death, a timeout or a garbled answer is a
RenderError naming the template it was on (or the template set).
"""

from __future__ import annotations

import json
import logging
import os
import pickle
import re
import select
import signal
import sys
import tomllib
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from agent.config import Limits
from agent.engine import forkserver, renderer
from agent.engine.renderer import MESSAGE_MAX, MODULE, Bounds, Templates
from agent.errors import Problem, RenderError
from agent.source.snapshot import RepoFile, Snapshot

TEMPLATE_SUFFIX = renderer.TEMPLATE_SUFFIX
BASE = "dhcp"
ROLES_FOLDER = "roles"  # roles/<role>/, laid over dhcp/
COMMON = "common"  # at the repo root, laid under every pair's dhcp/
PAIR_FILE = "pair.toml"
STDERR_TAIL = 2048  # bytes of the renderer's stderr read back, for a message
HEAD_MAX = 64 * 1024  # bytes of one frame's JSON line

log = logging.getLogger(__name__)

# One layer: the repo folder (relative to the pair folder) and the files below it.
Layer = tuple[str, Sequence[RepoFile]]


@dataclass(frozen=True)
class Rendered:
    files: dict[str, bytes]  # path in the live tree -> content
    sources: dict[str, str]  # path in the live tree -> repo file it came from


def role_folder(role: str) -> str:
    return f"roles/{role}"


def render_pair(
    snapshot: Snapshot,
    pair: str,
    role: str,
    node_name: str,
    target: str,
    limits: Limits | None = None,
) -> Rendered:
    """The live tree of one role: common/, then the pair's dhcp/, then roles/<role>/.

    The same for the agent (a commit), `validate` (a checkout) and `plan`.
    """
    base_folder = join_path(pair, BASE)
    base = snapshot.read(base_folder)
    if base is None:
        if pair and not snapshot.exists(pair):
            raise RenderError(pair, "pair folder not found")
        # Two servers that share no file (an import of a pair kept apart) have all
        # their files in roles/: git keeps no empty dhcp/, and a placeholder file in
        # it would go live, so a pair folder with roles/ renders without dhcp/.
        if not snapshot.exists(join_path(pair, ROLES_FOLDER)):
            raise RenderError(f"{base_folder}/", "no dhcp/ folder (nor roles/) in the pair folder")
        base = []
    overlay_folder = join_path(pair, role_folder(role))
    layers = [
        (COMMON, snapshot.read(COMMON) or []),
        (base_folder, base),
        (overlay_folder, snapshot.read(overlay_folder) or []),
    ]
    pair_toml = snapshot.read(join_path(pair, PAIR_FILE))
    values = variables(node_name, role, target, pair_toml[0] if pair_toml else None)
    return render(layers, values, limits or Limits())


def join_path(*parts: str) -> str:
    """Repo paths joined, empty parts (the repo root as pair folder) left out."""
    return "/".join(p for p in parts if p)


def render(
    layers: Iterable[Layer], variables: Mapping[str, Any], limits: Limits | None = None
) -> Rendered:
    """Overlay the layers in order (dhcp/, then roles/<role>/) and render the templates."""
    merged: dict[str, RepoFile] = {}
    for folder, layer_files in layers:
        merged.update(_layer(layer_files, folder))
    _check_no_file_dir_clash(merged)
    templates = {out: (f.path, f.data) for out, f in merged.items() if _is_template(f)}
    # Only templates need a renderer: a tree without one starts none.
    rendered = _ask_renderer(templates, variables, bounds(limits or Limits())) if templates else {}
    files = {out: rendered.get(out, f.data) for out, f in sorted(merged.items())}
    return Rendered(files=files, sources={out: f.path for out, f in merged.items()})


def _is_template(f: RepoFile) -> bool:
    return f.path.endswith(TEMPLATE_SUFFIX)


def bounds(limits: Limits) -> Bounds:
    return Bounds(
        memory=limits.render_memory,
        cpu=limits.render_cpu,
        file_size=limits.file_size,
        render_size=limits.render_size,
        template_loop=limits.template_loop,
    )


def variables(node_name: str, role: str, target: str, pair_toml: RepoFile | None) -> dict[str, Any]:
    """What templates see: node, pair (pair.toml), peer (the other node), target."""
    pair = _parse_pair(pair_toml) if pair_toml else {}
    other = {"primary": "secondary", "secondary": "primary"}.get(role)
    node = {**_table(pair, role), "name": node_name, "role": role}
    peer = {**_table(pair, other), "role": other} if other else {}
    return {"node": node, "pair": pair, "peer": peer, "target": target}


def _table(pair: Mapping[str, Any], key: str | None) -> dict[str, Any]:
    value = pair.get(key) if key else None
    return dict(value) if isinstance(value, dict) else {}


def _parse_pair(file: RepoFile) -> dict[str, Any]:
    try:
        return tomllib.loads(file.data.decode("utf-8"))
    except UnicodeDecodeError as err:
        raise RenderError(file.path, "not UTF-8 text") from err
    except tomllib.TOMLDecodeError as err:
        found = re.search(r"line (\d+)", str(err))
        raise RenderError(file.path, str(err), int(found.group(1)) if found else None) from err


def _layer(files: Iterable[RepoFile], prefix: str) -> dict[str, RepoFile]:
    """Map output path -> repo file for one layer; `x` and `x.j2` together is ambiguous."""
    layer: dict[str, RepoFile] = {}
    for f in files:
        rel = f.path.removeprefix(prefix + "/")
        check_name(f.path)
        out = rel.removesuffix(TEMPLATE_SUFFIX)
        if out in layer:
            raise RenderError(f.path, f"both {layer[out].path} and {f.path} produce {out}")
        layer[out] = f
    return layer


_UNSAFE = re.compile(r"[\x00-\x1f\x7f\"\\]")


def check_name(path: str) -> None:
    """Refuse names dhcpd or a shell could misread: control bytes, quotes, non-UTF-8."""
    try:
        path.encode("utf-8")
    except UnicodeEncodeError as err:
        raise RenderError(repr(path), "file name is not valid UTF-8") from err
    if _UNSAFE.search(path):
        raise RenderError(repr(path), "file name holds a control character, quote or backslash")
    if any(part in ("", ".", "..") for part in path.split("/")):
        raise RenderError(path, "file name has an empty, '.' or '..' part")


def _check_no_file_dir_clash(merged: Mapping[str, RepoFile]) -> None:
    for out, f in merged.items():
        parts = out.split("/")
        for i in range(1, len(parts)):
            parent = "/".join(parts[:i])
            if parent in merged:
                raise RenderError(f.path, f"{merged[parent].path} is a file where a folder is")


# --- the renderer, asked: agent/engine/renderer.py is the other end ---------------------


def _ask_renderer(
    templates: Templates, variables: Mapping[str, Any], bounds: Bounds
) -> dict[str, bytes]:
    """The templates rendered by one renderer: out path -> bytes. Raises RenderError.

    The renderer is forked by the warm fork server (agent/engine/forkserver.py), or
    spawned afresh when none can be had; either is the same renderer, under the same
    limits, on fresh memfds."""
    request = pickle.dumps((dict(templates), dict(variables)))
    try:
        return _ask_once(request, templates, bounds, forkserver.shared().run)
    except forkserver.Unavailable as err:
        log.warning("renderer fork server: %s; spawning the renderer instead", err)
        return _ask_once(request, templates, bounds, _spawn)


Runner = Callable[[Bounds, tuple[int, int, int]], tuple[int, float, bool]]


def _ask_once(
    request: bytes, templates: Templates, bounds: Bounds, run: Runner
) -> dict[str, bytes]:
    with _Memfd("request", request) as stdin, _Memfd("answer") as out, _Memfd("stderr") as err:
        status, cpu, timed_out = run(bounds, (stdin.fd, out.fd, err.fd))
        answer = parse(out.read(bounds.answer_size))
        death = Death(status, cpu, timed_out, err.tail(STDERR_TAIL))
    return verdict(answer, death, templates, bounds)


@dataclass(frozen=True)
class Death:
    """How a renderer ended: its wait status, CPU seconds used, whether we killed it."""

    status: int
    cpu: float
    timed_out: bool = False
    stderr: str = ""


def _spawn(bounds: Bounds, fds: tuple[int, int, int]) -> tuple[int, float, bool]:
    """Start a renderer on these stdin, stdout, stderr; its wait status, CPU seconds and
    whether it was killed for taking too long."""
    # posix_spawn, not subprocess with preexec_fn: the agent is multi-threaded, and the
    # renderer sets its own limits. Not agent.process.run either: that captures output
    # in pipes without bound and keeps no resource usage.
    argv = [sys.executable, "-s", "-P", "-m", MODULE, json.dumps(asdict(bounds))]
    actions = [(os.POSIX_SPAWN_DUP2, fd, n) for n, fd in enumerate(fds)]
    pid = os.posix_spawn(sys.executable, argv, _environ(), file_actions=actions, setsigmask=())
    reaped = False
    try:
        timed_out = not _exited(pid, bounds.deadline)
        if timed_out:
            os.kill(pid, signal.SIGKILL)
        _, status, usage = os.wait4(pid, 0)
        reaped = True
    finally:
        if not reaped:  # interrupted (KeyboardInterrupt): leave no renderer behind
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
    return status, usage.ru_utime + usage.ru_stime, timed_out


def _environ() -> dict[str, str]:
    """Only the import path: the renderer runs this very code, and sees nothing else of
    the agent's environment."""
    return {"PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}


def _exited(pid: int, timeout: float) -> bool:
    pidfd = os.pidfd_open(pid)
    try:
        poll = select.poll()
        poll.register(pidfd, select.POLLIN)
        return bool(poll.poll(timeout * 1000))
    finally:
        os.close(pidfd)


class _Memfd:
    """A file in memory for one of the renderer's standard streams: an answer written
    there needs no reader while it is written, and RLIMIT_FSIZE bounds it."""

    def __init__(self, name: str, data: bytes = b"") -> None:
        self.fd = os.memfd_create(f"dhcp-gitops-render-{name}")
        view = memoryview(data)
        while view:
            view = view[os.write(self.fd, view) :]
        os.lseek(self.fd, 0, os.SEEK_SET)

    def __enter__(self) -> _Memfd:
        return self

    def __exit__(self, *exc: object) -> None:
        os.close(self.fd)

    def read(self, limit: int) -> bytes | None:
        """The whole file, or None when it is over limit bytes."""
        size = os.fstat(self.fd).st_size
        return None if size > limit else _pread(self.fd, size, 0)

    def tail(self, size: int) -> str:
        end = os.fstat(self.fd).st_size
        return _pread(self.fd, min(size, end), max(0, end - size)).decode(errors="replace")


def _pread(fd: int, size: int, offset: int) -> bytes:
    chunks: list[bytes] = []
    while size > 0:
        chunk = os.pread(fd, size, offset)
        if not chunk:
            break
        chunks.append(chunk)
        size, offset = size - len(chunk), offset + len(chunk)
    return b"".join(chunks)


@dataclass
class Answer:
    files: dict[str, bytes] = field(default_factory=dict)
    started: str | None = None  # the repo path of the template being rendered last
    error: Problem | None = None
    done: bool = False
    garbled: str | None = None  # what is wrong with it, when something is


def parse(data: bytes | None) -> Answer:
    """The renderer's frames, read as untrusted input: a bad frame ends the answer."""
    answer = Answer()
    if data is None:
        answer.garbled = "an answer over the size limit"
        return answer
    try:
        for head, body in _frames(data):
            _take(answer, head, body)
    except (ValueError, TypeError, KeyError) as err:
        answer.garbled = f"a garbled answer ({err})"
    return answer


def _frames(data: bytes) -> Iterator[tuple[dict[str, Any], bytes]]:
    at = 0
    while at < len(data):
        end = data.find(b"\n", at, at + HEAD_MAX)
        if end < 0:
            raise ValueError("a frame line cut short or too long")
        head = json.loads(data[at:end])
        if not isinstance(head, dict):
            raise ValueError("a frame that is not an object")
        size = head.get("size", 0) if "file" in head else 0
        if not isinstance(size, int) or not 0 <= size <= len(data) - end - 1:
            raise ValueError("a file frame cut short")
        at = end + 1 + size
        yield head, data[end + 1 : at]


def _take(answer: Answer, head: dict[str, Any], body: bytes) -> None:
    if "start" in head:
        answer.started = _text(head["start"])
    elif "file" in head:
        answer.files[str(head["file"])] = body
    elif "error" in head:
        e = head["error"]
        line = e["line"] if isinstance(e["line"], int) else None
        file = _text(e["file"])
        answer.error = Problem(file, line, _text(e["message"]), source=file)
    elif head.get("done") is True:
        answer.done = True
    else:
        raise ValueError("an unknown frame")


def _text(value: object) -> str:
    return str(value)[:MESSAGE_MAX]


def verdict(answer: Answer, death: Death, templates: Templates, bounds: Bounds) -> dict[str, bytes]:
    """The rendered files, or the RenderError that says why there are none."""
    if answer.error is not None:  # the renderer's own refusal: the template and why
        raise RenderError(answer.error.file, answer.error.message, answer.error.line)
    why = _what_went_wrong(answer, death, templates, bounds)
    if why:
        raise RenderError(answer.started or _template_set(templates), why)
    return answer.files


def _what_went_wrong(
    answer: Answer, death: Death, templates: Templates, bounds: Bounds
) -> str | None:
    if death.timed_out:
        return f"no answer within {bounds.deadline:g} s; the renderer killed"
    if death.cpu >= bounds.cpu and not answer.done:  # SIGKILL at the hard limit, say
        return bounds.cpu_reached
    if os.WIFSIGNALED(death.status):
        return f"the renderer was killed by {_signal_name(os.WTERMSIG(death.status))}"
    last = (death.stderr.strip().splitlines() or [""])[-1][:200]
    if last == "MemoryError":  # out of memory outside a template (reading what it got)
        return bounds.memory_reached
    code = os.waitstatus_to_exitcode(death.status)
    why = answer.garbled or ("" if answer.done else "no complete answer")
    if not why and set(answer.files) != set(templates):
        why = "an answer with other files than the templates handed over"
    if code == 0 and not why:
        return None
    return f"the renderer exited with {code}" + (f", {why}" if why else "") + f": {last}"


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


def _template_set(templates: Templates) -> str:
    paths = sorted(path for path, _ in templates.values())
    more = f" and {len(paths) - 3} more" if len(paths) > 3 else ""
    return ", ".join(paths[:3]) + more
