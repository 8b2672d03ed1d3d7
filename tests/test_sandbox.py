"""agent.servers.dhcpd.sandbox: dhcpd's errors parsed, includes confined, and the real dhcpd -t
reading exactly the staged bytes at their live paths, in a sandbox (real bwrap) where nothing
else of the host exists."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

import pytest

from agent import config, process, tree
from agent.config import Dhcpd
from agent.engine.reconcile import reconcile
from agent.errors import ConfigError, SandboxError, ValidateError
from agent.servers.dhcpd.sandbox import (
    includes,
    outside_includes,
    parse_errors,
    run_dhcpd_t,
    validate,
)
from agent.servers.sandbox import sandbox_argv
from lab.repo import ConfigRepo
from tests.conftest import NodeFactory

EXE = str(Path(sys.executable).with_name("dhcp-gitops"))

DHCPD_OUTPUT = """\
Internet Systems Consortium DHCP Server 4.4.3-P1
Copyright 2004-2022 Internet Systems Consortium.
All rights reserved.
For info, please visit https://www.isc.org/software/dhcp/
/etc/dhcp/hosts.conf line 3: semicolon expected.
  fixed-address 192.0.2.10
  ^
/etc/dhcp/dhcpd.conf line 9: /etc/dhcp/hosts.conf: bad parse.
include "/etc/dhcp/hosts.conf"
         ^
Configuration file errors encountered -- exiting

