"""agent.servers.dhcpd.pair: what dhcpd -t cannot see, because it reads one server's config.

Every rule has a case whose two sides each pass the real `dhcpd -t` alone, and
that the pair checks refuse. The rules dhcpd -t enforces itself are checked
too, and a test shows that dhcpd -t does refuse them.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

from agent.engine import render
from agent.errors import Problem
from agent.servers.base import WARNING, is_warning, split_file
from agent.servers.dhcpd.conf import DhcpConfig, parse
from agent.servers.dhcpd.dangers import dangers
from agent.servers.dhcpd.pair import check, check_one
from agent.source.snapshot import RepoFile

ROLES = ("primary", "secondary")
TEMPLATE = Path(__file__).resolve().parents[1] / "repo-template"

# A small pair in the shape of repo-template's, written out for each role.
MAIN = """\
authoritative;
ddns-update-style none;
include "{target}/dhcpd.failover";
include "{target}/subnets.conf";
include "{target}/hosts.conf";
"""
FAILOVER = {
    "primary": """\
failover peer "dhcp-failover" {
  primary;
  mclt 1800;
  split 128;
  address 192.0.2.1;
  port 647;
  peer address 192.0.2.2;
  peer port 647;
  max-response-delay 30;
  max-unacked-updates 10;
  load balance max seconds 3;
}
""",
    "secondary": """\
failover peer "dhcp-failover" {
  secondary;
  address 192.0.2.2;
  port 647;
  peer address 192.0.2.1;
  peer port 647;
  max-response-delay 30;
  max-unacked-updates 10;
  load balance max seconds 3;
}
""",
}
SUBNETS = """\
subnet 192.0.2.0 netmask 255.255.255.0 {
  option routers 192.0.2.254;
  pool {
    failover peer "dhcp-failover";
    range 192.0.2.100 192.0.2.199;
  }
}
subnet 198.51.100.0 netmask 255.255.255.0 {
  pool {
    failover peer "dhcp-failover";
    range 198.51.100.100 198.51.100.199;
  }
}
"""
HOSTS = """\
host printer-1 {
  hardware ethernet 02:00:00:00:00:01;
  fixed-address 192.0.2.10;
}
"""


def pair_texts() -> dict[str, dict[str, str]]:
    return {
        role: {
            "dhcpd.conf": MAIN,
            "dhcpd.failover": FAILOVER[role],
            "subnets.conf": SUBNETS,
            "hosts.conf": HOSTS,
        }
        for role in ROLES
    }


@dataclass(frozen=True)
class Edit:
    """Replace `old` (found exactly once) by `new` in one role's file."""

    role: str
    file: str
    old: str
    new: str


def edited(edits: list[Edit]) -> dict[str, dict[str, str]]:
    texts = pair_texts()
    for e in edits:
        assert texts[e.role][e.file].count(e.old) == 1, f"{e.old!r} not once in {e.file}"
        texts[e.role][e.file] = texts[e.role][e.file].replace(e.old, e.new)
    return texts


def both(role_file: str, old: str, new: str) -> list[Edit]:
    return [Edit(role, role_file, old, new) for role in ROLES]


def write_side(root: Path, texts: dict[str, str]) -> dict[str, bytes]:
    """The side's files under root, with includes naming root; returns them as bytes."""
    files = {name: text.replace("{target}", str(root)).encode() for name, text in texts.items()}
    root.mkdir(parents=True)
    for name, data in files.items():
        (root / name).write_bytes(data)
    return files


def dhcpd_t(dhcpd: str, root: Path) -> subprocess.CompletedProcess[str]:
    """The real dhcpd -t on the side's dhcpd.conf (it only parses: safe anywhere)."""
    argv = [dhcpd, "-t", "-cf", str(root / "dhcpd.conf"), "-lf", "/dev/null"]
    return subprocess.run(argv, capture_output=True, text=True, check=False, timeout=60)


