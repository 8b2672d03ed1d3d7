"""`dhcp-gitops demo`: the example pair deployed for real into a local folder.

It makes a config repo from repo-template and a bare "remote", writes an agent
config for a primary and a secondary, deploys both with the real `dhcpd -t`,
shows a bad commit being refused, and leaves everything in place to play with.
dhcpd is never started: restart = "none", so nothing answers DHCP.
"""

from __future__ import annotations

import difflib
import io
import secrets
import shutil
import signal
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import TextIO

import git

from agent import config
from agent.cli import print_attempt, print_status
from agent.engine import reconcile, status
from agent.errors import UsageError
from agent.review.template import template_dir

MARKER = ".dhcp-gitops-demo"
AUTHOR = git.Actor("Demo User", "demo@example.net")
NODES = (("dhcp1", "primary"), ("dhcp2", "secondary"))
POLL = 2  # seconds: the demo agents notice a push quickly without a webhook


def run(folder: Path, out: TextIO, serve: bool = False, port: int = 8647) -> int:
    """The story of a deploy, a refusal and a fix; then, with serve, the live agents."""
    folder = folder.resolve()
    _fresh(folder)
    work, remote = _make_repo(folder)
    for name in ("webhook-secret", "token"):
        (folder / name).write_text(secrets.token_hex(16) + "\n")
    nodes = [_node(folder, remote, name, role, port + i) for i, (name, role) in enumerate(NODES)]

    _say(out, f"1. config repo {work} (remote {remote}), deployed to both servers:")
    failed = sum(_sync(n, out) for n in nodes)
    if failed:
        _say(out, "the example pair did not deploy: see the errors above")
        return 1
    _show_failover_diff(nodes, out)

    _say(out, "2. a commit with a typo in hosts.conf: both servers refuse it, nothing changes")
    hosts = work / "dhcp" / "hosts.conf"
    good = hosts.read_text()
    _commit(work, hosts, good.replace("fixed-address 192.0.2.10;", "fixed-address 192.0.2.10"))
    refused = sum(_sync(n, out) for n in nodes)

    _say(out, "3. the fix, pushed: both servers deploy it")
    _commit(work, hosts, good + "\nhost printer-2 {\n  hardware ethernet 02:00:00:00:00:03;\n"
            "  fixed-address 192.0.2.11;\n}\n")  # fmt: skip
    failed += sum(_sync(n, out) for n in nodes)

    _say(out, "what is live now:")
    for n in nodes:
        print(f"  dhcp-gitops status --config {n.config.file}", file=out)
        _status(n, out)
    _say(out, "try it yourself:")
    print(f"  cd {work} && $EDITOR dhcp/hosts.conf && git commit -am 'my change' && git push",
          file=out)  # fmt: skip
    print(f"  dhcp-gitops sync --config {nodes[0].config.file}", file=out)
    ok = failed == 0 and refused == len(nodes)
    if serve and ok:
        return _serve(folder, work, nodes, out)
    return 0 if ok else 1


def _serve(folder: Path, work: Path, nodes: list[reconcile.Node], out: TextIO) -> int:
    """Run `dhcp-gitops agent` for both nodes on loopback until Ctrl-C or SIGTERM."""
    exe = shutil.which("dhcp-gitops") or str(Path(sys.executable).with_name("dhcp-gitops"))
    agents = [subprocess.Popen([exe, "agent", "--config", str(n.config.file)]) for n in nodes]
    signal.signal(signal.SIGTERM, _interrupt)  # a stop request ends the demo like Ctrl-C
    primary = f"http://{nodes[0].config.http.listen}"
    _say(out, "4. the agents now run, polling the repo every 2 s:")
    for n in nodes:
        print(f"  {n.config.node.name}: curl -s http://{n.config.http.listen}/status", file=out)
    print(f"  cd {work} && $EDITOR dhcp/hosts.conf && git commit -qam 'my change' && git push -q",
          file=out)  # fmt: skip
    print(f"  dhcp-gitops status --url {primary}     # watch it go live", file=out)
    print(f'  curl -X POST -H "Authorization: Bearer $(cat {folder}/token)" {primary}/sync',
          file=out)  # fmt: skip
    print("  Ctrl-C stops them.", file=out, flush=True)
    try:
        for agent in agents:
            agent.wait()
    except KeyboardInterrupt:
        pass
    finally:
        for agent in agents:
            agent.terminate()
        codes = [agent.wait(30) for agent in agents]
    return 0 if all(code in (0, -signal.SIGTERM) for code in codes) else 1


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def _fresh(folder: Path) -> None:
    """Start over in a folder the demo made before; refuse to touch any other."""
    if folder.exists() and any(folder.iterdir()):
        if not (folder / MARKER).exists():
            raise UsageError(f"{folder} exists and is not a demo folder: choose another --dir")
        shutil.rmtree(folder)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / MARKER).touch()


