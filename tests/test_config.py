"""agent.config: every key checked at start, errors name the file and the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent import config
from agent.errors import ConfigError
from lab.toml import toml_text

MINIMAL = {
    "node": {"name": "dhcp1", "role": "primary"},
    "source": {"url": "file:///srv/config.git"},
}


def write(tmp_path: Path, tables: dict[str, dict[str, object]]) -> Path:
    path = tmp_path / "agent.toml"
    path.write_text(toml_text(tables))
    return path


def with_keys(**sections: dict[str, object]) -> dict[str, dict[str, object]]:
    tables: dict[str, dict[str, object]] = {k: dict(v) for k, v in MINIMAL.items()}
    for name, keys in sections.items():
        tables.setdefault(name, {}).update(keys)
    return tables


def test_minimal_config_gets_the_documented_defaults(tmp_path: Path) -> None:
    cfg = config.load(write(tmp_path, with_keys()))
    assert cfg.source.branch == "main"
    assert cfg.deploy.target == Path("/etc/dhcp")
    assert cfg.deploy.state_dir == Path("/var/lib/dhcp-gitops")
    assert cfg.dhcpd.config == "dhcpd.conf"
    assert cfg.dhcpd.restart == "command"
    assert cfg.peer_role == "secondary"


def test_relative_paths_resolve_against_the_config_folder(tmp_path: Path) -> None:
    (tmp_path / "etc").mkdir()
    cfg = config.load(write(tmp_path, with_keys(deploy={"target": "etc/dhcp"})))
    assert cfg.deploy.target == tmp_path / "etc" / "dhcp"


def test_signature_files_resolve_against_the_config_folder(tmp_path: Path) -> None:
    (tmp_path / "keys").mkdir()
    (tmp_path / "keys" / "ops.asc").write_text("keys\n")
    source = {"verify": "gpg", "gpg_keyring": "keys/ops.asc", "require_descendant": True}
    cfg = config.load(write(tmp_path, with_keys(source=source)))
    assert cfg.source.gpg_keyring == tmp_path / "keys" / "ops.asc"
    assert cfg.source.require_descendant is True
    assert config.load(write(tmp_path, with_keys())).source.verify == "none"


def test_config_is_frozen(tmp_path: Path) -> None:
    cfg = config.load(write(tmp_path, with_keys()))
    with pytest.raises(ValueError, match="frozen"):
        cfg.node.role = "secondary"


@pytest.mark.parametrize(
    ("tables", "expected"),
    [
        (with_keys(node={"rolle": "primary"}), r"\[node\] rolle: unknown key"),
        (with_keys(dhcpd={"restart": "reboot"}), r"\[dhcpd\] restart: .*'reboot'"),
        (with_keys(node={"role": "tertiary"}), r"\[node\] role:"),
        ({"node": {"name": "dhcp1"}, "source": MINIMAL["source"]}, r"\[node\] role: required"),
        ({"node": MINIMAL["node"]}, r"\[source\]: required"),
        (with_keys(source={"poll_interval": -1}), r"\[source\] poll_interval:"),
        (with_keys(source={"poll_interval": "60"}), r"\[source\] poll_interval:"),
        (with_keys(source={"url": "ftp://x/y"}), r"\[source\] url: use file://"),
        (with_keys(source={"path": "../other"}), r"\[source\] path: .*'\.\.'"),
        (with_keys(source={"url": "ssh://git@h/r.git"}), r"\[source\] known_hosts: required"),
        (with_keys(source={"ssh_key": "/nonexistent/key"}), r"\[source\] ssh_key: .* not a"),
        (with_keys(source={"verify": "pgp"}), r"\[source\] verify: .*'pgp'"),
        (
            with_keys(source={"verify": "gpg"}),
            r'\[source\] gpg_keyring: required with verify = "gpg"',
        ),
        (with_keys(source={"verify": "ssh"}), r"\[source\] allowed_signers: required with"),
        (with_keys(source={"gpg_keyring": "/k.asc"}), r"\[source\] gpg_keyring: only used with"),
        (
            with_keys(source={"verify": "ssh", "allowed_signers": "/x", "gpg_keyring": "/k"}),
            r"\[source\] gpg_keyring: only used with verify = \"gpg\" \(verify is 'ssh'\)",
        ),
        (
            with_keys(source={"verify": "gpg", "gpg_keyring": "/nonexistent/keyring.asc"}),
            r"\[source\] gpg_keyring: /nonexistent/keyring.asc is not a readable file",
        ),
        (with_keys(source={"require_descendant": "yes"}), r"\[source\] require_descendant:"),
        (with_keys(deploy={"preserve": ["/etc/passwd"]}), r"\[deploy\] preserve:"),
        (with_keys(deploy={"keep_releases": -1}), r"\[deploy\] keep_releases:"),
        (with_keys(deploy={"target": "/nonexistent/dir/dhcp"}), r"\[deploy\] target: parent"),
        (with_keys(dhcpd={"config": "../dhcpd.conf"}), r"\[dhcpd\] config:"),
        (with_keys(dhcpd={"restart_command": []}), r"\[dhcpd\] restart_command:"),
        (with_keys(extra={"x": 1}), r"\[extra\]: unknown key"),
    ],
)
def test_bad_configs_name_the_file_and_the_key(
    tmp_path: Path, tables: dict[str, dict[str, object]], expected: str
) -> None:
    path = write(tmp_path, tables)
    with pytest.raises(ConfigError, match=expected) as raised:
        config.load(path)
    assert str(path) in raised.value.message
    assert raised.value.exit_code == 2


def test_all_problems_are_reported_at_once(tmp_path: Path) -> None:
    path = write(tmp_path, with_keys(node={"role": "x", "nmae": "y"}, dhcpd={"args": "eth0"}))
    with pytest.raises(ConfigError, match="3 problem") as raised:
        config.load(path)
    for key in ("[node] role", "[node] nmae", "[dhcpd] args"):
        assert key in raised.value.message


def test_a_target_that_is_a_symlink_is_refused(tmp_path: Path) -> None:
    (tmp_path / "real").mkdir()
    (tmp_path / "dhcp").symlink_to(tmp_path / "real")
    path = write(tmp_path, with_keys(deploy={"target": str(tmp_path / "dhcp")}))
    with pytest.raises(ConfigError, match="must be a real directory"):
        config.load(path)


def test_state_dir_inside_target_is_refused(tmp_path: Path) -> None:
    target = tmp_path / "dhcp"
    path = write(tmp_path, with_keys(deploy={"target": str(target), "state_dir": f"{target}/s"}))
    with pytest.raises(ConfigError, match="state_dir"):
        config.load(path)


@pytest.mark.parametrize(
    "text", ["[node\nname = 1", "node = ", b"\xff\xfe".decode("latin-1")], ids=str
)
def test_invalid_toml_names_the_file(tmp_path: Path, text: str) -> None:
    path = tmp_path / "agent.toml"
    path.write_text(text)
    with pytest.raises(ConfigError, match="not valid TOML"):
        config.load(path)


def test_missing_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        config.load(tmp_path / "nope.toml")


@pytest.mark.parametrize(
    ("url", "kind"),
    [
        ("file:///srv/r.git", "file"),
        ("/srv/r.git", "file"),
        ("ssh://git@host:2222/r.git", "ssh"),
        ("git@host:group/r.git", "ssh"),
        ("https://host/r.git", "https"),
        ("http://host/r.git", "unsupported"),
        ("relative/path", "unsupported"),
    ],
)
def test_remote_kind(url: str, kind: str) -> None:
    assert config.remote_kind(url) == kind