def all_checks(configs: dict[str, DhcpConfig]) -> list[Problem]:
    """What a caller runs: check_one on each side, then check on the pair."""
    problems = [p for role in ROLES for p in check_one(configs[role], role)]
    return problems + check(configs["primary"], configs["secondary"])


def deployed(tmp_path: Path, texts: dict[str, dict[str, str]]) -> dict[str, DhcpConfig]:
    configs = {}
    for role in ROLES:
        root = tmp_path / role
        configs[role] = parse(write_side(root, texts[role]), "dhcpd.conf", str(root))
    return configs


def located(problems: list[Problem]) -> list[tuple[str, int | None]]:
    return sorted((p.file, p.line) for p in problems)


# (file, line, a fragment of the message) of every problem a case must produce.
Expected = list[tuple[str, int, str]]

P_FO, S_FO = "primary:dhcpd.failover", "secondary:dhcpd.failover"
P_SUB, S_SUB = "primary:subnets.conf", "secondary:subnets.conf"

CASES = [
    pytest.param(
        [Edit("secondary", "dhcpd.failover", '"dhcp-failover"', '"dhcp-pair"'),
         Edit("secondary", "subnets.conf", SUBNETS, SUBNETS.replace("dhcp-failover", "dhcp-pair"))],
        [(P_FO, 1, 'the primary declares failover peer "dhcp-failover" but the secondary does '
                   'not (it declares "dhcp-pair"): give the peer the same name on both sides'),
         (S_FO, 1, 'the secondary declares failover peer "dhcp-pair" but the primary does not')],
        id="peer-name-differs",
    ),
    pytest.param(
        [Edit("secondary", "dhcpd.failover", "  secondary;\n",
              "  primary;\n  mclt 60;\n  split 0;\n")],
        [(S_FO, 1, 'the secondary\'s failover peer "dhcp-failover" says "primary;": '
                   'write "secondary;"'),
         (S_FO, 1, "has mclt 60: remove it (it belongs on the primary only)"),
         (S_FO, 1, "has split 0: remove it")],
        id="two-primaries",
    ),
    pytest.param(
        [Edit("primary", "dhcpd.failover", "  primary;\n  mclt 1800;\n  split 128;\n",
              "  secondary;\n")],
        [(P_FO, 1, 'the primary\'s failover peer "dhcp-failover" says "secondary;": '
                   'write "primary;"'),
         (P_FO, 1, "has no mclt: add one"),
         (P_FO, 1, "has neither split nor hba")],
        id="two-secondaries",
    ),
    pytest.param(
        [Edit("secondary", "dhcpd.failover", "  secondary;\n", "  mclt 1800;\n  split 128;\n")],
        [(S_FO, 1, "says neither primary nor secondary (dhcpd then acts as primary): "
                   'add "secondary;"'),
         (S_FO, 1, "has mclt 1800: remove it"),
         (S_FO, 1, "has split 128: remove it")],
        id="no-role-means-primary",
    ),
    pytest.param(
        [Edit("primary", "dhcpd.failover", "peer address 192.0.2.2", "peer address 192.0.2.3")],
        [(P_FO, 1, "the primary says peer address 192.0.2.3 but the secondary's address is "
                   "192.0.2.2 (dhcpd.failover:1): make them the same")],
        id="peer-address-not-mirrored",
    ),
    pytest.param(
        [Edit("primary", "dhcpd.failover", "  port 647;", "  port 847;")],
        [(S_FO, 1, "the secondary says peer port 647 but the primary listens on port 847")],
        id="port-not-mirrored",
    ),
    pytest.param(
        [Edit("secondary", "dhcpd.failover", "  peer port 647;\n", ""),
         Edit("primary", "dhcpd.failover", "  port 647;", "  port 847;")],
        [(S_FO, 1, "the secondary says peer port 647 (the default) but the primary listens "
                   "on port 847")],
        id="a-missing-peer-port-is-647",
    ),
    pytest.param(
        [Edit("secondary", "dhcpd.failover", "peer address 192.0.2.1", "peer address 192.0.2.2")],
        [(S_FO, 1, 'failover peer "dhcp-failover" has address and peer address both '
                   "192.0.2.2 port 647: the peer address (or port) must be the other server's"),
         (S_FO, 1, "the secondary says peer address 192.0.2.2 but the primary's address is "
                   "192.0.2.1")],
        id="address-is-peer-address",
    ),
    pytest.param(
        [Edit("secondary", "dhcpd.failover", "  address 192.0.2.2;\n", "")],
        [(S_FO, 1, 'failover peer "dhcp-failover" has no address: add "address')],
        id="no-address",
    ),
    pytest.param(
        [Edit("primary", "dhcpd.failover", "  split 128;\n",
              "  split 128;\n  hba " + ":".join(["ff"] * 16 + ["00"] * 16) + ";\n")],
        [(P_FO, 1, 'failover peer "dhcp-failover" has both split and hba: keep one of them')],
        id="split-and-hba",
    ),
    pytest.param(
        [Edit("secondary", "subnets.conf",
              '  pool {\n    failover peer "dhcp-failover";\n    range 198.51.100.100 '
              "198.51.100.199;\n  }\n", "")],
        [(P_SUB, 9, 'the primary has the pool in 198.51.100.0/24 (failover peer '
                    '"dhcp-failover", range 198.51.100.100 - 198.51.100.199) but the secondary '
                    "has no such pool: add it to the secondary too")],
        id="pool-missing-on-the-secondary",
    ),
    pytest.param(
        [Edit("secondary", "subnets.conf", "  option routers 192.0.2.254;\n",
              '  pool {\n    failover peer "dhcp-failover";\n    range 192.0.2.50;\n  }\n')],
        [(S_SUB, 2, 'the secondary has the pool in 192.0.2.0/24 (failover peer '
                    '"dhcp-failover", range 192.0.2.50) but the primary has no such pool')],
        id="pool-only-on-the-secondary",
    ),
    pytest.param(
        [Edit("secondary", "subnets.conf", "range 192.0.2.100 192.0.2.199",
              "range 192.0.2.100 192.0.2.150")],
        [(P_SUB, 3, 'the primary\'s pool in 192.0.2.0/24 has failover peer "dhcp-failover", '
                    "range 192.0.2.100 - 192.0.2.199 but the secondary's (subnets.conf:3) has "
                    'failover peer "dhcp-failover", range 192.0.2.100 - 192.0.2.150: make the '
                    "pools identical")],
        id="pool-range-differs",
    ),
    pytest.param(
        [Edit("secondary", "subnets.conf",
              '    failover peer "dhcp-failover";\n    range 198.51.100.100',
              "    range 198.51.100.100")],
        [(P_SUB, 9, "the primary's pool in 198.51.100.0/24 has failover peer "
                    '"dhcp-failover", range 198.51.100.100 - 198.51.100.199 but the '
                    "secondary's (subnets.conf:9) has no failover peer, range")],
        id="pool-without-failover-on-one-side",
    ),
    pytest.param(
        both("subnets.conf", '    failover peer "dhcp-failover";\n    range 198.51.100.100',
             "    range 198.51.100.100"),
        [(P_SUB, 9, "the pool in 198.51.100.0/24 (no failover peer, range 198.51.100.100 - "
                    "198.51.100.199) is on both servers without a failover peer: both would "
                    "lease the same addresses")],
        id="common-pool-without-failover",
    ),
    # A range written straight in the subnet, as mruz/las app/cli/views/DHCP.volt
    # writes it ("subnet ... { ...; range {{ lan.DHCP }}; ... }"), on both servers.
    pytest.param(
        both("subnets.conf", "  option routers 192.0.2.254;\n",
             "  option routers 192.0.2.254;\n  range 192.0.2.20 192.0.2.40;\n"),
        [(P_SUB, 3, "the range in 192.0.2.0/24 outside any pool (no failover peer, range "
                    "192.0.2.20 - 192.0.2.40) is on both servers without a failover peer: "
                    "both would lease the same addresses (duplicate leases)")],
        id="bare-range-on-both-sides",
    ),
    # voxpupuli/puppet-dhcp templates/dhcpd.pool.erb (an old version) writes
    # "pool { range <%= range %>; }" without the failover peer; the other server's
    # range, written bare, overlaps it.
    pytest.param(
        [Edit("primary", "subnets.conf", '    failover peer "dhcp-failover";\n'
              "    range 198.51.100.100", "    range 198.51.100.100"),
         Edit("secondary", "subnets.conf",
              '  pool {\n    failover peer "dhcp-failover";\n'
              "    range 198.51.100.100 198.51.100.199;\n  }\n",
              "  range 198.51.100.150 198.51.100.250;\n")],
        [(P_SUB, 9, "the primary's pool in 198.51.100.0/24 (no failover peer, range "
                    "198.51.100.100 - 198.51.100.199) and the secondary's range in "
                    "198.51.100.0/24 outside any pool (no failover peer, range 198.51.100.150 - "
                    "198.51.100.250, subnets.conf:9) share addresses 198.51.100.150 - "
                    "198.51.100.199 without a failover peer")],
        id="pool-without-failover-overlaps-a-bare-range",
    ),
    pytest.param(
        both("hosts.conf", "fixed-address 192.0.2.10;", "fixed-address 192.0.2.150;"),
        [(f"{role}:hosts.conf", 1, f"{WARNING}host printer-1 has fixed-address 192.0.2.150 "
                                   "inside the failover range 192.0.2.100 - 192.0.2.199 of the "
                                   "pool in 192.0.2.0/24 (subnets.conf:3): move the address")
         for role in ROLES],
        id="fixed-address-in-a-failover-range",
    ),
    pytest.param(
        [Edit("primary", "dhcpd.conf", "authoritative;\n",
              'authoritative;\ninclude "{target}/../outside.conf";\n')],
        [("primary:dhcpd.conf", 2, 'include "')],
        id="include-outside-the-target",
    ),
]  # fmt: skip


