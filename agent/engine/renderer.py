"""The renderer: the child process that renders a commit's templates, under limits.

Jinja's sandbox keeps templates from reaching Python's internals, but not from
building a string of 2**40 characters with `~`, or looping for an hour: run in
the agent, one template took it out of memory, and again on every restart. So
agent/engine/render.py starts one renderer per render (`python -m
agent.engine.renderer BOUNDS`) and hands it the templates and the variables on
stdin. Its first act is to take its limits from the kernel: address space
(RLIMIT_AS), CPU seconds (RLIMIT_CPU), the size of its answer (RLIMIT_FSIZE: its
stdout is a memfd), no core file. Once it has read what it was handed and
imported all it will need, it closes every other descriptor and lowers
RLIMIT_NOFILE to the lowest free one, so the kernel refuses any open() or
socket() with EMFILE; run as root it then becomes nobody, so that even an escape
from the sandbox could not raise the limits again. Only then does it touch a
template.

Its answer is a stream of frames, each one JSON line, a file's bytes after it
(render.parse reads them, trusting none):

    {"start": "dhcp/x.conf.j2"}       about to render it: names the culprit of a death
    {"file": "x.conf", "size": N}     then N bytes, the rendered file
    {"error": {"file": ..., "message": ..., "line": ...}}
    {"done": true}
"""

from __future__ import annotations

# The imports marked "sealed" are for what templates call into lazily: once the
# renderer is sealed (seal() below), no module file can be opened any more.
import encodings.unicode_escape  # noqa: F401  (sealed: Jinja's lexer, for string literals)
import html  # noqa: F401  (sealed: markupsafe's striptags)
import json
import os
import pickle
import pprint  # noqa: F401  (sealed: the pprint filter)
import resource
import signal
import sys
import textwrap  # noqa: F401  (sealed: the wordwrap filter)
import unicodedata  # noqa: F401  (sealed: "\N{...}" in a string literal)
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import FrameType, TracebackType
from typing import Any, BinaryIO

import jinja2
import jinja2.debug  # sealed: every template error goes through it
from jinja2.exceptions import SecurityError
from jinja2.runtime import Context
from jinja2.sandbox import SandboxedEnvironment, safe_range

from agent.errors import Problem, RenderError

MODULE = "agent.engine.renderer"
TEMPLATE_SUFFIX = ".j2"
MiB = 1024 * 1024
NOBODY = 65534  # Debian's nobody and nogroup
FRAME_SLACK = 16 * MiB  # an answer's frame lines, on top of the rendered bytes
WALL_SLACK = 30.0  # seconds beyond twice the CPU limit before a renderer counts as stuck
MESSAGE_MAX = 2000  # characters of a message in an answer

# out path (the live tree's, without .j2) -> (repo path, the template's bytes)
Templates = Mapping[str, tuple[str, bytes]]


@dataclass(frozen=True)
class Bounds:
    """The [limits] a renderer works under (agent.config.Limits, without pydantic: the
    renderer starts faster without importing it)."""

    memory: int
    cpu: int
    file_size: int
    render_size: int
    template_loop: int

    @property
    def answer_size(self) -> int:
        return self.render_size + FRAME_SLACK

    @property
    def memory_reached(self) -> str:
        size = f"{self.memory // MiB} MiB" if self.memory % MiB == 0 else f"{self.memory} bytes"
        return f"memory limit ({size}) reached"

    @property
    def cpu_reached(self) -> str:
        return f"CPU limit ({self.cpu} s) reached"

    @property
    def output_over(self) -> str:
        return f"output larger than {self.render_size} bytes in all (limits.render_size)"

    @property
    def deadline(self) -> float:
        """Wall seconds: CPU-bound work on a busy machine can take twice its CPU time."""
        return 2 * self.cpu + WALL_SLACK


class _CpuLimit(BaseException):
    """SIGXCPU, raised in the template's frame; a BaseException, so that no `except
    Exception` on the way (Jinja has some) mistakes it for the template's own fault."""


def main(argv: Sequence[str]) -> int:
    bounds = Bounds(**json.loads(argv[0]))
    limit(bounds)
    templates, variables = pickle.loads(sys.stdin.buffer.read())  # noqa: S301  (the agent's)
    seal()
    _render_all(templates, variables, bounds, _Frames(sys.stdout.buffer))
    return 0


