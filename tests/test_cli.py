"""The console script as a user runs it: exit codes 0 / 1 / 2 and what it prints."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from agent import __version__
from lab.ports import free_port
from lab.repo import ConfigRepo, git
from tests.conftest import NodeFactory

EXE = str(Path(sys.executable).with_name("dhcp-gitops"))


@pytest.fixture(autouse=True)
def _needs_dhcpd(dhcpd_binary: str) -> None:
    """sync validates with the real dhcpd: fail, never skip, without it."""


def cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [EXE, *args], capture_output=True, text=True, timeout=120, cwd=cwd, check=False
    )


def test_version() -> None:
    done = cli("--version")
    assert done.returncode == 0 and done.stdout.strip() == f"dhcp-gitops {__version__}"


@pytest.mark.parametrize("command", ["sync", "status", "rollback", "demo"])
def test_every_command_has_help(command: str) -> None:
    done = cli(command, "--help")
    assert done.returncode == 0 and "usage: dhcp-gitops" in done.stdout


def test_usage_errors_exit_2() -> None:
    assert cli().returncode == 2
    assert cli("sync", "--bogus").returncode == 2


def test_sync_exit_codes_and_output(repo: ConfigRepo, make_node: NodeFactory) -> None:
    node = make_node()
    config = str(node.config.file)
    done = cli("sync", "--config", config)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.startswith("deployed ") and "validate" in done.stdout
    done = cli("sync", "--config", config)
    assert done.returncode == 0 and "current" in done.stdout
    repo.replace("dhcp/hosts.conf", "fixed-address 192.0.2.10;", "fixed-address 192.0.2.10")
    repo.commit("Typo")
    done = cli("sync", "--config", config)
    assert done.returncode == 1
    assert "refused" in done.stdout and "dhcp/hosts.conf:6: semicolon expected." in done.stdout
    assert "live: " in done.stdout and "still" in done.stdout


def test_status_human_and_json(repo: ConfigRepo, make_node: NodeFactory) -> None:
    node = make_node()
    config = str(node.config.file)
    done = cli("status", "--config", config)
    assert done.returncode == 0 and "nothing yet" in done.stdout
    cli("sync", "--config", config)
    human = cli("status", "--config", config).stdout
    assert "deployed   " in human and "matches the deployed tree" in human
    doc = json.loads(cli("status", "--config", config, "--json").stdout)
    assert doc["node"] == {"name": "dhcp1", "role": "primary"}
    assert doc["live"]["drift"] == "none"
    assert doc["deployed"]["subject"] == "Initial pair config"


def test_rollback_command(repo: ConfigRepo, make_node: NodeFactory) -> None:
    node = make_node()
    config = str(node.config.file)
    assert cli("rollback", "--config", config).returncode == 1  # nothing to roll back to
    cli("sync", "--config", config)
    first = json.loads(cli("status", "--config", config, "--json").stdout)["deployed"]["sha"]
    repo.replace("dhcp/hosts.conf", "192.0.2.10;", "192.0.2.12;")
    repo.commit("Move printer")
    cli("sync", "--config", config)
    done = cli("rollback", "--config", config)
    assert done.returncode == 0, done.stdout + done.stderr
    doc = json.loads(cli("status", "--config", config, "--json").stdout)
    assert doc["deployed"]["sha"] == first and doc["pin"]["sha"] == first
    assert "pinned" in cli("status", "--config", config).stdout


def test_config_errors_exit_2_and_name_the_key(tmp_path: Path) -> None:
    path = tmp_path / "agent.toml"
    path.write_text('[node]\nname = "a"\nrole = "primary"\ncolour = "blue"\n')
    done = cli("sync", "--config", str(path))
    assert done.returncode == 2
    assert str(path) in done.stderr and "[node] colour: unknown key" in done.stderr


def test_a_one_shot_sync_refuses_supervise_mode(repo: ConfigRepo, make_node: NodeFactory) -> None:
    node = make_node(dhcpd={"restart": "supervise"})
    done = cli("sync", "--config", str(node.config.file))
    assert done.returncode == 2 and "supervise" in done.stderr


def test_demo_deploys_both_roles_and_refuses_the_typo(tmp_path: Path) -> None:
    done = cli("demo", "--dir", str(tmp_path / "demo"))
    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout
    assert out.count("deployed ") >= 4 and out.count("refused ") == 2
    assert "-  primary;" in out and "+  secondary;" in out
    for role in ("primary", "secondary"):
        assert (tmp_path / "demo" / role / "etc" / "dhcp" / "hosts.conf").is_file()
    again = cli("demo", "--dir", str(tmp_path / "demo"))  # a demo folder is started over
    assert again.returncode == 0


def test_demo_never_overwrites_a_folder_it_did_not_make(tmp_path: Path) -> None:
    (tmp_path / "mine.txt").write_text("keep me")
    done = cli("demo", "--dir", str(tmp_path))
    assert done.returncode == 2 and "not a demo folder" in done.stderr
    assert (tmp_path / "mine.txt").read_text() == "keep me"


def test_demo_says_why_when_the_first_deploy_fails(tmp_path: Path) -> None:
    """A dhcpd that refuses everything: the demo stops with the errors, no traceback."""
    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "bwrap").write_text("#!/bin/sh\necho 'bwrap: not permitted here' >&2\nexit 1\n")
    (fake / "bwrap").chmod(0o755)
    env = {**os.environ, "PATH": f"{fake}:{os.environ['PATH']}"}
    done = subprocess.run(
        [EXE, "demo", "--dir", str(tmp_path / "demo")],
        capture_output=True, text=True, timeout=120, env=env, check=False,
    )  # fmt: skip
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert "bwrap: not permitted here" in done.stdout
    assert "did not deploy" in done.stdout


def test_demo_serve_runs_agents_that_pick_up_a_push(tmp_path: Path) -> None:
    port = free_port()
    demo = tmp_path / "demo"
    proc = subprocess.Popen(
        [EXE, "demo", "--serve", "--dir", str(demo), "--port", str(port)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        for line in proc.stdout:  # the story, then the agents' instructions
            if "Ctrl-C stops them" in line:
                break
        repo = demo / "config"
        (repo / "dhcp" / "hosts.conf").write_text(
            (repo / "dhcp" / "hosts.conf").read_text() + "\n# a change of mine\n"
        )
        git(repo, "commit", "-qam", "My change")
        git(repo, "push", "-q")
        head = git(repo, "rev-parse", "HEAD")
        for url in (f"http://127.0.0.1:{port}", f"http://127.0.0.1:{port + 1}"):
            wait_for_deployed(url, head)
    finally:
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(60)
    assert code == 0


def wait_for_deployed(url: str, sha: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            doc = httpx.get(f"{url}/status", timeout=5).json()
            if doc["deployed"] and doc["deployed"]["sha"] == sha:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    pytest.fail(f"{url} did not deploy {sha} within {timeout} s")