@pytest.mark.parametrize(("edits", "expected"), CASES)
def test_each_side_passes_dhcpd_but_the_pair_is_refused(
    tmp_path: Path, dhcpd_binary: str, edits: list[Edit], expected: Expected
) -> None:
    (tmp_path / "outside.conf").write_text("# outside the target\n")
    configs = deployed(tmp_path, edited(edits))
    for role in ROLES:
        done = dhcpd_t(dhcpd_binary, tmp_path / role)
        assert done.returncode == 0, f"{role}: {done.stderr}"
    problems = all_checks(configs)
    assert located(problems) == sorted((file, line) for file, line, _ in expected), problems
    for file, line, fragment in expected:
        assert any((p.file, p.line) == (file, line) and fragment in p.message for p in problems), (
            f"no {file}:{line} {fragment!r} in {problems}"
        )


# Rules dhcpd -t enforces itself: checked anyway (check_one may run where dhcpd does not).
REFUSED_BY_DHCPD = [
    pytest.param(
        [Edit("primary", "dhcpd.conf", 'include "{target}/dhcpd.failover";\n', ""),
         Edit("primary", "hosts.conf", HOSTS, HOSTS + 'include "{target}/dhcpd.failover";\n')],
        [(P_SUB, 3, 'the pool in 192.0.2.0/24 uses failover peer "dhcp-failover" before its '
                    "declaration (dhcpd.failover:1): include the failover declaration before "
                    "the pools"),
         (P_SUB, 9, "uses failover peer")],
        id="peer-declared-after-its-pools",
    ),
    pytest.param(
        [Edit("primary", "subnets.conf", SUBNETS,
              SUBNETS.replace('"dhcp-failover";\n    range 198', '"typo";\n    range 198'))],
        [(P_SUB, 9, 'the pool in 198.51.100.0/24 names failover peer "typo", which is not '
                    'declared: declare it with failover peer "typo" { ... } or name a declared '
                    'one ("dhcp-failover")'),
         (P_SUB, 9, "the primary's pool in 198.51.100.0/24 has failover peer \"typo\"")],
        id="pool-names-an-undeclared-peer",
    ),
    pytest.param(
        [Edit("secondary", "dhcpd.failover", "  secondary;\n", "  secondary;\n  split 128;\n")],
        [(S_FO, 1, "has split 128: remove it (it belongs on the primary only)")],
        id="split-on-the-secondary",
    ),
    pytest.param(
        [Edit("primary", "dhcpd.failover", "  mclt 1800;\n", "")],
        [(P_FO, 1, 'has no mclt: add one, e.g. "mclt 1800;"')],
        id="no-mclt-on-the-primary",
    ),
    pytest.param(
        [Edit("primary", "dhcpd.failover", "  split 128;\n", "")],
        [(P_FO, 1, 'has neither split nor hba: add one, e.g. "split 128;"')],
        id="no-split-on-the-primary",
    ),
]  # fmt: skip


