"""agent.engine.renderer: templates render in a child process under [limits].

A template bomb (a string doubled with `~` or `+`, a `join` of a huge list, a
macro that recurses, a loop over a string that never ends) is refused naming the
template and the limit it hit; the agent's own memory does not grow, the process
tree stays under 512 MiB, the live tree is unchanged. Real git commits, the real
renderer process, the real `dhcp-gitops sync` in a process of its own.
"""

from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from agent import tree
from agent.config import Limits
from agent.engine import forkserver, render, renderer
from agent.engine.reconcile import Node, reconcile
from agent.errors import RenderError
from agent.source.snapshot import RepoFile
from lab.repo import ConfigRepo
from tests.conftest import NodeFactory

MiB = 1024 * 1024
BOMB = "dhcp/bomb.conf.j2"
CPU = 2  # render_cpu of the CPU bombs' node: the refusal comes within it, not at 10 s

MEMORY_BOMBS = {
    # No range(), no `*`: what the sandbox bounds is not needed to grow without bound.
    "concatenation by set": "{% set s = 'x' %}\n" + "{% set s = s ~ s %}\n" * 40 + "{{ s }}\n",
    "concatenation in a loop over a string": (
        "{% set ns = namespace(s='x') %}{% for c in 'abcdefghijklmnopqrstuvwxyzabcdefghijklmn' %}"
        "{% set ns.s = ns.s + ns.s %}{% endfor %}{{ ns.s }}\n"
    ),
    "join": "{% set s = 'x' * 60000000 %}{{ ([s] * 12)|join }}\n",
    "macro recursion": (
        "{% macro grow(s, n) %}{% if n %}{{ grow(s ~ s, n - 1) }}{% else %}{{ s }}{% endif %}"
        "{% endmacro %}{{ grow('x', 40) }}\n"
    ),
}
CPU_BOMBS = {
    "a loop over a string": (
        "{% for a in 'x' * 5000 %}{% for b in 'x' * 5000 %}{% for c in 'x' * 5000 %}"
        "{% endfor %}{% endfor %}{% endfor %}\n"
    ),
    "a huge power": "{{ 3 ** 200000000 }}\n",  # inside one C call: SIGXCPU waits for it
}

# The real CLI entry point (the console script's), then its own peak RSS and that of
# its largest child (the renderer, git, dhcpd -t), in KiB. Its own from VmHWM: the
# RUSAGE_SELF figure keeps the high-water mark of the parent it was forked from (pytest).
# A renderer forked by the fork server is not its child: the server reports its peak.
PEAKS = """
import json, re, resource, sys
from pathlib import Path
from agent.engine import forkserver
from webhook.cli import main
code = main(sys.argv[1:])
hwm = re.search(r"VmHWM:\\s+(\\d+) kB", Path("/proc/self/status").read_text())
children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
peaks = {"RUSAGE_SELF": int(hwm.group(1)),
         "RUSAGE_CHILDREN": max(children, forkserver.shared().peak_kib)}
print("PEAKS " + json.dumps(peaks), file=sys.stderr)
sys.exit(code)
"""


@pytest.fixture(autouse=True)
def _needs_dhcpd(dhcpd_binary: str) -> None:
    """The good commit before each bomb is validated by the real dhcpd."""


def live_tree(node: Node) -> dict[str, bytes]:
    return {rel: path.read_bytes() for rel, path in tree.files(node.config.deploy.target)}


