"""agent.servers.dhcpd.conf: the structure of a rendered tree, as the pair checks need it."""

from __future__ import annotations

from dataclasses import replace

import pytest

from agent.servers.dhcpd.conf import (
    MAX_INCLUDES,
    DhcpConfig,
    Failover,
    Host,
    OutsideInclude,
    Pool,
    Where,
    parse,
)
from agent.servers.dhcpd.workdir import inside_target

T = "/etc/dhcp"  # the target the texts below are written for


def parsed(main: str, **others: str) -> DhcpConfig:
    """The config whose dhcpd.conf is `main`; other files by name (dots as '_')."""
    files = {"dhcpd.conf": main} | {k.replace("_", "."): v for k, v in others.items()}
    return parse({k: v.encode() for k, v in files.items()}, "dhcpd.conf", T)


# --- failover declarations -------------------------------------------------------

FULL = """\
failover peer "dhcp-failover" {
  primary;
  address 192.0.2.1;
  port 519;
  peer address 192.0.2.2;
  peer port 520;
  max-response-delay 60;
  max-unacked-updates 10;
  mclt 3600;
  split 128;
  load balance max seconds 3;
  auto-partner-down 0;
}
"""


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param(
            FULL,
            Failover(
                name="dhcp-failover", where=Where("dhcpd.conf", 1), seq=1, role="primary",
                address="192.0.2.1", port=519, peer_address="192.0.2.2", peer_port=520,
                mclt=3600, split=128, max_response_delay=60, max_unacked_updates=10,
                load_balance_max_seconds=3, other=("auto-partner-down 0",),
            ),
            id="every-field",
        ),
        pytest.param(
            'failover peer "f" {\n secondary;\n address dhcp2.example.net;\n'
            " peer address dhcp1.example.net;\n}\n",
            Failover(
                name="f", where=Where("dhcpd.conf", 1), seq=1, role="secondary",
                address="dhcp2.example.net", peer_address="dhcp1.example.net",
            ),
            id="host-names-and-defaults",
        ),
        pytest.param(
            "# comment\nfailover peer f { SECONDARY; Peer Address 192.0.2.1; Port 647; }",
            Failover(
                name="f", where=Where("dhcpd.conf", 2), seq=1, role="secondary",
                peer_address="192.0.2.1", port=647,
            ),
            id="unquoted-name-and-keywords-in-any-case",
        ),
        pytest.param(
            'failover peer "f" { hba ff:ff:00:\n 00; max-lease-misbalance 15 }',
            Failover(
                name="f", where=Where("dhcpd.conf", 1), seq=1, hba="ff:ff:00:00",
                other=("max-lease-misbalance 15",),
            ),
            id="hba-over-lines-and-missing-last-semicolon",
        ),
        pytest.param(
            'failover peer "f" { mclt soon; split; }',
            Failover(name="f", where=Where("dhcpd.conf", 1), seq=1),
            id="malformed-numbers-are-none",
        ),
    ],
)  # fmt: skip
def test_failover_declaration(text: str, expected: Failover) -> None:
    assert parsed(text).failovers == (expected,)


@pytest.mark.parametrize(
    "text",
    [
        'failover peer "f" state { my state normal; }',  # the lease file's record
        'pool { failover peer "f"; range 192.0.2.1; }',  # a reference, not a declaration
        "failover peer { primary; }",
    ],
)
def test_not_a_failover_declaration(text: str) -> None:
    assert parsed(text).failovers == ()


# --- pools -----------------------------------------------------------------------


def pool(subnet: str, peer: str | None, ranges: list[tuple[str, str]], line: int, seq: int) -> Pool:
    return Pool(subnet, peer, tuple(ranges), Where("dhcpd.conf", line), seq)