@pytest.mark.parametrize(("edits", "expected"), REFUSED_BY_DHCPD)
def test_rules_dhcpd_enforces_are_reported_too(
    tmp_path: Path, dhcpd_binary: str, edits: list[Edit], expected: Expected
) -> None:
    configs = deployed(tmp_path, edited(edits))
    refused = {role for role in ROLES if dhcpd_t(dhcpd_binary, tmp_path / role).returncode}
    assert refused == {edits[0].role}
    problems = all_checks(configs)
    assert located(problems) == sorted((file, line) for file, line, _ in expected), problems
    for file, line, fragment in expected:
        assert any((p.file, p.line) == (file, line) and fragment in p.message for p in problems)


CLEAN = [
    pytest.param([], id="as-written"),
    pytest.param(
        [Edit("primary", "dhcpd.failover", "  port 647;\n  peer address 192.0.2.2;\n"
              "  peer port 647;\n", "  peer address 192.0.2.2;\n")],
        id="ports-left-to-the-default-647",
    ),
    pytest.param(
        [Edit("primary", "subnets.conf", "range 192.0.2.100 192.0.2.199;",
              "range 192.0.2.150 192.0.2.199; range 192.0.2.100 192.0.2.149;"),
         Edit("secondary", "subnets.conf", "range 192.0.2.100 192.0.2.199;",
              "range 192.0.2.100 192.0.2.149; range 192.0.2.150 192.0.2.199;")],
        id="ranges-in-another-order",
    ),
    pytest.param(
        both("hosts.conf", "fixed-address 192.0.2.10;", "fixed-address 192.0.2.10, cam.example;"),
        id="host-names-are-not-resolved",
    ),
    pytest.param(
        [Edit("secondary", "subnets.conf", "  option routers 192.0.2.254;\n",
              "  option routers 192.0.2.254;\n  pool { range 192.0.2.20 192.0.2.29; }\n")],
        id="a-pool-without-failover-on-one-side-only",
    ),
]  # fmt: skip