def sync(config: Path) -> tuple[subprocess.CompletedProcess[str], dict[str, int]]:
    """`dhcp-gitops sync` in a process of its own; its output and peak RSS (KiB)."""
    done = subprocess.run(
        [sys.executable, "-c", PEAKS, "sync", "--config", str(config)],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    peaks = [line for line in done.stderr.splitlines() if line.startswith("PEAKS ")]
    assert peaks, done.stderr
    return done, json.loads(peaks[-1].removeprefix("PEAKS "))


def deployed_node(make_node: NodeFactory, **limits: int) -> tuple[Node, Path]:
    node = make_node(limits=limits)
    assert reconcile(node).result == "deployed"
    return node, node.config.deploy.state_dir.parent / "agent.toml"


def assert_refused_by_the_renderer(
    repo: ConfigRepo, node: Node, config: Path, text: str, why: str, within: float
) -> dict[str, int]:
    before = live_tree(node)
    repo.write(BOMB, text)
    repo.commit("A template bomb")
    done, peaks = sync(config)
    assert done.returncode == 1, done.stdout + done.stderr
    assert f"at step render: {BOMB}{why}" in done.stdout, done.stdout
    assert "live: " in done.stdout and "still" in done.stdout
    assert live_tree(node) == before
    assert not node.workspace.stage.exists()
    last = node.store.load().last_attempt
    assert last is not None and last.result == "refused"
    assert last.timings["render"] < within
    assert peaks["RUSAGE_SELF"] < 128 * 1024  # the agent: what it needs without templates
    assert peaks["RUSAGE_CHILDREN"] < 512 * 1024  # the renderer, git, dhcpd -t
    return peaks


@pytest.mark.parametrize("text", MEMORY_BOMBS.values(), ids=MEMORY_BOMBS.keys())
def test_memory_bombs_are_refused_naming_the_template_and_the_limit(
    repo: ConfigRepo, make_node: NodeFactory, text: str
) -> None:
    node, config = deployed_node(make_node)  # the default limits: 512 MiB, 10 s
    why = ": memory limit (512 MiB) reached"
    assert_refused_by_the_renderer(repo, node, config, text, why, within=10)


@pytest.mark.parametrize("text", CPU_BOMBS.values(), ids=CPU_BOMBS.keys())
def test_cpu_bombs_are_refused_naming_the_template_and_the_limit(
    repo: ConfigRepo, make_node: NodeFactory, text: str
) -> None:
    node, config = deployed_node(make_node, render_cpu=CPU)
    why = f": CPU limit ({CPU} s) reached"
    assert_refused_by_the_renderer(repo, node, config, text, why, within=2 * CPU + 2)


def test_deep_recursion_is_refused_naming_the_line(
    repo: ConfigRepo, make_node: NodeFactory
) -> None:
    node, config = deployed_node(make_node)
    text = "{% macro down(n) %}{{ down(n + 1) }}{% endmacro %}{{ down(0) }}\n"
    why = ":1: RecursionError: maximum recursion depth exceeded"
    assert_refused_by_the_renderer(repo, node, config, text, why, within=10)


# --- the renderer's other ends ----------------------------------------------------------


def templates(**texts: str) -> list[tuple[str, list[RepoFile]]]:
    return [("dhcp", [RepoFile(f"dhcp/{name}.j2", t.encode()) for name, t in texts.items()])]


def test_all_templates_of_a_render_are_bounded_together() -> None:
    limits = Limits(file_size=64 * 1024, render_size=100 * 1024)
    text = "{% for i in range(1000) %}" + "x" * 59 + "\n{% endfor %}"
    with pytest.raises(RenderError) as raised:
        render.render(templates(a=text, b=text), {}, limits)
    assert raised.value.message == (
        "dhcp/b.j2: output larger than 102400 bytes in all (limits.render_size)"
    )


def test_a_renderer_killed_by_a_signal_is_a_refusal_naming_the_template() -> None:
    spin = CPU_BOMBS["a loop over a string"]
    raised: list[RenderError] = []

    def run() -> None:
        try:
            render.render(templates(spin=spin), {}, Limits(render_cpu=60))
        except RenderError as err:
            raised.append(err)

    thread = threading.Thread(target=run)
    thread.start()
    os.kill(busy_renderer(), signal.SIGSEGV)
    thread.join(30)
    assert [e.message for e in raised] == ["dhcp/spin.j2: the renderer was killed by SIGSEGV"]


def busy_renderer() -> int:
    """This process's renderer, once it has used 0.3 s of CPU (it is in the template)."""
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        for pid in (int(p.name) for p in Path("/proc").iterdir() if p.name.isdigit()):
            if _cpu_ticks_of_my_renderer(pid) > 30:
                return pid
        time.sleep(0.05)
    raise AssertionError("no renderer started")


def _cpu_ticks_of_my_renderer(pid: int) -> int:
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0
    # Spawned, it is our child; forked by the fork server, our grandchild.
    modules = (renderer.MODULE.encode(), forkserver.MODULE.encode())
    if not any(m in cmdline for m in modules) or os.getpid() not in _ancestors(int(fields[1])):
        return 0
    if pid == forkserver.shared()._pid:
        return 0  # the fork server itself: its CPU is a whole session's forks
    return int(fields[11]) + int(fields[12])  # utime + stime


def _ancestors(pid: int) -> list[int]:
    """pid and its parent (the renderer's parent, and the fork server's)."""
    try:
        parent = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
    except OSError:
        return [pid]
    return [pid, parent]


SEALED = """
import json, os, resource, socket
from agent.engine import renderer
renderer.seal()
def outcome(act):
    try:
        act()
    except OSError as err:
        return os.strerror(err.errno)
    except ValueError:
        return "refused"
    return "allowed"
print(json.dumps({
    "open": outcome(lambda: open("/etc/hostname").close()),
    "socket": outcome(lambda: socket.socket().close()),
    "pipe": outcome(os.pipe),
    "fork": outcome(lambda: os.fork() or os._exit(0)),
    "raise": outcome(lambda: resource.setrlimit(resource.RLIMIT_NOFILE, (1024, 1024))),
    "uid": os.geteuid(),
}))
"""


def test_a_sealed_renderer_can_open_nothing() -> None:
    """What a template that escaped Jinja's sandbox would meet: the kernel's refusals."""
    done = subprocess.run(
        [sys.executable, "-c", SEALED], capture_output=True, text=True, timeout=30, check=True
    )
    found = json.loads(done.stdout)
    too_many = os.strerror(errno.EMFILE)
    assert (found["open"], found["socket"], found["pipe"]) == (too_many,) * 3
    assert found["fork"] == os.strerror(errno.EAGAIN)  # RLIMIT_NPROC 0
    assert found["raise"] == "refused"
    assert found["uid"] == (renderer.NOBODY if os.geteuid() == 0 else os.geteuid())


def test_what_templates_import_lazily_works_in_the_sealed_renderer() -> None:
    text = (
        "{{ 'a b c d'|wordwrap(3) }} {{ {'a': 1}|pprint }} {{ '<b>x</b>'|striptags }} "
        "{{ '\\t\\N{LATIN SMALL LETTER E WITH ACUTE}' }} {{ {'a': [1]}|tojson }}\n"
    )
    out = render.render(templates(f=text), {}).files["f"]
    assert out == "a b\nc d {'a': 1} x \t\u00e9 {\"a\": [1]}\n".encode()


def test_pair_toml_dates_reach_the_renderer() -> None:
    pair = RepoFile("pair.toml", b"[primary]\nsince = 2024-05-01\n")
    out = render.render(
        templates(f="{{ node.since.year }}"), render.variables("n", "primary", "/t", pair)
    )
    assert out.files["f"] == b"2024"


# --- answers and deaths, as the agent reads them ----------------------------------------

BOUNDS = renderer.Bounds(memory=512 * MiB, cpu=2, file_size=MiB, render_size=MiB, template_loop=9)
HANDED = {"a": ("dhcp/a.j2", b""), "b": ("dhcp/b.j2", b"")}
STARTED = b'{"start": "dhcp/b.j2"}\n'
WHOLE = b'{"file": "a", "size": 0}\n{"file": "b", "size": 0}\n{"done": true}\n'
KILLED, EXIT_1 = signal.SIGKILL.value, 1 << 8  # wait statuses


@pytest.mark.parametrize(
    ("data", "death", "message"),
    [
        (STARTED, render.Death(KILLED, 2.9), "dhcp/b.j2: CPU limit (2 s) reached"),
        (STARTED, render.Death(KILLED, 0.1), "dhcp/b.j2: the renderer was killed by SIGKILL"),
        (
            b"",
            render.Death(KILLED, 0.1, timed_out=True),
            "dhcp/a.j2, dhcp/b.j2: no answer within 34 s; the renderer killed",
        ),
        (
            b"",
            render.Death(EXIT_1, 0.1, stderr="Traceback\nImportError: jinja2\n"),
            "dhcp/a.j2, dhcp/b.j2: the renderer exited with 1, no complete answer: "
            "ImportError: jinja2",
        ),
        (
            STARTED + b'{"file": "b", "size": 99}\nxx',
            render.Death(0, 0.1),
            "dhcp/b.j2: the renderer exited with 0, a garbled answer (a file frame cut short)",
        ),
        (b"not json\n", render.Death(0, 0.1), "exited with 0, a garbled answer (Expecting"),
        (
            b'{"file": "../../etc/x", "size": 1}\nx{"done": true}\n',
            render.Death(0, 0.1),
            "an answer with other files than the templates handed over",
        ),
        (None, render.Death(0, 0.1), "an answer over the size limit"),
        (
            b"",
            render.Death(EXIT_1, 0.1, stderr="Traceback\nMemoryError\n"),
            "dhcp/a.j2, dhcp/b.j2: memory limit (512 MiB) reached",
        ),
        (
            WHOLE,
            render.Death(EXIT_1, 0.1, stderr="x"),
            "dhcp/a.j2, dhcp/b.j2: the renderer exited with 1: x",
        ),
    ],
)
def test_a_death_or_a_garbled_answer_is_a_refusal(
    data: bytes | None, death: render.Death, message: str
) -> None:
    with pytest.raises(RenderError) as raised:
        render.verdict(render.parse(data), death, HANDED, BOUNDS)
    assert message in raised.value.message


def test_a_whole_answer_is_the_rendered_files() -> None:
    data = b'{"start": "dhcp/a.j2"}\n{"file": "a", "size": 3}\none{"file": "b", "size": 0}\n'
    answer = render.parse(data + b'{"done": true}\n')
    assert render.verdict(answer, render.Death(0, 0.1), HANDED, BOUNDS) == {
        "a": b"one",
        "b": b"",
    }


# --- the fork server: one warm process forks every renderer ---------------------------


def test_renders_are_forked_by_one_warm_server() -> None:
    """Two renders, one fork server: the renderers are its children, not ours."""
    first = render.render(templates(a="{{ 1 + 1 }}"), {}, Limits())
    server = forkserver.shared()._pid
    second = render.render(templates(a="{{ 2 + 2 }}"), {}, Limits())
    assert first.files == {"a": b"2"} and second.files == {"a": b"4"}
    assert server is not None and forkserver.shared()._pid == server
    assert Path(f"/proc/{server}").exists()


def test_a_fork_server_that_died_is_replaced_and_no_render_is_lost() -> None:
    """Killed between renders, the server is missed once (that render spawns its own
    renderer), and the next render starts a new one."""
    render.render(templates(a="x"), {}, Limits())
    dead = forkserver.shared()._pid
    assert dead is not None
    os.kill(dead, signal.SIGKILL)
    assert render.render(templates(a="{{ 'still' }}"), {}, Limits()).files == {"a": b"still"}
    assert render.render(templates(a="{{ 'again' }}"), {}, Limits()).files == {"a": b"again"}
    assert forkserver.shared()._pid not in (None, dead)
