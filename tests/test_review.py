"""Pull-request review from the command line: validate, plan and init on real repos."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from lab.repo import ConfigRepo, git

EXE = str(Path(sys.executable).with_name("dhcp-gitops"))


@pytest.fixture(autouse=True)
def _needs_dhcpd(dhcpd_binary: str) -> None:
    """validate runs the real dhcpd -t: fail, never skip, without it."""


def cli(*args: str, user: int | None = None) -> subprocess.CompletedProcess[str]:
    prefix = ["setpriv", f"--reuid={user}", f"--regid={user}", "--clear-groups"] if user else []
    return subprocess.run([*prefix, EXE, *args], capture_output=True, text=True, timeout=120,
                          check=False)  # fmt: skip


def secondary_range(repo: ConfigRepo, old: str, new: str) -> None:
    """Give the secondary its own subnets file whose first range differs."""
    text = repo.read("dhcp/subnets.conf.j2")
    assert old in text
    repo.write("roles/secondary/subnets.conf.j2", text.replace(old, new, 1))


def test_the_template_validates_clean_for_both_roles(repo: ConfigRepo) -> None:
    done = cli("validate", str(repo.work))
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout == ""


def test_a_syntax_error_names_the_repo_file_and_line(repo: ConfigRepo) -> None:
    repo.replace("dhcp/hosts.conf", "fixed-address 192.0.2.10;", "fixed-address 192.0.2.10")
    done = cli("validate", str(repo.work))
    assert done.returncode == 1
    assert "dhcp/hosts.conf:6: error: [primary] semicolon expected." in done.stdout
    assert "dhcp/hosts.conf:6: error: [secondary] semicolon expected." in done.stdout


def test_pools_that_differ_between_the_sides_are_refused(repo: ConfigRepo) -> None:
    secondary_range(repo, "192.0.2.100 192.0.2.199", "192.0.2.100 192.0.2.198")
    done = cli("validate", str(repo.work))
    assert done.returncode == 1, done.stdout
    # On the primary's pool line, naming what the secondary has instead.
    assert re.search(r"^dhcp/subnets\.conf\.j2:\d+: error: \[primary\]", done.stdout, re.M)
    assert "192.0.2.100 - 192.0.2.198: make the pools identical" in done.stdout


def test_validate_works_without_root(repo: ConfigRepo) -> None:
    """A CI runner's user: dhcpd -t runs in a user + mount namespace."""
    with tempfile.TemporaryDirectory() as shared:  # pytest's own tmp folders are root's alone
        checkout = Path(shared) / "checkout"
        shutil.copytree(repo.work, checkout)
        Path(shared).chmod(0o755)
        assert cli("validate", str(checkout), user=65534).returncode == 0
        hosts = checkout / "dhcp" / "hosts.conf"
        hosts.write_text(hosts.read_text().replace("192.0.2.10;", "192.0.2.10"))
        done = cli("validate", str(checkout), user=65534)
    assert done.returncode == 1 and "dhcp/hosts.conf:6" in done.stdout, done.stderr


def test_github_and_gitlab_formats(repo: ConfigRepo) -> None:
    secondary_range(repo, "192.0.2.100 192.0.2.199", "192.0.2.100 192.0.2.198")
    github = cli("validate", str(repo.work), "--format", "github").stdout
    assert re.match(
        r"::error file=dhcp/subnets\.conf\.j2,line=\d+,title=dhcp-gitops primary::", github
    )
    report = json.loads(cli("validate", str(repo.work), "--format", "gitlab").stdout)
    assert report and report[0]["severity"] == "major"
    assert report[0]["location"]["path"].endswith("subnets.conf.j2")


def test_an_error_without_a_line_names_the_main_file_in_every_format(repo: ConfigRepo) -> None:
    """dhcpd -t's "Failover configuration sanity check failed" has no file or line: it is
    the main config's, with the cause dhcpd printed before it."""
    repo.replace("dhcp/subnets.conf.j2", '    failover peer "{{ pair.failover.name }}";\n', "")
    cause = "Failover configuration sanity check failed: ERROR: Failover peer"
    text = cli("validate", str(repo.work)).stdout
    assert f"dhcp/dhcpd.conf.j2: error: [primary] {cause}" in text, text
    github = cli("validate", str(repo.work), "--format", "github").stdout
    assert re.search(r"^::error file=dhcp/dhcpd\.conf\.j2,title=dhcp-gitops primary::"
                     + re.escape(cause), github, re.M), github  # fmt: skip
    report = json.loads(cli("validate", str(repo.work), "--format", "gitlab").stdout)
    sanity = [r for r in report if cause in r["description"]]
    assert sanity and {r["location"]["path"] for r in sanity} == {"dhcp/dhcpd.conf.j2"}, report


def test_a_fixed_address_inside_a_range_is_a_warning(repo: ConfigRepo) -> None:
    repo.replace("dhcp/hosts.conf", "fixed-address 192.0.2.10;", "fixed-address 192.0.2.150;")
    done = cli("validate", str(repo.work))
    assert done.returncode == 0  # warnings do not fail the check
    assert "dhcp/hosts.conf:3: warning: [primary, secondary] host printer-1" in done.stdout


