"""agent/servers/dhcpd/policy.py: statements that reach beyond DHCP need the node's consent.

`on commit { execute(...); }` passes `dhcpd -t` and runs a program as root on the
first lease; lease-file-name and pid-file-name make dhcpd write anywhere. Each is
refused as its own verdict, naming file and line, by the agent and by validate,
unless the node's own agent.toml (or validate --allow, in CI) allows it.
"""

from __future__ import annotations

import pytest

from agent.engine.reconcile import reconcile
from agent.errors import PolicyError
from agent.servers.dhcpd import policy
from lab.repo import ConfigRepo
from tests.conftest import NodeFactory
from tests.test_review import cli

TARGET = "/etc/dhcp"
ON_COMMIT = 'on commit {\n  execute("/bin/sh", "-c", "id > /tmp/pwned");\n}\n'


@pytest.fixture(autouse=True)
def _needs_dhcpd(dhcpd_binary: str) -> None:
    """The agent's and validate's paths run the real dhcpd -t: fail, never skip."""


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (ON_COMMIT, [("execute", 2)]),
        ('on release { EXECUTE ("/bin/true"); }', [("execute", 1)]),
        ('on expiry { x.execute("/bin/true"); }', [("execute", 1)]),  # dhcpd reads execute
        ('if execute("/bin/check") = 0 {\n  log("ok");\n}', [("execute", 1)]),
        ('lease-file-name "/etc/cron.d/x";', [("lease-file-name", 1)]),
        ('PID-FILE-NAME "/root/.ssh/authorized_keys";', [("pid-file-name", 1)]),
        ('dhcpv6-lease-file-name "/tmp/x";\ndhcpv6-pid-file-name "/tmp/y";',
         [("dhcpv6-lease-file-name", 1), ("dhcpv6-pid-file-name", 2)]),
        ('option domain-name "execute(";', []),  # a string, not a call
        ("# execute(\nddns-update-style none;", []),  # a comment
        ("option execute-me code 250 = text;", []),  # a name, not execute(
    ],
)  # fmt: skip
def test_what_reaches_beyond_dhcp(text: str, expected: list[tuple[str, int]]) -> None:
    found = policy.refusals({"dhcpd.conf": text.encode()}, "dhcpd.conf", TARGET)
    assert [(p.message.split()[1], p.line) for p in found] == expected
    assert all(p.file == f"{TARGET}/dhcpd.conf" and policy.is_policy(p) for p in found)


def test_included_files_are_read_and_files_dhcpd_never_reads_are_not() -> None:
    files = {
        "dhcpd.conf": b'include "/etc/dhcp/events.conf";\n',
        "events.conf": ON_COMMIT.encode(),
        "unused.conf": ON_COMMIT.encode(),  # in the tree, included by nothing
    }
    found = policy.refusals(files, "dhcpd.conf", TARGET)
    assert [(p.file, p.line) for p in found] == [(f"{TARGET}/events.conf", 2)]


def test_the_node_consents_by_name() -> None:
    text = (ON_COMMIT + 'lease-file-name "/var/lib/dhcp/x.leases";\n').encode()
    found = policy.refusals({"dhcpd.conf": text}, "dhcpd.conf", TARGET, ["execute"])
    assert [p.message.split()[1] for p in found] == ["lease-file-name"]


def test_the_agent_refuses_execute_naming_file_and_line(
    repo: ConfigRepo, make_node: NodeFactory
) -> None:
    node = make_node()
    assert reconcile(node).result == "deployed"
    live = (node.config.deploy.target / "hosts.conf").read_bytes()
    repo.write("dhcp/hosts.conf", repo.read("dhcp/hosts.conf") + "\n" + ON_COMMIT)
    repo.commit("A lease runs a shell")
    attempt = reconcile(node)
    assert attempt.result == "refused" and attempt.step == "validate", attempt.message
    assert attempt.message.startswith("refused by this node's policy")
    (problem,) = attempt.problems
    assert problem.source == "dhcp/hosts.conf" and problem.line is not None
    assert problem.message.startswith("policy: execute ") and 'allow = ["execute"]' in (
        problem.message
    )
    assert (node.config.deploy.target / "hosts.conf").read_bytes() == live


def test_a_node_that_allows_execute_deploys_it(repo: ConfigRepo, make_node: NodeFactory) -> None:
    repo.write("dhcp/hosts.conf", repo.read("dhcp/hosts.conf") + "\n" + ON_COMMIT)
    repo.commit("A lease runs a shell, which this node allows")
    node = make_node(policy={"allow": ["execute"]})
    assert reconcile(node).result == "deployed"


def test_validate_refuses_it_as_policy_and_allow_lets_it_through(repo: ConfigRepo) -> None:
    repo.write("dhcp/hosts.conf", repo.read("dhcp/hosts.conf") + "\n" + ON_COMMIT)
    repo.commit("A lease runs a shell")
    done = cli("validate", str(repo.work))
    assert done.returncode == 1, done.stdout
    assert "dhcp/hosts.conf:" in done.stdout and "error: [primary] policy: execute" in done.stdout
    allowed = cli("validate", str(repo.work), "--allow", "execute")
    assert allowed.returncode == 0, allowed.stdout


def test_a_policy_error_is_a_validate_error_refused_not_retried() -> None:
    assert issubclass(PolicyError, Exception)
    from agent.errors import ValidateError

    assert issubclass(PolicyError, ValidateError)


def test_an_unknown_grant_is_a_config_error_naming_the_key(make_node: NodeFactory) -> None:
    from agent.errors import ConfigError

    with pytest.raises(ConfigError, match=r"\[policy\] allow"):
        make_node(policy={"allow": ["include-anything"]})