def _make_repo(folder: Path) -> tuple[Path, Path]:
    work, remote = folder / "config", folder / "config.git"
    shutil.copytree(template_dir(), work)
    repo = git.Repo.init(work, initial_branch="main")
    repo.index.add([p.relative_to(work).as_posix() for p in work.rglob("*") if p.is_file()
                    and ".git" not in p.relative_to(work).parts])  # fmt: skip
    repo.index.commit("Initial pair config from repo-template", author=AUTHOR, committer=AUTHOR)
    git.Repo.init(remote, bare=True, initial_branch="main")
    repo.create_remote("origin", str(remote)).push("main:main").raise_if_error()
    repo.git.branch("--set-upstream-to=origin/main", "main")
    return work, remote


def _commit(work: Path, file: Path, text: str) -> None:
    file.write_text(text)
    repo = git.Repo(work)
    repo.index.add([file.relative_to(work).as_posix()])
    subject = "Add printer-2" if "printer-2" in text else "Edit hosts.conf"
    repo.index.commit(subject, author=AUTHOR, committer=AUTHOR)
    repo.remote("origin").push("main:main").raise_if_error()


def _node(folder: Path, remote: Path, name: str, role: str, port: int) -> reconcile.Node:
    home = folder / role
    (home / "etc").mkdir(parents=True)
    toml = home / "agent.toml"
    toml.write_text(
        f'[node]\nname = "{name}"\nrole = "{role}"\n\n'
        f'[source]\nurl = "file://{remote}"\nbranch = "main"\npoll_interval = {POLL}\n\n'
        f'[deploy]\ntarget = "etc/dhcp"\nstate_dir = "state"\n\n'
        f'[dhcpd]\nrestart = "none"  # the demo never starts a DHCP server\n'
        f'lease_file = "dhcpd.leases"\n\n'
        f'[http]\nlisten = "127.0.0.1:{port}"\nwebhook_secret_file = "../webhook-secret"\n'
        f'token_file = "../token"\n'
    )
    return reconcile.Node.from_config(config.load(toml))


def _sync(node: reconcile.Node, out: TextIO) -> int:
    print(f"  {node.config.node.name} ({node.config.node.role}): ", end="", file=out)
    attempt = reconcile.reconcile(node)
    return print_attempt(attempt, node, out)


def _show_failover_diff(nodes: list[reconcile.Node], out: TextIO) -> None:
    a, b = (n.config.deploy.target / "dhcpd.failover" for n in nodes)
    print("  the failover declarations differ by role (diff primary secondary):", file=out)
    diff = difflib.unified_diff(
        a.read_text().splitlines(), b.read_text().splitlines(), str(a), str(b), lineterm=""
    )
    for line in diff:
        print(f"    {line}", file=out)


def _status(node: reconcile.Node, out: TextIO) -> None:
    text = io.StringIO()
    print_status(status.report(node), text)
    print(textwrap.indent(text.getvalue(), "    "), end="", file=out)


def _say(out: TextIO, text: str) -> None:
    print(f"\n{text}", file=out)