def limit(bounds: Bounds) -> None:
    """The kernel's bounds on this process, hard limits too (no raising them back)."""
    signal.signal(signal.SIGXCPU, _out_of_cpu)
    _set(resource.RLIMIT_AS, bounds.memory)
    _set(resource.RLIMIT_CPU, bounds.cpu, bounds.cpu + 1)  # SIGXCPU, a second later SIGKILL
    _set(resource.RLIMIT_FSIZE, bounds.answer_size)
    _set(resource.RLIMIT_CORE, 0)


def _set(which: int, soft: int, hard: int | None = None) -> None:
    """Soft and hard limit, neither above the hard limit the agent itself runs under."""
    hard = soft if hard is None else hard
    _, top = resource.getrlimit(which)
    if top != resource.RLIM_INFINITY:
        soft, hard = min(soft, top), min(hard, top)
    resource.setrlimit(which, (soft, hard))


def _out_of_cpu(signum: int, frame: FrameType | None) -> None:
    raise _CpuLimit


def seal() -> None:
    """From here on the kernel refuses this process any new descriptor: no file, no
    socket, no pipe. Run as root it becomes nobody, so that no limit can be raised back;
    and it may not fork."""
    os.closerange(3, resource.getrlimit(resource.RLIMIT_NOFILE)[1])  # what the agent leaked
    lowest = os.dup(0)  # the lowest free descriptor: 3, with 0, 1 and 2 open
    os.close(lowest)
    resource.setrlimit(resource.RLIMIT_NOFILE, (lowest, lowest))
    if os.geteuid() == 0:
        _become_nobody()
    resource.setrlimit(resource.RLIMIT_NPROC, (0, 0))


def _become_nobody() -> None:
    try:
        os.setgroups([])
        os.setresgid(NOBODY, NOBODY, NOBODY)
        os.setresuid(NOBODY, NOBODY, NOBODY)
    except OSError:
        # A user namespace without nobody mapped: the sealed limits still hold, though
        # only Jinja's sandbox keeps a root renderer from raising them.
        pass


class _Frames:
    def __init__(self, out: BinaryIO) -> None:
        self.out = out

    def send(self, head: Mapping[str, Any], body: bytes = b"") -> None:
        self.out.write(json.dumps(head).encode() + b"\n")
        self.out.write(body)
        self.out.flush()  # a frame sent stays sent, whatever ends the renderer next


def _render_all(
    templates: Templates, variables: Mapping[str, Any], bounds: Bounds, frames: _Frames
) -> None:
    env = _Sandbox(templates, bounds)
    left = bounds.render_size
    for out, (path, _) in sorted(templates.items()):
        frames.send({"start": path})
        result = _outcome(env, out, path, variables)
        if isinstance(result, bytes) and len(result) > left:
            result = Problem(path, None, bounds.output_over)
        if isinstance(result, Problem):
            frames.send({"error": _fields(result)})
            return
        left -= len(result)
        frames.send({"file": out, "size": len(result)}, result)
    frames.send({"done": True})


def _fields(problem: Problem) -> dict[str, Any]:
    return {"file": problem.file, "line": problem.line, "message": problem.message[:MESSAGE_MAX]}


def _outcome(env: _Sandbox, out: str, path: str, values: Mapping[str, Any]) -> bytes | Problem:
    """The rendered bytes, or the problem. Out of memory or of CPU time, the template is
    unwound by the time this returns: what it built is let go before the answer is sent."""
    try:
        return _render_one(env, out, path, values)
    except RenderError as err:
        return err.problems[0]
    except MemoryError:
        return Problem(path, None, env.bounds.memory_reached)
    except _CpuLimit:
        return Problem(path, None, env.bounds.cpu_reached)


class _Loader(jinja2.BaseLoader):
    """Templates by output-relative name (with .j2), from the overlaid layers only."""

    def __init__(self, templates: Templates) -> None:
        self.by_name = {out + TEMPLATE_SUFFIX: file for out, file in templates.items()}

    def get_source(self, environment: jinja2.Environment, template: str) -> tuple[str, str, None]:
        if template not in self.by_name:
            raise jinja2.TemplateNotFound(template)
        path, data = self.by_name[template]
        return _text(path, data), path, None


