"""agent.servers.dhcpd.sandbox: dhcpd's errors parsed, includes confined, and the real dhcpd -t
reading exactly the staged bytes at their live paths."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent import tree
from agent.config import Dhcpd
from agent.errors import ValidateError
from agent.servers.dhcpd.sandbox import includes, outside_includes, parse_errors, validate

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
    assert list(includes(text)) == found


def staged(tmp_path: Path, files: dict[str, str]) -> tuple[Path, Path]:
    stage, target = tmp_path / "stage", tmp_path / "etc" / "dhcp"
    tree.write(stage, {k: v.encode() for k, v in files.items()})
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


def test_a_missing_dhcpd_binary_is_a_clear_problem(tmp_path: Path) -> None:
    stage, target = staged(tmp_path, {"dhcpd.conf": "authoritative;\n"})
    with pytest.raises(ValidateError, match="problem") as raised:
        validate(stage, target, Dhcpd(binary=str(tmp_path / "no-dhcpd")), {})
    assert "no-dhcpd" in str(raised.value.problems[0])