def bare(subnet: str, ranges: list[tuple[str, str]], line: int, seq: int) -> Pool:
    """A range outside any pool: a pool without failover, at the range's line."""
    return replace(pool(subnet, None, ranges, line, seq), bare=True)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param(
            'subnet 192.0.2.0 netmask 255.255.255.0 {\n  pool {\n    failover peer "f";\n'
            "    range 192.0.2.100 192.0.2.199;\n  }\n}\n",
            [pool("192.0.2.0/24", "f", [("192.0.2.100", "192.0.2.199")], 2, 2)],
            id="subnet-pool",
        ),
        pytest.param(
            "subnet 10.1.0.0 netmask 255.255.0.0 { pool { range dynamic-bootp 10.1.0.5;"
            " range 10.1.2.0 10.1.2.9; } pool { range 10.1.3.1 10.1.3.2; } }",
            [
                pool("10.1.0.0/16", None, [("10.1.0.5", "10.1.0.5"), ("10.1.2.0", "10.1.2.9")],
                     1, 2),
                pool("10.1.0.0/16", None, [("10.1.3.1", "10.1.3.2")], 1, 5),
            ],
            id="one-address-range-dynamic-bootp-two-pools",
        ),
        pytest.param(
            'shared-network "office" {\n  subnet 192.0.2.0 netmask 255.255.255.128 { }\n'
            '  pool { failover peer "f"; range 192.0.2.10 192.0.2.20; }\n'
            '  subnet 192.0.2.128 netmask 255.255.255.128 { pool { range 192.0.2.130; } }\n}\n',
            [
                pool("shared-network office", "f", [("192.0.2.10", "192.0.2.20")], 3, 3),
                pool("192.0.2.128/25", None, [("192.0.2.130", "192.0.2.130")], 4, 7),
            ],
            id="shared-network",
        ),
        pytest.param(
            "group { subnet 192.0.2.0 netmask 255.255.255.0 {\n"
            " if option x = 1 { } else { pool { range 192.0.2.1 192.0.2.2; } } } }",
            [pool("192.0.2.0/24", None, [("192.0.2.1", "192.0.2.2")], 2, 5)],
            id="inside-group-and-else",
        ),
        pytest.param(
            "subnet 192.0.2.0 netmask 255.255.255.0 { range 192.0.2.1 192.0.2.9; }",
            [bare("192.0.2.0/24", [("192.0.2.1", "192.0.2.9")], 1, 2)],
            id="a-range-outside-a-pool-is-a-pool-without-failover",
        ),
        pytest.param(
            "shared-network lan {\n  range 192.0.2.1;\n  subnet 192.0.2.0 netmask 255.255.255.0 {\n"
            "    range 192.0.2.5 192.0.2.9;\n    pool { range 192.0.2.20 192.0.2.29; }\n  }\n}",
            [bare("shared-network lan", [("192.0.2.1", "192.0.2.1")], 2, 2),
             bare("192.0.2.0/24", [("192.0.2.5", "192.0.2.9")], 4, 4),
             pool("192.0.2.0/24", None, [("192.0.2.20", "192.0.2.29")], 5, 5)],
            id="bare-ranges-at-their-own-lines",
        ),
        pytest.param(
            "subnet 192.0.2.1 netmask bad { pool { range 192.0.2.1 192.0.2.2 192.0.2.3; } }",
            [pool("192.0.2.1 netmask bad", None, [], 1, 2)],
            id="odd-subnet-and-range-kept-as-text",
        ),
    ],
)  # fmt: skip
def test_pools(text: str, expected: list[Pool]) -> None:
    assert list(parsed(text).pools) == expected


# --- hosts -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param(
            "host printer-1 {\n  hardware ethernet 02:00:00:00:00:01;\n"
            "  fixed-address 192.0.2.10;\n}\n",
            [Host("printer-1", ("192.0.2.10",), Where("dhcpd.conf", 1))],
            id="one-address",
        ),
        pytest.param(
            'group {\n  host "cam 1" { fixed-address 192.0.2.11, cam.example.net,\n'
            "    192.0.2.12; }\n  host nofixed { }\n}\n",
            [
                Host("cam 1", ("192.0.2.11", "cam.example.net", "192.0.2.12"),
                     Where("dhcpd.conf", 2)),
                Host("nofixed", (), Where("dhcpd.conf", 4)),
            ],
            id="several-addresses-host-names-in-a-group",
        ),
        pytest.param(
            "subnet 192.0.2.0 netmask 255.255.255.0 { host a { fixed-address 192.0.2.5; } }",
            [Host("a", ("192.0.2.5",), Where("dhcpd.conf", 1))],
            id="in-a-subnet",
        ),
    ],
)  # fmt: skip
def test_hosts(text: str, expected: list[Host]) -> None:
    assert list(parsed(text).hosts) == expected


# --- includes, order, comments and strings ------------------------------------------


def test_includes_are_read_in_place_in_reading_order() -> None:
    config = parsed(
        f'include "{T}/subnets.conf";\ninclude "{T}/failover.conf";\n',
        subnets_conf=f'subnet 192.0.2.0 netmask 255.255.255.0 {{\n  include "{T}/pool.conf";\n}}\n',
        pool_conf='pool { failover peer "f"; range 192.0.2.5; }\n',
        failover_conf='failover peer "f" { primary; }\n',
    )
    (p,) = config.pools
    (f,) = config.failovers
    assert (p.subnet, p.where) == ("192.0.2.0/24", Where("pool.conf", 1))
    assert f.where == Where("failover.conf", 1)
    assert p.seq < f.seq  # the pool comes first, as dhcpd reads it