If you think you have received this message due to a bug rather
exiting.
"""


def test_located_errors_keep_file_line_message_and_caret() -> None:
    first, second = parse_errors(DHCPD_OUTPUT)
    assert (first.file, first.line, first.message) == (
        "/etc/dhcp/hosts.conf", 3, "semicolon expected."
    )  # fmt: skip
    assert first.context == ("  fixed-address 192.0.2.10", "  ^")
    assert second.line == 9 and second.message.endswith("bad parse.")


def test_unlocated_errors_are_kept() -> None:
    out = "Internet Systems Consortium\nCan't open /etc/dhcp/x.conf: No such file or directory\n"
    (problem,) = parse_errors(out)
    assert problem.file == "/etc/dhcp/x.conf" and problem.line is None
    assert "Can't open" in problem.message


# A failover peer no pool refers to: dhcpd -t prints the cause, then a line without a
# file or line number ("Failover configuration sanity check failed").
NO_REFERRING_POOLS = """\
failover peer "dhcp-failover" {
  primary;
  address 192.0.2.1;
  peer address 192.0.2.2;
  mclt 1800;
  split 128;
}
subnet 192.0.2.0 netmask 255.255.255.0 {
  range 192.0.2.100 192.0.2.199;
}
"""


def test_an_error_without_a_line_keeps_the_main_file_and_its_causes(
    tmp_path: Path, dhcpd_binary: str
) -> None:
    stage, target = staged(tmp_path, {"dhcpd.conf": NO_REFERRING_POOLS})
    (problem,) = run_dhcpd_t(stage, target, Dhcpd(binary=dhcpd_binary))
    assert (problem.file, problem.line) == (str(target / "dhcpd.conf"), None), problem
    assert problem.message.startswith(
        "Failover configuration sanity check failed: ERROR: Failover peer, dhcp-failover, "
        "has no referring pools."
    ), problem.message
    assert any("has no referring pools" in line for line in problem.context), problem.context
    assert not any(line.startswith(("Config file", "PID file")) for line in problem.context)


@pytest.mark.parametrize(
    ("text", "found"),
    [
        ('include "/etc/dhcp/a.conf";', [(1, "/etc/dhcp/a.conf")]),
        ('# include "/etc/shadow";\ninclude "b";', [(2, "b")]),
        ('option x "include";\ninclude\n  "c";', [(3, "c")]),
        ('option domain-name "a#b"; include "d";', [(1, "d")]),
        ('option x "multi\nline"; include "e";', [(2, "e")]),
        ('include "sp ace";', [(1, "sp ace")]),
        ('INCLUDE "/etc/shadow";\nInclude "f";', [(1, "/etc/shadow"), (2, "f")]),
        ("host include-me { fixed-address 192.0.2.9; }", []),
    ],
)
def test_include_scanner(text: str, found: list[tuple[int, str]]) -> None:
    assert [(s.line, s.c_string) for s in includes(text.encode())] == found


def staged(tmp_path: Path, files: dict[str, str]) -> tuple[Path, Path]:
    return staged_bytes(tmp_path, {k: v.encode() for k, v in files.items()})


def staged_bytes(tmp_path: Path, files: dict[str, bytes]) -> tuple[Path, Path]:
    stage, target = tmp_path / "stage", tmp_path / "etc" / "dhcp"
    tree.write(stage, files)
    target.mkdir(parents=True)
    return stage, target


@pytest.mark.parametrize("path", ["/etc/shadow", "../shadow", "sub/../../x", "/etc/dhcp-other/x"])
def test_includes_outside_the_target_are_refused(tmp_path: Path, path: str) -> None:
    stage, target = staged(tmp_path, {"dhcpd.conf": f'authoritative;\ninclude "{path}";\n'})
    (problem,) = outside_includes(stage, target, "dhcpd.conf")
    assert problem.line == 2 and "outside" in problem.message


def test_includes_are_followed_through_included_files(tmp_path: Path) -> None:
    t = tmp_path / "etc" / "dhcp"
    files = {"dhcpd.conf": f'include "{t}/a.conf";', "a.conf": 'include "/etc/passwd";'}
    stage, target = staged(tmp_path, files)
    (problem,) = outside_includes(stage, target, "dhcpd.conf")
    assert problem.file == f"{target}/a.conf"


# Spellings of an include outside the target that the old check, reading strings by
# rules of its own, let through while dhcpd opens the file (`outside` is its path).
ATTACKS: dict[str, Callable[[bytes, bytes], bytes]] = {
    "hex escapes": lambda outside, _: b'include "%s";' % outside.replace(b"/", b"\\x2f"),
    "octal escapes": lambda outside, _: b'include "%s";' % outside.replace(b"/", b"\\057"),
    "a NUL byte, then back into the target": (
        lambda outside, target: b'include "%s\0/../..%s/a.conf";' % (outside, target)
    ),
    "an invalid escape swallows a quote": (
        lambda outside, _: b'option domain-name "\\x" junk "; include "%s";' % outside
    ),
    "0xFF ends a comment": lambda outside, _: b'# note \xff include "%s";' % outside,
    "0xFF ends a string": (
        lambda outside, _: b'option domain-name "a\xff; include "%s"; #";' % outside
    ),
    "1,500 bytes end a string": (
        lambda outside, _: b'option domain-name "%s; include "%s"; #"' % (b"x" * 1500, outside)
    ),
    "0xFF after include": lambda outside, _: b'include\xff"%s";' % outside,
}


@pytest.mark.parametrize("spelling", ATTACKS)
def test_an_include_outside_is_refused_however_it_is_spelled(tmp_path: Path, spelling: str) -> None:
    target = tmp_path / "etc" / "dhcp"
    text = ATTACKS[spelling](b"/etc/passwd", bytes(target))
    stage, target = staged_bytes(tmp_path, {"dhcpd.conf": text})
    (problem,) = outside_includes(stage, target, "dhcpd.conf")
    assert (problem.file, problem.line) == (f"{target}/dhcpd.conf", 1)
    assert "outside" in problem.message or "backslash or NUL" in problem.message


@pytest.mark.parametrize("spelling", ATTACKS)
def test_dhcpd_opens_the_file_outside(tmp_path: Path, dhcpd_binary: str, spelling: str) -> None:
    """What makes each spelling an attack: the real dhcpd -t opens the path outside."""
    outside = b"/nonexistent-dhcp-gitops/passwd"
    (tmp_path / "dhcpd.conf").write_bytes(ATTACKS[spelling](outside, bytes(tmp_path)))
    argv = [dhcpd_binary, "-t", "-cf", str(tmp_path / "dhcpd.conf")]
    done = subprocess.run(argv, capture_output=True, timeout=60, check=False)
    assert b"Can't open " + outside + b": No such file" in done.stderr


def test_a_backslash_in_an_include_path_is_refused_even_inside(tmp_path: Path) -> None:
    stage, target = staged(tmp_path, {"dhcpd.conf": 'authoritative;\ninclude "sub\\dir.conf";\n'})
    (problem,) = outside_includes(stage, target, "dhcpd.conf")
    assert problem.line == 2
    assert problem.message == (
        'include "sub\\dir.conf": a backslash or NUL byte in an include path is refused '
        "(dhcpd reads escapes and stops at a NUL): write the path plainly"
    )


def test_an_include_inside_is_followed_as_dhcpd_reads_its_path(tmp_path: Path) -> None:
    target = tmp_path / "etc" / "dhcp"
    files = {"dhcpd.conf": b'include "%s/a\xff.conf";' % bytes(target), "a": b'include "/x";'}
    stage, target = staged_bytes(tmp_path, files)  # dhcpd opens ".../a": 0xFF ends the string
    (problem,) = outside_includes(stage, target, "dhcpd.conf")
    assert problem.file == f"{target}/a"


@pytest.mark.parametrize("path", ["hosts.conf", "sub/../hosts.conf", "./hosts.conf"])
def test_a_relative_include_is_refused_with_the_absolute_path_meant(
    tmp_path: Path, path: str
) -> None:
    """dhcpd runs from / (as Debian's service starts it): "hosts.conf" is /hosts.conf."""
    files = {"dhcpd.conf": f'authoritative;\ninclude "{path}";\n', "hosts.conf": "\n"}
    stage, target = staged(tmp_path, files)
    (problem,) = outside_includes(stage, target, "dhcpd.conf")
    assert (problem.file, problem.line) == (f"{target}/dhcpd.conf", 2)
    assert problem.message == (
        f'include "{path}" is relative: dhcpd resolves it against its working directory (/), '
        f'not the config folder; write "{target}/hosts.conf"'
    )


def test_validate_refuses_a_relative_include_before_dhcpd_runs(tmp_path: Path) -> None:
    files = {"dhcpd.conf": 'include "hosts.conf";\n', "hosts.conf": "authoritative;\n"}
    stage, target = staged(tmp_path, files)
    not_run = Dhcpd(binary=str(tmp_path / "no-dhcpd-here"))  # dhcpd -t would fail as missing
    with pytest.raises(ValidateError) as raised:
        validate(stage, target, not_run, {"dhcpd.conf": "dhcp/dhcpd.conf"})
    (problem,) = raised.value.problems
    assert (problem.source, problem.line) == ("dhcp/dhcpd.conf", 1)
    assert "is relative" in problem.message


def test_validate_reads_the_staged_include_not_the_live_one(
    tmp_path: Path, dhcpd_binary: str
) -> None:
    """The include names the live path; dhcpd must still see the staged bytes there."""
    target = tmp_path / "etc" / "dhcp"
    main = f'authoritative;\ninclude "{target}/hosts.conf";\n'
    stage, target = staged(tmp_path, {"dhcpd.conf": main, "hosts.conf": "host a {\n"})
    (target / "hosts.conf").write_text("# the live copy is fine\n")
    cfg = Dhcpd(binary=dhcpd_binary)
    with pytest.raises(ValidateError) as raised:
        validate(stage, target, cfg, {"hosts.conf": "dhcp/hosts.conf"})
    hosts = [p for p in raised.value.problems if p.file == f"{target}/hosts.conf"]
    assert hosts and hosts[0].source == "dhcp/hosts.conf" and hosts[0].line is not None
    (stage / "hosts.conf").unlink()
    tree.write_file(
        stage / "hosts.conf", b"host a { hardware ethernet 02:00:00:00:00:01; }\n", 0o644
    )
    validate(stage, target, cfg, {})  # the staged tree is fine: no error
    assert (target / "hosts.conf").read_text() == "# the live copy is fine\n"


def test_validate_reports_a_missing_include(tmp_path: Path, dhcpd_binary: str) -> None:
    target = tmp_path / "etc" / "dhcp"
    stage, target = staged(tmp_path, {"dhcpd.conf": f'include "{target}/gone.conf";\n'})
    with pytest.raises(ValidateError) as raised:
        validate(stage, target, Dhcpd(binary=dhcpd_binary), {})
    assert any("gone.conf" in str(p) for p in raised.value.problems)


def test_a_missing_dhcpd_binary_is_the_machines_fault(tmp_path: Path) -> None:
    """Not the commit's: a SandboxError (the attempt fails and is retried), never "refused"."""
    stage, target = staged(tmp_path, {"dhcpd.conf": "authoritative;\n"})
    with pytest.raises(SandboxError, match="no-dhcpd not found: install isc-dhcp-server"):
        validate(stage, target, Dhcpd(binary=str(tmp_path / "no-dhcpd")), {})


# --- the sandbox: what dhcpd -t can reach -------------------------------------

SECRET = "the-secret-line: 7f3a9c"


def _hostname() -> str:
    return Path("/etc/hostname").read_text().strip()


@pytest.mark.parametrize(
    ("written", "shows"),
    [
        ("/etc/passwd", "root:x:0:0"),
        # Spellings the include check may read otherwise than dhcpd, which decodes C escapes.
        (r"\x2fetc\x2fpasswd", "root:x:0:0"),
        (r"\057etc\057passwd", "root:x:0:0"),
        ("/etc/../etc//passwd", "root:x:0:0"),
        ("/etc/hostname", "HOSTNAME"),
        ("/usr/share/common-licenses/GPL-3", "GNU GENERAL PUBLIC LICENSE"),
        ("/proc/self/environ", "PATH="),
        ("/dev/zero", ""),  # on the host: read, and its first NUL ends the file for dhcpd
        ("PLANTED", SECRET),
    ],
)
def test_no_file_beyond_the_stage_can_be_opened(
    tmp_path: Path, dhcpd_binary: str, written: str, shows: str
) -> None:
    """run_dhcpd_t directly: as if the include had slipped past the include check."""
    planted = tmp_path / "secret.conf"
    planted.write_text(f"{SECRET}\n")
    written = written.replace("PLANTED", str(planted))
    shows = shows.replace("HOSTNAME", _hostname())
    stage, target = staged(tmp_path, {"dhcpd.conf": f'authoritative;\ninclude "{written}";\n'})
    (problem,) = run_dhcpd_t(stage, target, Dhcpd(binary=dhcpd_binary))
    assert problem.message.startswith("Can't open ") and problem.line is None, problem
    said = "\n".join([str(problem), *problem.context])
    assert not shows or shows not in said


def test_a_relative_include_resolves_against_root_and_fails(
    tmp_path: Path, dhcpd_binary: str
) -> None:
    """Debian's service starts dhcpd from /: hosts.conf is /hosts.conf, as it would be live."""
    stage, target = staged(
        tmp_path, {"dhcpd.conf": 'include "hosts.conf";\n', "hosts.conf": "authoritative;\n"}
    )
    (problem,) = run_dhcpd_t(stage, target, Dhcpd(binary=dhcpd_binary))
    assert problem.file == "hosts.conf" and problem.message.startswith("Can't open hosts.conf")


def test_read_only_paths_are_shown_and_nothing_beside_them(
    tmp_path: Path, dhcpd_binary: str
) -> None:
    keys = tmp_path / "bind"
    keys.mkdir(mode=0o700)
    key = keys / "ddns.key"
    key.write_text('key "ddns" {\n  algorithm hmac-sha256;\n  secret "c2VjcmV0";\n};\n')
    key.chmod(0o600)  # as bind keeps it: dhcpd (root on a server) reads it all the same
    (keys / "other.key").write_text(f"{SECRET}\n")
    main = f'include "{key}";\ninclude "{keys}/other.key";\n'
    stage, target = staged(tmp_path, {"dhcpd.conf": main})
    cfg = Dhcpd(binary=dhcpd_binary)
    (problem,) = run_dhcpd_t(stage, target, cfg, read_only=[key])
    assert problem.message == f"Can't open {keys}/other.key: No such file or directory"
    (problem,) = run_dhcpd_t(stage, target, cfg)  # not listed: not there
    assert problem.message.startswith(f"Can't open {key}:")
    # The include check consents to the listed paths, and to files below a listed folder.
    (stage / "dhcpd.conf").unlink()
    tree.write_file(stage / "dhcpd.conf", f'include "{key}";\n'.encode(), 0o644)
    validate(stage, target, cfg, {}, read_only=[key])
    validate(stage, target, cfg, {}, read_only=[keys])  # a folder: the files below it
    with pytest.raises(ValidateError, match="problem"):
        validate(stage, target, cfg, {})
    (stage / "dhcpd.conf").unlink()
    tree.write_file(stage / "dhcpd.conf", f'include "{keys}/../bind/ddns.key";\n'.encode(), 0o644)
    with pytest.raises(ValidateError, match="problem"):  # no way out of the folder by '..'
        validate(stage, target, cfg, {}, read_only=[keys])


def test_the_nodes_read_only_paths_reach_the_sandbox(
    tmp_path: Path, repo: ConfigRepo, make_node: NodeFactory
) -> None:
    """[policy] read_only in agent.toml, through the server, to the include check and bwrap."""
    key = tmp_path / "ddns.key"
    key.write_text('key "ddns" { algorithm hmac-sha256; secret "c2VjcmV0"; };\n')
    repo.write("dhcp/hosts.conf", f'include "{key}";\n' + repo.read("dhcp/hosts.conf"))
    repo.commit("the DDNS key, kept on the servers")
    assert reconcile(make_node("dhcp1")).result == "refused"  # not listed
    listed = make_node("dhcp2", policy={"read_only": [str(key)]})
    assert reconcile(listed).result == "deployed"


@pytest.mark.parametrize("path", ["ddns.key", "/", "/etc/bind/../shadow"])
def test_read_only_paths_are_absolute(tmp_path: Path, path: str) -> None:
    raw = {"node": {"name": "n", "role": "primary"}, "source": {"url": "/srv/repo"},
           "policy": {"read_only": [path]}}  # fmt: skip
    with pytest.raises(ConfigError, match=r"\[policy\] read_only"):
        config.parse(raw, tmp_path / "agent.toml")


def _in_sandbox(tmp_path: Path, *argv: str) -> str:
    """argv's output, run in the sandbox dhcpd -t gets (a program in dhcpd's place)."""
    stage, target = staged(tmp_path, {"dhcpd.conf": "authoritative;\n"})
    return process.run(sandbox_argv(stage, target, list(argv))).stdout


def test_dhcpd_t_has_no_network(tmp_path: Path) -> None:
    links = _in_sandbox(tmp_path, shutil.which("ip") or "/usr/sbin/ip", "-o", "link")
    assert [line.split(":")[1].strip() for line in links.splitlines()] == ["lo"]


def test_dhcpd_t_is_no_one_in_its_sandbox(tmp_path: Path) -> None:
    """Not root, whoever runs the agent: uid 65534 in a user namespace of its own."""
    assert _in_sandbox(tmp_path, shutil.which("id") or "/usr/bin/id", "-u").strip() == "65534"


# --- without root ---------------------------------------------------------------


def cli(*args: str, user: int | None = None) -> subprocess.CompletedProcess[str]:
    prefix = ["setpriv", f"--reuid={user}", f"--regid={user}", "--clear-groups"] if user else []
    return subprocess.run([*prefix, EXE, *args], capture_output=True, text=True, timeout=120,
                          check=False)  # fmt: skip


def test_without_root_validate_reads_the_stage_and_the_read_only_paths_alone(
    repo: ConfigRepo,
) -> None:
    """A CI runner's user: the stage, not the live tree beneath it; a listed key, no more."""
    with tempfile.TemporaryDirectory() as shared:  # pytest's own tmp folders are root's alone
        top = Path(shared)
        checkout, live, key = top / "checkout", top / "etc" / "dhcp", top / "ddns.key"
        shutil.copytree(repo.work, checkout)
        live.mkdir(parents=True)
        (live / "hosts.conf").write_text("host live-copy {\n")  # broken: must not be read
        key.write_text('key "ddns" { algorithm hmac-sha256; secret "c2VjcmV0"; };\n')
        hosts = checkout / "dhcp" / "hosts.conf"
        hosts.write_text(f'include "{key}";\n' + hosts.read_text())
        top.chmod(0o755)
        args = ("validate", str(checkout), "--target", str(live))
        listed = cli(*args, "--read-only", str(key), user=65534)
        assert listed.returncode == 0, listed.stdout + listed.stderr
        unlisted = cli(*args, user=65534)
        hosts.write_text(hosts.read_text().replace("192.0.2.10;", "192.0.2.10"))
        broken = cli(*args, "--read-only", str(key), user=65534)
    assert unlisted.returncode == 1 and f'include "{key}" is outside' in unlisted.stdout
    assert broken.returncode == 1 and "dhcp/hosts.conf:7" in broken.stdout, broken.stderr
    assert "live-copy" not in broken.stdout


# --- where no sandbox can be made -------------------------------------------------


def test_without_user_namespaces_validate_fails_with_the_remedy(repo: ConfigRepo) -> None:
    """A real kernel refusal: user.max_user_namespaces = 0, set in a user namespace of the
    test's own (the host's setting is never touched)."""
    no_userns = 'echo 0 > /proc/sys/user/max_user_namespaces && exec "$@"'
    argv = ["unshare", "--user", "--map-root-user", "sh", "-c", no_userns, "sh"]
    done = subprocess.run([*argv, EXE, "validate", str(repo.work)], capture_output=True,
                          text=True, timeout=120, check=False)  # fmt: skip
    assert done.returncode == 1, done.stdout + done.stderr
    assert "dhcpd -t cannot run in its sandbox (bwrap: " in done.stderr
    assert "user.max_user_namespaces above 0" in done.stderr
    assert "refused" not in done.stdout + done.stderr


def stub_bwrap(folder: Path) -> Path:
    """A bwrap that fails as Debian's does where unprivileged user namespaces are off."""
    folder.mkdir()
    stub = folder / "bwrap"
    stub.write_text(
        "#!/bin/sh\n"
        "echo 'bwrap: No permissions to creating new namespace, likely because the kernel "
        "does not allow non-privileged user namespaces.' >&2\n"
        "exit 1\n"
    )
    stub.chmod(0o755)
    return folder


def test_no_sandbox_fails_the_attempt_and_leaves_the_commit_unjudged(
    tmp_path: Path, make_node: NodeFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    node, path = make_node(), os.environ["PATH"]
    monkeypatch.setenv("PATH", f"{stub_bwrap(tmp_path / 'bin')}:{path}")
    attempt = reconcile(node)
    assert (attempt.result, attempt.step, attempt.problems) == ("failed", "validate", [])
    assert "No permissions to creating new namespace" in attempt.message
    assert "user.max_user_namespaces above 0" in attempt.message
    assert not (node.workspace.target / "dhcpd.conf").exists()  # nothing went live
    monkeypatch.setenv("PATH", path)  # the machine is fixed: the same commit deploys
    assert reconcile(node).result == "deployed"


def test_no_bwrap_at_all_says_install_it(
    tmp_path: Path, dhcpd_binary: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    stage, target = staged(tmp_path, {"dhcpd.conf": "authoritative;\n"})
    tools = tmp_path / "bin"
    tools.mkdir()
    (tools / "ldd").symlink_to(shutil.which("ldd") or "/usr/bin/ldd")  # ldd, and no bwrap
    monkeypatch.setenv("PATH", str(tools))
    with pytest.raises(SandboxError, match=r"\(bwrap not found\): install bubblewrap"):
        run_dhcpd_t(stage, target, Dhcpd(binary=dhcpd_binary))