@pytest.mark.parametrize("edits", CLEAN)
def test_a_consistent_pair_has_no_problems(
    tmp_path: Path, dhcpd_binary: str, edits: list[Edit]
) -> None:
    configs = deployed(tmp_path, edited(edits))
    for role in ROLES:
        assert dhcpd_t(dhcpd_binary, tmp_path / role).returncode == 0
    assert all_checks(configs) == []


def template_files(folder: str) -> list[RepoFile]:
    root = TEMPLATE / folder
    return [
        RepoFile(str(p.relative_to(TEMPLATE)), p.read_bytes())
        for p in sorted(root.rglob("*"))
        if p.is_file()
    ]


def test_the_example_pair_of_repo_template_is_clean(tmp_path: Path, dhcpd_binary: str) -> None:
    (pair_toml,) = [f for f in template_files(".") if f.path == "pair.toml"]
    configs = {}
    for role in ROLES:
        target = tmp_path / role
        layers = [
            ("dhcp", template_files("dhcp")),
            (f"roles/{role}", template_files(f"roles/{role}")),
        ]
        rendered = render.render(
            layers, render.variables(f"dhcp-{role}", role, str(target), pair_toml)
        )
        write_side(target, {k: v.decode() for k, v in rendered.files.items()})
        assert dhcpd_t(dhcpd_binary, target).returncode == 0
        configs[role] = parse(rendered.files, "dhcpd.conf", str(target))
        assert configs[role].failovers and configs[role].pools
    assert all_checks(configs) == []


