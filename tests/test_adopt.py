"""agent.review.adopt (`dhcp-gitops import`): a classic hand-kept failover pair adopted into
a config repo, rendered back, compared, and checked with the real dhcpd -t.

The copies name their includes by live path (/etc/dhcp/...), so dhcpd -t reads
them through agent.servers.dhcpd.sandbox.validate: in a private mount namespace with the
folder bound over /etc/dhcp, which is never written.
"""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
import tomllib
from pathlib import Path

import git
import pytest

from agent import cli, tree
from agent.config import Dhcpd
from agent.engine import render
from agent.errors import RenderError
from agent.servers.dhcpd import conf
from agent.servers.dhcpd.lift import block_span, holds_secret, keys_moved
from agent.servers.dhcpd.sandbox import validate
from agent.servers.dhcpd.template import verbatim
from agent.source.snapshot import RepoFile, WorkTree

EXE = str(Path(sys.executable).with_name("dhcp-gitops"))
LIVE = Path("/etc/dhcp")
SECRET = "c2VjcmV0c2VjcmV0c2VjcmV0"
HBA = ":".join(["ff"] * 16 + ["00"] * 16)

DHCPD_CONF = """\
# dhcpd.conf, kept by hand since 2009 {{ not a template }} {% nor this %} {# nor this #}
authoritative;
ddns-update-style none;
default-lease-time 3600;
max-lease-time 7200;
log-facility local7;
{keys}include "/etc/dhcp/dhcpd.failover";
include "/etc/dhcp/Configs/subnets.conf";
include "/etc/dhcp/Configs/hosts.conf";
"""

KEYS_INCLUDED = 'include "/etc/dhcp/dhcpd.keys";\nomapi-port 7911;\nomapi-key omapi_key;\n'

