"""The agent's configuration: one TOML file, checked whole at start, frozen after.

Relative paths in the file resolve against the file's own directory, so a
config folder can be moved as a unit.
"""

from __future__ import annotations

import tomllib
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from agent.errors import ConfigError

DEFAULT_PATH = Path("/etc/dhcp-gitops/agent.toml")

Role = Literal["primary", "secondary", "standalone"]
Seconds = Annotated[float, Field(ge=0)]
PositiveSeconds = Annotated[float, Field(gt=0)]
# TOML arrays arrive as lists; frozen config keeps them as tuples.
Strings = Annotated[tuple[str, ...], Field(strict=False)]


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


class Node(_Section):
    name: Annotated[str, Field(min_length=1, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")]
    role: Role


class Source(_Section):
    url: Annotated[str, Field(min_length=1)]
    branch: Annotated[str, Field(min_length=1, pattern=r"^[^\s~^:?*\[\\]+$")] = "main"
    path: str = ""
    poll_interval: Seconds = 60.0
    timeout: PositiveSeconds = 60.0
    ssh_key: Path | None = None
    known_hosts: Path | None = None

    @field_validator("url")
    @classmethod
    def _supported_url(cls, url: str) -> str:
        if remote_kind(url) == "unsupported":
            raise ValueError("use file://, ssh://, https://, user@host:path or an absolute path")
        return url

    @field_validator("path")
    @classmethod
    def _inside_repo(cls, path: str) -> str:
        parts = Path(path).parts
        if path.startswith("/") or ".." in parts:
            raise ValueError("must be a folder inside the repository, without '..'")
        return "/".join(parts)


class Deploy(_Section):
    target: Path = Path("/etc/dhcp")
    state_dir: Path = Path("/var/lib/dhcp-gitops")
    preserve: Strings = ()
    keep_releases: Annotated[int, Field(ge=0)] = 5

    @field_validator("preserve")
    @classmethod
    def _relative_globs(cls, globs: tuple[str, ...]) -> tuple[str, ...]:
        for glob in globs:
            if not glob or glob.startswith("/") or ".." in Path(glob).parts:
                raise ValueError(f"{glob!r}: a glob relative to the target, without '..'")
        return globs


class Dhcpd(_Section):
    binary: str = "/usr/sbin/dhcpd"
    config: str = "dhcpd.conf"
    restart: Literal["supervise", "command", "none"] = "command"
    restart_command: Strings = ("systemctl", "restart", "isc-dhcp-server")
    health_command: Strings = ()
    args: Strings = ()
    lease_file: Path = Path("/var/lib/dhcp/dhcpd.leases")
    health_timeout: Seconds = 3.0

    @field_validator("config")
    @classmethod
    def _config_inside_target(cls, config: str) -> str:
        if not config or config.startswith("/") or ".." in Path(config).parts:
            raise ValueError("a path relative to deploy.target, without '..'")
        return config

    @field_validator("restart_command")
    @classmethod
    def _argv(cls, argv: tuple[str, ...]) -> tuple[str, ...]:
        if not argv:
            raise ValueError("an argv list such as ['systemctl', 'restart', 'isc-dhcp-server']")
        return argv


class AgentConfig(_Section):
    node: Node
    source: Source
    deploy: Deploy = Deploy()
    dhcpd: Dhcpd = Dhcpd()
    file: Path = Path("<memory>")

    @property
    def peer_role(self) -> str | None:
        return {"primary": "secondary", "secondary": "primary"}.get(self.node.role)


def remote_kind(url: str) -> Literal["file", "ssh", "https", "unsupported"]:
    """Classify a remote URL the way git would treat it."""
    scheme = urlsplit(url).scheme
    if scheme in ("file", "ssh", "https"):
        return scheme  # type: ignore[return-value]
    if not scheme and url.startswith("/"):
        return "file"
    if not scheme and ":" in url.split("/", 1)[0]:
        return "ssh"  # scp-like user@host:path
    return "unsupported"


def load(path: Path) -> AgentConfig:
    """Read, resolve and check the config file; every problem names file and key."""
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as err:
        raise ConfigError(f"{path}: cannot read: {err.strerror}") from err
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as err:
        raise ConfigError(f"{path}: not valid TOML: {err}") from err
    return parse(raw, path)


def parse(raw: dict[str, Any], path: Path) -> AgentConfig:
    base = path.parent.resolve()
    resolved = _resolve_paths(raw, base)
    try:
        config = AgentConfig.model_validate({**resolved, "file": path})
    except ValidationError as err:
        raise ConfigError(_describe(err, path)) from err
    _check_files(config)
    return config


# Keys holding paths; relative values resolve against the config file's folder.
_PATH_KEYS = {
    "source": ("ssh_key", "known_hosts"),
    "deploy": ("target", "state_dir"),
    "dhcpd": ("lease_file",),
}


def _resolve_paths(raw: dict[str, Any], base: Path) -> dict[str, Any]:
    out = dict(raw)
    for section, keys in _PATH_KEYS.items():
        table = out.get(section)
        if not isinstance(table, dict):
            continue
        table = dict(table)
        for key in keys:
            if isinstance(table.get(key), str):
                table[key] = base / Path(table[key]).expanduser()
        out[section] = table
    if isinstance(out.get("source"), dict):
        url = out["source"].get("url")
        if isinstance(url, str) and url.startswith("file://") and not url.startswith("file:///"):
            out["source"] = {**out["source"], "url": "file://" + str(base / url[len("file://") :])}
    return out


def _describe(err: ValidationError, path: Path) -> str:
    lines = [f"{path}: {err.error_count()} problem(s):"]
    for e in err.errors():
        lines.append(f"  {_key(e['loc'])}: {_message(e)}")
    return "\n".join(lines)


def _key(loc: Sequence[int | str]) -> str:
    parts = [str(p) for p in loc]
    if len(parts) >= 2:
        return f"[{parts[0]}] " + ".".join(parts[1:])
    return f"[{parts[0]}]" if parts else "(top level)"


def _message(e: Any) -> str:
    kind = e["type"]
    if kind == "extra_forbidden":
        return "unknown key (a typo?)"
    if kind == "missing":
        return "required, not set"
    if kind.endswith("_type") or kind in ("literal_error", "enum"):
        return f"{e['msg']} (got {e['input']!r})"
    return str(e["msg"]).removeprefix("Value error, ")


def _check_files(config: AgentConfig) -> None:
    """What a key names must exist and suit its use; checked now, not mid-deploy."""
    where = config.file
    source, deploy = config.source, config.deploy
    if remote_kind(source.url) == "ssh" and source.known_hosts is None:
        raise ConfigError(f"{where}: [source] known_hosts: required for an ssh remote")
    for key in ("ssh_key", "known_hosts"):
        file = getattr(source, key)
        if file is not None and not file.is_file():
            raise ConfigError(f"{where}: [source] {key}: {file} is not a readable file")
    target = deploy.target
    if target.is_symlink() or (target.exists() and not target.is_dir()):
        raise ConfigError(f"{where}: [deploy] target: {target} must be a real directory")
    if not target.parent.is_dir():
        raise ConfigError(f"{where}: [deploy] target: parent folder {target.parent} is missing")
    if target.exists() and target.stat().st_dev != target.parent.stat().st_dev:
        raise ConfigError(
            f"{where}: [deploy] target: {target} is a mount point; the atomic exchange "
            "needs it on the same filesystem as its parent folder"
        )
    if deploy.state_dir.resolve().is_relative_to(target.resolve()):
        raise ConfigError(f"{where}: [deploy] state_dir: must not be inside the target")