def test_problem_conventions() -> None:
    texts = edited(both("hosts.conf", "192.0.2.10;", "192.0.2.150;"))
    files = {k: v.replace("{target}", "/etc/dhcp").encode() for k, v in texts["primary"].items()}
    (warning,) = check_one(parse(files, "dhcpd.conf", "/etc/dhcp"), "primary")
    assert split_file(warning.file) == ("primary", "hosts.conf")
    assert is_warning(warning) and warning.message.startswith(WARNING)
    assert not is_warning(Problem("primary:dhcpd.conf", 1, "include is outside"))


def test_mclt_on_the_secondary_is_a_warning_as_dhcpd_takes_it() -> None:
    """dhcpd -t accepts mclt on the secondary (and ignores it); split there it refuses."""
    text = 'failover peer "f" { secondary; address 192.0.2.2; peer address 192.0.2.1; mclt 1800; }'
    (problem,) = check_one(parse({"dhcpd.conf": text.encode()}, "dhcpd.conf", "/etc/dhcp"),
                           "secondary")  # fmt: skip
    assert is_warning(problem) and "has mclt 1800: remove it" in problem.message
    split = text.replace("mclt 1800;", "split 128;")
    (problem,) = check_one(parse({"dhcpd.conf": split.encode()}, "dhcpd.conf", "/etc/dhcp"),
                           "secondary")  # fmt: skip
    assert not is_warning(problem) and "has split 128" in problem.message


def test_one_address_with_two_ports_is_two_endpoints() -> None:
    """Two servers of a pair on one host (a lab) differ by port: no false alarm."""
    text = (
        'failover peer "f" { primary; address 192.0.2.1; port 647; peer address 192.0.2.1; '
        "peer port 648; mclt 1800; split 128; }"
    )
    config = parse({"dhcpd.conf": text.encode()}, "dhcpd.conf", "/etc/dhcp")
    assert check_one(config, "primary") == []


def test_check_one_for_a_standalone_server_skips_the_role_rules() -> None:
    text = 'failover peer "f" { address 192.0.2.1; peer address 192.0.2.1; }'
    problems = check_one(
        parse({"dhcpd.conf": text.encode()}, "dhcpd.conf", "/etc/dhcp"), "standalone"
    )
    assert [(p.file, p.line) for p in problems] == [("standalone:dhcpd.conf", 1)]
    assert "address and peer address both 192.0.2.1" in problems[0].message


# --- dangers: changes that pass every check but hurt a running pair --------------------


def parsed_side(role: str, edits: list[Edit]) -> DhcpConfig:
    texts = edited(edits)[role]
    files = {k: v.replace("{target}", "/etc/dhcp").encode() for k, v in texts.items()}
    return parse(files, "dhcpd.conf", "/etc/dhcp")