# The classic 519/520 declarations: each side listens on its own port.
FAILOVER = {
    "primary": """\
# failover {{ peer }} -- {% endraw %} kept by hand
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
}
""",
    "secondary": """\
# failover {{ peer }} -- {% endraw %} kept by hand
failover peer "dhcp-failover" {
    secondary;
    address 192.0.2.2;
    port 520;
    peer address 192.0.2.1;
    peer port 519;
    max-response-delay 60;
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
    range 192.0.2.50;
  }
}
"""

HOSTS = """\
host printer { hardware ethernet 00:11:22:33:44:55; fixed-address 192.0.2.10; }
host scanner {
  hardware ethernet 00:11:22:33:44:56;
  fixed-address 192.0.2.11;
}
"""

KEYS = f"""\
key omapi_key {{
  algorithm hmac-md5;
  secret "{SECRET}";
}}
"""


def server_copy(role: str, keys_included: bool = False) -> dict[str, str]:
    """What a copy of one server's /etc/dhcp holds."""
    name = {"primary": "dhcp1", "secondary": "dhcp2"}[role]
    return {
        "dhcpd.conf": DHCPD_CONF.replace("{keys}", KEYS_INCLUDED if keys_included else ""),
        "dhcpd.failover": FAILOVER[role],
        "Configs/subnets.conf": SUBNETS,
        "Configs/hosts.conf": HOSTS,
        "dhcpd.keys": KEYS,
        "dhclient.conf": f'send host-name "{name}";\nrequest subnet-mask, routers;\n',
        "dhcpd6.conf": "# no DHCPv6 here\n",
    }


def write_copy(folder: Path, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        path = folder / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return folder


@pytest.fixture
def pair(tmp_path: Path) -> dict[str, Path]:
    return {
        "primary": write_copy(tmp_path / "dhcp1", server_copy("primary")),
        "secondary": write_copy(tmp_path / "dhcp2", server_copy("secondary")),
    }


def run_import(*args: str | Path) -> int:
    return cli.main(["import", *map(str, args)])


def dhcpd_t(folder: Path) -> None:
    """The real dhcpd -t on a tree as if it were /etc/dhcp; raises ValidateError."""
    validate(folder, LIVE, Dhcpd(), {})


def rendered(repo: Path, role: str, name: str) -> dict[str, bytes]:
    return render.render_pair(WorkTree(repo), "", role, name, str(LIVE)).files


def the_failover(files: dict[str, bytes]) -> conf.Failover:
    (failover,) = conf.parse(files, "dhcpd.conf", str(LIVE)).failovers
    return dataclasses.replace(failover, seq=0)


def read(folder: Path) -> dict[str, bytes]:
    return {rel: path.read_bytes() for rel, path in tree.files(folder)}


def assert_renders_back(repo: Path, role: str, name: str, source: Path, tmp: Path) -> None:
    """Checked here without adopt's own proof: the same bytes, the failover file too (the
    first deploy changes nothing and restarts nothing), and dhcpd -t takes the tree."""
    files, expected = rendered(repo, role, name), read(source)
    del expected["dhcpd.keys"]
    assert SECRET.encode() not in files.pop("dhcpd.keys")  # a stand-in (server_only)
    assert files == expected
    stage = tmp / f"rendered-{role}"
    tree.write(stage, {**files, "dhcpd.keys": source.joinpath("dhcpd.keys").read_bytes()})
    dhcpd_t(stage)


# --- the round trip -------------------------------------------------------------


def test_the_copies_pass_dhcpd_t(pair: dict[str, Path]) -> None:
    for folder in pair.values():
        dhcpd_t(folder)


def test_round_trip_of_a_classic_pair(
    pair: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    repo = tmp_path / "repo"
    code = run_import("--from", pair["primary"], "--role", "primary",
                      "--peer-from", pair["secondary"], "--names", "dhcp1,dhcp2", repo)  # fmt: skip
    out = capsys.readouterr().out
    assert code == 0, out
    summary = "6 files identical, dhcpd.keys left out (secret); dhcpd -t: ok"
    assert f"primary: {summary}" in out and f"secondary: {summary}" in out
    assert 'preserve = ["dhcpd.keys"]' in out and "equivalent: the repo renders back" in out

    toml = tomllib.loads((repo / "pair.toml").read_text())
    assert toml["failover"] == {
        "name": "dhcp-failover", "mclt": 3600, "split": 128, "max_response_delay": 60,
        "max_unacked_updates": 10, "load_balance_max_seconds": 3,
    }  # fmt: skip
    assert toml["primary"] == {"name": "dhcp1", "address": "192.0.2.1", "port": 519}
    assert toml["secondary"] == {"name": "dhcp2", "address": "192.0.2.2", "port": 520}

    layout = {rel for rel, _ in tree.files(repo) if not rel.startswith(".git/")}
    assert layout == {
        "README.md", "pair.toml", "dhcp/dhcpd.conf", "dhcp/dhcpd.keys", "dhcp/dhcpd6.conf",
        "dhcp/Configs/subnets.conf", "dhcp/Configs/hosts.conf",
        "roles/primary/dhclient.conf", "roles/secondary/dhclient.conf",
        # The template writes the primary's declaration in another order: kept as it is.
        # The secondary's renders byte for byte: a template, from pair.toml.
        "roles/primary/dhcpd.failover", "roles/secondary/dhcpd.failover.j2",
    }  # fmt: skip
    assert "Kept as the servers have them, not as templates: `roles/primary/dhcpd.failover`" in (
        (repo / "README.md").read_text()
    )
    assert not any(SECRET in (repo / rel).read_text() for rel in layout)
    assert "dhcpd.keys" in (repo / "README.md").read_text()

    commits = list(git.Repo(repo).iter_commits("main"))
    assert len(commits) == 1 and not git.Repo(repo).is_dirty(untracked_files=True)

    for role, name in (("primary", "dhcp1"), ("secondary", "dhcp2")):
        assert_renders_back(repo, role, name, pair[role], tmp_path)
    done = subprocess.run([EXE, "validate", str(repo)], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_key_file_is_preserved_not_imported_when_dhcpd_conf_includes_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The agent copies preserved files into the stage before dhcpd -t; the proof too."""
    primary = write_copy(tmp_path / "dhcp1", server_copy("primary", keys_included=True))
    dhcpd_t(primary)
    code = run_import("--from", primary, "--role", "primary", tmp_path / "repo")
    out = capsys.readouterr().out
    assert code == 0, out
    assert "dhcpd.keys left out (secret); dhcpd -t: ok" in out
    assert SECRET not in (tmp_path / "repo/dhcp/dhcpd.keys").read_text()  # a stand-in


def test_from_one_copy_only(
    pair: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    repo = tmp_path / "repo"
    assert run_import("--from", pair["primary"], "--role", "primary", repo) == 0
    out = capsys.readouterr().out
    assert "primary: 5 files identical, dhcpd.failover equivalent" in out
    assert "secondary: not compared" in out
    assert not (repo / "roles").exists() and (repo / "dhcp/dhclient.conf").is_file()
    toml = tomllib.loads((repo / "pair.toml").read_text())
    assert toml["secondary"] == {"name": "secondary", "address": "192.0.2.2", "port": 520}
    # The other side mirrors this one: what it would get is the secondary's declaration.
    theirs = the_failover(rendered(repo, "secondary", "secondary"))
    mine = the_failover(read(pair["secondary"]))
    assert dataclasses.replace(theirs, where=mine.where) == mine


def test_from_the_secondary_only_asks_for_the_primarys_values(
    pair: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    repo = tmp_path / "repo"
    assert run_import("--from", pair["secondary"], "--role", "secondary", repo) == 0
    out = capsys.readouterr().out
    assert "secondary: 6 files identical" in out  # the template renders it byte for byte
    assert "set the primary's mclt and split" in out
    toml_text = (repo / "pair.toml").read_text()
    assert "mclt" not in tomllib.loads(toml_text)["failover"] and "# mclt = " in toml_text
    with pytest.raises(RenderError, match="mclt"):
        rendered(repo, "primary", "primary")


def test_failover_declared_inside_dhcpd_conf(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    sides = {}
    for role, name in (("primary", "dhcp1"), ("secondary", "dhcp2")):
        files = server_copy(role)
        block = files.pop("dhcpd.failover").split("\n", 1)[1]
        files["dhcpd.conf"] = files["dhcpd.conf"].replace(
            'include "/etc/dhcp/dhcpd.failover";\n', f"# the peer, inline\n{block}# pools next\n"
        )
        sides[role] = write_copy(tmp_path / name, files)
        dhcpd_t(sides[role])
    repo = tmp_path / "repo"
    code = run_import("--from", sides["secondary"], "--role", "secondary",
                      "--peer-from", sides["primary"], repo)  # fmt: skip
    out = capsys.readouterr().out
    assert code == 0, out
    assert "primary: 5 files identical" in out and "secondary: 5 files identical" in out
    # The primary's declaration, which the template would reorder, is kept as it is.
    assert (repo / "roles/primary/dhcpd.conf").is_file()
    assert (repo / "roles/secondary/dhcpd.conf.j2").is_file()
    for role in ("primary", "secondary"):
        assert_renders_back(repo, role, role, sides[role], tmp_path)


def test_hba_instead_of_split_and_other_statements(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    sides = {}
    for role in ("primary", "secondary"):
        files = server_copy(role)
        files["dhcpd.failover"] = (
            files["dhcpd.failover"]
            .replace("split 128;", f"hba {HBA};")
            .replace("\n}\n", "\n    auto-partner-down 3600;\n}\n")
        )
        sides[role] = write_copy(tmp_path / role, files)
        dhcpd_t(sides[role])
    repo = tmp_path / "repo"
    code = run_import("--from", sides["primary"], "--role", "primary",
                      "--peer-from", sides["secondary"], repo)  # fmt: skip
    assert code == 0, capsys.readouterr().out
    failover = tomllib.loads((repo / "pair.toml").read_text())["failover"]
    assert failover["hba"] == HBA and "split" not in failover
    assert failover["statements"] == ["auto-partner-down 3600"]
    for role in ("primary", "secondary"):
        assert_renders_back(repo, role, role, sides[role], tmp_path)


def test_a_difference_is_listed_and_the_repo_kept(
    pair: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A pair that disagrees today (the secondary points at a wrong peer address) cannot
    be described once: the proof names the field, exit 1, the repo stays to look at."""
    wrong = pair["secondary"] / "dhcpd.failover"
    wrong.write_text(wrong.read_text().replace("peer address 192.0.2.1", "peer address 192.0.2.9"))
    repo = tmp_path / "repo"
    code = run_import("--from", pair["primary"], "--role", "primary",
                      "--peer-from", pair["secondary"], repo)  # fmt: skip
    out = capsys.readouterr().out
    assert code == 1
    assert "primary: 6 files identical" in out  # kept as it is
    assert (
        "  dhcpd.failover: failover peer_address: '192.0.2.9' on the server, '192.0.2.1' rendered"
        in out
    )
    assert "NOT equivalent: 1 difference(s)" in out and (repo / "pair.toml").is_file()


# --- refused -------------------------------------------------------------------------


def test_a_symlink_in_the_copy_is_refused_and_nothing_written(
    pair: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (pair["primary"] / "Configs/printers.conf").symlink_to("hosts.conf")
    repo = tmp_path / "repo"
    code = run_import("--from", pair["primary"], "--role", "primary", repo)
    err = capsys.readouterr().err
    assert code in (1, 2)
    assert "Configs/printers.conf" in err and "symbolic link" in err
    assert not repo.exists()


def test_a_special_file_is_refused(
    pair: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    os.mkfifo(pair["secondary"] / "dhcpd.fifo")
    code = run_import("--from", pair["primary"], "--role", "primary",
                      "--peer-from", pair["secondary"], tmp_path / "repo")  # fmt: skip
    assert code in (1, 2) and "dhcpd.fifo: not a regular file" in capsys.readouterr().err
    assert not (tmp_path / "repo").exists()


def test_a_non_empty_repo_folder_is_refused(
    pair: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    repo = tmp_path / "repo"
    repo.mkdir()
    (repo / "notes.txt").write_text("mine\n")
    assert run_import("--from", pair["primary"], "--role", "primary", repo) == 2
    assert "is not empty" in capsys.readouterr().err
    assert [p.name for p in repo.iterdir()] == ["notes.txt"]


def test_a_copy_imported_under_the_wrong_role_is_refused(
    pair: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run_import("--from", pair["secondary"], "--role", "primary", tmp_path / "r") == 1
    assert 'says "secondary;", but this copy is imported as the primary' in (
        capsys.readouterr().err
    )


# --- verbatim text ------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        "# {{ peer }} {% if %} {# x #}\n",
        "a {% endraw %} b {%- endraw -%} c\n",
        "{% raw %}\n",
        "line\n    ",  # blanks before the end of a raw block
        "\n\n  \t",
        "windows\r\nline\rends\r\n",
        "}}{{\n{%\n%}\n",
        "",
    ],
)
def test_verbatim_renders_to_the_same_text(text: str) -> None:
    template = RepoFile("dhcp/x.j2", verbatim(text).encode())
    out = render.render([("dhcp", [template])], {})
    assert out.files["x"] == text.encode()


def test_a_source_file_named_j2_is_kept_as_it_is(
    pair: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (pair["primary"] / "notes.j2").write_text("{{ undefined }} stays\n")
    repo = tmp_path / "repo"
    assert run_import("--from", pair["primary"], "--role", "primary", repo) == 0
    assert (repo / "dhcp/notes.j2.j2").is_file()
    assert rendered(repo, "primary", "primary")["notes.j2"] == b"{{ undefined }} stays\n"


@pytest.mark.parametrize(
    ("text", "secret"),
    [
        (KEYS, True),
        ('key "ddns" { algorithm hmac-sha256; secret "abc" }', True),
        ("omapi-key omapi_key;\n", False),
        ('# key x { secret "y"; }\nzone example. { key ddns; }\n', False),
    ],
)
def test_holds_secret(text: str, secret: bool) -> None:
    assert holds_secret(text.encode()) is secret


@pytest.mark.parametrize(
    ("text", "block"),
    [
        (
            '# failover peer "p" { (a comment)\nfailover peer "p" {\n  primary; # }\n}\nx;\n',
            'failover peer "p" {\n  primary; # }\n}',
        ),
        (
            'authoritative; failover peer "p" { primary; option x "}"; } # end\n',
            'failover peer "p" { primary; option x "}"; }',
        ),
        ("  FAILOVER Peer p {\n  secondary;\n  }\n", "FAILOVER Peer p {\n  secondary;\n  }"),
    ],
)
def test_block_span_finds_the_whole_declaration(text: str, block: str) -> None:
    (failover,) = conf.parse({"f": text.encode()}, "f", str(LIVE)).failovers
    start, end = block_span(text, failover)
    assert text[start:end] == block


def test_two_failover_peers_are_refused(
    pair: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    failover = pair["primary"] / "dhcpd.failover"
    failover.write_text(failover.read_text() + FAILOVER["primary"].replace("dhcp-", "other-"))
    assert run_import("--from", pair["primary"], "--role", "primary", tmp_path / "repo") == 1
    err = capsys.readouterr().err
    assert 'declares 2 failover peers ("dhcp-failover" (dhcpd.failover:2)' in err
    assert not (tmp_path / "repo").exists()


def test_two_servers_that_share_no_file_import_to_a_repo_that_renders(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Every file differs (a comment naming the server): all go to roles/, no dhcp/ at all,
    and the repo renders and validates."""
    sides = {}
    for role, name in (("primary", "dhcp1"), ("secondary", "dhcp2")):
        files = {rel: f"# {name}\n{text}" for rel, text in server_copy(role).items()}
        sides[role] = write_copy(tmp_path / name, files)
    repo = tmp_path / "repo"
    code = run_import("--from", sides["primary"], "--role", "primary",
                      "--peer-from", sides["secondary"], repo)  # fmt: skip
    out = capsys.readouterr().out
    assert code == 0, out
    assert not (repo / "dhcp").exists() and (repo / "roles/primary/dhcpd.conf").is_file()
    for role in ("primary", "secondary"):
        assert_renders_back(repo, role, role, sides[role], tmp_path)
    done = subprocess.run([EXE, "validate", str(repo)], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr


def test_a_pair_folder_without_roles_or_dhcp_is_still_refused(tmp_path: Path) -> None:
    (tmp_path / "pair.toml").write_text("")
    with pytest.raises(RenderError, match=r"no dhcp/ folder \(nor roles/\)"):
        rendered(tmp_path, "primary", "n")


def test_a_key_block_in_the_failover_file_moves_to_a_preserved_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The key block goes to dhcpd.failover.keys, left out of the repo (a secret) and
    preserved; the failover file includes it in its place, and the declaration is lifted."""
    sides = {}
    for role in ("primary", "secondary"):
        files = server_copy(role)
        comment, block = files["dhcpd.failover"].split("\n", 1)
        files["dhcpd.failover"] = f"{comment}\n{KEYS}{block}"
        sides[role] = write_copy(tmp_path / role, files)
        dhcpd_t(sides[role])
    repo = tmp_path / "repo"
    code = run_import("--from", sides["primary"], "--role", "primary",
                      "--peer-from", sides["secondary"], repo)  # fmt: skip
    out = capsys.readouterr().out
    assert code == 0, out
    assert "primary: the key blocks of dhcpd.failover go to dhcpd.failover.keys" in out
    assert 'preserve = ["dhcpd.failover.keys", "dhcpd.keys"]' in out
    assert "dhcpd.failover.keys left out (secret)" in out and "dhcpd -t: ok" in out
    layout = {rel for rel, _ in tree.files(repo) if not rel.startswith(".git/")}
    assert not any(SECRET in (repo / rel).read_text() for rel in layout)
    assert tomllib.loads((repo / "pair.toml").read_text())["failover"]["mclt"] == 3600
    for role in ("primary", "secondary"):
        failover = rendered(repo, role, role)["dhcpd.failover"].decode()
        assert failover.startswith(f'{comment}\ninclude "/etc/dhcp/dhcpd.failover.keys";\n')
        assert "secret" not in failover


@pytest.mark.parametrize(
    ("text", "kept", "keys"),
    [
        (KEYS + "omapi-key omapi_key;\n", 'include "k";\nomapi-key omapi_key;\n', KEYS),
        ('key a { secret "x"; };\nkey "b" {\n secret "y";\n}\n',
         'include "k";\n\n', 'key a { secret "x"; };\nkey "b" {\n secret "y";\n}\n'),
        ('# key c { secret "z"; }\nzone example. { key ddns; }\n',
         '# key c { secret "z"; }\nzone example. { key ddns; }\n', "\n"),
    ],
)  # fmt: skip
def test_keys_moved(text: str, kept: str, keys: str) -> None:
    """Top-level key blocks only (a zone's `key ddns;` stays), comments ignored."""
    assert keys_moved(text.encode(), "k") == (kept.encode(), keys.encode())


def test_a_relative_include_in_a_copy_is_named_with_the_path_meant(
    pair: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    main = pair["primary"] / "dhcpd.conf"
    main.write_text(
        main.read_text().replace('"/etc/dhcp/Configs/hosts.conf"', '"Configs/hosts.conf"')
    )
    run_import("--from", pair["primary"], "--role", "primary", tmp_path / "repo")
    out = capsys.readouterr().out
    assert (
        'warning: primary: dhcpd.conf:9: include "Configs/hosts.conf" is relative: dhcpd '
        "resolves it against its working directory (/), not the config folder; write "
        '"/etc/dhcp/Configs/hosts.conf"' in out
    ), out