@pytest.mark.parametrize(
    ("main", "outside"),
    [
        ('include "/etc/shadow";', [OutsideInclude("dhcpd.conf", 1, "/etc/shadow", T)]),
        ('\ninclude "../shadow";', [OutsideInclude("dhcpd.conf", 2, "../shadow", T)]),
        ('include "/etc/dhcp-other/x";', [OutsideInclude("dhcpd.conf", 1, "/etc/dhcp-other/x", T)]),
        ('include "sub/../../x";', [OutsideInclude("dhcpd.conf", 1, "sub/../../x", T)]),
        # dhcpd resolves a relative include against its working directory, /: outside.
        ('include "a.conf";', [OutsideInclude("dhcpd.conf", 1, "a.conf", T)]),
        ('include "/etc/dhcp/sub/../a.conf";', [OutsideInclude("a.conf", 1, "/etc/passwd", T)]),
        ('# include "/etc/shadow";\noption x "include \\"/etc/shadow\\";";', []),
        ('include "/etc/dhcp/missing.conf";', []),
    ],
)
def test_includes_outside_the_target(main: str, outside: list[OutsideInclude]) -> None:
    config = parsed(main, a_conf='include "/etc/passwd";')
    assert list(config.includes_outside) == outside
    assert all(isinstance(i, Where) for i in config.includes_outside)


def test_an_include_cycle_ends() -> None:
    config = parsed(f'include "{T}/a.conf";', a_conf=f'include "{T}/dhcpd.conf";\nhost h {{ }}')
    assert [h.name for h in config.hosts] == ["h"]


def test_the_same_file_included_often_does_not_blow_up() -> None:
    """Each level includes the next 30 times: 30**5 reads of the last file unless capped."""
    levels = {f"l{i}_conf": f'include "{T}/l{i + 1}.conf";\n' * 30 for i in range(5)}
    config = parsed(f'include "{T}/l0.conf";', **levels, l5_conf="host h { }")
    assert 0 < len(config.hosts) <= MAX_INCLUDES


@pytest.mark.parametrize(
    "text",
    [
        'option domain-name "a{b}#c"; host h { fixed-address 192.0.2.1; }',
        "# host x { fixed-address 192.0.2.9; } {\nhost h {\n fixed-address 192.0.2.1; # }\n}",
        'option x "multi\nline \\" { ";\nhost h { fixed-address 192.0.2.1; }',
    ],
)
def test_comments_and_strings_hide_braces(text: str) -> None:
    (host,) = parsed(text).hosts
    assert (host.name, host.fixed_addresses) == ("h", ("192.0.2.1",))


@pytest.mark.parametrize(
    "text",
    [
        "",
        "}}}} ;;; {",
        "subnet 192.0.2.0 netmask 255.255.255.0 { pool { range 192.0.2.1",
        '"unterminated',
        "{" * 100_000,
        "\x00\xff\ufffd failover peer",
        "failover peer { { } }",
        "option x code 200 = { integer 8, string }; host h { fixed-address 1.2.3.4; }",
    ],
)
def test_odd_input_never_raises(text: str) -> None:
    parsed(text)


def test_bytes_that_are_not_utf8_never_raise() -> None:
    # Not 0xFF: dhcpd reads that byte as the end of the file (tests/test_lexer.py).
    config = parse({"dhcpd.conf": b'host "\xfe" { fixed-address 192.0.2.1; }'}, "dhcpd.conf", T)
    assert config.hosts[0].fixed_addresses == ("192.0.2.1",)


def test_a_missing_main_file_is_an_empty_config() -> None:
    assert parse({}, "dhcpd.conf", T) == DhcpConfig()


@pytest.mark.parametrize(
    ("path", "inside"),
    [
        ("/etc/dhcp/a.conf", "a.conf"),
        ("a.conf", None),  # dhcpd's working directory is /: this is /a.conf
        ("sub/b.conf", None),
        ("etc/dhcp/a.conf", "a.conf"),  # /etc/dhcp/a.conf, from /
        ("/etc/dhcp/sub/../a.conf", "a.conf"),
        ("/etc/dhcp", "."),
        ("/etc/shadow", None),
        ("../x", None),
        ("/etc/dhcpx/a.conf", None),
    ],
)
def test_inside_target(path: str, inside: str | None) -> None:
    assert inside_target(path, T) == inside


def test_without_hosts_a_file_of_no_pair_word_is_not_read() -> None:
    """The deploy's pair check reads failover and pools only: a hosts file is skipped
    unless it holds a word they need, so 50,000 hosts cost a search, not a parse."""
    files = {
        "dhcpd.conf": b'include "/etc/dhcp/hosts.conf";\ninclude "/etc/dhcp/pools.conf";\n',
        "hosts.conf": b"host a { hardware ethernet 02:00:00:00:00:01; fixed-address 192.0.2.9; }\n",
        "pools.conf": b"subnet 192.0.2.0 netmask 255.255.255.0 {\n"
        b"  POOL { range 192.0.2.10 192.0.2.20; }\n}\n",
    }
    full = parse(files, "dhcpd.conf", "/etc/dhcp")
    lean = parse(files, "dhcpd.conf", "/etc/dhcp", hosts=False)
    assert len(full.hosts) == 1 and lean.hosts == ()
    # seq counts statements read: only its order matters (a peer before its pools).
    assert [replace(p, seq=0) for p in lean.pools] == [replace(p, seq=0) for p in full.pools]
    assert len(lean.pools) == 1