@pytest.mark.parametrize(
    ("role", "edits", "expected"),
    [
        pytest.param("primary", [], [], id="no-change"),
        pytest.param(
            "primary", both("subnets.conf", "192.0.2.199;", "192.0.2.250;"), [],
            id="a-range-grows",
        ),
        pytest.param(
            "secondary",
            [Edit("secondary", "dhcpd.failover", "  port 647;\n", ""),
             Edit("secondary", "dhcpd.failover", "peer port 647", "peer port 0647")],
            [], id="ports-written-otherwise",
        ),
        pytest.param(
            "secondary",
            [Edit("secondary", "dhcpd.failover", '"dhcp-failover"', '"dhcp-pair"'),
             Edit("secondary", "subnets.conf", SUBNETS, SUBNETS.replace("dhcp-failover", "x"))],
            ['the failover peer "dhcp-failover" is renamed "dhcp-pair": both servers lose'],
            id="renamed",
        ),
        pytest.param(
            "primary",
            [Edit("primary", "dhcpd.failover", "mclt 1800", "mclt 600"),
             Edit("primary", "dhcpd.failover", "split 128", "split 255")],
            ['mclt of failover peer "dhcp-failover" changes from 1800 to 600',
             'split of failover peer "dhcp-failover" changes from 128 to 255: set on the primary'],
            id="mclt-and-split",
        ),
        pytest.param(
            "primary",
            [Edit("primary", "dhcpd.failover", "  address 192.0.2.1;", "  address 192.0.2.5;"),
             Edit("primary", "dhcpd.failover", "  port 647;", "  port 847;")],
            ['address of failover peer "dhcp-failover" changes from 192.0.2.1 to 192.0.2.5: '
             "the failover link is down",
             'port of failover peer "dhcp-failover" changes from 647 to 847'],
            id="address-and-port",
        ),
        pytest.param(
            "primary",
            [Edit("primary", "subnets.conf", "range 192.0.2.100 192.0.2.199",
                  "range 192.0.2.100 192.0.2.120; range 192.0.2.150 192.0.2.249"),
             Edit("primary", "subnets.conf", "range 198.51.100.100 198.51.100.199",
                  "range 198.51.100.100")],
            ["addresses 192.0.2.121 - 192.0.2.149 leave the pools: clients holding them",
             "addresses 198.51.100.101 - 198.51.100.199 leave the pools"],
            id="ranges-shrink-and-move",
        ),
    ],
)  # fmt: skip
def test_dangers(role: str, edits: list[Edit], expected: list[str]) -> None:
    warnings = dangers(parsed_side(role, []), parsed_side(role, edits))
    assert len(warnings) == len(expected), warnings
    for warning, fragment in zip(warnings, expected, strict=True):
        assert fragment in warning


def test_a_bare_range_that_shrinks_is_a_danger() -> None:
    """A range outside any pool serves addresses too: shrinking it strands their clients."""
    routers = "  option routers 192.0.2.254;\n"
    bare = routers + "  range 192.0.2.20 192.0.2.40;\n"
    before = parsed_side("primary", [Edit("primary", "subnets.conf", routers, bare)])
    shrunk = bare.replace(".40;", ".30;")
    after = parsed_side("primary", [Edit("primary", "subnets.conf", routers, shrunk)])
    assert [p.where.line for p in before.pools if p.bare] == [3]
    warnings = dangers(before, after)
    assert len(warnings) == 1, warnings
    assert "addresses 192.0.2.31 - 192.0.2.40 leave the pools" in warnings[0]


def test_a_relative_include_is_refused_by_the_pair_check_too() -> None:
    """dhcpd resolves it against its working directory, /, not the config folder."""
    relative = Edit(
        "primary", "dhcpd.conf", 'include "{target}/hosts.conf"', 'include "hosts.conf"'
    )
    problems = check_one(parsed_side("primary", [relative]), "primary")
    assert [(p.file, p.line, p.message) for p in problems] == [
        ("primary:dhcpd.conf", 5, 'include "hosts.conf" is relative: dhcpd resolves it against '
         'its working directory (/), not the config folder; write "/etc/dhcp/hosts.conf"')
    ]  # fmt: skip