def test_a_static_overlay_repo_without_pair_toml(repo: ConfigRepo) -> None:
    """The classic hand-kept pair: each role's failover file committed as is."""
    for role in ("primary", "secondary"):
        node = {"primary": ("primary;\n  mclt 1800;\n  split 128;", "192.0.2.1", "192.0.2.2"),
                "secondary": ("secondary;", "192.0.2.2", "192.0.2.1")}[role]  # fmt: skip
        repo.write(f"roles/{role}/dhcpd.failover",
                   f'failover peer "dhcp-failover" {{\n  {node[0]}\n  address {node[1]};\n'
                   f"  peer address {node[2]};\n}}\n")  # fmt: skip
    repo.remove("dhcp/dhcpd.failover.j2")
    templates = ["dhcp/dhcpd.conf.j2", "dhcp/subnets.conf.j2"]
    for rel in templates:
        text = repo.read(rel).replace("{{ target }}", "/etc/dhcp")
        text = text.replace("{{ pair.failover.name }}", "dhcp-failover")
        repo.write(rel.removesuffix(".j2"), text)
        repo.remove(rel)
    repo.remove("pair.toml")
    done = cli("validate", str(repo.work))
    assert done.returncode == 0, done.stdout + done.stderr
    repo.replace(
        "roles/secondary/dhcpd.failover", "peer address 192.0.2.1", "peer address 192.0.2.9"
    )
    done = cli("validate", str(repo.work))
    assert done.returncode == 1 and "192.0.2.9" in done.stdout


def test_a_missing_target_folder_is_explained(repo: ConfigRepo, tmp_path: Path) -> None:
    done = cli("validate", str(repo.work), "--target", str(tmp_path / "nowhere"))
    assert done.returncode == 1 and "does not exist here" in done.stdout


def plan(repo: ConfigRepo, base: str, head: str = "HEAD") -> subprocess.CompletedProcess[str]:
    return cli("plan", base, head, str(repo.work))


def test_plan_without_change_exits_0(repo: ConfigRepo) -> None:
    repo.write("README.md", "docs only\n")
    repo.commit("Docs")
    done = plan(repo, "HEAD~1")
    assert done.returncode == 0 and "No server's /etc/dhcp changes." in done.stdout


def test_plan_shows_the_rendered_diff_per_role(repo: ConfigRepo) -> None:
    new_host = "host printer-2 {\n  hardware ethernet 02:00:00:00:00:03;\n"
    repo.write("dhcp/hosts.conf", repo.read("dhcp/hosts.conf") + f"\n{new_host}"
               "  fixed-address 192.0.2.11;\n}\n")  # fmt: skip
    repo.commit("Add printer-2")
    done = plan(repo, "HEAD~1")
    assert done.returncode == 1
    assert done.stdout.count("+  fixed-address 192.0.2.11;") == 2  # primary and secondary
    assert "### primary (dhcp1)" in done.stdout and "### secondary (dhcp2)" in done.stdout
    assert "Warning" not in done.stdout


@pytest.mark.parametrize(
    ("file", "old", "new", "warning"),
    [
        ("pair.toml", 'name = "dhcp-failover"', 'name = "dhcp-fo2"', "recover-wait"),
        ("pair.toml", "mclt = 1800", "mclt = 600", "mclt"),
        ("pair.toml", "split = 128", "split = 200", "split"),
        ("pair.toml", 'address = "192.0.2.2"', 'address = "192.0.2.3"', "address"),
        ("dhcp/subnets.conf.j2", "192.0.2.100 192.0.2.199", "192.0.2.100 192.0.2.150",
         "192.0.2.151 - 192.0.2.199 leave the pools"),
    ],
)  # fmt: skip
def test_plan_warns_of_dangerous_changes(
    repo: ConfigRepo, file: str, old: str, new: str, warning: str
) -> None:
    repo.replace(file, old, new)
    repo.commit("Dangerous")
    done = plan(repo, "HEAD~1")
    assert done.returncode == 1
    warnings = [line for line in done.stdout.splitlines() if line.startswith("> **Warning:**")]
    assert any(warning in w for w in warnings), done.stdout


def test_plan_reads_the_main_file_named_by_config_file(repo: ConfigRepo) -> None:
    """A pair whose main config is not dhcpd.conf still gets the warnings of its pair."""
    repo.write("dhcp/main.conf.j2", repo.read("dhcp/dhcpd.conf.j2"))
    (repo.work / "dhcp/dhcpd.conf.j2").unlink()
    repo.commit("The main file is main.conf")
    repo.replace("pair.toml", 'name = "dhcp-failover"', 'name = "dhcp-fo2"')
    repo.commit("Rename the failover peer")
    done = cli("plan", "HEAD~1", "HEAD", str(repo.work), "--config-file", "main.conf")
    assert done.returncode == 1
    assert 'the failover peer "dhcp-failover" is renamed "dhcp-fo2"' in done.stdout, done.stdout


def test_plan_of_a_commit_that_does_not_render(repo: ConfigRepo) -> None:
    repo.replace("dhcp/dhcpd.failover.j2", "{{ pair.failover.mclt }}", "{{ pair.failover.nope }}")
    repo.commit("Broken template")
    done = plan(repo, "HEAD~1")
    assert done.returncode == 1 and "Does not render; the agent will refuse it" in done.stdout


def test_plan_of_an_unknown_revision_exits_2(repo: ConfigRepo) -> None:
    done = plan(repo, "no-such-branch")
    assert done.returncode == 2 and "no-such-branch" in done.stderr


def test_init_makes_a_repo_that_validates(tmp_path: Path) -> None:
    folder = tmp_path / "dhcp-config"
    done = cli("init", str(folder))
    assert done.returncode == 0 and "next:" in done.stdout
    assert git(folder, "log", "--oneline").count("\n") == 0  # one commit
    assert git(folder, "status", "--porcelain") == ""
    assert cli("validate", str(folder)).returncode == 0
    again = cli("init", str(folder))
    assert again.returncode == 2 and "not empty" in again.stderr
