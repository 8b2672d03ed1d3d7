"""repo-template's CI definitions: they install only a pinned dhcp-gitops, never a name.

A bare `pip install dhcp-gitops` would run, as root in every pull request of every
user, whatever a public index serves under that name. Each definition's pin check
is run here with bash, as the forge's runner would run it, on every kind of value.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
import yaml

TEMPLATE = Path(__file__).resolve().parent.parent / "repo-template"
DEFINITIONS = (".github/workflows/dhcp.yml", ".forgejo/workflows/dhcp.yml", ".gitlab-ci.yml")
WHEEL = "https://ci.example.net/dist/dhcp_gitops-0.1.0-py3-none-any.whl"
SHA256 = "0" * 63 + "a"
COMMIT = "0123456789abcdef0123456789abcdef01234567"


def scripts(definition: str) -> list[str]:
    """Every shell script of the definition: steps' `run`, GitLab's script lists."""
    found: list[str] = []

    def walk(node: object) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                if key == "run" and isinstance(value, str):
                    found.append(value)
                elif key in ("script", "before_script") and isinstance(value, list):
                    found.extend(v for v in value if isinstance(v, str))
                else:
                    walk(value)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    walk(yaml.safe_load((TEMPLATE / definition).read_text()))
    return found


def pin_checks(definition: str) -> list[str]:
    return [s for s in scripts(definition) if "# pin check" in s]


def run_check(script: str, value: str | None) -> subprocess.CompletedProcess[str]:
    env = {"PATH": "/usr/bin:/bin"} | ({} if value is None else {"DHCP_GITOPS_PIP": value})
    return subprocess.run(["bash", "-ec", script], env=env, capture_output=True, text=True,
                          timeout=30, check=False)  # fmt: skip


@pytest.mark.parametrize("definition", DEFINITIONS)
def test_every_pip_install_is_behind_the_pin_check(definition: str) -> None:
    installs = [s for s in scripts(definition) if re.search(r"\bpip\"? install\b", s)]
    assert installs, "no pip install found"
    for script in installs:
        assert '"$DHCP_GITOPS_PIP"' in script and ":-" not in script.split("pip")[-1]
    # One check per job that installs, before the install (GitLab: one shared before_script).
    assert len(pin_checks(definition)) >= 1


@pytest.mark.parametrize("definition", DEFINITIONS)
@pytest.mark.parametrize(
    "value",
    [None, "", "dhcp-gitops", "dhcp-gitops==0.1.0", WHEEL, f"{WHEEL}#md5={SHA256[:32]}",
     f"{WHEEL}#sha256={SHA256[:40]}", "git+https://forge.example.net/o/dhcp-gitops.git@v0.1.0",
     f"git+https://token@forge.example.net/o/dhcp-gitops.git@{COMMIT}",
     f"http://ci.example.net/x.whl#sha256={SHA256}"],
)  # fmt: skip
def test_an_unpinned_value_stops_the_job_naming_the_variable(
    definition: str, value: str | None
) -> None:
    for script in pin_checks(definition):
        done = run_check(script, value)
        assert done.returncode == 1, done.stdout
        assert "DHCP_GITOPS_PIP" in done.stderr
        if value and "token" in value:
            assert "token" not in done.stdout + done.stderr  # a refused value is never echoed


@pytest.mark.parametrize("definition", DEFINITIONS)
@pytest.mark.parametrize(
    "value",
    [f"{WHEEL}#sha256={SHA256}", f"git+https://forge.example.net/o/dhcp-gitops.git@{COMMIT}"],
)
def test_a_pinned_value_goes_ahead(definition: str, value: str) -> None:
    for script in pin_checks(definition):
        done = run_check(script, value)
        assert done.returncode == 0, done.stderr


def test_the_three_definitions_share_one_check() -> None:
    bodies = {d: {_check_lines(s) for s in pin_checks(d)} for d in DEFINITIONS}
    assert len({b for found in bodies.values() for b in found}) == 1, bodies


def _check_lines(script: str) -> str:
    start = script.index("# pin check")
    return script[start : script.index("# end pin check")]