class _Sandbox(SandboxedEnvironment):
    """Jinja's sandbox (no attribute escapes such as ''.__class__), with the sizes it
    leaves open bounded by the limits: a reviewed template with a runaway loop or a
    huge repeat ends in a refusal that names it, before the renderer's limits do."""

    intercepted_binops = frozenset({"*", "**"})

    def __init__(self, templates: Templates, bounds: Bounds) -> None:
        super().__init__(
            loader=_Loader(templates),
            undefined=jinja2.StrictUndefined,
            keep_trailing_newline=True,
            trim_blocks=True,  # a {% block %} line leaves no blank line behind
            lstrip_blocks=True,
            autoescape=False,  # the output is dhcpd.conf, not HTML
        )
        self.bounds = bounds
        self.loop_left = bounds.template_loop
        self.globals.pop("lipsum")  # makes any amount of text; nothing a config needs
        self.globals["range"] = self._range

    def _range(self, *args: int) -> range:
        items = safe_range(*args)
        self.loop_left -= len(items)
        if self.loop_left < 0:
            limit = self.bounds.template_loop
            raise SecurityError(
                f"more than {limit} range() items in one render (limits.template_loop)"
            )
        return items

    def call_binop(self, context: Context, operator: str, left: Any, right: Any) -> Any:
        size = self.bounds.file_size
        if operator == "**" and _int_bits(left) * _int_or_zero(right) > 8 * size:
            raise SecurityError(f"{left} ** {right} is too large a number")
        if operator == "*":
            _check_repeat(left, right, size)
            _check_repeat(right, left, size)
        return super().call_binop(context, operator, left, right)

    def call(__self, __context: Context, __obj: Any, *args: Any, **kwargs: Any) -> Any:
        # str.ljust(10**10) and friends: no call needs a size beyond one file's limit.
        # range() has a budget of its own.
        sized = () if __obj == __self._range else (*args, *kwargs.values())
        for arg in sized:
            if isinstance(arg, int) and abs(arg) > __self.bounds.file_size:
                raise SecurityError(f"argument {arg} is over limits.file_size")
        return super().call(__context, __obj, *args, **kwargs)


def _int_bits(value: Any) -> int:
    return abs(value).bit_length() if isinstance(value, int) else 0


def _int_or_zero(value: Any) -> int:
    return value if isinstance(value, int) else 0


def _check_repeat(seq: Any, times: Any, limit: int) -> None:
    sized = isinstance(seq, str | bytes | list | tuple) and isinstance(times, int)
    if sized and len(seq) * times > limit:
        raise SecurityError(f"repeating {len(seq)} items {times} times is over limits.file_size")


def _text(path: str, data: bytes) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise RenderError(path, "template is not UTF-8 text") from err


def _render_one(env: _Sandbox, out: str, path: str, values: Mapping[str, Any]) -> bytes:
    try:
        return _bounded_render(env, env.get_template(out + TEMPLATE_SUFFIX), values).encode()
    except jinja2.TemplateSyntaxError as err:
        raise RenderError(err.filename or path, err.message or str(err), err.lineno) from err
    except (RenderError, MemoryError):
        raise
    except Exception as err:  # any template fault becomes the repo's error
        file, line = _template_frame(err.__traceback__, path)
        raise RenderError(file, f"{type(err).__name__}: {err}", line) from err


def _bounded_render(env: _Sandbox, template: jinja2.Template, values: Mapping[str, Any]) -> str:
    """The rendered text, refused as soon as it grows past the file size limit."""
    chunks: list[str] = []
    size = 0
    limit = env.bounds.file_size
    for chunk in template.generate(values):
        size += len(chunk)
        if size > limit:
            raise SecurityError(f"renders to more than limits.file_size ({limit})")
        chunks.append(chunk)
    return "".join(chunks)


def _template_frame(tb: TracebackType | None, default: str) -> tuple[str, int | None]:
    """The innermost traceback frame that is a template line (Jinja maps them)."""
    found: tuple[str, int | None] = (default, None)
    while tb is not None:
        filename = tb.tb_frame.f_code.co_filename
        if filename.endswith(TEMPLATE_SUFFIX):
            found = (filename, tb.tb_lineno)
        tb = tb.tb_next
    return found


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
